"""Does a router route as well from a service's approximate search as from its own bank? (issue 16)

``RoutedEncoder.route_searched`` reads the default score (the cell margin) from the result list the
service's index returns for the student's query vector, instead of the router's exact pass over its
document bank (bench/static_batch1.py --serving times it). A FAISS HNSW index is approximate, so its
top 11 can differ from the exact one. Here, for bench/route.py's four students on the two dev corpora
(SciFact's 809 train queries, the built-in data's 250; test is not read), the default router
(``retrieval_cell_margin``, calibrated on span views as bench/route_default.py does) scores the queries
three ways -- its own bank, the exact top 11 handed in as a list, and an HNSW index's top 11
(``HNSW32,Flat``, inner product, efSearch 64 and 16) -- and each confidence routes the queries: gap to
the teacher recovered at 10% / 20%, and the share of decisions equal to the bank's.

    python bench/route_searched.py     # -> bench/results/route_searched_dev.json
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import route as R  # noqa: E402
from bench.static_batch1 import hnsw  # noqa: E402
from tava_core.home import TavaHome  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "route_searched_dev.json"
CANDIDATE = R._candidate(["retrieval_cell_margin"])
EF_SEARCH = (64, 16)


def main() -> None:
    import torch

    from tava_core.route.fast import CompiledConfidence

    torch.set_num_threads(1)
    started = time.time()
    R.CANDIDATES = {"cell_margin": CANDIDATE}
    teacher = R.load_encoder("all-MiniLM-L6-v2")
    home = TavaHome(R.HOME)
    paths = R.bench_paths(home, teacher)
    datasets = {k: v for k, v in R.load_datasets(paths, teacher).items() if k in ("scifact-dev", "builtin-test")}
    report: dict[str, Any] = {"benchmark": "the default router from an HNSW search's result list against its own "
                                           "bank (dev corpora only)",
                              "machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()},
                              "candidate": CANDIDATE, "ef_search": list(EF_SEARCH), "students": {}, "results": {}}
    state = R.encode_students(R.find_students(), datasets, paths, teacher, report)
    for label, st in state.items():
        for name, dataset in datasets.items():
            enc = st["encoded"][name]
            model = R.model_for(st, dataset.name, CANDIDATE)
            curves = R.evaluate_candidate(model, CANDIDATE, dataset, enc, fast=True)
            bank_scores, calibration = curves["_scores"], curves["_calibration"]
            compiled = CompiledConfidence(model, calibration)
            texts, queries = dataset.data.query_texts, enc["queries"]
            need = compiled.results_needed()
            lists: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            unit = dataset.docs / np.maximum(np.linalg.norm(dataset.docs, axis=1, keepdims=True), 1e-12)
            q = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
            exact = q @ unit.T
            ids = np.argsort(-exact, axis=1)[:, :need]
            lists["exact list"] = (np.take_along_axis(exact, ids, axis=1), ids)
            recall: dict[str, float] = {}
            for ef in EF_SEARCH:
                index = hnsw(dataset.docs, ef)
                scores, found = index.search(np.ascontiguousarray(q, dtype=np.float32), need)
                lists[f"hnsw ef{ef}"] = (scores, found)
                recall[f"hnsw ef{ef}"] = float(np.mean([len(set(a) & set(b)) / need for a, b in zip(found, ids, strict=True)]))
            row: dict[str, Any] = {"results_needed": need, "bank": {
                "router_10": R.gap_at(curves, 0.1), "router_20": R.gap_at(curves, 0.2),
                "random_10": R.gap_at(curves, 0.1, "random"), "random_20": R.gap_at(curves, 0.2, "random")}}
            for how, (scores, found) in lists.items():
                got = compiled.from_results(texts, queries, scores, unit[found])
                routed = R.fast_curves(dataset, enc, got)
                same = {}
                for b in (10, 20):
                    threshold = calibration.threshold_for_budget(b / 100)
                    same[f"same_decisions_at_{b}"] = float(np.mean((got < threshold) == (bank_scores < threshold)))
                row[how] = {"router_10": R.gap_at(routed, 0.1), "router_20": R.gap_at(routed, 0.2),
                            "max_abs_confidence_difference": float(np.abs(got - bank_scores).max()),
                            "top_recall": recall.get(how, 1.0), **same}
            report["results"].setdefault(label, {})[name] = row
            print(f"{label:14s} {name:13s} bank {row['bank']['router_10']:.3f}/{row['bank']['router_20']:.3f}  " +
                  "  ".join(f"{how} {row[how]['router_10']:.3f}/{row[how]['router_20']:.3f} "
                            f"same {row[how]['same_decisions_at_10']:.3f}/{row[how]['same_decisions_at_20']:.3f} "
                            f"recall {row[how]['top_recall']:.3f}" for how in lists), flush=True)
    report["total_seconds"] = time.time() - started
    R.save_json(RESULTS, report)
    print(json.dumps({"out": str(RESULTS), "seconds": report["total_seconds"]}))


if __name__ == "__main__":
    main()
