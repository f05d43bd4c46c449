"""Dev probe for issue 16: does a learned per-word trust table (tava_core/route/trust.py) tell
which queries a static student gets wrong, beside the signals bench/route.py chose between?

DEV ONLY: SciFact's 809 train queries (and the built-in data's queries as a second corpus, to
check that a setting chosen on SciFact transfers); test is never read here. The router pieces
are bench/route.py's (same students, same calibration spans, same combiner fit); the word trust
is fitted on span views of the served corpus against the student's true top-10 agreement with
the teacher, cross-fitted so the combiner never sees a span's own agreement in its feature.

    python bench/route_trust.py --students static-a            # -> bench/results/route_trust_dev.json
"""
from __future__ import annotations

import argparse
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
from tava_core.distill.spans import make_spans  # noqa: E402
from tava_core.home import TavaHome  # noqa: E402
from tava_core.route.calibrate import features_from_signals, fit_calibration, spearman, true_agreement  # noqa: E402
from tava_core.route.signals import SIGNAL_NAMES, compute_signals  # noqa: E402
from tava_core.route.trust import cross_fitted_trust, word_trust_signal  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "route_trust_dev.json"
FIXED_SIGNALS = [n for n in SIGNAL_NAMES if n != "word_trust"]     # the ones a signal model computes alone

# signal sets the word trust joins (bench/route.py's names; [] = word trust alone)
BASES: dict[str, list[str]] = {
    "none": [],
    "retrieval_contrast": ["retrieval_contrast"],
    "retrieval_entropy": ["retrieval_entropy"],
    "default": list(R.DEFAULT_SIGNALS),
    "words": list(R.WORDS),
    "retrieval": list(R.RETRIEVAL),
    "all": R.TEXT + R.RETRIEVAL,
}


def spans_of(dataset: R.Dataset, n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """``n`` span views of the served corpus (``views`` per document as needed) and their source rows."""
    source = dataset.data
    views = max(1, -(-n // len(source.corpus_ids)))
    ids, texts = make_spans(source.corpus_ids, source.document_texts, views, seed=seed)
    pick = np.sort(np.random.default_rng(seed).choice(len(texts), size=min(n, len(texts)), replace=False))
    row = {d: k for k, d in enumerate(source.corpus_ids)}
    return [texts[i] for i in pick], np.array([row.get(ids[i].rsplit("#span", 1)[0], -1) for i in pick])


def probe(label: str, st: dict[str, Any], dataset: R.Dataset, enc: dict[str, Any], teacher, sizes: list[int],
          ridges: list[float]) -> dict[str, Any]:
    model = st["models"][dataset.name][R.FULL_BANK]
    out: dict[str, Any] = {}
    base_calib = compute_signals(model, enc["calibration_texts"], enc["calibration"], FIXED_SIGNALS)
    base_query = compute_signals(model, dataset.data.query_texts, enc["queries"], FIXED_SIGNALS)
    q_agree = true_agreement(enc["queries"], dataset.queries, dataset.docs)["overlap"]
    calib_agree = true_agreement(enc["calibration"], enc["calibration_teacher"], dataset.docs)
    for n in sizes:
        # the trust spans: the calibration spans plus more views of the corpus (other seed)
        extra_texts, _ = spans_of(dataset, max(n - len(enc["calibration_texts"]), 0), seed=4321)
        texts = list(enc["calibration_texts"]) + extra_texts[:max(n - len(enc["calibration_texts"]), 0)]
        student = np.concatenate([enc["calibration"], st["encoder"].encode(texts[len(enc["calibration"]):],
                                                                            kind="query")]) \
            if len(texts) > len(enc["calibration"]) else enc["calibration"]
        truth = np.concatenate([enc["calibration_teacher"],
                                R.teacher_vectors(teacher, texts[len(enc["calibration"]):], f"{dataset.name}-trust")]) \
            if len(texts) > len(enc["calibration"]) else enc["calibration_teacher"]
        agree = true_agreement(student, truth, dataset.docs)["overlap"]
        for ridge in ridges:
            started = time.time()
            signal, table = cross_fitted_trust(texts, agree, ridge=ridge)
            calib_trust = signal[:len(enc["calibration_texts"])]     # out-of-fold values of the calibration spans
            query_trust = word_trust_signal(table, dataset.data.query_texts)
            key = f"spans{n}/ridge{ridge:g}"
            row: dict[str, Any] = {"fit_seconds": time.time() - started,
                                   "spearman_query_word_trust": spearman(-query_trust, q_agree),
                                   "spearman_calibration_out_of_fold": spearman(-calib_trust, calib_agree["overlap"]),
                                   "candidates": {}}
            for base, signals in BASES.items():
                for with_trust in (False, True):
                    if not with_trust and (base == "none" or n != sizes[0] or ridge != ridges[0]):
                        continue
                    names = signals + (["word_trust"] if with_trust else [])
                    calib_values = {**base_calib, "word_trust": calib_trust}
                    query_values = {**base_query, "word_trust": query_trust}
                    features = features_from_signals(model, calib_values, enc["calibration"], names, 0)
                    calibration = fit_calibration(model, enc["calibration_texts"], enc["calibration"], calib_agree,
                                                  signals=names, features=features)
                    scores = calibration.confidence_from_features(
                        features_from_signals(model, query_values, enc["queries"], names, 0))
                    curves = R.fast_curves(dataset, enc, scores)
                    name = f"{base}+word_trust" if with_trust else base
                    row["candidates"][name] = {
                        "gap_recovered_10": R.gap_at(curves, 0.1), "gap_recovered_20": R.gap_at(curves, 0.2),
                        "label_free_oracle_10": R.gap_at(curves, 0.1, "label_free_oracle"),
                        "label_free_oracle_20": R.gap_at(curves, 0.2, "label_free_oracle"),
                        "random_10": R.gap_at(curves, 0.1, "random"), "random_20": R.gap_at(curves, 0.2, "random"),
                        "spearman_overlap": curves["confidence_spearman"]["overlap"]}
                    c = row["candidates"][name]
                    print(f"{label} {dataset.name} {key:22s} {name:32s} gap10 {c['gap_recovered_10']:.3f} "
                          f"gap20 {c['gap_recovered_20']:.3f} (oracle {c['label_free_oracle_10']:.3f} / "
                          f"{c['label_free_oracle_20']:.3f}) rho {c['spearman_overlap']:.3f}", flush=True)
            out[key] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", default="static-a")
    parser.add_argument("--sizes", default="2000,6000,12000", help="trust spans (the 2,000 calibration spans first)")
    parser.add_argument("--ridges", default="1,3,10,30")
    parser.add_argument("--datasets", default="scifact-dev,builtin-test",
                        help="dev splits: SciFact train queries; the built-in data (a second corpus)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    started = time.time()
    teacher = R.load_encoder("all-MiniLM-L6-v2")
    home = TavaHome(R.HOME)
    paths = R.bench_paths(home, teacher)
    datasets = R.load_datasets(paths, teacher)
    datasets = {k: v for k, v in datasets.items() if k in args.datasets.split(",")}
    students = {k: v for k, v in R.find_students().items() if k in args.students.split(",")}
    if not students:
        raise SystemExit(f"no students {args.students} under {R.HOME}/artifacts/students (see bench/route.py)")
    report: dict[str, Any] = {"benchmark": "word trust as a routing signal (issue 16), dev only",
                              "machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()},
                              "students": {}, "results": {}}
    state = R.encode_students(students, datasets, paths, teacher, report)
    sizes = [int(s) for s in args.sizes.split(",")]
    ridges = [float(r) for r in args.ridges.split(",")]
    for label, st in state.items():
        for name, dataset in datasets.items():
            report["results"].setdefault(label, {})[name] = probe(label, st, dataset, st["encoded"][name], teacher,
                                                                  sizes, ridges)
    report["total_seconds"] = time.time() - started
    R.save_json(Path(args.out), report)
    print(json.dumps({"out": args.out, "seconds": report["total_seconds"]}))


if __name__ == "__main__":
    main()
