"""Manifests: the small JSON records that say what a directory of shards holds.

A reader trusts only what a manifest lists; a manifest is written last and atomically.
"""
from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    import numpy as np

from pydantic import BaseModel, Field

from .errors import InputError, IntegrityError
from .io import SCHEMA_VERSION, read_json, write_json

MANIFEST_NAME = "manifest.json"


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class ShardRecord(BaseModel):
    """One Parquet shard: path relative to the manifest's directory."""

    path: str
    rows: int
    sha256: str
    source_sha256: Optional[str] = None  # vector shards: the text shard they were made from


class Collection(BaseModel):
    shards: list[ShardRecord] = Field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards)


# BEIR's ArguAna judges a document its corpus lacks (beir-cellar/beir issues #101, #172); trec_eval
# and mteb count such a document as relevant and never retrieved, and so does tava. Up to this share
# of a split's pairs is a quirk of the set; more means the qrels belong to another corpus: an error.
ABSENT_DOCUMENTS_MAX_SHARE = 0.01


ABSENT_DOCUMENTS_HINT = "up to 1% of the pairs may name absent documents: scored as relevant, never retrieved"


def absent_documents_tolerated(absent_pairs: int, pairs: int) -> bool:
    """Whether ``absent_pairs`` of a split's ``pairs`` may name documents the corpus lacks."""
    return absent_pairs <= ABSENT_DOCUMENTS_MAX_SHARE * pairs


def warn_absent_documents(path: str | Path, absent: dict[str, int]) -> None:
    """Log the judged documents a corpus lacks (id -> first qrels line naming it), the first three by line."""
    if absent:
        where = ", ".join(f"{doc!r} (line {line})" for doc, line in sorted(absent.items(), key=lambda i: i[1])[:3])
        logging.getLogger(__name__).warning(
            "%s: %d judged document(s) not in the corpus, scored as relevant and never retrieved (as trec_eval "
            "and mteb score them): %s", path, len(absent), where)


class QrelsRecord(BaseModel):
    path: str
    pairs: int
    queries: int
    sha256: str
    # judged documents the corpus lacks (a few, ABSENT_DOCUMENTS_MAX_SHARE): relevant, never retrieved
    absent_documents: list[str] = Field(default_factory=list)


# the skip reasons of a text seen before: the same record again, or its text under another id
DUPLICATE_RECORD, DUPLICATE_TEXT = "duplicate record", "duplicate text"


class SkipReport(BaseModel):
    count: int = 0
    by_reason: dict[str, int] = Field(default_factory=dict)
    examples: list[str] = Field(default_factory=list)  # "file:line: reason", the first few

    @property
    def repeated_texts(self) -> int:
        """Records dropped because their text was already ingested."""
        return self.by_reason.get(DUPLICATE_RECORD, 0) + self.by_reason.get(DUPLICATE_TEXT, 0)


class DatasetManifest(BaseModel):
    """An ingested dataset: collections of text shards (``corpus``, ``queries``, ``unlabeled``,
    or ``texts`` for a plain corpus) and, for BEIR sets, qrels per split."""

    schema_version: int = SCHEMA_VERSION
    kind: str = "dataset"
    name: str
    source: str
    created: str = Field(default_factory=now_iso)
    collections: dict[str, Collection]
    qrels: dict[str, QrelsRecord] = Field(default_factory=dict)
    skipped: SkipReport = Field(default_factory=SkipReport)
    # ids of a BEIR corpus's documents with no text: in no shard (nothing to embed), but the qrels
    # may judge them, so evaluation counts them as relevant and never retrieved (as BEIR does)
    empty_documents: dict[str, list[str]] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    info: dict[str, Any] = Field(default_factory=dict)  # e.g. how a built-in corpus was made

    @property
    def document_collection(self) -> Optional[str]:
        """The collection a search runs over: a BEIR set's ``corpus``, else a plain source's ``texts``."""
        return next((name for name in ("corpus", "texts") if name in self.collections), None)

    def collection_checksum(self, name: str) -> str:
        """Identifies a collection's texts: a hash of its shards' sha256 (the vector and report cache keys)."""
        from .io import stable_hash

        return stable_hash([shard.sha256 for shard in self.collections[name].shards], length=64)


class VectorManifest(BaseModel):
    """Vector shards of one collection by one encoder; shards mirror the text shards 1:1."""

    schema_version: int = SCHEMA_VERSION
    kind: str = "vectors"
    dataset: str
    collection: str
    encoder: dict[str, Any]  # Encoder.info(): name, fingerprint, dim, normalized, type
    dim: int
    normalized: bool
    created: str = Field(default_factory=now_iso)
    shards: list[ShardRecord]

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards)

    @property
    def fingerprint(self) -> str:
        return self.encoder["fingerprint"]


def save_manifest(directory: str | Path, manifest: BaseModel) -> Path:
    """Write ``manifest.json`` (last: readers see the directory from then on), then remove the temporary files a
    killed writer left beside the shards it lists (``io.atomic_path`` names them ``.<shard>.tmp-<id>``): every
    listed shard is final now, so they are orphans (a kill -9 mid-write left ~14 MB of them in one audit)."""
    path = write_json(Path(directory) / MANIFEST_NAME, manifest.model_dump(mode="json"))
    for shard in getattr(manifest, "shards", None) or []:
        for orphan in Path(directory).glob(f".{Path(shard.path).name}.tmp-*"):
            if orphan.is_file():
                orphan.unlink(missing_ok=True)
    return path


def _load(directory: str | Path, model: type[BaseModel], what: str, hint: str):
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise InputError(f"no {what} here (missing {MANIFEST_NAME})", path=Path(directory), hint=hint)
    data = read_json(path)
    if data.get("schema_version") != SCHEMA_VERSION:
        raise IntegrityError(f"schema version {data.get('schema_version')} is not {SCHEMA_VERSION}",
                             path=path, hint="re-run the step that made it with this version of tava")
    return model.model_validate(data)


def load_dataset_manifest(directory: str | Path) -> DatasetManifest:
    return _load(directory, DatasetManifest, "ingested dataset", "run `tava ingest SOURCE` first")


def load_vector_manifest(directory: str | Path) -> VectorManifest:
    return _load(directory, VectorManifest, "vector shards", "run `tava embed` first")


def read_vector_dir(directory: str | Path) -> tuple[list[str], "np.ndarray", VectorManifest]:
    """All ``(ids, vectors)`` of a vector directory plus its manifest (small data: loads it all).

    Checks every shard's row count against the manifest.
    """
    import numpy as np

    from .io import read_vector_shard

    manifest = load_vector_manifest(directory)
    ids: list[str] = []
    blocks = []
    for record in manifest.shards:
        shard_ids, vectors = read_vector_shard(Path(directory) / record.path)
        if len(shard_ids) != record.rows or vectors.shape[1] != manifest.dim:
            raise IntegrityError(f"shard has {len(shard_ids)} rows x {vectors.shape[1]} dims, manifest says "
                                 f"{record.rows} x {manifest.dim}", path=Path(directory) / record.path,
                                 hint="re-run `tava embed`; it rewrites shards that do not match")
        ids.extend(shard_ids)
        blocks.append(vectors)
    vectors = np.concatenate(blocks) if blocks else np.zeros((0, manifest.dim), np.float32)
    return ids, vectors, manifest
