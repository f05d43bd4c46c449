"""Backfill a LanceDB table: re-embed a dataset's text shards and upsert them by id.

One run, shard by shard:
1. checks the encoder's dim against the table's vector column (error, new table or new column),
2. tags the table's current version (``tava-backfill-<n>``) so ``rollback_backfill`` can restore it,
3. embeds each text shard (vector shards are cached under <home>/vectors, so a re-run or a run
   after a crash re-embeds nothing it already has) and ``merge_insert``s it on ``id``,
4. records the shard as done in a small state file written atomically,
5. (re)builds the IVF index and optimises the table.

A LanceDB commit is atomic and the upsert is keyed on ``id``, so a crash anywhere (even between
a commit and the state write) loses nothing and doubles nothing: resuming redoes at most one
shard's upsert, which overwrites the same rows.

One backfill (or rollback) of a table runs at a time: ``backfill_lock`` is held from the plan to
the end (``lock_timeout_seconds``: a second run waits, or stops naming the first). Searches never
take it: LanceDB readers see the last committed version, old or new, never a part.
The steps are ``prepare_backfill`` -> (``tava_core.embed.embed_shard`` + ``upsert_shard``) per
pending shard -> ``finish_backfill`` -> ``summarize_backfill``; the flow
``flows/backfill.py:backfill_vector_store`` is the one place that chains them.
"""
from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any, Iterator, Literal, Optional

import numpy as np
import pyarrow as pa
from pydantic import Field

from .config import EncoderSpec, TavaModel
from .embed import ShardJob, plan_collection
from .errors import ConfigError, InputError
from .home import TavaHome, find_dataset, slug
from .io import read_json, read_text_shard, read_vector_shard, write_json
from .locks import file_lock
from .manifest import load_dataset_manifest, now_iso
from .records import BackfillFinish, BackfillResult, RollbackResult, ShardUpsert

log = logging.getLogger(__name__)

VECTOR_COLUMN = "vector"
ENCODER_COLUMN = "encoder"
TAG_PREFIX = "tava-backfill-"
STATE_DIR = "_tava"


class BackfillConfig(TavaModel):
    """What `tava backfill` writes into which LanceDB table, and how it handles a changed encoder."""

    dataset: str = Field(..., description="Ingested dataset: a name under <home>/data or its directory.")
    collection: Optional[str] = Field(None, description=(
        "Collection to backfill; empty = 'corpus', else 'texts', else 'unlabeled' (the first present)."))
    encoder: EncoderSpec = Field(default_factory=EncoderSpec, description=(
        "Encoder to embed with: the teacher alias, or a student / adapted-student directory."))
    uri: Optional[str] = Field(None, description="LanceDB database directory; empty = <home>/lancedb.")
    table: Optional[str] = Field(None, description="Table name; empty = <dataset>_<collection>.")
    on_dim_mismatch: Literal["error", "new_table", "new_column"] = Field("error", description=(
        "When the encoder's dim differs from the table's vectors: 'error' stops before any work, "
        "'new_table' writes <table>_<dim>d, 'new_column' adds a vector_<dim>d column beside the old one."))
    on_encoder_change: Literal["error", "replace"] = Field("error", description=(
        "When the table's vectors (of the same dim) were written by another encoder -- say the teacher's, which "
        "a student + adapter's queries are searched against: 'error' stops before any work, 'replace' "
        "re-embeds the rows with this encoder (a model upgrade; `tava backfill --rollback` restores them)."))
    build_index: bool = Field(True, description="(Re)build the IVF vector index at the end.")
    index_type: Literal["ivf_pq", "ivf_flat"] = Field("ivf_pq", description="LanceDB vector index type.")
    num_partitions: Optional[int] = Field(None, ge=1, description="IVF partitions; empty = LanceDB chooses (from its target partition size).")
    min_rows_per_partition: int = Field(256, ge=1, description=(
        "Skip the index (with a log line) when rows < max(256, partitions x this): too few to train it."))
    optimize: bool = Field(True, description="Compact files and fold new rows into indexes at the end.")
    lock_timeout_seconds: float = Field(0.0, description=(
        "When another backfill or rollback of the same table runs: 0 = stop at once naming it, N = wait up to "
        "N seconds, -1 = wait for ever. Searches of the table never wait."))


# ----------------------------------------------------------------------------- resolution

def _resolve_collection(manifest, requested: Optional[str], dataset_dir: Path) -> str:
    if requested:
        if requested not in manifest.collections:
            raise InputError(f"dataset has no collection {requested!r} (it has: {', '.join(manifest.collections)})",
                             path=dataset_dir, hint="pass --collection with one of those")
        return requested
    name = manifest.document_collection or ("unlabeled" if "unlabeled" in manifest.collections else None)
    if name is not None:
        return name
    raise InputError("dataset has no corpus, texts or unlabeled collection", path=dataset_dir,
                     hint="pass --collection NAME")


def default_uri(home: TavaHome) -> Path:
    return home.root / "lancedb"


def _connect(uri: str | Path):
    import lancedb

    Path(uri).mkdir(parents=True, exist_ok=True)
    return lancedb.connect(str(uri))


def _open_table(db, name: str):
    try:
        return db.open_table(name)
    except (ValueError, FileNotFoundError):  # lancedb raises ValueError "Table ... was not found"
        return None


def _vector_dim(table, column: str) -> Optional[int]:
    schema = table.schema
    if column not in schema.names:
        return None
    field_type = schema.field(column).type
    return field_type.list_size if pa.types.is_fixed_size_list(field_type) else None


def plan_target(db, table_name: str, dim: int, policy: str, uri: str | Path) -> tuple[str, str, str]:
    """``(table, vector column, encoder column)`` for vectors of ``dim``; never a mixed-dim column."""
    table = _open_table(db, table_name)
    existing = _vector_dim(table, VECTOR_COLUMN) if table is not None else None
    if existing is None or existing == dim:
        return table_name, VECTOR_COLUMN, ENCODER_COLUMN
    if policy == "error":
        raise ConfigError(
            f"table {table_name!r} holds {existing}-d vectors but the encoder makes {dim}-d vectors",
            path=Path(uri) / f"{table_name}.lance",
            hint="pass --on-dim-mismatch new_table (writes a separate table) or new_column "
                 "(adds a column beside the old vectors), or choose another --table")
    if policy == "new_table":
        other = f"{table_name}_{dim}d"
        other_dim = _vector_dim(t, VECTOR_COLUMN) if (t := _open_table(db, other)) is not None else None
        if other_dim not in (None, dim):
            raise ConfigError(f"table {other!r} holds {other_dim}-d vectors, not {dim}-d",
                              path=Path(uri) / f"{other}.lance", hint="choose another --table")
        return other, VECTOR_COLUMN, ENCODER_COLUMN
    column = f"{VECTOR_COLUMN}_{dim}d"
    return table_name, column, f"{ENCODER_COLUMN}_{dim}d"


def check_encoder_change(db, table_name: str, encoder_column: str, fingerprint: str, encoder_name: str,
                         policy: str, uri: str | Path) -> int:
    """How many rows of ``table_name`` another encoder wrote; with ``policy`` 'error', refuse when any did.

    Same-dim vectors of two encoders fit one column, so the dim check cannot see it: backfilling with an adapted
    student (384-d) a table of the teacher's vectors (384-d) once replaced every document vector without a word,
    although the teacher's document vectors are what a student + adapter's queries are searched against."""
    table = _open_table(db, table_name)
    if table is None or encoder_column not in table.schema.names:
        return 0
    others = table.count_rows(f"{encoder_column} IS NOT NULL AND {encoder_column} != '{fingerprint}'")
    if others and policy == "error":
        raise ConfigError(
            f"table {table_name!r} holds {others:,} vectors written by another encoder than {encoder_name!r} "
            f"(fingerprint {fingerprint[:12]}); backfilling would replace them",
            path=Path(uri) / f"{table_name}.lance",
            hint="to keep them, write this encoder's vectors to another --table; to replace them on purpose (a model "
                 "upgrade), pass --on-encoder-change replace (`tava backfill --rollback` restores them)")
    return int(others)


def _schema(dim: int, column: str, encoder_column: str) -> pa.Schema:
    return pa.schema([("id", pa.string()), ("text", pa.string()),
                      (column, pa.list_(pa.float32(), dim)), (encoder_column, pa.string())])


def _ensure_table(db, name: str, dim: int, column: str, encoder_column: str):
    table = _open_table(db, name)
    if table is None:
        return db.create_table(name, schema=_schema(dim, column, encoder_column))
    missing = [f for f in _schema(dim, column, encoder_column) if f.name not in table.schema.names]
    if missing:  # new_column: add the new vector (and its encoder) column; old rows get nulls
        table.add_columns(missing)
    return table


# ----------------------------------------------------------------------------- state file

def state_path(uri: str | Path, table_name: str) -> Path:
    """Per-table record of backfill runs (tags, completed shards) beside the database."""
    return Path(uri) / STATE_DIR / f"{slug(table_name)}.json"


def table_lock(uri: str | Path, table_name: str, *, timeout: float = 0.0) -> contextlib.AbstractContextManager:
    """The lock of one table's backfills and rollbacks (beside its state file; re-entrant)."""
    path = state_path(uri, table_name).with_suffix(".lock")
    return file_lock(path, timeout=timeout, what=f"LanceDB table {table_name!r} in {uri}")


@contextlib.contextmanager
def backfill_lock(config: BackfillConfig, home: TavaHome | None = None) -> Iterator[tuple[Path, str]]:
    """Hold the lock of the table ``config`` backfills for a whole run; yields ``(uri, base table)``.

    Whoever chains the steps (``backfill`` here, or a flow) holds it from ``prepare_backfill`` to
    ``finish_backfill``, so two runs never interleave their plans, tags and upserts.
    """
    uri, base = resolve_table_name(config, home)
    with table_lock(uri, base, timeout=config.lock_timeout_seconds):
        yield uri, base


def _load_state(path: Path) -> dict[str, Any]:
    return read_json(path) if path.is_file() else {"runs": []}


def _new_tag(table) -> str:
    taken = set(table.tags.list())
    n = 1 + sum(1 for tag in taken if tag.startswith(TAG_PREFIX))
    while f"{TAG_PREFIX}{n}" in taken:
        n += 1
    return f"{TAG_PREFIX}{n}"


# ----------------------------------------------------------------------------- backfill

def _shard_batch(job: ShardJob, vector_path: Path, column: str, encoder_column: str, fingerprint: str) -> pa.Table:
    ids, vectors = read_vector_shard(vector_path)
    texts = read_text_shard(job.text_shard)
    if texts.column("id").to_pylist() != ids:
        raise InputError("vector shard rows do not match its text shard", path=vector_path,
                         hint="delete the vector shard; the next run re-embeds it")
    dim = vectors.shape[1]
    column_values = pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(vectors).reshape(-1),
                                                               pa.float32()), dim)
    return pa.table({"id": pa.array(ids, pa.string()), "text": texts.column("text"), column: column_values,
                     encoder_column: pa.array([fingerprint] * len(ids), pa.string())})


def upsert(table, batch: pa.Table) -> Any:
    """Insert new ids, overwrite existing ones: re-running a shard never doubles a row."""
    return (table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all()
            .execute(batch))


def _build_vector_index(table, config: BackfillConfig, column: str, dim: int) -> dict[str, Any]:
    """(Re)build the IVF index; skipped (with a log line) when there are too few rows to train it."""
    from lancedb.index import IvfFlat, IvfPq

    rows = table.count_rows(f"{column} IS NOT NULL")
    # Lance trains each IVF partition (and PQ's 256 centroids) on >= 256 rows; below that the
    # index would be mostly untrained, and exact search over so few rows is fast anyway.
    partitions = config.num_partitions
    needed = max(256, (partitions or 1) * config.min_rows_per_partition)
    if rows < needed:
        log.info("not building a vector index on %s: %d rows < %d needed%s (exact search is used)",
                 column, rows, needed, f" for {partitions} partitions" if partitions else "")
        return {"built": False, "reason": f"{rows} rows < {needed} needed"}
    options: dict[str, Any] = {"distance_type": "cosine"}
    if partitions:
        options["num_partitions"] = partitions  # else Lance picks from its target partition size
    if config.index_type == "ivf_pq":
        options["num_sub_vectors"] = dim // 16 if dim % 16 == 0 else (dim // 8 if dim % 8 == 0 else 1)
        index_config: IvfPq | IvfFlat = IvfPq(**options)
    else:
        index_config = IvfFlat(**options)
    t0 = time.perf_counter()
    table.create_index(column, config=index_config, replace=True)
    return {"built": True, "type": config.index_type, "partitions": partitions or "auto",
            "rows": rows, "seconds": round(time.perf_counter() - t0, 3)}


class BackfillPlan(TavaModel):
    """Everything the shard steps need, as a small record (what a Prefect task passes on)."""

    uri: str
    base_table: str
    table: str
    column: str
    encoder_column: str
    dataset: str
    collection: str
    encoder_name: str
    fingerprint: str
    dim: int
    tag: str
    resumed: bool
    jobs: list[dict[str, Any]]  # every ShardJob of the collection, as dicts
    pending: list[int]  # indices into jobs not yet upserted by this run

    def job(self, i: int) -> ShardJob:
        return ShardJob(**self.jobs[i])


def _open_plan_table(plan: BackfillPlan):
    table = _open_table(_connect(plan.uri), plan.table)
    if table is None:
        raise InputError(f"table {plan.table!r} disappeared during the backfill",
                         path=Path(plan.uri) / f"{plan.table}.lance", hint="run `tava backfill` again")
    return table


def prepare_backfill(config: BackfillConfig, home: TavaHome | None = None) -> BackfillPlan:
    """Check everything, create the table (or column) if needed, tag its current version and
    record the run; a run that crashed with the same settings is resumed instead."""
    home = home or TavaHome()
    dataset_dir = find_dataset(home, config.dataset)
    manifest = load_dataset_manifest(dataset_dir)
    collection = _resolve_collection(manifest, config.collection, dataset_dir)
    from .encoders import load_encoder  # here, not at import: the CLI checks inputs without torch

    encoder = load_encoder(config.encoder)
    uri = Path(config.uri).expanduser().resolve() if config.uri else default_uri(home)
    base_name = config.table or slug(f"{manifest.name}_{collection}")
    db = _connect(uri)
    # Every check a user can fail happens here, before any embedding.
    table_name, column, encoder_column = plan_target(db, base_name, encoder.dim, config.on_dim_mismatch, uri)
    replaced = check_encoder_change(db, table_name, encoder_column, encoder.fingerprint, encoder.name,
                                    config.on_encoder_change, uri)
    if replaced:
        log.warning("replacing %d vectors of another encoder in table %s with %s's (--on-encoder-change replace)",
                    replaced, table_name, encoder.name)
    _, jobs = plan_collection(home, dataset_dir, manifest, collection, encoder)
    table = _ensure_table(db, table_name, encoder.dim, column, encoder_column)

    spath = state_path(uri, base_name)
    state = _load_state(spath)
    run_key = {"table": table_name, "column": column, "dataset": manifest.name, "collection": collection,
               "fingerprint": encoder.fingerprint}
    last = state["runs"][-1] if state["runs"] else None
    resuming = bool(last and last.get("status") == "running" and all(last.get(k) == v for k, v in run_key.items()))
    run: dict[str, Any]
    if resuming and last is not None:  # resuming implies a last run; the check tells mypy
        run = last
        log.info("resuming backfill into %s (tag %s): %d of %d shards already done",
                 table_name, run["tag"], len(run["completed"]), len(jobs))
    else:
        if last and last.get("status") == "running":
            last["status"] = "abandoned"  # a crashed run with other settings: its rows stay, its tag too
        tag = _new_tag(table)
        table.tags.create(tag, table.version)  # the state before this run: --rollback restores it
        run = {**run_key, "tag": tag, "version_before": table.version, "started": now_iso(),
               "status": "running", "completed": [], "encoder": encoder.info()}
        state["runs"].append(run)
    write_json(spath, state)
    done = set(run["completed"])
    return BackfillPlan(uri=str(uri), base_table=base_name, table=table_name, column=column,
                        encoder_column=encoder_column, dataset=manifest.name, collection=collection,
                        encoder_name=encoder.name, fingerprint=encoder.fingerprint, dim=encoder.dim,
                        tag=run["tag"], resumed=resuming, jobs=[vars(job) for job in jobs],
                        pending=[i for i, job in enumerate(jobs) if job.source_sha256 not in done])


def _update_run(plan: BackfillPlan, **changes: Any) -> dict[str, Any]:
    """Apply ``changes`` to this plan's run in the state file (atomic write); returns the run."""
    spath = state_path(plan.uri, plan.base_table)
    state = _load_state(spath)
    run = next(r for r in reversed(state["runs"]) if r["tag"] == plan.tag and r["table"] == plan.table)
    completed = changes.pop("completed", None)
    if completed is not None and completed not in run["completed"]:
        run["completed"].append(completed)
    run.update(changes)
    write_json(spath, state)
    return run


def upsert_shard(plan: BackfillPlan, i: int) -> ShardUpsert:
    """Upsert the (already embedded) vector shard of job ``i`` and record it as done."""
    job = plan.job(i)
    t0 = time.perf_counter()
    batch = _shard_batch(job, Path(job.out_path), plan.column, plan.encoder_column, plan.fingerprint)
    if batch.schema.field(plan.column).type.list_size != plan.dim:
        raise InputError(f"vector shard has {batch.schema.field(plan.column).type.list_size}-d vectors, "
                         f"the plan {plan.dim}-d", path=job.out_path, hint="delete the shard and re-run")
    upsert(_open_plan_table(plan), batch)
    # Committed first, recorded second: a crash in between only makes a resume redo this upsert.
    _update_run(plan, completed=job.source_sha256)
    return ShardUpsert(shard=Path(job.text_shard).name, rows=batch.num_rows,
                       upsert_seconds=round(time.perf_counter() - t0, 3))


def finish_backfill(plan: BackfillPlan, config: BackfillConfig) -> BackfillFinish:
    """Build the vector index, optimise the table and mark the run done."""
    table = _open_plan_table(plan)
    info: dict[str, Any] = (_build_vector_index(table, config, plan.column, plan.dim) if config.build_index
                            else {"built": False})
    if config.optimize:
        t0 = time.perf_counter()
        table.optimize()
        info["optimize_seconds"] = round(time.perf_counter() - t0, 3)
    _update_run(plan, status="done", finished=now_iso(), version_after=table.version)
    return BackfillFinish(index=info, table_rows=table.count_rows(), version=table.version)


def summarize_backfill(plan: BackfillPlan, upserts: list[ShardUpsert], *, embed_seconds: float, seconds: float,
                       final: BackfillFinish) -> BackfillResult:
    """The run's record from its plan, the shard upserts and the finish step (no I/O)."""
    rows_written = sum(u.rows for u in upserts)
    return BackfillResult(
        uri=plan.uri, table=plan.table, column=plan.column, dataset=plan.dataset, collection=plan.collection,
        encoder=plan.encoder_name, fingerprint=plan.fingerprint, dim=plan.dim, tag=plan.tag, resumed=plan.resumed,
        shards=len(plan.jobs), shards_upserted=len(upserts), rows_written=rows_written,
        table_rows=final.table_rows, version=final.version, embed_seconds=round(embed_seconds, 3),
        upsert_seconds=round(sum(u.upsert_seconds for u in upserts), 3), seconds=round(seconds, 3),
        rows_per_second=round(rows_written / seconds, 2) if seconds else None, index=final.index)


def rollback_backfill(uri: str | Path, table: str, *, lock_timeout: float = 0.0) -> RollbackResult:
    """Restore the table to the version tagged before the latest backfill run into it.

    Rolling back again goes one run further back (each run's tag is used once). Waits for, or
    refuses beside, a backfill of the same table as ``lock_timeout`` says.
    """
    uri = Path(uri).expanduser().resolve()
    spath = state_path(uri, table)
    if not spath.is_file():  # a table written by --on-dim-mismatch new_table: its runs sit under the base name
        spath = next((p for p in sorted((uri / STATE_DIR).glob("*.json"))
                      if any(r.get("table") == table for r in _load_state(p)["runs"])), spath)
    with table_lock(uri, spath.stem, timeout=lock_timeout):
        return _rollback_locked(uri, table, spath)


def _rollback_locked(uri: Path, table: str, spath: Path) -> RollbackResult:
    state = _load_state(spath)
    pending = [run for run in state["runs"] if run.get("status") != "rolled_back" and run.get("table") == table]
    if not pending:
        raise InputError(f"no backfill run of table {table!r} to roll back", path=spath,
                         hint="run `tava backfill` first (or check --uri / --table)")
    run = pending[-1]
    db = _connect(uri)
    lance_table = _open_table(db, run["table"])
    if lance_table is None:
        raise InputError(f"table {run['table']!r} no longer exists", path=uri / f"{run['table']}.lance")
    before = lance_table.version
    lance_table.restore(run["tag"])
    run.update(status="rolled_back", rolled_back=now_iso(), restored_as_version=lance_table.version)
    write_json(spath, state)
    return RollbackResult(uri=str(uri), table=run["table"], tag=run["tag"], from_version=before,
                          restored_version=run["version_before"], version=lance_table.version,
                          table_rows=lance_table.count_rows())


def resolve_table_name(config: BackfillConfig, home: TavaHome | None = None) -> tuple[Path, str]:
    """``(uri, base table name)`` a config refers to (for --rollback, without loading an encoder)."""
    home = home or TavaHome()
    uri = Path(config.uri).expanduser().resolve() if config.uri else default_uri(home)
    if config.table:
        return uri, config.table
    dataset_dir = find_dataset(home, config.dataset)
    manifest = load_dataset_manifest(dataset_dir)
    collection = _resolve_collection(manifest, config.collection, dataset_dir)
    return uri, slug(f"{manifest.name}_{collection}")
