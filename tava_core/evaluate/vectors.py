"""Document and query vectors for evaluation, cached on disk in tava's vector shard format.

Documents are encoded once per (corpus checksum, encoder fingerprint): an ingested dataset reuses
exactly what `tava embed` writes (same directory, same shards); a raw BEIR directory gets the
same layout under ``<home>/vectors/<name>-<checksum8>/corpus/...`` in shards of ``SHARD_ROWS``
documents, so an interrupted encoding resumes where it stopped. An evaluation re-encodes the queries
on every run because their timing is the throughput figure; it keeps the last vectors per encoder
(``query_vector_path``), which a later step that needs the vectors but not their timing -- scoring a
router -- reads back with ``stored_query_vectors`` instead of encoding the queries again.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import numpy as np

from ..encoders import Encoder
from ..encoders.finite import check_finite_vectors
from ..errors import IntegrityError
from ..home import TavaHome
from ..io import read_vector_shard, sha256_file, stable_hash, vector_shard_metadata, write_vector_shard
from ..manifest import ShardRecord, VectorManifest, read_vector_dir, save_manifest
from .data import RetrievalData

SHARD_ROWS = 1024
WARMUP_QUERIES = 8


def vector_key(name: str, corpus_checksum: str, ingested: bool) -> str:
    """Dataset key under <home>/vectors: an ingested dataset's name (shared with `tava embed`), else
    the BEIR directory's name + corpus checksum (two different BEIR dirs never share vectors)."""
    return name if ingested else f"{name}-{corpus_checksum[:8]}"


def _vector_key(data: RetrievalData) -> str:
    return vector_key(data.name, data.corpus_checksum, data.ingested)


def corpus_vector_dir(data: RetrievalData, encoder: Encoder, home: TavaHome) -> Path:
    return home.vector_dir(_vector_key(data), "corpus", encoder.name, encoder.fingerprint)


def embed_corpus(data: RetrievalData, encoder: Encoder, home: TavaHome, *, batch_size: int | None = None,
                 show_progress: bool = True) -> Path:
    """Document vectors of ``data``'s corpus by ``encoder`` (cached); returns the vector directory."""
    if data.ingested:
        from ..embed import embed_shard, plan_collection, write_vector_manifest
        from ..manifest import load_dataset_manifest

        manifest = load_dataset_manifest(data.source)
        collection = data.document_collection
        out_dir, jobs = plan_collection(home, data.source, manifest, collection, encoder)
        embedded = [embed_shard(job, encoder, show_progress=show_progress) for job in jobs]
        write_vector_manifest(out_dir, manifest, collection, encoder, embedded)
        return out_dir

    from ..embed import vector_shard_is_current

    out_dir = corpus_vector_dir(data, encoder, home)
    texts = data.document_texts
    records: list[ShardRecord] = []
    starts = range(0, len(texts), SHARD_ROWS)
    iterator = starts
    if show_progress:
        from ..progress import progress_bar

        iterator = progress_bar(starts, desc=f"embedding {data.name} corpus with {encoder.name}", unit="shard")
    for number, start in enumerate(iterator):
        end = min(start + SHARD_ROWS, len(texts))
        # a shard's source key: the corpus file's checksum and the rows it covers
        source = stable_hash([data.corpus_checksum, start, end], length=64)
        path = out_dir / f"shard-{number:05d}.parquet"
        if not vector_shard_is_current(path, fingerprint=encoder.fingerprint, source_sha256=source, kind="document"):
            vectors = encoder.encode(texts[start:end], kind="document", batch_size=batch_size)
            check_finite_vectors(vectors, encoder, texts=f"documents of {data.name} (rows {start}-{end - 1})",
                                 outcome=f"no vector shard was written ({path})")
            write_vector_shard(path, data.corpus_ids[start:end], vectors, metadata={
                "fingerprint": encoder.fingerprint, "source_sha256": source, "kind": "document",
                "dim": encoder.dim, "normalized": encoder.normalized, "encoder": encoder.name})
        records.append(ShardRecord(path=path.name, rows=end - start, sha256=sha256_file(path),
                                   source_sha256=source))
    save_manifest(out_dir, VectorManifest(dataset=_vector_key(data), collection="corpus", encoder=encoder.info(),
                                          dim=encoder.dim, normalized=encoder.normalized, shards=records))
    return out_dir


def query_vector_path(home: TavaHome, data: RetrievalData, encoder: Encoder) -> Path:
    """Where an evaluation keeps ``encoder``'s vectors of ``data``'s queries (one shard per split and encoder)."""
    return home.vector_dir(_vector_key(data), f"queries-{data.split}", encoder.name, encoder.fingerprint) / "shard-00000.parquet"


def query_texts_key(data: RetrievalData) -> str:
    """Names the split's query texts in their order (a query shard is reused only for the same texts)."""
    return stable_hash([data.query_ids, data.query_texts], length=64)


def load_corpus_vectors(data: RetrievalData, vector_dir: str | Path) -> np.ndarray:
    """The vectors of a vector directory in ``data.corpus_ids`` order (checked complete)."""
    ids, vectors, _ = read_vector_dir(vector_dir)
    position = {doc_id: i for i, doc_id in enumerate(ids)}
    missing = [doc_id for doc_id in data.corpus_ids if doc_id not in position]
    if missing:
        raise IntegrityError(f"{len(missing)} corpus ids have no vector (e.g. {missing[0]!r})", path=vector_dir,
                             hint="delete the directory and re-run; it is rebuilt from the corpus")
    return vectors[[position[doc_id] for doc_id in data.corpus_ids]]


def encode_queries(data: RetrievalData, encoder: Encoder, out_path: str | Path, *, batch_size: int) -> dict:
    """Encode the split's queries (timed: the throughput figure) into a vector shard at ``out_path``."""
    texts = data.query_texts
    encoder.encode(texts[:WARMUP_QUERIES], kind="query", batch_size=batch_size)   # first-call set-up off the clock
    began = time.perf_counter()
    vectors = encoder.encode(texts, kind="query", batch_size=batch_size)
    seconds = time.perf_counter() - began
    check_finite_vectors(vectors, encoder, texts=f"{data.name} {data.split} queries",
                         outcome="no query vectors were written, nothing was scored")
    write_vector_shard(out_path, data.query_ids, vectors, metadata={
        "fingerprint": encoder.fingerprint, "kind": "query", "dim": encoder.dim, "encoder": encoder.name,
        "split": data.split, "texts_sha256": query_texts_key(data)})
    return {"path": str(out_path), "encoder": encoder.name, "fingerprint": encoder.fingerprint,
            "dim": encoder.dim, "queries": len(texts), "seconds": seconds, "batch_size": batch_size,
            "queries_per_second": len(texts) / seconds if seconds > 0 else float("inf")}


def load_query_vectors(data: RetrievalData, path: str | Path) -> np.ndarray:
    ids, vectors = read_vector_shard(path)
    if ids != data.query_ids:
        raise IntegrityError("query vectors do not match the split's queries", path=path,
                             hint="re-run `tava evaluate`; query vectors are re-encoded every run")
    return vectors


def stored_query_vectors(data: RetrievalData, encoder: Encoder, home: TavaHome) -> Optional[np.ndarray]:
    """``encoder``'s vectors of ``data``'s queries as an evaluation wrote them, or None when there are none
    or they are not of exactly these query texts by this encoder (then the caller encodes them)."""
    path = query_vector_path(home, data, encoder)
    if not path.is_file():
        return None
    meta = vector_shard_metadata(path)
    if (meta.get("fingerprint") != encoder.fingerprint or meta.get("kind") != "query"
            or meta.get("texts_sha256") != query_texts_key(data)):
        return None     # another encoder's, or of other query texts (or written before texts were keyed)
    return load_query_vectors(data, path)   # the key names the ids too: a mismatch here is a damaged file
