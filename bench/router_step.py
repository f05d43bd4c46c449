"""`tava run`'s router step both ways, side by side in one process: as it was (the teacher encodes the split's
queries again, and its cost per query is timed in 3 more passes) and as it is (the query vectors the run's
evaluations kept are read back, and the teacher's cost is the student's times the speed-up its evaluation
measured: the teacher does not run).

The router, the split and the speed-up are a finished run's (``bench/cli_run.py``); the evaluations'
encodings are made first, as the run makes them, and timed apart. Reported: each way's seconds and their
ratio, the router's nDCG@10 at the run's budgets both ways (the same vectors up to float noise, so the
same curve), and the confidence's cost as a share of the teacher's both ways (what a router row's speed-up
is made of): timed against the teacher, and derived from the student's speed-up. It chooses nothing.

    python bench/router_step.py --home /work/cache/s50/cli-home --name scifact-reversed-mpnet \
        --dataset scifact-reversed --student-speedup 7.0
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

from shared_data import ROOT, add_run

from tava_core.evaluate.data import load_retrieval_data
from tava_core.evaluate.vectors import embed_corpus, encode_queries, load_corpus_vectors, query_vector_path
from tava_core.home import TavaHome
from tava_core.route import run as route_run
from tava_core.route.router import load_router

OUT = ROOT / "bench" / "results" / "router_step.json"
SHARES = (0.0, 0.1, 0.2)     # `tava run`'s: no routing and its two default budgets


def scored(curves: dict[str, Any]) -> dict[str, float]:
    return {f"{row['share']:g}": round(row["router"]["ndcg10"], 6) for row in curves["rows"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", required=True, help="the run's tava home")
    parser.add_argument("--name", required=True, help="the run's registry adapter name (its router's name)")
    parser.add_argument("--dataset", required=True, help="the ingested dataset's name in that home")
    parser.add_argument("--split", default="test")
    parser.add_argument("--student-speedup", type=float, required=True,
                        help="the routed encoder's speed-up over the teacher in the run's table")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()

    home = TavaHome(args.home)
    router = load_router(home.artifacts / "routers" / args.name)
    data = load_retrieval_data(str(home.dataset_dir(args.dataset)), args.split, home)
    documents = load_corpus_vectors(data, embed_corpus(data, router.teacher, home, show_progress=False))
    kept: dict[str, float] = {}
    for role, encoder in (("student", router.student), ("teacher", router.teacher)):    # the run's evaluations
        began = time.perf_counter()
        encode_queries(data, encoder, query_vector_path(home, data, encoder), batch_size=32)
        kept[role] = round(time.perf_counter() - began, 1)

    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        with mock.patch.object(route_run, "stored_query_vectors", lambda *a, **k: None):   # nothing kept
            before = route_run.evaluate_router(router, data, home, Path(tmp) / "before", shares=SHARES,
                                               documents=documents)
        before_seconds = time.perf_counter() - began
        began = time.perf_counter()
        after = route_run.evaluate_router(router, data, home, Path(tmp) / "after", shares=SHARES,
                                          documents=documents, student_speedup=args.student_speedup)
        after_seconds = time.perf_counter() - began

    def confidence_share(curves: dict[str, Any]) -> float:
        return round(curves["costs"]["confidence"] / curves["costs"]["teacher"], 5)

    result = {
        "router": args.name, "dataset": data.summary(), "shares": list(SHARES), "student_speedup": args.student_speedup,
        "evaluations_encoding_seconds": kept,
        "seconds": {"before": round(before_seconds, 1), "after": round(after_seconds, 1)},
        "faster": round(before_seconds / after_seconds, 2),
        "router_ndcg10": {"before": scored(before), "after": scored(after)},
        "max_ndcg10_difference": max(abs(a - b) for a, b in zip(scored(before).values(), scored(after).values(),
                                                                 strict=True)),
        "confidence_share_of_teacher": {"timed": confidence_share(before), "derived": confidence_share(after)},
        "teacher_seconds_per_query": {"timed": before["costs"]["teacher"], "derived": after["costs"]["teacher"]},
        "query_vectors": {"before": before["query_vectors"], "after": after["query_vectors"]},
    }
    add_run(Path(args.out), "router_step", f"{args.split}/{args.name}", result)
    print(result)


if __name__ == "__main__":
    main()
