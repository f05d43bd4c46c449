"""The one cache rule of tava: a step reuses its output when the output says it was made from the
same inputs with the same settings. Prefect's task cache is off for every step (``NO_CACHE``).

Why here and not in Prefect cache keys: the rule must hold outside Prefect (tests, notebooks,
benchmarks) and after a run is killed (Prefect may remember a result whose files were deleted,
or forget one whose files are intact). The files on disk are the truth, so the check reads them.

The rule, for every step that writes an artifact:

1. **Key**: ``run_key(...)`` hashes what the output depends on -- the *content* fingerprints of
   its inputs (shard sha256s, encoder fingerprints, data keys; never output paths) and the
   settings that change the result. The one exception is a raw ingest source, fingerprinted by
   its files' paths, sizes and mtimes (reading it all to hash it would cost what ingesting does).
2. **Write**: the output is built in a temporary directory and swapped in whole
   (``io.atomic_directory``), with its record file -- holding ``run_key`` -- written inside it.
   A killed run therefore leaves either the previous complete output or nothing new.
3. **Reuse**: before any expensive work, ``finished_record(record_file, key, required)`` returns
   the record when the file is there, its ``run_key`` equals the key and every required file
   exists; the step then returns its record with ``reused=True`` and touches nothing.

Where each stage keeps its record (and so where the rule is applied):

======================  ===========================================  ==========================
stage                   record file (holds ``run_key``)              key over
======================  ===========================================  ==========================
ingest                  ``<dataset>/manifest.json`` (``info``)       source signature (paths,
                                                                     sizes, mtimes), config
embed (per shard)       Parquet metadata of the vector shard         source sha256, encoder
                                                                     fingerprint, kind
Stage A (distill)       ``<student>/model_card.json``                training settings (no paths),
                                                                     data key
Stage B (adapter)       ``<adapter>/report.json``                    input shards' sha256s,
                                                                     warm start, settings (no paths)
compression             ``<compressors>/report.json``                vectors' checksum, settings
evaluation              ``<report>/report.json``                     settings, data, encoder
                                                                     fingerprints
FAISS index             ``versions/NNNNN/manifest.json``             source shard sha256s,
                                                                     settings
======================  ===========================================  ==========================

A LanceDB backfill is not reused but *resumed*: its state file records every shard already
merged, and merging is idempotent (see ``tava_core.vectorstore``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from .errors import TavaError
from .io import read_json, stable_hash

RUN_KEY = "run_key"


def run_key(content: Any, length: int = 24) -> str:
    """The key of one step's output: a stable hash of content fingerprints and settings
    (any JSON-serialisable value; dict keys are sorted)."""
    return stable_hash(content, length)


def finished_record(record_file: str | Path, key: str | Sequence[str],
                    required: Iterable[str | Path] = ()) -> Optional[dict[str, Any]]:
    """The record of an identical finished run, else None.

    ``record_file`` is the JSON file a step writes last inside its (atomically swapped) output;
    ``key`` is the run's key, or the keys a record of the same run may hold (the one written now, then
    the forms earlier versions wrote, so a change of key form does not retrain what is on disk);
    ``required`` are files (relative to the record's directory, or absolute) that must exist too.
    An unreadable record means "not finished": the step runs again and overwrites it.
    """
    keys = [key] if isinstance(key, str) else list(key)
    path = Path(record_file)
    if not path.is_file():
        return None
    try:
        record = read_json(path)
    except (TavaError, OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get(RUN_KEY) not in keys:
        return None
    if not all((path.parent / f).is_file() for f in required):
        return None
    return record
