"""Sharded embedding: one text shard in, one vector shard out, idempotent and atomic.

A vector shard stores, in its Parquet metadata, the encoder fingerprint, the text kind and the
sha256 of the text shard it came from. A shard whose metadata matches is never recomputed, so a
re-run (or a run after a crash) does only the missing work, whatever orchestrates it.

One run writes a vector collection at a time: ``collection_lock`` is held from the plan to the
manifest, so a second run of the same dataset, collection and encoder waits (then finds every
shard current and reuses it) or stops naming the first (``lock_timeout_seconds``). Readers never
take it: they trust the manifest, which is written last and atomically.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Optional

from pydantic import Field, model_validator

from .config import EncoderSpec, TavaModel, TextKind
from .errors import IntegrityError
from .home import TavaHome, find_dataset
from .io import document_texts, read_text_shard, sha256_file, vector_shard_metadata, write_vector_shard
from .locks import file_lock
from .manifest import DatasetManifest, ShardRecord, VectorManifest, load_dataset_manifest, save_manifest

if TYPE_CHECKING:  # torch stays unimported until something is encoded (the CLI checks inputs first)
    import numpy as np

    from .encoders import Encoder


COLLECTION_LOCK = ".lock"


class EmbedConfig(TavaModel):
    """What `tava embed` embeds, with which encoder, on what workers."""

    dataset: str = Field("builtin", description="Ingested dataset: a name under <home>/data or its directory.")
    collections: list[str] = Field(default_factory=list, description=(
        "Collections to embed (corpus, queries, unlabeled, texts, ...); empty = all of them."))
    encoder: EncoderSpec = Field(default_factory=EncoderSpec, description="The encoder to embed with.")
    task_runner: Literal["threads", "dask"] = Field("threads", description=(
        "'threads': Prefect's thread pool in this process; 'dask': a Dask cluster (prefect-dask)."))
    max_workers: Optional[int] = Field(None, ge=1, description=(
        "Shards embedded at once; empty = one per device (one per GPU, or 1 on CPU, where torch "
        "already uses every core)."))
    dask_address: Optional[str] = Field(None, description=(
        "Scheduler address of an existing Dask cluster (tcp://host:8786); empty = start a local one."))
    dask_workers: int = Field(2, ge=1, description="Worker processes of the local Dask cluster.")
    import_vectors: Optional[str] = Field(None, description=(
        "Vectors the encoder already made (a Parquet file or folder of id + vector rows, e.g. exported from "
        "a vector store, or a LanceDB table directory such as `tava backfill` writes), written as the one collection in `collections` instead of encoding it; checked "
        "against the encoder on a sample of texts first."))
    import_id_column: str = Field("id", description="The imported file's id column.")
    import_vector_column: str = Field("vector", description="The imported file's vector column.")
    lock_timeout_seconds: float = Field(0.0, description=(
        "When another run is embedding the same collection with the same encoder: 0 = stop at once naming "
        "it, N = wait up to N seconds (then reuse its shards), -1 = wait for ever."))

    @model_validator(mode="after")
    def _import_names_one_collection(self) -> "EmbedConfig":
        if self.import_vectors and len(self.collections) != 1:
            raise ValueError("--import-vectors fills one collection: name it with --collections (`texts` for a dataset "
                             "ingested from a JSONL/CSV/Parquet file, `corpus` for a BEIR one)")
        return self


def collection_kind(collection: str) -> TextKind:
    """Queries get the query prefix (and the query model in asymmetric pairs); all else is a document."""
    return "query" if collection == "queries" else "document"


@dataclass(frozen=True)
class ShardJob:
    """One unit of work: a text shard and where its vectors go."""

    text_shard: str
    source_sha256: str
    out_path: str
    kind: TextKind
    rows: int


def vector_shard_is_current(out_path: str | Path, *, fingerprint: str, source_sha256: str,
                            kind: Optional[str]) -> bool:
    """True when ``out_path`` holds vectors of exactly this source shard, encoder and kind (``None``:
    any kind, e.g. translated vectors, whose fingerprint already names the translation)."""
    path = Path(out_path)
    if not path.is_file():
        return False
    try:
        meta = vector_shard_metadata(path)
    except Exception:  # noqa: BLE001 - an unreadable file is simply not current
        return False
    return (meta.get("fingerprint") == fingerprint and meta.get("source_sha256") == source_sha256
            and (kind is None or meta.get("kind") == kind))


def job_texts(job: ShardJob) -> tuple[list[str], list[str]]:
    """The ids and the texts an encoder reads (documents as ``title text``) of a job's text shard,
    refused when the shard changed since it was ingested."""
    if sha256_file(job.text_shard) != job.source_sha256:
        raise IntegrityError("text shard changed since it was ingested (sha256 mismatch)",
                             path=job.text_shard, hint="re-run `tava ingest` for this dataset")
    table = read_text_shard(job.text_shard)
    texts = document_texts(table) if job.kind == "document" else table.column("text").to_pylist()
    return table.column("id").to_pylist(), texts


def write_job_vectors(job: ShardJob, encoder: Encoder, ids: list[str], vectors: np.ndarray,
                      **metadata: str) -> ShardRecord:
    """Write a job's vector shard with what makes it current (encoder fingerprint, source, kind) in its
    metadata, plus any ``metadata`` given; returns its record."""
    written = write_vector_shard(job.out_path, ids, vectors, metadata={
        "fingerprint": encoder.fingerprint, "source_sha256": job.source_sha256, "kind": job.kind,
        "dim": encoder.dim, "normalized": encoder.normalized, "encoder": encoder.name, **metadata})
    return ShardRecord(path=Path(job.out_path).name, rows=job.rows, sha256=written["sha256"],
                       source_sha256=job.source_sha256)


def embed_shard(job: ShardJob, encoder: Encoder, *, show_progress: bool = False) -> ShardRecord:
    """Embed one text shard into ``job.out_path`` (skipped when already current). Vectors holding NaN or
    inf (damaged weights) are refused before anything is written: a ``ModelLoadError`` naming the encoder."""
    if not vector_shard_is_current(job.out_path, fingerprint=encoder.fingerprint, source_sha256=job.source_sha256,
                                   kind=job.kind):
        from .encoders.finite import check_finite_vectors

        ids, texts = job_texts(job)
        vectors = encoder.encode(texts, kind=job.kind, show_progress=show_progress)
        check_finite_vectors(vectors, encoder, texts=f"texts of {Path(job.text_shard).name}",
                             outcome=f"no vector shard was written ({job.out_path})")
        # the runtime that ran (onnx falls back to torch when its outputs disagree): a user asked for one
        return write_job_vectors(job, encoder, ids, vectors, backend=str(getattr(encoder, "backend", "torch")))
    return _existing_record(job)


def _existing_record(job: ShardJob) -> ShardRecord:
    out = Path(job.out_path)
    return ShardRecord(path=out.name, rows=job.rows, sha256=sha256_file(out), source_sha256=job.source_sha256)


def current_jobs(jobs: list[ShardJob], fingerprint: str) -> list[ShardJob]:
    """The jobs whose vector shard an earlier run already left current (this source, encoder, kind)."""
    return [job for job in jobs if vector_shard_is_current(job.out_path, fingerprint=fingerprint,
                                                           source_sha256=job.source_sha256, kind=job.kind)]


def current_records(jobs: list[ShardJob], current: list[ShardJob]) -> Optional[list[ShardRecord]]:
    """The records of every shard when all are already current (``current_jobs``; a flow then
    schedules nothing), else None."""
    if len(current) == len(jobs):
        return [_existing_record(job) for job in jobs]
    return None


def plan_collection(home: TavaHome, dataset_dir: Path, manifest: DatasetManifest, collection: str,
                    encoder: Encoder) -> tuple[Path, list[ShardJob]]:
    """The output directory and one job per text shard of ``collection``."""
    if collection not in manifest.collections:
        raise IntegrityError(f"dataset has no collection {collection!r} (it has: "
                             f"{', '.join(manifest.collections)})", path=dataset_dir)
    out_dir = home.vector_dir(manifest.name, collection, encoder.name, encoder.fingerprint)
    jobs = [ShardJob(text_shard=str(dataset_dir / shard.path), source_sha256=shard.sha256,
                     out_path=str(out_dir / Path(shard.path).name), kind=collection_kind(collection),
                     rows=shard.rows)
            for shard in manifest.collections[collection].shards]
    return out_dir, jobs


def collection_lock(out_dir: str | Path, *, timeout: float = 0.0) -> contextlib.AbstractContextManager:
    """The lock of one vector collection (``<dataset>/<collection>/<encoder>-<fp>``), held by a run
    from its plan to its manifest. The lock file lives inside the directory (hidden; readers go by
    the manifest), so listing ``<collection>/`` still shows only encoder directories."""
    out_dir = Path(out_dir)
    return file_lock(out_dir / COLLECTION_LOCK, timeout=timeout,
                     what=f"vector collection {out_dir.parent.parent.name}/{out_dir.parent.name}/{out_dir.name}")


def write_vector_manifest(out_dir: Path, manifest: DatasetManifest, collection: str, encoder: Encoder,
                          records: list[ShardRecord]) -> VectorManifest:
    """Write the manifest last: only then do readers see the collection's vectors."""
    vector_manifest = VectorManifest(dataset=manifest.name, collection=collection, encoder=encoder.info(),
                                     dim=encoder.dim, normalized=encoder.normalized, shards=records)
    save_manifest(out_dir, vector_manifest)
    return vector_manifest


def embed_dataset(config: EmbedConfig, home: TavaHome | None = None, *,
                  show_progress: bool = False) -> dict[str, Path]:
    """Embed every requested collection in this process (no Prefect); returns collection -> dir."""
    home = home or TavaHome()
    dataset_dir = find_dataset(home, config.dataset)
    manifest = load_dataset_manifest(dataset_dir)
    from .encoders import load_encoder

    encoder = load_encoder(config.encoder)
    outputs: dict[str, Path] = {}
    for collection in config.collections or list(manifest.collections):
        out_dir, jobs = plan_collection(home, dataset_dir, manifest, collection, encoder)
        with collection_lock(out_dir, timeout=config.lock_timeout_seconds):
            if config.import_vectors:
                records = import_vectors(config, jobs, encoder)
            else:
                records = [embed_shard(job, encoder, show_progress=show_progress) for job in jobs]
            write_vector_manifest(out_dir, manifest, collection, encoder, records)
        outputs[collection] = out_dir
    return outputs


def import_vectors(config: EmbedConfig, jobs: list[ShardJob], encoder: "Encoder") -> list[ShardRecord]:
    """The collection's shards from ``config.import_vectors`` (see ``tava_core.imported``). Shards already
    current are kept, and when all are, the file is not read."""
    from .imported import check_complete, import_shards, read_vector_source, verify_source

    current = {job.out_path for job in current_jobs(jobs, encoder.fingerprint)}
    pending = [job for job in jobs if job.out_path not in current]
    written: dict[str, ShardRecord] = {}
    if pending:
        assert config.import_vectors is not None
        source = read_vector_source(config.import_vectors, id_column=config.import_id_column,
                                    vector_column=config.import_vector_column)
        check_complete(source, pending)
        agreement = verify_source(source, pending, encoder)
        written = {job.out_path: record for job, record in zip(pending, import_shards(source, pending, encoder),
                                                                strict=True)}
        logging.getLogger(__name__).info(
            "imported %d vectors from %s (%d in the file); %s agrees on %d sampled texts: cosine %.4f mean, %.4f min",
            sum(job.rows for job in pending), source.path, len(source.ids), encoder.name, agreement["texts"],
            agreement["mean_cosine"], agreement["min_cosine"])
    return [written.get(job.out_path) or _existing_record(job) for job in jobs]
