"""Can the router choose its own signal per corpus, label-free? (issue 16, dev only)

The router's default signal (``retrieval_cell_margin``) was chosen once, on SciFact's dev queries, and
every corpus gets it; on the built-in data the entropy routed better for the transformer students
(route_default_cell_margin_dev.json). A corpus the router is calibrated on has no labels, but each
calibration span has a document it was cut from: the *pseudo-relevant* document (the inverse cloze
task's label). Per span, the teacher's gain is

    g = ndcg1(rank of the source under the teacher's span vector) - ndcg1(rank under the student's),
    ndcg1(r) = 1 / log2(1 + r) for r <= 10, else 0

-- nDCG@10 with one relevant document, the shape of these corpora's qrels (one or two relevant
documents a query). The pseudo gap recovered at a budget is then computed as the labelled one is.
This bench asks, per student x dev corpus:

1. does the pseudo gap recovered rank the single signals as the labelled dev gap recovered does, and
   does picking the signal with the best pseudo figure beat the fixed default on dev?
2. does a combiner fitted to predict g (instead of the top-10 overlap) route better than one signal?

Signals on the spans are computed with the source document in the bank (``--exclude`` leaves it out,
as the router's calibration option does). Dev only: SciFact's 809 train queries and the built-in data.

    python bench/route_pseudo_gain.py              # -> bench/results/route_pseudo_gain_dev.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bench.route as route  # noqa: E402
from bench.shared_data import write_result  # noqa: E402
from tava_core.adapter.baselines import normalize_rows  # noqa: E402
from tava_core.route.calibrate import combiner_weights, spearman  # noqa: E402
from tava_core.route.curves import per_query_ndcg, route_lowest  # noqa: E402
from tava_core.route.signals import compute_signals  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "route_pseudo_gain_dev.json"
SIGNALS = ["retrieval_cell_margin", "retrieval_entropy", "retrieval_contrast", "retrieval_top_score",
           "retrieval_margin", "retrieval_boundary"]
DEFAULT = "retrieval_cell_margin"
BUDGETS = (0.1, 0.2)


def source_ndcg(queries: np.ndarray, docs: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Per span: nDCG@10 with its source document as the one relevant document."""
    ids = [str(k) for k in range(len(queries))]
    doc_ids = [str(k) for k in range(len(docs))]
    qrels = {q: {doc_ids[src]: 1} for q, src in zip(ids, source, strict=True)}
    return per_query_ndcg(queries, docs, ids, doc_ids, qrels)


def recovered(confidence: np.ndarray, gain: np.ndarray, share: float) -> float:
    """Share of sum(gain) that sending the least confident ``share`` to the teacher recovers (the
    queries the router's own curves would route)."""
    total = gain.sum()
    return float(gain[route_lowest(confidence, share)].sum() / total) if abs(total) > 1e-12 else 0.0


def standardise(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return (x - ref.mean(axis=0)) / np.maximum(ref.std(axis=0), 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", default="static-a,static-b,transformer-a,transformer-b")
    parser.add_argument("--exclude", action="store_true", help="signals on the spans without their source document")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    teacher, paths, loaded, students = route.dev_bench_inputs(args.students.split(","))
    sets = {"scifact-dev": loaded["scifact-dev"], "builtin-test": loaded["builtin-test"]}
    route.CANDIDATES = {"full": route.CANDIDATES["only:retrieval_entropy"]}   # one (full) document bank
    state = route.encode_students(students, sets, paths, teacher, {"students": {}})
    out: dict[str, dict] = {}
    for (label, st), (set_name, dev) in ((a, b) for a in state.items() for b in sets.items()):
        enc = st["encoded"][set_name]
        model = route.model_for(st, dev.name, route.CANDIDATES["full"])
        keep = enc["calibration_source"] >= 0
        texts = [t for t, k in zip(enc["calibration_texts"], keep, strict=True) if k]
        source = enc["calibration_source"][keep]
        docs = normalize_rows(dev.docs)
        gain = (source_ndcg(enc["calibration_teacher"][keep], docs, source)
                - source_ndcg(enc["calibration"][keep], docs, source))
        span_signals = compute_signals(model, texts, enc["calibration"][keep], SIGNALS,
                                       exclude=source if args.exclude else None)
        query_signals = compute_signals(model, dev.data.query_texts, enc["queries"], SIGNALS)
        # (name, confidence on the spans, confidence on the dev queries): higher = trusted
        scored = [(name, -span_signals[name], -query_signals[name]) for name in SIGNALS]
        # combiners fitted to the pseudo gain on the spans (higher predicted gain = less confident)
        x_span = np.stack([span_signals[n] for n in SIGNALS], axis=1).astype(np.float64)
        x_query = np.stack([query_signals[n] for n in SIGNALS], axis=1).astype(np.float64)
        for cname, cols in (("ridge(gain): cell_margin+entropy", [0, 1]), ("ridge(gain): all six", list(range(6)))):
            z_span, z_query = standardise(x_span[:, cols], x_span[:, cols]), standardise(x_query[:, cols], x_span[:, cols])
            w = combiner_weights(z_span, gain, "ridge", 10.0)
            scored.append((cname, -(z_span @ w), -(z_query @ w)))
        rows: dict[str, dict] = {}
        for name, span_conf, query_conf in scored:
            curves = route.fast_curves(dev, enc, query_conf)
            r = rows[name] = {**{f"pseudo_{int(b * 100)}": recovered(span_conf, gain, b) for b in BUDGETS},
                              **{f"dev_{int(b * 100)}": route.gap_at(curves, b) for b in BUDGETS},
                              "spearman_span_gain": spearman(-span_conf, gain)}
            print(f"{label:13s} {set_name:12s} {name:34s} pseudo {r['pseudo_10']:.3f} / {r['pseudo_20']:.3f}"
                  f"   dev {r['dev_10']:.3f} / {r['dev_20']:.3f}", flush=True)
        singles = {n: rows[n] for n in SIGNALS}
        picked = max(singles, key=lambda n: singles[n]["pseudo_10"] + singles[n]["pseudo_20"])
        best_dev = max(singles, key=lambda n: singles[n]["dev_10"] + singles[n]["dev_20"])
        pseudo_sum = np.array([singles[n]["pseudo_10"] + singles[n]["pseudo_20"] for n in SIGNALS])
        dev_sum = np.array([singles[n]["dev_10"] + singles[n]["dev_20"] for n in SIGNALS])
        out.setdefault(label, {})[set_name] = {
            "calibration_spans": int(keep.sum()), "spans_teacher_ahead": float((gain > 0).mean()),
            "spans_student_ahead": float((gain < 0).mean()), "pseudo_gap": float(gain.mean()),
            "signals": rows, "picked_by_pseudo": picked, "best_on_dev": best_dev,
            "spearman_pseudo_vs_dev_over_signals": spearman(pseudo_sum, dev_sum),
            "picked_minus_default_dev": {f"dev_{int(b * 100)}": rows[picked][f"dev_{int(b * 100)}"]
                                         - rows[DEFAULT][f"dev_{int(b * 100)}"] for b in BUDGETS}}
        print(f"   -> picked {picked} (best on dev: {best_dev}); rank agreement over signals "
              f"{out[label][set_name]['spearman_pseudo_vs_dev_over_signals']:.2f}", flush=True)
    write_result(RESULTS if not args.exclude else RESULTS.with_name("route_pseudo_gain_exclude_dev.json"), {
        "benchmark": "label-free signal choice by the calibration spans' pseudo gain (source document as the "
                     "relevant one), against the labelled dev gap recovered (issue 16), dev only",
        "signals_on_spans": "source excluded" if args.exclude else "source in the bank",
        "seconds": time.time() - started, "students": out})


if __name__ == "__main__":
    main()
