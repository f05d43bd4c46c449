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
import translate_data as td
from shared_data import ROOT, SCIFACT, add_run

OUT = ROOT / "bench" / "results" / "retention_interval.json"


def shared_vectors(name: str, ids: list[str]) -> np.ndarray:
    """Rows of a shared mpnet vector file (``translate_data.mpnet_vectors``) in the order of ``ids``."""
    file_ids, vectors = td.mpnet_vectors(name)
    row_of = {i: k for k, i in enumerate(file_ids)}
    return vectors[[row_of[i] for i in ids]]


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
    from tava_core.route.curves import per_query_ndcg

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", required=True, help="a saved query encoder directory (student, adapter, blend)")
    parser.add_argument("--label", required=True, help="the result's name in the JSON")
    parser.add_argument("--split", default="test", choices=["test", "train"])
    parser.add_argument("--target", type=float, default=0.97)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    data = load_beir_directory(SCIFACT, args.split)
    documents = shared_vectors("scifact/corpus.parquet", data.corpus_ids)
    queries = {"teacher": shared_vectors("scifact/queries.parquet", data.query_ids),
               "encoder": load_encoder(args.encoder).encode(data.query_texts, kind="query", batch_size=64)}
    per_query = {name: np.asarray(per_query_ndcg(q, documents, data.query_ids, data.corpus_ids, data.qrels),
                                  dtype=np.float64) for name, q in queries.items()}
    result = {"encoder": args.encoder, "split": args.split, "teacher": "all-mpnet-base-v2 (shared vectors)",
              "teacher_ndcg_at_10": round(float(per_query["teacher"].mean()), 4),
              "encoder_ndcg_at_10": round(float(per_query["encoder"].mean()), 4),
              **ratio_interval(per_query["encoder"], per_query["teacher"], args.target)}
    report = add_run(args.out, "retention_interval", args.label, result)
    print(f"{args.label}: {result['encoder_ndcg_at_10']:.4f} against the teacher's {result['teacher_ndcg_at_10']:.4f}: "
          f"share {result['share']:.3f} (95% {result['low']:.3f}-{result['high']:.3f}), "
          f"P(share >= {args.target}) {result[f'p_at_least_{args.target}']:.3f}; {len(report['runs'])} runs in {args.out}")


if __name__ == "__main__":
    main()
