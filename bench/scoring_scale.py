"""Memory and time of tava's exact retrieval metrics on large collections: one score matrix against
blocks of query rows (`tava_core.evaluate.metrics.ScoreMatrix`, since session 36).

`tava evaluate` scores every document for every query. Before session 36 it built the whole
(queries x documents) float32 matrix at once: Quora's test split (10,000 queries, 522,931
documents) is 20.9 GB of it, NQ's (3,452 x 2,681,468) 37 GB, more than this 24 GiB machine has.
Now it holds at most 256 MB of scores at a time.

Synthetic unit vectors (384-d, MiniLM's size) and random judgements: the figures are memory and
time, not quality. Two cases:
- side by side: 2,000 queries x 100,000 documents (an 800 MB matrix), one matrix vs blocks,
  in one process; the metrics must be equal.
- Quora's size: 10,000 x 522,931, blocks only (one matrix would need 20.9 GB).
Peak memory is numpy's allocations as tracemalloc sees them (numpy reports to it).

    python bench/scoring_scale.py      # -> bench/results/scoring_scale.json (~5 minutes here)
"""
from __future__ import annotations

import argparse
import time
import tracemalloc
from pathlib import Path

import numpy as np
from shared_data import ROOT, cpu_info, write_result

DIM = 384


def collection(n_queries: int, n_docs: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str], list[str], dict]:
    rng = np.random.default_rng(seed)
    docs = rng.standard_normal((n_docs, DIM), dtype=np.float32)
    # each query is a very noisy mix of two documents, both judged relevant: metrics well under 1,
    # so "equal" compares real rankings
    targets = rng.integers(0, n_docs, size=(n_queries, 2))
    queries = docs[targets[:, 0]] + 0.8 * docs[targets[:, 1]] + 4 * rng.standard_normal((n_queries, DIM), dtype=np.float32)
    doc_ids, query_ids = [f"d{i}" for i in range(n_docs)], [f"q{i}" for i in range(n_queries)]
    qrels = {q: {f"d{a}": 1, f"d{b}": 1} for q, (a, b) in zip(query_ids, targets, strict=True)}
    return queries, docs, query_ids, doc_ids, qrels


def measure(build, query_ids, doc_ids, qrels) -> dict:
    """Metrics, seconds and numpy's peak memory of scoring with ``build()`` (a matrix or ScoreMatrix)."""
    from tava_core.evaluate import metrics as M

    tracemalloc.start()
    try:
        start = time.perf_counter()
        values = M.retrieval_metrics(build(), query_ids, doc_ids, qrels)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return {"metrics": {k: round(v, 6) for k, v in values.items()}, "seconds": round(seconds, 1),
            "peak_numpy_mb": round(peak / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scoring_scale.json")
    parser.add_argument("--skip-quora-size", action="store_true", help="only the side-by-side case")
    args = parser.parse_args()
    from tava_core.evaluate import metrics as M

    report: dict = {"bench": "scoring_scale", "cpu": cpu_info(), "dim": DIM,
                    "block_limit_mb": M.SCORE_BLOCK_BYTES / 2**20}
    queries, docs, query_ids, doc_ids, qrels = collection(2000, 100_000, seed=0)
    inputs_mb = (queries.nbytes + docs.nbytes) / 2**20
    one = measure(lambda: M.cosine_scores(queries, docs), query_ids, doc_ids, qrels)
    blocks = measure(lambda: M.ScoreMatrix.cosine(queries, docs), query_ids, doc_ids, qrels)
    report["side_by_side"] = {
        "queries": len(query_ids), "documents": len(doc_ids), "matrix_mb": len(query_ids) * len(doc_ids) * 4 / 2**20,
        "inputs_mb": round(inputs_mb, 1), "one_matrix": one, "blocks": blocks,
        "metrics_equal": one["metrics"] == blocks["metrics"],
        "max_metric_diff": max(abs(one["metrics"][k] - blocks["metrics"][k]) for k in one["metrics"]),
        "memory_ratio": round(one["peak_numpy_mb"] / blocks["peak_numpy_mb"], 2),
        "time_ratio_blocks_over_one": round(blocks["seconds"] / one["seconds"], 2)}
    print(f"2,000 x 100,000: one matrix {one['peak_numpy_mb']} MB / {one['seconds']} s; blocks "
          f"{blocks['peak_numpy_mb']} MB / {blocks['seconds']} s; metrics equal: {report['side_by_side']['metrics_equal']}")
    del queries, docs
    if not args.skip_quora_size:
        queries, docs, query_ids, doc_ids, qrels = collection(10_000, 522_931, seed=1)
        blocks = measure(lambda: M.ScoreMatrix.cosine(queries, docs), query_ids, doc_ids, qrels)
        report["quora_size"] = {"queries": len(query_ids), "documents": len(doc_ids),
                                "one_matrix_would_need_gb": round(len(query_ids) * len(doc_ids) * 4 / 1e9, 1),
                                "inputs_mb": round((queries.nbytes + docs.nbytes) / 2**20, 1), "blocks": blocks}
        print(f"10,000 x 522,931 (Quora's size): blocks {blocks['peak_numpy_mb']} MB / {blocks['seconds']} s "
              f"(one matrix would need {report['quora_size']['one_matrix_would_need_gb']} GB)")
    write_result(args.out, report)


if __name__ == "__main__":
    main()
