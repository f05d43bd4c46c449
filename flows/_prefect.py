"""What tava does to suit Prefect, kept out of ``tava_core`` (which knows nothing of Prefect):

- the environment: Prefect's state (PREFECT_HOME, results, storage) inside the tava home, offline
  and quiet; it must be set before ``prefect`` is imported;
- the UI-form workaround: the Prefect UI (v1) renders field descriptions as markdown, where a
  bare ``<home>`` is an HTML tag and vanishes, so parameter schemas write ‹home› instead.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tava_core.config import add_schema_hook
from tava_core.home import TavaHome

_PLACEHOLDER = re.compile(r"<[A-Za-z][\w.-]*>")


def prefect_dir(home: TavaHome) -> Path:
    """<home>/prefect: the ephemeral server's database, results and logs."""
    return home.root / "prefect"


def prefect_environment(home: TavaHome) -> dict[str, str]:
    """Environment that keeps Prefect offline, quiet and inside the tava home."""
    state = prefect_dir(home)
    return {
        "PREFECT_HOME": str(state),
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(state / "results"),
        "PREFECT_LOCAL_STORAGE_PATH": str(state / "storage"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        # Wall-clock seconds the temporary server has to answer (flows/_server.py): a first start
        # on a busy 2-core machine can take well over a minute.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "TOKENIZERS_PARALLELISM": "false",
        # the library's own log lines (tava_core logs through `logging`, knowing nothing of Prefect) go to
        # the flow run's logs in the UI too, not only to the console (configure_environment)
        "PREFECT_LOGGING_EXTRA_LOGGERS": "tava_core",
        # ... and outside a flow run (the library called directly, a check before a flow) they stay on the
        # console without a warning that there is no run to send them to
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    }


def configure_environment(home: TavaHome | str | Path | None = None, *, override: bool = False) -> TavaHome:
    """Point Prefect at the tava home. Must run before ``prefect`` is imported.

    Variables the user already set win unless ``override`` (a user's PREFECT_API_URL to a real
    server is respected as well: then that server keeps the state).
    """
    home = home if isinstance(home, TavaHome) else TavaHome(home)
    os.environ["TAVA_HOME"] = str(home.root)
    # Prefect creates only the last level of PREFECT_HOME and warns when the parent is missing.
    prefect_dir(home).mkdir(parents=True, exist_ok=True)
    for key, value in prefect_environment(home).items():
        if override:
            os.environ[key] = value
        else:
            os.environ.setdefault(key, value)
    # tava_core's INFO lines (a resumed checkpoint, the steps Stage A fitted to the corpus, an export's
    # agreement) reached no one: Python's default shows WARNING and up only. At Prefect's level (INFO unless
    # PREFECT_LOGGING_LEVEL says otherwise: one knob for both) they propagate to the console handler Prefect
    # gives the root logger, formatted like Prefect's own lines.
    level = os.environ.get("PREFECT_LOGGING_LEVEL", "INFO").upper()
    logging.getLogger("tava_core").setLevel(level if isinstance(logging.getLevelName(level), int) else "INFO")
    return home


def ui_safe(description: str) -> str:
    """<placeholders> written as ‹placeholders›: the Prefect UI (v1) renders descriptions as
    markdown, where a bare `<home>` is an HTML tag and vanishes; v2 shows text as it is."""
    return _PLACEHOLDER.sub(lambda m: f"\u2039{m.group(0)[1:-1]}\u203a", description)


def ui_safe_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Schema hook: every field description of a tava config made UI-safe."""
    for prop in schema.get("properties", {}).values():
        if isinstance(prop.get("description"), str):
            prop["description"] = ui_safe(prop["description"])


add_schema_hook(ui_safe_schema)
