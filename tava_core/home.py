"""The tava home directory: data, vectors, artifacts, reports and the orchestrator's own state.

Layout (all under one directory, default ``./.tava``, so a user can see, copy or delete a run)::

    data/<dataset>/          ingested text shards + manifest.json (+ qrels/ for BEIR sets)
    vectors/<dataset>/<collection>/<encoder>-<fingerprint>/   vector shards + manifest.json
    artifacts/<kind>/<name>/ plain outputs of `tava distill|adapt|compress` (not versioned)
    registry/<kind>/<name>/  versioned registry slots: students, adapters, indexes (tava_core.registry)
    lancedb/                 LanceDB tables written by `tava backfill`
    reports/                 JSON / markdown / PNG reports
    prefect/                 the orchestrator's state (set up by flows/_prefect.py, not here)
    .locks/                  lock files of resources without a directory of their own (datasets)
"""
from __future__ import annotations

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
