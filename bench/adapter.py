"""Stage B benchmark: a learned adapter vs closed-form maps, student space -> teacher space.

(filled in below; the data part first)
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = Path(os.environ.get("TAVA_SHARED_DATA", ROOT.parent / "shared" / "data"))
SCIFACT = SHARED / "beir" / "scifact"
PASSAGES = SHARED / "corpus_passages_en.jsonl.gz"
TEACHER_VECTORS = SHARED / "vectors" / "all-mpnet-base-v2"
DEFAULT_CACHE = Path(os.environ.get("TAVA_BENCH_CACHE", "/tmp/tava-bench-cache"))


def read_teacher(name: str) -> tuple[list[str], np.ndarray]:
    """Precomputed teacher vectors (float16 on disk), re-normalised in float32."""
    import pyarrow.parquet as pq

    from tava_core.io import vectors_from_column

    table = pq.read_table(TEACHER_VECTORS / name)
    vectors = vectors_from_column(table.column("vector"))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return table.column("id").to_pylist(), vectors


def read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def texts_by_id(name: str) -> dict[str, str]:
    if name == "passages":
        return {r["_id"]: r["text"] for r in read_jsonl(PASSAGES)}
    if name == "corpus":
        return {r["_id"]: (f"{r['title']} {r['text']}" if r.get("title") else r["text"])
                for r in read_jsonl(SCIFACT / "corpus.jsonl")}
    return {r["_id"]: r["text"] for r in read_jsonl(SCIFACT / "queries.jsonl")}


_TEXTS: dict[str, dict[str, str]] = {}


def _texts(name: str) -> dict[str, str]:
    if name not in _TEXTS:
        _TEXTS[name] = texts_by_id(name)
    return _TEXTS[name]


def student_vectors(encoder, name: str, ids: list[str], cache_dir: Path, chunk: int | None = None) -> np.ndarray:
    """Student vectors of the texts ``ids`` of collection ``name``, cached by encoder fingerprint
    in chunks of ``chunk`` ids (so a quick run's prefix is reused by a full run)."""
    if chunk is not None and len(ids) > chunk:
        return np.concatenate([student_vectors(encoder, name, ids[i:i + chunk], cache_dir, chunk)
                               for i in range(0, len(ids), chunk)])
    return _student_vectors_chunk(encoder, name, ids, cache_dir)


def _student_vectors_chunk(encoder, name: str, ids: list[str], cache_dir: Path) -> np.ndarray:
    from tava_core.io import stable_hash

    path = cache_dir / f"{encoder.name}-{encoder.fingerprint[:12]}" / f"{name}-{len(ids)}-{stable_hash(ids, 8)}.npy"
    if path.is_file():
        return np.load(path)
    texts_map = _texts(name)
    texts = [texts_map[i] for i in ids]
    kind = "query" if name == "queries" else "document"
    start = time.perf_counter()
    vectors = encoder.encode(texts, kind=kind, show_progress=True)
    print(f"encoded {len(texts)} {name} with {encoder.name} in {time.perf_counter() - start:.1f}s", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def main_cache(student: str, cache_dir: Path, n_passages: int) -> None:
    from tava_core.encoders import load_encoder

    encoder = load_encoder(student)
    for name, file in (("queries", "scifact/queries.parquet"), ("corpus", "scifact/corpus.parquet"),
                       ("passages", "passages_shuffled_first20000.parquet")):
        ids, _ = read_teacher(file)
        if name == "passages":
            ids = ids[:n_passages]
        student_vectors(encoder, name, ids, cache_dir, chunk=2500 if name == "passages" else None)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--student", default="all-MiniLM-L6-v2")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--passages", type=int, default=20000)
    args = parser.parse_args()
    main_cache(args.student, args.cache_dir, args.passages)
