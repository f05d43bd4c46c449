"""Vectors for bench/translate.py, computed once and cached outside git (``.tava/bench-translate``).

- mpnet: the shared precomputed vectors (first 20,000 shuffled passages, SciFact queries/corpus);
- MiniLM (the packaged teacher): the first ``N_PASSAGES`` shuffled passages (the shuffle of the
  shared vectors' manifest, so row k is the same text on both sides), SciFact queries and corpus;
- model2vec: a static distillation of the packaged teacher (offline, ~1 min), its passage vectors.

    python bench/translate_data.py        # fills the cache; bench/translate.py calls the same functions
"""
from __future__ import annotations

import gzip
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
from shared_data import MPNET_VECTORS, PASSAGES, ROOT, SCIFACT, SHARED  # noqa: E402,F401 - sets sys.path

MPNET = MPNET_VECTORS
CACHE = Path(os.environ.get("TAVA_TRANSLATE_CACHE", ROOT / ".tava" / "bench-translate"))
# held-out pairs (1,000) + the MiniLM side (10,000); mpnet has the first 20,000. On a machine shared by
# many jobs, TAVA_TRANSLATE_PASSAGES caps it (the bench uses the contiguous prefix that is cached).
N_PASSAGES = int(os.environ.get("TAVA_TRANSLATE_PASSAGES", 11000))
CHUNK = 500  # texts encoded and cached at a time, so an interrupted run keeps its progress
ENCODERS = {"minilm": "all-MiniLM-L6-v2", "mpnet": "all-mpnet-base-v2"}  # the short-text views' encoders by tag
MPNET_ROWS = 20000


def read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def shuffled_passages(n: int) -> list[dict]:
    """The first ``n`` passages in the shared vectors' shuffle (its manifest's recipe)."""
    rows = read_jsonl(PASSAGES)
    perm = np.random.default_rng(0).permutation(len(rows))
    return [rows[i] for i in perm[:n]]


def scifact_texts(name: str) -> tuple[list[str], list[str]]:
    """(ids, texts) of SciFact 'queries' or 'corpus' in file order (documents: title + ' ' + text)."""
    if name == "queries":
        rows = read_jsonl(SCIFACT / "queries.jsonl")
        return [r["_id"] for r in rows], [r["text"] for r in rows]
    rows = read_jsonl(SCIFACT / "corpus.jsonl")
    return [r["_id"] for r in rows], [f"{r['title']} {r['text']}" if r.get("title") else r["text"] for r in rows]


def mpnet_vectors(name: str) -> tuple[list[str], np.ndarray]:
    """Shared mpnet vectors (float16 on disk), re-normalised in float32."""
    import pyarrow.parquet as pq

    from tava_core.io import vectors_from_column

    table = pq.read_table(MPNET / name)
    vectors = vectors_from_column(table.column("vector")).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return table.column("id").to_pylist(), vectors


def _cached(path: Path, compute) -> np.ndarray:
    if path.is_file():
        return np.load(path)
    started = time.perf_counter()
    vectors = np.asarray(compute(), dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vectors)
    os.replace(tmp, path)
    print(f"cached {path.name} {vectors.shape} in {time.perf_counter() - started:.0f}s", flush=True)
    return vectors


def cached_weight(name: str, compute) -> np.ndarray:
    """A dev bench's map weight, computed once and kept as ``CACHE/dev/<name>.npy`` (its dtype as computed)."""
    path = CACHE / "dev" / f"{name}.npy"
    if path.is_file():
        return np.load(path)
    weight = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, weight)
    os.replace(tmp, path)
    return weight


_TEXTS: dict[str, list[str]] = {}


def collection_texts(collection: str) -> list[str]:
    if collection not in _TEXTS:
        _TEXTS[collection] = ([r["text"] for r in shuffled_passages(N_PASSAGES)] if collection == "passages"
                              else scifact_texts(collection)[1])
    return _TEXTS[collection]


def encoder_vectors(encoder_spec: str, tag: str, collection: str) -> np.ndarray:
    """Vectors of 'passages' (the first N_PASSAGES shuffled), 'queries' or 'corpus' by an encoder,
    cached in chunks of CHUNK texts."""
    vectors = chunked_vectors(encoder_spec, f"{tag}-{collection}", lambda: collection_texts(collection),
                              kind="query" if collection == "queries" else "document")
    assert vectors is not None  # computed when missing
    return vectors


def chunked_vectors(encoder_spec: str, name: str, texts_of: Callable[[], list[str]], *, kind: str,
                    batch_size: int | None = None, compute: bool = True) -> np.ndarray | None:
    """``encoder_spec``'s vectors of ``texts_of()``, cached as ``CACHE/<name>.npy`` from chunks of CHUNK texts
    (``CACHE/chunks/<name>-<start>-<rows>.npy``, so an interrupted run keeps its progress); None if missing and
    not ``compute``. The encoder is loaded only when a chunk must be encoded."""
    final = CACHE / f"{name}.npy"
    if final.is_file():
        return np.load(final)
    if not compute:
        return None
    from tava_core.encoders import load_encoder

    texts = texts_of()
    options = {} if batch_size is None else {"batch_size": batch_size}
    blocks = []
    for start in range(0, len(texts), CHUNK):
        chunk = texts[start:start + CHUNK]
        blocks.append(_cached(CACHE / "chunks" / f"{name}-{start}-{len(chunk)}.npy",
                              lambda chunk=chunk: load_encoder(encoder_spec).encode(chunk, kind=kind, **options)))
    return _cached(final, lambda: np.concatenate(blocks))


# bench/transfer_data.py caches the same texts' vectors by the same encoders (same passage shuffle, same
# document text); a fresh machine that ran that bench need not embed them again.
TRANSFER_CACHE = Path(os.environ.get("TAVA_TRANSFER_CACHE", "/tmp/tava-transfer-cache"))
# <encoder>-<fingerprint[:12]>: bench/transfer_data.py's folders. mpnet's fingerprint is stable across installs
# since session 34 (before, its assembly stamp's mtimes were hashed in, and each machine had its own).
TRANSFER_FOLDERS = {"minilm": "all-MiniLM-L6-v2-da3890c09da6", "mpnet": "all-mpnet-base-v2-90b3ea3e5351"}
TRANSFER_SETS = {"passages": "passages20000", "queries": "scifact-queries", "corpus": "scifact-corpus",
                 "corpus-spans": "scifact-corpus.spans1", "passages-spans": "passages20000.spans1"}
TRANSFER_ROWS = {"passages": N_PASSAGES, "queries": 1109, "corpus": 5183, "corpus-spans": 5183}


def transfer_cached(tag: str, collection: str, rows: int | None = None) -> np.ndarray | None:
    """Vectors bench/transfer_data.py cached (``.npy`` chunks named by row range), the first ``rows``
    (default: the whole collection as this bench sees it); None unless every chunk up to there exists."""
    if tag not in TRANSFER_FOLDERS or collection not in TRANSFER_SETS:
        return None
    wanted = rows if rows is not None else TRANSFER_ROWS.get(collection)
    folder = TRANSFER_CACHE / TRANSFER_FOLDERS[tag] / TRANSFER_SETS[collection]
    blocks, start = [], 0
    while wanted is None or start < wanted:
        path = next(iter(sorted(folder.glob(f"{start:07d}-*.npy"))), None)
        if path is None:
            break
        blocks.append(np.load(path).astype(np.float32))
        start += len(blocks[-1])
    if not blocks or (wanted is not None and start < wanted):
        return None
    out = np.concatenate(blocks)[:wanted]
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def cached_only(tag: str, collection: str, prefix_ok: bool | None = None) -> np.ndarray | None:
    """What the cache holds, computing nothing: the whole collection, else bench/transfer_data.py's
    cache of it, else (passages only) the contiguous prefix of chunks done so far, else None."""
    final = CACHE / f"{tag}-{collection}.npy"
    if final.is_file():
        return np.load(final)
    transferred = transfer_cached(tag, collection)
    if transferred is not None:
        return transferred
    if not (collection == "passages" if prefix_ok is None else prefix_ok):
        return None
    blocks, start = [], 0
    while (path := next(iter(sorted((CACHE / "chunks").glob(f"{tag}-{collection}-{start}-*.npy"))), None)) is not None:
        blocks.append(np.load(path))
        start += len(blocks[-1])
    return np.concatenate(blocks) if blocks else None


def doc_span_texts(view: int, parity: int) -> list[str]:
    """Span view ``view`` (tava's span maker, seed 0: view 0 is bench/transfer_data.py's spans1) of the
    SciFact documents of one parity (0: even rows, 1: odd rows), in row order."""
    from tava_core.distill.spans import _rng, make_span

    ids, texts = scifact_texts("corpus")
    return [make_span(texts[i], _rng(ids[i], view, 0)) for i in range(parity, len(ids), 2)]


def doc_span_vectors(tag: str, view: int, parity: int, compute: bool = True) -> np.ndarray | None:
    """``tag`` ('minilm' / 'mpnet') vectors of ``doc_span_texts(view, parity)``; view 0 from
    bench/transfer_data.py's cache, others embedded here in cached chunks (None if missing and not ``compute``)."""
    if view == 0:
        every = transfer_cached(tag, "corpus-spans")
        return None if every is None else every[parity::2]
    return chunked_vectors(ENCODERS[tag], f"{tag}-corpus-spans-view{view}-parity{parity}",
                           lambda: doc_span_texts(view, parity), kind="document", batch_size=32, compute=compute)


def doc_title_texts(parity: int) -> list[str]:
    """The titles of the SciFact documents of one parity, as Stage A's title views take them
    (``title_views``: two words or more, a repeat taken once), in row order."""
    from tava_core.distill.spans import title_views

    rows = read_jsonl(SCIFACT / "corpus.jsonl")[parity::2]
    return title_views([str(r["_id"]) for r in rows], [r.get("title") or "" for r in rows])[1]


def doc_title_vectors(tag: str, parity: int, compute: bool = True) -> np.ndarray | None:
    """``tag`` ('minilm' / 'mpnet') vectors of ``doc_title_texts(parity)`` (None if missing and not ``compute``)."""
    return chunked_vectors(ENCODERS[tag], f"{tag}-corpus-titles-parity{parity}", lambda: doc_title_texts(parity),
                           kind="document", batch_size=32, compute=compute)   # embedded as span views are


def model2vec_dir() -> Path:
    """A model2vec static distillation of the packaged teacher (its own space, 384-d)."""
    target = CACHE / "model2vec-minilm"
    if (target / "model.safetensors").is_file():
        return target
    from model2vec.distill import distill

    from tava_core.encoders import resolve_model_path
    from tava_core.io import atomic_directory

    static = distill(str(resolve_model_path("all-MiniLM-L6-v2")), pca_dims=None, device="cpu")
    with atomic_directory(target) as tmp:
        static.save_pretrained(tmp)
    return target


def minilm(collection: str) -> np.ndarray:
    return encoder_vectors(ENCODERS["minilm"], "minilm", collection)


def static(collection: str) -> np.ndarray:
    return encoder_vectors(str(model2vec_dir()), "model2vec", collection)


if __name__ == "__main__":
    import torch

    torch.set_num_threads(2)
    wanted = sys.argv[1:] or ["minilm:queries", "minilm:passages", "model2vec:passages", "minilm:corpus"]
    for item in wanted:
        tag, collection = item.split(":")
        if collection.startswith("spans-view"):  # e.g. mpnet:spans-view1-parity1 (bench/translate.py --span-views)
            view, parity = collection.removeprefix("spans-view").split("-parity")
            doc_span_vectors(tag, int(view), int(parity))
            continue
        if collection.startswith("titles-parity"):  # e.g. mpnet:titles-parity1 (bench/translate_domain.py titles=1)
            doc_title_vectors(tag, int(collection.removeprefix("titles-parity")))
            continue
        (minilm if tag == "minilm" else static)(collection)


def write_store(work: Path, ids: list[str], vectors: np.ndarray, linear_map, inverse, *,
                dataset: str) -> tuple[Path, Path]:
    """A MiniLM vector collection (4 shards + manifest) and a linear map saved as an adapter with
    its inverse, under a fresh ``work``: what `tava translate` reads. Returns (vector dir, adapter)."""
    import shutil

    from tava_core.encoders.base import combine_fingerprint
    from tava_core.io import write_vector_shard
    from tava_core.manifest import ShardRecord, VectorManifest, save_manifest
    from tava_core.translate import save_linear_adapter

    shutil.rmtree(work, ignore_errors=True)
    src = work / "vectors"
    src.mkdir(parents=True)
    fingerprint = combine_fingerprint("bench-minilm")
    records = []
    for i, block in enumerate(np.array_split(np.arange(len(vectors)), 4)):
        path = src / f"part-{i:05d}.parquet"
        written = write_vector_shard(path, [ids[j] for j in block], vectors[block],
                                     metadata={"fingerprint": fingerprint, "kind": "document"})
        records.append(ShardRecord(path=path.name, rows=len(block), sha256=written["sha256"]))
    save_manifest(src, VectorManifest(dataset=dataset, collection="corpus", dim=vectors.shape[1], normalized=True,
                                      encoder={"name": "all-MiniLM-L6-v2", "fingerprint": fingerprint}, shards=records))
    adapter = save_linear_adapter(work / "adapter", linear_map, inverse=inverse, metadata={"lineage": {
        "student": {"name": "all-MiniLM-L6-v2", "fingerprint": fingerprint},
        "teacher": {"name": "all-mpnet-base-v2", "fingerprint": combine_fingerprint("bench-mpnet")}}})
    return src, adapter
