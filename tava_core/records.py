"""Typed records that stages hand to each other (and flows return, and the CLI prints as JSON).

A record is small: paths, fingerprints, counts and metrics, never arrays (Prefect persists and
ships them between workers). Each core step returns one; the flows chain steps by reading named
fields (``student.output``, ``report.ndcg("adapted/teacher")``), not by position or string key.
Field names match the JSON the CLI printed before these records existed, so scripts reading that
output are unaffected.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict

from .ingest.pipeline import IngestReport as IngestResult  # noqa: F401  (the ingest stage's record)


class Record(BaseModel):
    """Base of every record: immutable, and a typo in a field name fails at construction."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# ----------------------------------------------------------------------------- embedding

class VectorSet(Record):
    """One collection's vector shards made by one encoder (a directory with a manifest)."""

    collection: str
    vectors_dir: str
    rows: int
    shards: int
    dim: int
    # This run's work apart from what earlier runs left current (counted before scheduling, by
    # the rule the shard cache follows: a vector shard of this source, encoder and kind).
    computed_shards: int = 0
    computed_rows: int = 0
    reused_shards: int = 0
    reused_rows: int = 0
    imported_from: Optional[str] = None   # the computed shards were imported from this file, not encoded
    # The runtimes that encoded this run's computed shards ('onnx', 'torch'; empty when nothing was
    # encoded here): `--encoder-backend auto` picks per machine, and a user comparing speeds needs to know.
    backends: list[str] = []


class EmbedResult(Record):
    dataset: str
    encoder: dict[str, Any]        # Encoder.info(): name, fingerprint, dim, ...
    collections: list[VectorSet]

    def vectors(self, collection: str) -> str:
        """The vector directory of ``collection`` (KeyError naming the ones there are)."""
        for item in self.collections:
            if item.collection == collection:
                return item.vectors_dir
        raise KeyError(f"no vectors of collection {collection!r}; have {[c.collection for c in self.collections]}")


# ----------------------------------------------------------------------------- LanceDB backfill

class ShardUpsert(Record):
    """One vector shard merged into the table (and recorded as done in the backfill state)."""

    shard: str
    rows: int
    upsert_seconds: float


class BackfillFinish(Record):
    index: dict[str, Any]           # built / skipped with reason, timings
    table_rows: int
    version: int


class BackfillResult(Record):
    uri: str
    table: str
    column: str
    dataset: str
    collection: str
    encoder: str
    fingerprint: str
    dim: int
    tag: str
    resumed: bool
    shards: int
    shards_upserted: int
    shards_embedded: int = 0            # upserted shards whose vectors this run computed ...
    shards_vectors_reused: int = 0      # ... and those whose vector shard an earlier embed or backfill left
    rows_written: int
    table_rows: int
    version: int
    embed_seconds: float
    upsert_seconds: float
    seconds: float
    rows_per_second: Optional[float]
    index: dict[str, Any]


class RollbackResult(Record):
    uri: str
    table: str
    tag: str
    from_version: int
    restored_version: int
    version: int
    table_rows: int


# ----------------------------------------------------------------------------- Stage A

class TrainingDataset(Record):
    """A dataset whose collections the teacher must have embedded before a student trains."""

    dataset: str                    # dataset directory
    name: str
    collections: list[str]


class DistillPlan(Record):
    teacher: dict[str, Any]         # the teacher's Encoder.info()
    datasets: list[TrainingDataset]
    span_datasets: list[TrainingDataset]


class StudentRecord(Record):
    """A trained (or reused) student directory and the figures of its model card."""

    name: str
    kind: str
    output: str                     # the student directory (a loadable encoder)
    run_key: str                    # what identical inputs + settings hash to (see tava_core.reuse)
    reused: bool
    texts: int
    validation_texts: int
    sources: list[dict[str, Any]]   # dataset / collection / rows the student trained on
    steps: int
    stopped: str
    initial_cosine: float
    best_cosine: float
    best_step: int
    student_texts_per_second: float
    teacher_texts_per_second: float
    speedup: float
    span_datasets: list[str] = []   # filled in by the flow: span views it embedded
    teacher_vectors: dict[str, str] = {}  # "<dataset dir>/<collection>" -> the teacher's vector dir

    @property
    def card_path(self) -> Path:
        return Path(self.output) / "model_card.json"


# ----------------------------------------------------------------------------- Stage B

class AdapterInputs(Record):
    """Both vector sides read, joined and checked (before any training)."""

    name: str
    pairs: int
    student: dict[str, Any]         # {"encoder": manifest encoder info, "rows": n}
    teacher: dict[str, Any]
    inputs_checksum: str


class AdapterRecord(Record):
    name: str
    adapter_dir: str
    run_key: str
    metrics: dict[str, dict[str, Any]]   # map name (adapter, ridge, ...) -> held-out alignment metrics
    training: dict[str, Any]
    loadable_encoder: bool
    reused: bool


# ----------------------------------------------------------------------------- compression

class CompressionSources(Record):
    """The corpus and judged-query vectors compression trains on (found or encoded)."""

    corpus_vectors: str
    query_vectors: str
    encoder: dict[str, Any]         # the vectors' encoder (manifest record)
    dataset: str
    checksum: str                   # of both directories' shard sha256s


class CompressorRecord(Record):
    name: str
    directory: str
    method: str
    run_key: str
    compressors: dict[str, str]                 # "<method>-<dim>d" -> directory
    ndcg_at_10: dict[str, dict[str, float]]     # method -> dim -> nDCG@10
    full_dimension_ndcg_at_10: float
    scored_on: str
    loadable_encoder: bool
    reused: bool


# ----------------------------------------------------------------------------- evaluation

class EvaluationRow(Record):
    mode: str                       # "<query role>/<document role>", e.g. adapted/teacher
    variant: str                    # full, mrl-<d>, int8, binary
    dim: int
    ndcg_at_10: float
    recall_at_100: float
    mrr_at_10: float
    retention: Optional[float]


class EvaluationReport(Record):
    """What `tava evaluate` printed: where the report is, and its rows rounded to 4 places."""

    run: str
    directory: str
    files: dict[str, str]
    teacher_ndcg_at_10: Optional[float]
    rows: list[EvaluationRow]
    throughput: dict[str, float]    # role -> queries per second
    mteb_agrees: Optional[bool]
    reused: bool = False            # served from an identical earlier evaluation's report
    router: Optional[dict[str, Any]] = None   # the routed mode (--router): curves, costs, files

    def ndcg(self, mode: str, variant: str = "full") -> float:
        """nDCG@10 of one mode and variant (KeyError naming the modes there are)."""
        for row in self.rows:
            if row.mode == mode and row.variant == variant:
                return row.ndcg_at_10
        raise KeyError(f"no {mode} / {variant} row; modes: {sorted({r.mode for r in self.rows})}")


class EvaluationPlan(Record):
    """Everything checked before any encoding, and which encoder encodes what."""

    dataset: dict[str, Any]                 # RetrievalData.summary(): name, split, checksums, counts
    modes: list[str]
    encoders: dict[str, dict[str, Any]]     # role -> Encoder.info()
    corpus_roles: dict[str, str]            # document role -> role whose corpus vectors it uses
    query_roles: list[str]                  # encoded one after another (the timing is the throughput)
    earlier: Optional[EvaluationReport]     # an identical earlier evaluation, served instead


# ----------------------------------------------------------------------------- FAISS index

class IndexRecord(Record):
    """A published (or already current) index version: its manifest's small fields."""

    index_dir: str
    version: Optional[str] = None
    skipped: bool = False               # the current version already indexed these shards
    kind: str = "faiss-index"
    created: Optional[str] = None
    factory: str
    metric: str
    dim: int
    count: int
    source: dict[str, Any] = {}         # vector dir, dataset, collection, encoder, shard sha256s
    train_rows: Optional[int] = None
    train_seconds: Optional[float] = None
    add_seconds: Optional[float] = None
    build_seconds: Optional[float] = None
    search_params: Optional[dict[str, Any]] = None
    recall_at_10: Optional[float] = None
    recall_queries: Optional[int] = None
    recall_query_source: Optional[str] = None
    built_on_gpu: Optional[bool] = None
    faiss_version: Optional[str] = None

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> "IndexRecord":
        """The record of a build's manifest (the config and anything not listed here stay in the file)."""
        return cls.model_validate({k: v for k, v in manifest.items() if k in cls.model_fields})


class IndexRollback(Record):
    index_dir: str
    from_version: Optional[str]
    to_version: Optional[str]
