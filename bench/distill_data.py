"""Benchmark data for Stage A: ingested datasets + cached teacher vectors under a /tmp tava home.

Text shards and the teacher's vector shards are written once (vector shards by tava's own
embedding core, which skips shards that are already current), so re-runs cost nothing.

    python bench/distill_data.py --passages 20000      # prepare (teacher ~200 texts/s on 2 cores)
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tava_core.embed import EmbedConfig, embed_dataset  # noqa: E402
from tava_core.home import TavaHome  # noqa: E402
from tava_core.io import write_text_shard  # noqa: E402
from tava_core.manifest import Collection, DatasetManifest, ShardRecord, save_manifest  # noqa: E402

SHARED = Path(os.environ.get("TAVA_SHARED_DATA", ROOT.parent / "shared" / "data"))
SCIFACT = SHARED / "beir" / "scifact"
PASSAGES = SHARED / "corpus_passages_en.jsonl.gz"
BENCH_HOME = Path(os.environ.get("TAVA_BENCH_HOME", "/tmp/tava-bench-home"))
SHARD_ROWS = 2500
MPNET_PASSAGES = SHARED / "vectors" / "all-mpnet-base-v2" / "passages_shuffled_first20000.parquet"
SHARED_CACHE = Path(os.environ.get("TAVA_BENCH_CACHE", "/tmp/tava-bench-cache"))


def _write_dataset(home: TavaHome, name: str, source: str, collections: dict[str, dict[str, list[str]]]) -> Path:
    """Write text shards + manifest (skipped when the manifest exists: the data never changes)."""
    out = home.dataset_dir(name)
    if (out / "manifest.json").is_file():
        return out
    records: dict[str, Collection] = {}
    for collection, rows in collections.items():
        shards = []
        for start in range(0, len(rows["id"]), SHARD_ROWS):
            part = {k: v[start:start + SHARD_ROWS] for k, v in rows.items()}
            rel = f"{collection}/shard-{start // SHARD_ROWS:05d}.parquet"
            rec = write_text_shard(out / rel, part)
            shards.append(ShardRecord(path=rel, rows=rec["rows"], sha256=rec["sha256"]))
        records[collection] = Collection(shards=shards)
    save_manifest(out, DatasetManifest(name=name, source=source, collections=records))
    return out


def passage_order(file_order: list[str]) -> list[str]:
    """Every passage id: first the shuffle that ../shared/data/vectors uses (its first 20,000, in
    order; the Stage B benchmark caches the teacher's vectors of the same ids in the same chunks),
    then the rest in ``file_order`` (the file's). A prefix is what a run with N passages uses."""
    import pyarrow.parquet as pq

    first = pq.read_table(MPNET_PASSAGES, columns=["id"]).column("id").to_pylist()
    seen = set(first)
    return first + [i for i in file_order if i not in seen]


def prepare_passages(home: TavaHome, count: int) -> Path:
    """Dataset ``passages``: the first ``count`` passages of that order, in shards of 2,500.

    Growing ``count`` only adds shards (existing shard files are never rewritten), so the teacher
    vectors of shards already embedded are reused; a smaller run reads a prefix (max_texts).
    """
    out = home.dataset_dir("passages")
    count = -(-count // SHARD_ROWS) * SHARD_ROWS
    if (out / "manifest.json").is_file():
        from tava_core.manifest import load_dataset_manifest

        if load_dataset_manifest(out).collections["texts"].rows >= count:
            return out
    with gzip.open(PASSAGES, "rt") as handle:
        by_id = {r["_id"]: r for r in map(json.loads, handle)}   # dicts keep the file's order
    order = passage_order(list(by_id))[:count]
    rows = [by_id[i] for i in order]
    from tava_core.io import sha256_file

    shards = []
    for start in range(0, len(rows), SHARD_ROWS):
        part = rows[start:start + SHARD_ROWS]
        rel = f"texts/shard-{start // SHARD_ROWS:05d}.parquet"
        if not (out / rel).is_file():
            write_text_shard(out / rel, {"id": [r["_id"] for r in part], "text": [r["text"] for r in part],
                                         "source": [r.get("source", "") for r in part]})
        shards.append(ShardRecord(path=rel, rows=len(part), sha256=sha256_file(out / rel)))
    save_manifest(out, DatasetManifest(name="passages", source=str(PASSAGES),
                                       collections={"texts": Collection(shards=shards)}))
    return out


def import_shared_chunks(home: TavaHome, dataset: str = "passages", wait_minutes: float = 0.0) -> int:
    """Turn teacher-vector chunks that bench/adapter.py cached (``.npy`` per 2,500 ids, same teacher
    fingerprint) into vector shards that tava's embedding core accepts as current; with
    ``wait_minutes``, wait that long for chunks still being computed. Returns shards imported."""
    import numpy as np

    from tava_core.embed import plan_collection, vector_shard_is_current
    from tava_core.encoders import load_encoder
    from tava_core.io import read_text_shard, stable_hash, write_vector_shard
    from tava_core.manifest import load_dataset_manifest

    encoder = load_encoder("all-MiniLM-L6-v2")
    dataset_dir = home.dataset_dir(dataset)
    manifest = load_dataset_manifest(dataset_dir)
    _, jobs = plan_collection(home, dataset_dir, manifest, "texts", encoder)
    cache = SHARED_CACHE / f"{encoder.name}-{encoder.fingerprint[:12]}"
    deadline = time.monotonic() + wait_minutes * 60
    imported = 0
    pending = list(jobs)
    while pending:
        for job in list(pending):
            if vector_shard_is_current(job.out_path, fingerprint=encoder.fingerprint, source_sha256=job.source_sha256,
                                       kind=job.kind):
                pending.remove(job)
                continue
            ids = read_text_shard(job.text_shard).column("id").to_pylist()
            chunk = cache / f"passages-{len(ids)}-{stable_hash(ids, 8)}.npy"
            try:
                vectors = np.load(chunk)
            except (OSError, ValueError):
                continue  # not there yet, or still being written
            if vectors.shape != (len(ids), encoder.dim):
                continue
            write_vector_shard(job.out_path, ids, vectors, metadata={
                "fingerprint": encoder.fingerprint, "source_sha256": job.source_sha256, "kind": job.kind,
                "dim": encoder.dim, "normalized": encoder.normalized, "encoder": encoder.name,
                "imported_from": str(chunk)})
            imported += 1
            pending.remove(job)
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(10)
    return imported


def prepare_scifact(home: TavaHome) -> Path:
    """SciFact corpus + test queries (qrels are read by the benchmark only, never for training)."""
    def load(path: Path) -> list[dict]:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    corpus = load(SCIFACT / "corpus.jsonl")
    queries = load(SCIFACT / "queries.jsonl")
    return _write_dataset(home, "scifact", str(SCIFACT), {
        "corpus": {"id": [d["_id"] for d in corpus], "text": [d.get("text", "") for d in corpus],
                   "title": [d.get("title", "") for d in corpus]},
        "queries": {"id": [q["_id"] for q in queries], "text": [q["text"] for q in queries]},
    })


def prepare(passages: int, home_root: Path = BENCH_HOME, *, progress: bool = True,
            wait_minutes: float = 0.0) -> dict[str, Path]:
    """Datasets and teacher vector dirs; returns {'passages', 'passages_vectors', 'scifact', ...}."""
    home = TavaHome(home_root)
    out: dict[str, Path] = {}
    out["scifact"] = prepare_scifact(home)
    dirs = embed_dataset(EmbedConfig(dataset="scifact", collections=["queries", "corpus"]), home,
                         show_progress=progress)
    out["scifact_corpus_vectors"] = dirs["corpus"]
    out["scifact_queries_vectors"] = dirs["queries"]
    out["passages"] = prepare_passages(home, passages)
    import_shared_chunks(home, wait_minutes=wait_minutes)
    dirs = embed_dataset(EmbedConfig(dataset=out["passages"].name, collections=["texts"]), home,
                         show_progress=progress)
    out["passages_vectors"] = dirs["texts"]
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--passages", type=int, default=20000)
    parser.add_argument("--wait-minutes", type=float, default=0.0,
                        help="wait this long for bench/adapter.py's cached chunks before embedding the rest")
    args = parser.parse_args()
    print(json.dumps({k: str(v) for k, v in prepare(args.passages, wait_minutes=args.wait_minutes).items()},
                     indent=2))
