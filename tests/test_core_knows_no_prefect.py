"""tava_core is the library; Prefect belongs to flows/ and tasks/. Importing any core module must
not import Prefect, and no core file may handle PREFECT_* variables."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]

# Imports every tava_core module in a fresh interpreter and reports which ones pulled Prefect in
# (a module whose optional third-party dependency is absent is listed apart, not hidden).
_PROBE = r"""
import importlib, json, pkgutil, sys
import tava_core
pulled, missing_optional, checked = [], {}, []
for info in pkgutil.walk_packages(tava_core.__path__, "tava_core."):
    before = "prefect" in sys.modules
    try:
        importlib.import_module(info.name)
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("tava_core"):
            raise
        missing_optional[info.name] = exc.name
        continue
    checked.append(info.name)
    if not before and "prefect" in sys.modules:
        pulled.append(info.name)
print(json.dumps({"pulled": pulled, "missing_optional": missing_optional, "checked": checked}))
"""


def test_importing_every_core_module_leaves_prefect_unimported():
    done = subprocess.run([sys.executable, "-c", _PROBE], cwd=PROJECT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(result["checked"]) >= 20, result  # the walk really covered the package
    assert "tava_core.config" in result["checked"] and "tava_core.embed" in result["checked"]
    assert result["pulled"] == [], f"these tava_core modules import prefect: {result['pulled']}"


def test_no_core_file_handles_prefect_variables():
    offenders = [f"{path.relative_to(PROJECT)}:{number}"
                 for path in sorted((PROJECT / "tava_core").rglob("*.py"))
                 for number, line in enumerate(path.read_text().splitlines(), start=1)
                 if re.search(r"PREFECT_|import prefect|from prefect", line)]
    assert offenders == [], f"Prefect handling belongs in flows/_prefect.py: {offenders}"
