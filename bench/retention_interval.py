"""How sure is a share of the teacher measured on 300 queries? A bootstrap interval for a saved query encoder.

`tava run`'s table prints one figure per system (e.g. the mpnet blend's 0.957 of its teacher on SciFact test,
against the issue's 0.97). This script re-scores a saved query encoder (a student, an adapter, a blend)
against the teacher on the same queries and the teacher's own document vectors, per query, and resamples
the queries (10,000 percentile-bootstrap draws, seeded) for a 95% interval of the *ratio* mean(encoder) /
mean(teacher), and the share of draws in which it reaches ``--target``. It chooses nothing: it reads a figure
already reported, with its uncertainty beside it.

SciFact with all-mpnet-base-v2 reads the shared vectors (documents and queries), so nothing but the saved
encoder runs:

    python bench/retention_interval.py --encoder /work/cache/s47/cli-home/artifacts/blends/scifact-logsplit-mpnet-std \\
        --label mpnet-blend-no-log
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from shared_data import MPNET_VECTORS, ROOT, SCIFACT, write_result

OUT = ROOT / "bench" / "results" / "retention_interval.json"


def shared_vectors(path: Path, ids: list[str]) -> np.ndarray:
    """Rows of a shared mpnet vector file in the order of ``ids`` (float32, unit length)."""
    table = pq.read_table(path)
    row_of = {i: k for k, i in enumerate(table.column("id").to_pylist())}
    vectors = np.asarray(table.column("vector").to_pylist(), dtype=np.float32)[[row_of[i] for i in ids]]
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def ratio_interval(encoder: np.ndarray, teacher: np.ndarray, target: float, *, resamples: int = 10000,
                   seed: int = 0) -> dict[str, float]:
    """mean(encoder) / mean(teacher) over the same queries, its 95% percentile interval over resampled
    queries, and the share of resamples at or above ``target``."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(teacher), (resamples, len(teacher)))
    ratios = encoder[draws].mean(axis=1) / teacher[draws].mean(axis=1)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return {"share": round(float(encoder.mean() / teacher.mean()), 4), "low": round(float(low), 4),
            "high": round(float(high), 4), f"p_at_least_{target}": round(float((ratios >= target).mean()), 3),
            "queries": int(len(teacher))}


def main() -> None:
    from tava_core.encoders import load_encoder
    from tava_core.evaluate.data import load_beir_directory
    from tava_core.evaluate.metrics import retrieval_metrics

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", required=True, help="a saved query encoder directory (student, adapter, blend)")
    parser.add_argument("--label", required=True, help="the result's name in the JSON")
    parser.add_argument("--split", default="test", choices=["test", "train"])
    parser.add_argument("--target", type=float, default=0.97)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    data = load_beir_directory(SCIFACT, args.split)
    documents = shared_vectors(MPNET_VECTORS / "scifact" / "corpus.parquet", data.corpus_ids)
    teacher_queries = shared_vectors(MPNET_VECTORS / "scifact" / "queries.parquet", data.query_ids)
    encoder = load_encoder(args.encoder)
    queries = np.asarray(encoder.encode(data.query_texts, kind="query", batch_size=64), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    per_query = {}
    for name, q in (("teacher", teacher_queries), ("encoder", queries)):
        metrics = retrieval_metrics(q @ documents.T, data.query_ids, data.corpus_ids, data.qrels, per_query=True)
        per_query[name] = np.asarray(metrics["ndcg_at_10_per_query"], dtype=np.float64)
    result = {"encoder": args.encoder, "split": args.split, "teacher": "all-mpnet-base-v2 (shared vectors)",
              "teacher_ndcg_at_10": round(float(per_query["teacher"].mean()), 4),
              "encoder_ndcg_at_10": round(float(per_query["encoder"].mean()), 4),
              **ratio_interval(per_query["encoder"], per_query["teacher"], args.target)}
    report = write_or_merge(args.out, args.label, result)
    print(f"{args.label}: {result['encoder_ndcg_at_10']:.4f} against the teacher's {result['teacher_ndcg_at_10']:.4f}: "
          f"share {result['share']:.3f} (95% {result['low']:.3f}-{result['high']:.3f}), "
          f"P(share >= {args.target}) {result[f'p_at_least_{args.target}']:.3f}; {len(report['runs'])} runs in {args.out}")


def write_or_merge(path: Path, label: str, result: dict) -> dict:
    import json

    report = json.loads(path.read_text()) if path.exists() else {"benchmark": "retention_interval", "runs": {}}
    report["runs"][label] = result
    write_result(path, report)
    return report


if __name__ == "__main__":
    main()
