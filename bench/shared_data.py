"""Where the benchmarks find the project and ../shared/data, set up once for every bench script.

Importing it puts the project on ``sys.path`` (bench scripts run as ``python bench/NAME.py``) and
keeps Hugging Face offline: the benchmarks read local models and data only.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = Path(os.environ.get("TAVA_SHARED_DATA", ROOT.parent / "shared" / "data"))
SCIFACT = SHARED / "beir" / "scifact"
PASSAGES = SHARED / "corpus_passages_en.jsonl.gz"
MPNET_VECTORS = SHARED / "vectors" / "all-mpnet-base-v2"


def write_result(path: Path, report: dict, *, indent: int = 2) -> None:
    """Write a benchmark's JSON atomically (temp file, then rename): a killed run leaves the old one."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=indent) + "\n")
    os.replace(tmp, path)
