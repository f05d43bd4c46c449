"""The tava home directory: data, vectors, artifacts, reports and Prefect's own state.

Layout (all under one directory, default ``./.tava``, so a user can see, copy or delete a run)::

    data/<dataset>/          ingested text shards + manifest.json (+ qrels/ for BEIR sets)
    vectors/<dataset>/<collection>/<encoder>-<fingerprint>/   vector shards + manifest.json
    artifacts/<kind>/<name>/ plain outputs of `tava distill|adapt|compress` (not versioned)
    registry/<kind>/<name>/  versioned registry slots: students, adapters, indexes (tava_core.registry)
    lancedb/                 LanceDB tables written by `tava backfill`
    reports/                 JSON / markdown / PNG reports
    prefect/                 PREFECT_HOME: the ephemeral server's database, results, logs
    .locks/                  lock files of resources without a directory of their own (datasets)
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .config import resolve_home


def slug(text: str) -> str:
    """A file-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


class TavaHome:
    """Paths inside one tava home."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = resolve_home(root)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def vectors(self) -> Path:
        return self.root / "vectors"

    @property
    def artifacts(self) -> Path:
        """Plain (unpublished) outputs: a student, adapter or compressor directory per name."""
        return self.root / "artifacts"

    @property
    def registry(self) -> Path:
        """Versioned registry slots; apart from ``artifacts`` so a plain output never collides with a slot."""
        return self.root / "registry"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def prefect(self) -> Path:
        return self.root / "prefect"

    def lock_file(self, resource: str, name: str) -> Path:
        """Lock file of a resource that has no directory of its own to hold it (``tava_core.locks``);
        kept out of ``data/`` so listing datasets shows datasets only."""
        return self.root / ".locks" / resource / f"{slug(name)}.lock"

    def dataset_dir(self, name: str) -> Path:
        return self.data / slug(name)

    def vector_dir(self, dataset: str, collection: str, encoder_name: str, fingerprint: str) -> Path:
        return self.vectors / slug(dataset) / slug(collection) / f"{slug(encoder_name)}-{fingerprint[:12]}"

    def __repr__(self) -> str:
        return f"TavaHome({str(self.root)!r})"


def prefect_environment(home: TavaHome) -> dict[str, str]:
    """Environment that keeps Prefect offline, quiet and inside the tava home."""
    return {
        "PREFECT_HOME": str(home.prefect),
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(home.prefect / "results"),
        "PREFECT_LOCAL_STORAGE_PATH": str(home.prefect / "storage"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "60",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def configure_environment(home: TavaHome | str | Path | None = None, *, override: bool = False) -> TavaHome:
    """Point Prefect at the tava home. Must run before ``prefect`` is imported.

    Variables the user already set win unless ``override`` (a user's PREFECT_API_URL to a real
    server is respected as well: then that server keeps the state).
    """
    home = home if isinstance(home, TavaHome) else TavaHome(home)
    os.environ["TAVA_HOME"] = str(home.root)
    # Prefect creates only the last level of PREFECT_HOME and warns when the parent is missing.
    home.prefect.mkdir(parents=True, exist_ok=True)
    for key, value in prefect_environment(home).items():
        if override:
            os.environ[key] = value
        else:
            os.environ.setdefault(key, value)
    return home


def find_dataset(home: TavaHome, dataset: str | Path) -> Path:
    """An ingested dataset directory: a path holding manifest.json, else ``<home>/data/<name>``."""
    from .errors import InputError

    candidate = Path(dataset).expanduser()
    if (candidate / "manifest.json").is_file():
        return candidate.resolve()
    named = home.dataset_dir(str(dataset))
    if (named / "manifest.json").is_file():
        return named
    raise InputError(f"no ingested dataset named {str(dataset)!r}", path=named,
                     hint=f"run `tava ingest SOURCE --name {dataset}` first (or give the dataset directory)")
