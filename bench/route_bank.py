"""Does a two-stage document bank route like the full one? (issue 16, dev split only)

A router's retrieval signals read the served corpus's document bank once per query. The full bank
(every document at full dimension) is what `tava calibrate-router` keeps by default; the two-stage
bank (`--settings-doc-pca-dim 64 --settings-doc-rescore 200`) scores all documents in 64 PCA
dimensions and rescores the best 200 exactly -- about a sixth of the bytes read per query, which
is what a batch-1 query pays for (bench/export_router.py). This bench puts routers calibrated the
same way but for their bank side by side on SciFact's 809 train queries (the dev split):

- how alike their confidence is: Spearman correlation, and the share of queries both send to the
  teacher at their own saved thresholds and at the least-confident 10% / 20%;
- what each recovers: `tava evaluate --router`'s own curves (gap recovered at 5-50% sent to the
  teacher, router over random, router minus the label-free oracle), quality only.

    .venv/bin/python bench/route_bank.py --routers FULL_DIR PCA_DIR [--home HOME] \\
        --out bench/results/route_bank_dev.json

The routers must share their student and teacher (the queries are encoded once). Test queries are
not read.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from shared_data import ROOT, SCIFACT, cpu_info, write_result

SHARES = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routers", nargs="+", required=True, help="router directories (the first is the reference)")
    parser.add_argument("--home", default=None, help="tava home with the corpus's teacher vectors cached")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "route_bank_dev.json")
    args = parser.parse_args()

    from tava_core.evaluate.data import load_beir_directory
    from tava_core.home import TavaHome
    from tava_core.route.calibrate import spearman
    from tava_core.route.curves import route_lowest
    from tava_core.route.run import evaluate_router, load_router

    started = time.perf_counter()
    home = TavaHome(args.home)
    data = load_beir_directory(SCIFACT, split="train")
    routers = [load_router(path) for path in args.routers]
    first = routers[0]
    for router in routers[1:]:
        if (router.student.fingerprint, router.teacher.fingerprint) != (first.student.fingerprint,
                                                                      first.teacher.fingerprint):
            raise SystemExit(f"{router.name}: its student or teacher differs from {first.name}'s")
    texts = data.query_texts
    student_q = first.student.encode(texts, kind="query")
    scores = [router.confidence(texts, student_q) for router in routers]
    report: dict = {"benchmark": "route_bank", "split": "SciFact train queries (dev)", "queries": len(texts),
                    "cpu": cpu_info(), "routers": {}}
    with tempfile.TemporaryDirectory(prefix="tava-route-bank-") as tmp:
        for i, (path, router, score) in enumerate(zip(args.routers, routers, scores, strict=True)):
            curves = evaluate_router(router, data, home, Path(tmp) / str(i), shares=SHARES, measure_costs=False)
            settings = json.loads((Path(path) / "router.json").read_text())["report"]["settings"]
            entry = {"path": path, "bank": {k: settings.get(k) for k in ("doc_bank_size", "doc_pca_dim", "doc_rescore")},
                     "threshold": router.threshold.threshold,
                     "routed_share_at_threshold": curves["routed_share_at_threshold"],
                     "at_share": {str(row["share"]): {
                         "router_gap_recovered": row["router"]["gap_recovered"],
                         "random_gap_recovered": row["random"]["gap_recovered"],
                         "label_free_oracle_gap_recovered": row["label_free_oracle"]["gap_recovered"],
                         "router_over_random_gap_ratio": row.get("router_over_random_gap_ratio"),
                         "router_minus_label_free_oracle_gap": row.get("router_minus_label_free_oracle_gap")}
                         for row in curves["rows"]}}
            if i:
                same_at = {}
                for share in (0.1, 0.2):
                    a, b = route_lowest(scores[0], share), route_lowest(score, share)
                    same_at[str(share)] = float((a == b).mean())
                entry["against_reference"] = {
                    "spearman": float(spearman(scores[0], score)),
                    "max_abs_difference": float(np.abs(scores[0] - score).max()),
                    "same_decisions_at_own_thresholds": float(
                        ((scores[0] < routers[0].threshold.threshold) == (score < router.threshold.threshold)).mean()),
                    "same_decisions_at_share": same_at}
            report["routers"][router.name] = entry
    report["seconds"] = round(time.perf_counter() - started, 1)
    write_result(args.out, report)
    for name, entry in report["routers"].items():
        row = entry["at_share"]
        print(name, entry["bank"], "gap recovered 10% / 20%:",
              round(row["0.1"]["router_gap_recovered"], 3), "/", round(row["0.2"]["router_gap_recovered"], 3),
              entry.get("against_reference", ""))


if __name__ == "__main__":
    main()
