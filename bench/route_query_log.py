"""Router calibration on a query log (issue 16): real query texts instead of span views of the corpus.

`bench/route.py` calibrates every router on span views of the served corpus, query stand-ins cut
from documents. A BEIR collection also ships the texts of its other splits' queries (what `tava run`
trains Stage A on since session 53): real queries of the same traffic, with no labels. Their true
agreement with the teacher (top-10 overlap over the corpus) needs only the teacher, run offline, so a
router can be calibrated on them label-free. This measures whether that routes better.

Calibration texts compared, per student (route.py's four Stage A students of all-MiniLM-L6-v2) and per
candidate (route.py's CANDIDATES: signal set x combiner x document bank):
  spans      route.py's 2,000 span views of the corpus (seed 1234)
  log        the query log's texts
  spans+log  both

Dev (the default): SciFact's 809 train queries in two folds (seed 0). Each fold is scored by a router
calibrated on the other fold's texts (the log) and the two folds' confidences make one curve over the
809 queries; ``spans`` scores every query with one router. One (candidate, source) per student is chosen
on dev by the gap recovered at 10% + 20% (route.py's rule, cost not re-measured: no static candidate
met the cost target in route.py either). ``--phase test`` then scores SciFact's 300 test queries once,
calibrated on the 809 train queries' texts (exactly the log a `tava run` of the test split takes), with
the choice read from the dev JSON. Nothing else is tuned. Also reported: the share of the scored queries
that falls under the router's 10%-budget threshold (a fixed threshold is only right when the
calibration texts look like the traffic).

    python bench/route_query_log.py                  # -> bench/results/route_query_log_dev.json
    python bench/route_query_log.py --phase test     # -> bench/results/route_query_log_test.json

Needs route.py's students and distill_data.py's SciFact vectors (bench/README.md, issue 16 section).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.route import (  # noqa: E402  (sets the offline environment and the bench home)
    CANDIDATES,
    FIXED_SIGNALS,
    dev_bench_inputs,
    encode_students,
    gap_at,
    model_for,
    save_json,
)
from tava_core.route.calibrate import features_from_signals, fit_calibration, spearman, true_agreement  # noqa: E402
from tava_core.route.curves import per_query_ndcg, routing_curves  # noqa: E402
from tava_core.route.signals import compute_signals  # noqa: E402
from tava_core.route.trust import cross_fitted_trust, word_trust_signal  # noqa: E402

RESULTS = ROOT / "bench" / "results"
# route.py's candidates but its "/loo" ones: leaving a span's source document out fixes a span-only
# artefact, and a query has no source document
CANDIDATE_NAMES = [name for name, c in CANDIDATES.items() if not c["exclude_source"]]
SOURCES = ("spans", "log", "spans+log")
FOLDS = 2


class TextSet:
    """Texts with the student's and the teacher's vectors, their true agreement and (lazily, per
    document bank) every fixed signal: computed once, sliced by the folds."""

    def __init__(self, texts: Sequence[str], student: np.ndarray, teacher: np.ndarray, docs: np.ndarray,
                 source_rows: np.ndarray | None = None):
        self.texts, self.student, self.teacher = list(texts), student, teacher
        self.source_rows = source_rows
        self.agreement = true_agreement(student, teacher, docs)
        self._signals: dict[tuple, dict[str, np.ndarray]] = {}

    def signals(self, model, bank: tuple) -> dict[str, np.ndarray]:
        if bank not in self._signals:
            self._signals[bank] = compute_signals(model, self.texts, self.student, FIXED_SIGNALS)
        return self._signals[bank]

    def take(self, rows: np.ndarray) -> "Part":
        return Part(self, rows)


class Part:
    """Rows of a TextSet (a fold), or the concatenation of several."""

    def __init__(self, base: TextSet | None, rows: np.ndarray | None, pieces: list["Part"] | None = None):
        self.pieces = pieces or [self]
        self.base, self.rows = base, rows

    def __add__(self, other: "Part") -> "Part":
        return Part(None, None, self.pieces + other.pieces)

    def texts(self) -> list[str]:
        return [p.base.texts[i] for p in self.pieces for i in p.rows.tolist()]

    def student(self) -> np.ndarray:
        return np.concatenate([p.base.student[p.rows] for p in self.pieces])

    def overlap(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate([p.base.agreement[k][p.rows] for p in self.pieces]) for k in ("cosine", "overlap")}

    def signals(self, model, bank: tuple) -> dict[str, np.ndarray]:
        parts = [p.base.signals(model, bank) for p in self.pieces]
        return {k: np.concatenate([s[k][p.rows] for s, p in zip(parts, self.pieces, strict=True)]) for k in parts[0]}


def confidence_on(model, candidate: dict[str, Any], calibrate_on: Part, score: Part) -> tuple[np.ndarray, Any]:
    """A router fitted as fit_router fits it (word_trust cross-fitted on the calibration texts),
    calibrated on ``calibrate_on``, scoring ``score``."""
    bank = candidate["bank"]
    agreement = calibrate_on.overlap()
    values = calibrate_on.signals(model, bank)
    texts = calibrate_on.texts()
    if "word_trust" in candidate["signals"]:
        trust, model.word_trust = cross_fitted_trust(texts, agreement["overlap"])
        values = {**values, "word_trust": trust}
    features = features_from_signals(model, values, calibrate_on.student(), candidate["signals"],
                                     candidate["vector_components"])
    calibration = fit_calibration(model, texts, calibrate_on.student(), agreement, signals=candidate["signals"],
                                  vector_components=candidate["vector_components"], target="overlap",
                                  combiner=candidate["combiner"], features=features)
    query_values = score.signals(model, bank)
    if "word_trust" in candidate["signals"]:
        query_values = {**query_values, "word_trust": word_trust_signal(model.word_trust, score.texts())}
    x = features_from_signals(model, query_values, score.student(), candidate["signals"], candidate["vector_components"])
    return calibration.confidence_from_features(x), calibration


def curves(queries: TextSet, scores: np.ndarray, student_ndcg: np.ndarray, teacher_ndcg: np.ndarray,
           resamples: int) -> dict[str, Any]:
    out = routing_curves(student_ndcg=student_ndcg, teacher_ndcg=teacher_ndcg,
                         student_overlap=queries.agreement["overlap"], confidence=scores,
                         lengths=np.array([len(t.split()) for t in queries.texts]),
                         agreement=queries.agreement["overlap"] + 1e-3 * queries.agreement["cosine"],
                         bootstrap_resamples=resamples)
    out["confidence_spearman_with_true_overlap"] = spearman(scores, queries.agreement["overlap"])
    return out


def summary(c: dict[str, Any], thresholds_share: float | None = None) -> dict[str, Any]:
    rows = {r["share"]: r for r in c["rows"]}
    out = {f"gap_recovered_{int(s * 100)}": gap_at(c, s) for s in (0.1, 0.2)}
    out.update({f"ratio_to_random_{int(s * 100)}": rows[s]["router_over_random_gap_ratio"] for s in (0.1, 0.2)})
    out.update({f"label_free_oracle_{int(s * 100)}": gap_at(c, s, "label_free_oracle") for s in (0.1, 0.2)})
    out["spearman"] = c["confidence_spearman_with_true_overlap"]
    if thresholds_share is not None:
        out["share_under_10pct_threshold"] = thresholds_share
    return out


def student_inputs(st: dict[str, Any], dataset, split_name: str, texts_spans: TextSet | None) -> dict[str, Any]:
    enc = st["encoded"][split_name]
    queries = TextSet(dataset.data.query_texts, enc["queries"], dataset.queries, dataset.docs)
    spans = texts_spans or TextSet(enc["calibration_texts"], enc["calibration"], enc["calibration_teacher"],
                                   dataset.docs)
    return {"queries": queries, "spans": spans,
            "student_ndcg": per_query_ndcg(enc["queries"], dataset.docs, dataset.data.query_ids,
                                           dataset.data.corpus_ids, dataset.data.qrels),
            "teacher_ndcg": per_query_ndcg(dataset.queries, dataset.docs, dataset.data.query_ids,
                                           dataset.data.corpus_ids, dataset.data.qrels)}


def dev(state: dict, datasets: dict, report: dict[str, Any]) -> None:
    dataset = datasets["scifact-dev"]
    n = len(dataset.data.query_ids)
    fold = np.random.default_rng(0).permutation(n) % FOLDS
    report["folds"] = {"count": FOLDS, "seed": 0, "sizes": [int((fold == k).sum()) for k in range(FOLDS)]}
    for label, st in state.items():
        inputs = student_inputs(st, dataset, "scifact-dev", None)
        queries, spans = inputs["queries"], inputs["spans"]
        all_spans = spans.take(np.arange(len(spans.texts)))
        per: dict[str, Any] = {}
        for cname in CANDIDATE_NAMES:
            candidate = CANDIDATES[cname]
            model = model_for(st, "scifact", candidate)
            per[cname] = {}
            for source in SOURCES:
                scores = np.empty(n)
                under = 0
                for k in range(FOLDS):
                    held, other = np.flatnonzero(fold == k), np.flatnonzero(fold != k)
                    calibrate_on = {"spans": all_spans, "log": queries.take(other),
                                    "spans+log": all_spans + queries.take(other)}[source]
                    scores[held], calibration = confidence_on(model, candidate, calibrate_on, queries.take(held))
                    under += int((scores[held] < calibration.threshold_for_budget(0.1)).sum())
                c = curves(queries, scores, inputs["student_ndcg"], inputs["teacher_ndcg"], 200)
                per[cname][source] = summary(c, under / n)
            print(f"  {label} {cname:44s} " + "  ".join(
                f"{s} {per[cname][s]['gap_recovered_10']:.3f}/{per[cname][s]['gap_recovered_20']:.3f}"
                for s in SOURCES), flush=True)
        score = {(c, s): v[s]["gap_recovered_10"] + v[s]["gap_recovered_20"] for c, v in per.items() for s in SOURCES}
        best = max(score, key=score.__getitem__)
        best_spans = max((k for k in score if k[1] == "spans"), key=score.__getitem__)
        route_choice = report["route_json_choice"].get(label)
        report["dev"][label] = {
            "candidates": per,
            "chosen": {"candidate": best[0], "source": best[1], "score": score[best]},
            "best_with_spans": {"candidate": best_spans[0], "score": score[best_spans]},
            "route_json_choice": route_choice,
            "route_json_choice_by_source": per[route_choice] if route_choice in per else None,
            "best_per_source": {s: dict(zip(("candidate", "score"), max(
                ((c, v) for (c, src), v in score.items() if src == s), key=lambda t: t[1]), strict=True))
                for s in SOURCES}}
        print(f"chosen on dev for {label}: {best} ({score[best]:.3f}; best on spans {best_spans} "
              f"{score[best_spans]:.3f})", flush=True)


def test(state: dict, datasets: dict, report: dict[str, Any], chosen: dict[str, dict[str, str]]) -> None:
    dataset, log = datasets["scifact-test"], datasets["scifact-dev"]
    for label, st in state.items():
        inputs = student_inputs(st, dataset, "scifact-test", None)
        enc_log = st["encoded"]["scifact-dev"]
        # the log: the 809 train queries' texts with the student's and the teacher's vectors (no labels)
        log_set = TextSet(log.data.query_texts, enc_log["queries"], log.queries, dataset.docs)
        spans, queries = inputs["spans"], inputs["queries"]
        all_spans = spans.take(np.arange(len(spans.texts)))
        all_log = log_set.take(np.arange(len(log_set.texts)))
        out: dict[str, Any] = {}
        pick = chosen[label]
        for role, (cname, source) in {"chosen_on_dev": (pick["candidate"], pick["source"]),
                                      "route_json_choice_spans": (report["route_json_choice"][label], "spans")}.items():
            candidate = CANDIDATES[cname]
            model = model_for(st, "scifact", candidate)
            calibrate_on = {"spans": all_spans, "log": all_log, "spans+log": all_spans + all_log}[source]
            scores, calibration = confidence_on(model, candidate, calibrate_on, queries.take(np.arange(len(queries.texts))))
            c = curves(queries, scores, inputs["student_ndcg"], inputs["teacher_ndcg"], 2000)
            out[role] = {"candidate": cname, "source": source, "calibration_texts": len(calibrate_on.texts()),
                         **summary(c, float((scores < calibration.threshold_for_budget(0.1)).mean())),
                         "curves": c}
        report["test"][label] = out
        print(f"{label}: test " + "  ".join(f"{r} {v['candidate']}/{v['source']} {v['gap_recovered_10']:.3f}/"
                                              f"{v['gap_recovered_20']:.3f} (x{v['ratio_to_random_10']:.2f}/"
                                              f"x{v['ratio_to_random_20']:.2f})" for r, v in out.items()), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", choices=("dev", "test"), default="dev")
    parser.add_argument("--students", default="static-a,static-b,transformer-a,transformer-b")
    parser.add_argument("--dev-json", default=str(RESULTS / "route_query_log_dev.json"),
                        help="with --phase test: the dev run whose choices are scored")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    started = time.time()
    labels = args.students.split(",")
    teacher, paths, datasets, students = dev_bench_inputs(labels)
    datasets = {k: v for k, v in datasets.items() if k.startswith("scifact")}   # the built-in data has one split
    route_json = json.loads((RESULTS / "route.json").read_text())
    report: dict[str, Any] = {
        "benchmark": "router calibration on the query log's texts vs span views (issue 16)",
        "phase": args.phase, "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                         "load_average_at_start": os.getloadavg()},
        "sources": {"spans": "route.py's 2,000 span views of the SciFact corpus (seed 1234)",
                    "log": "dev: the other fold's train-query texts; test: the 809 train-query texts",
                    "spans+log": "both"},
        "route_json_choice": {k: v["candidate"] for k, v in route_json["chosen"].items()},
        "students": {}, "dev": {}, "test": {}}
    state = encode_students(students, datasets, paths, teacher, report)
    if args.phase == "dev":
        dev(state, datasets, report)
    else:
        chosen = {label: v["chosen"] for label, v in json.loads(Path(args.dev_json).read_text())["dev"].items()}
        report["chosen_on_dev_from"] = str(Path(args.dev_json).relative_to(ROOT))
        test(state, datasets, report, chosen)
    report["total_seconds"] = time.time() - started
    report["machine"]["load_average_at_end"] = os.getloadavg()
    out = Path(args.out or RESULTS / f"route_query_log_{args.phase}.json")
    save_json(out, report)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
