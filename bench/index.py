"""Benchmark `tava index`: build time and recall@10 against exact search, HNSW vs IVF-PQ.

Two collections:
- SciFact corpus (5,183 docs) as 768-d all-mpnet-base-v2 vectors from ../shared/data (float16 on
  disk, converted), with the 1,109 SciFact queries' vectors as recall queries;
- synthetic clustered 384-d vectors (100k; 20k with --quick), with held-out queries from the
  same mixture (clustered, not uniform: uniform random vectors make every index look bad).

    .venv/bin/python bench/index.py            # SciFact + 100k synthetic
    .venv/bin/python bench/index.py --quick    # SciFact + 20k synthetic

Recall@10 = mean overlap of the index's top-10 with exact (Flat) search's top-10, measured by
`tava_core.index.build_index` itself. Writes bench/results/index.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MPNET = ROOT.parent / "shared" / "data" / "vectors" / "all-mpnet-base-v2" / "scifact"


def linked_vector_dir(directory: Path, parquet: Path, name: str) -> Path:
    """A vector directory (manifest + shard) over a shared Parquet file, linked, not copied."""
    from tava_core.io import read_vector_shard, sha256_file
    from tava_core.manifest import ShardRecord, VectorManifest, save_manifest

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "shard-00000.parquet").symlink_to(parquet)
    ids, vectors = read_vector_shard(parquet)
    save_manifest(directory, VectorManifest(
        dataset="scifact", collection=name, encoder={"name": "all-mpnet-base-v2", "fingerprint": "mpnet-shared-data"},
        dim=vectors.shape[1], normalized=True,
        shards=[ShardRecord(path="shard-00000.parquet", rows=len(ids), sha256=sha256_file(parquet))]))
    return directory


def synthetic_dirs(root: Path, n: int, dim: int, n_queries: int, shard_rows: int = 10_000,
                   seed: int = 0) -> tuple[Path, Path]:
    """Clustered vectors (a Gaussian mixture with uneven cluster sizes) as vector shards."""
    from tava_core.io import write_vector_shard
    from tava_core.manifest import ShardRecord, VectorManifest, save_manifest

    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(max(16, n // 100), dim)).astype(np.float32)
    weights = rng.pareto(1.5, len(centers)) + 1
    weights /= weights.sum()

    def draw(count: int) -> np.ndarray:
        which = rng.choice(len(centers), size=count, p=weights)
        return centers[which] + 0.6 * rng.normal(size=(count, dim)).astype(np.float32)

    out = []
    for name, total, rows in (("corpus", n, shard_rows), ("queries", n_queries, n_queries)):
        directory = root / name
        records = []
        for s, start in enumerate(range(0, total, rows)):
            block = draw(min(rows, total - start))
            ids = [f"{name[0]}{start + i}" for i in range(len(block))]
            rec = write_vector_shard(directory / f"shard-{s:05d}.parquet", ids, block)
            records.append(ShardRecord(path=rec["path"], rows=rec["rows"], sha256=rec["sha256"]))
        save_manifest(directory, VectorManifest(dataset="synthetic", collection=name,
                                                encoder={"name": "synthetic", "fingerprint": f"synthetic-{seed}"},
                                                dim=dim, normalized=False, shards=records))
        out.append(directory)
    return out[0], out[1]


def run(vectors: Path, queries: Path, factory: str, work: Path, **kwargs) -> dict:
    from tava_core.home import TavaHome
    from tava_core.index import IndexConfig, build_index

    config = IndexConfig(vectors=str(vectors), factory=factory, index_dir=str(work / "index" / factory.replace(",", "_")),
                         query_vectors=str(queries), recall_queries=kwargs.pop("recall_queries", 300), **kwargs)
    t0 = time.perf_counter()
    record = build_index(config, TavaHome(work / "home"))
    wall = time.perf_counter() - t0
    size = (Path(record["index_dir"]) / "versions" / record["version"] / "index.faiss").stat().st_size
    row = {"factory": factory, "count": record["count"], "dim": record["dim"],
           "build_seconds": record["build_seconds"], "train_seconds": record["train_seconds"],
           "add_seconds": record["add_seconds"], "wall_seconds_incl_recall_and_publish": round(wall, 2),
           "recall_at_10": round(record["recall_at_10"], 4), "recall_queries": record["recall_queries"],
           "search_params": record["search_params"], "index_bytes": size}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20k synthetic vectors instead of 100k")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "index.json"))
    parser.add_argument("--threads", type=int, default=None,
                        help="FAISS OpenMP threads (default: all cores; 1 is faster on an oversubscribed machine)")
    args = parser.parse_args()
    import faiss

    if args.threads:
        faiss.omp_set_num_threads(args.threads)

    results: dict = {"quick": args.quick, "faiss": faiss.__version__, "omp_threads": faiss.omp_get_max_threads(),
                     "machine": {"cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg(),
                                 "python": platform.python_version()}, "collections": {}}
    with tempfile.TemporaryDirectory(prefix="tava-bench-index-") as tmp:
        work = Path(tmp)
        if (MPNET / "corpus.parquet").exists():
            corpus = linked_vector_dir(work / "scifact-corpus", MPNET / "corpus.parquet", "corpus")
            queries = linked_vector_dir(work / "scifact-queries", MPNET / "queries.parquet", "queries")
            nlist = 64  # ~ sqrt(5183); 81 training points per list
            rows = [run(corpus, queries, f, work / "scifact", nprobe=16, ef_search=64)
                    for f in ("Flat", "HNSW32,Flat", f"IVF{nlist},PQ48", f"IVF{nlist},PQ48,RFlat")]
            results["collections"]["scifact_mpnet_768d"] = {
                "source": str(MPNET), "queries": "SciFact queries (1,109; 300 sampled)", "runs": rows}
        else:
            print(f"skipping SciFact: {MPNET} not found", flush=True)

        n = 20_000 if args.quick else 100_000
        nlist = 256 if args.quick else 1024
        corpus, queries = synthetic_dirs(work / "synthetic", n=n, dim=384, n_queries=500)
        rows = [run(corpus, queries, f, work / "synthetic", nprobe=16, ef_search=64, train_size=max(50_000, 40 * nlist))
                for f in ("Flat", "HNSW32,Flat", f"IVF{nlist},PQ48", f"IVF{nlist},PQ48,RFlat")]
        results["collections"][f"synthetic_clustered_{n // 1000}k_384d"] = {
            "source": "Gaussian mixture, n/100 centres, Pareto-sized clusters, noise 0.6", "runs": rows}
    results["machine"]["load_avg_at_end"] = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
