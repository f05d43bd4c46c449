"""Does the teacher budget hold on live traffic? (issue 16, routing)

A router's threshold for a budget was set on span views of the corpus (query stand-ins); on the
built-in data the threshold saved for 10% sent 22.4% of the real test queries to the teacher
(bench/results/demo_route.json). This benchmark measures the share a router ACTUALLY routes
when real queries stream through it, in batches of 1 and of 32, for the fixed threshold and for
the adaptive policies of tava_core/route/threshold.py, and the routed nDCG@10.

Student: `--train-student` trains (or reuses) a static Stage A student of the SciFact corpus
alone (bench/distill.py's static recipe, no passages and no span views, 4 minutes: it needs no
teacher encoding beyond the corpus vectors every routing bench needs); else the bench's static-a
(bench/route.py's, trained from 5,000 generic passages: ~18 CPU-minutes to rebuild, most of it
the teacher embedding the passages) or any `--student DIR`. Routers: signals on the student's own training texts, combiner calibrated on
2,000 span views (seed 1234) of the served corpus against the true top-10 agreement -- what
`tava calibrate-router` does -- with two confidence scores: the product default
(RouterSettings()) and static-a's choice in bench/route.py (retrieval_contrast).

Dev (choose the policy): SciFact train queries (809, SciFact router) and the built-in test
queries (250, a router calibrated on the built-in corpus); file order and 5 seeded shuffles;
budgets 10% and 20%; batches of 1 and 32. The policy with the smallest worst-case |share -
budget| is kept. Then SciFact test (300 queries) once: the real RoutedEncoder streams the queries
(student, confidence, teacher for the routed ones) in file order for the fixed threshold and the
chosen policy; shuffles are replayed on the same scores (simulate_stream: the decisions the
encoder makes). Routed nDCG@10 is computed from the vectors the encoder returned.

    python bench/route_budget.py --train-student   # -> bench/results/route_budget.json
    python bench/route_budget.py --train-student --dev-only --out DEV.json   # the dev selection only
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.route import (  # noqa: E402
    HOME,
    Dataset,
    bench_paths,
    find_students,
    load_datasets,
    reference_texts,
    save_json,
)
from tava_core.encoders import load_encoder  # noqa: E402
from tava_core.home import TavaHome  # noqa: E402
from tava_core.route.build import TextVectors, fit_router  # noqa: E402
from tava_core.route.config import RouterSettings, ThresholdPolicy  # noqa: E402
from tava_core.route.curves import per_query_ndcg, route_lowest  # noqa: E402
from tava_core.route.router import RoutedEncoder, threshold_from  # noqa: E402
from tava_core.route.threshold import simulate_stream  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "route_budget.json"
BUDGETS = (0.1, 0.2)
BATCHES = (1, 32)
SHUFFLES = 5
TARGET = 0.02      # |share routed - budget| the issue asks for
SCORES = {"default": RouterSettings(),
          "retrieval_contrast": RouterSettings(signals=["retrieval_contrast"], vector_components=0)}
POLICIES: dict[str, ThresholdPolicy] = {
    "fixed": ThresholdPolicy(mode="fixed"),
    **{f"adaptive-w{w}-p{p}-f{f:g}": ThresholdPolicy(window=w, prior=p, feedback=f)
       for w in (100, 250, 500, 1000) for p in (0, 20, 50, 200) for f in (0.0, 1.0)},
}


def orders(n: int) -> list[np.ndarray]:
    """File order (how the split lists its queries), then seeded shuffles."""
    return [np.arange(n)] + [np.random.default_rng(seed).permutation(n) for seed in range(1, SHUFFLES + 1)]


def stream_mask(policy: ThresholdPolicy, router: RoutedEncoder, budget: float, scores: np.ndarray,
                order: np.ndarray, batch: int) -> np.ndarray:
    """Routed mask (in the split's query order) when the queries arrive in ``order``."""
    threshold = threshold_from(router.calibration, teacher_budget=budget)
    routed = simulate_stream(policy, budget, router.calibration.quantiles, scores[order], batch, threshold.threshold)
    mask = np.zeros(len(scores), dtype=bool)
    mask[order] = routed
    return mask


class Served:
    """One router (student + confidence score + served corpus) and its per-query facts on a split."""

    def __init__(self, router: RoutedEncoder, dataset: Dataset, student_queries: np.ndarray) -> None:
        data = dataset.data
        self.router, self.dataset = router, dataset
        self.scores = router.confidence(data.query_texts, student_queries)
        self.student_ndcg = per_query_ndcg(student_queries, dataset.docs, data.query_ids, data.corpus_ids, data.qrels)
        self.teacher_ndcg = per_query_ndcg(dataset.queries, dataset.docs, data.query_ids, data.corpus_ids, data.qrels)

    def routed_ndcg(self, mask: np.ndarray) -> float:
        return float(np.where(mask, self.teacher_ndcg, self.student_ndcg).mean())


def make_router(student, teacher, reference: TextVectors, dataset: Dataset, calibration_student: np.ndarray,
                settings: RouterSettings, name: str) -> RoutedEncoder:
    calibration = TextVectors(dataset.calibration_texts, calibration_student, dataset.calibration_teacher)
    model, fitted = fit_router(reference, calibration, dataset.docs, settings)
    return RoutedEncoder(student, teacher, model, fitted, threshold_from(fitted, teacher_budget=BUDGETS[0]),
                         weights_sha256=name, name=name, routing=ThresholdPolicy(mode="fixed"))


def evaluate_policy(policy: ThresholdPolicy, served: Served) -> dict[str, Any]:
    """Share routed and routed nDCG@10 per budget and batch size over the orders."""
    out: dict[str, Any] = {}
    for budget in BUDGETS:
        for batch in BATCHES:
            shares, ndcgs = [], []
            for order in orders(len(served.scores)):
                mask = stream_mask(policy, served.router, budget, served.scores, order, batch)
                shares.append(float(mask.mean()))
                ndcgs.append(served.routed_ndcg(mask))
            out[f"{budget:g}@{batch}"] = {
                "share_file_order": shares[0], "share_min": min(shares), "share_max": max(shares),
                "worst_error": max(abs(s - budget) for s in shares),
                "ndcg10_file_order": ndcgs[0], "ndcg10_mean": float(np.mean(ndcgs))}
    return out


def summarise(per: dict[str, Any]) -> dict[str, float]:
    cells = [cell for split in per.values() for score in split.values() for cell in score.values()]
    return {"worst_error": max(c["worst_error"] for c in cells),
            "mean_worst_error": float(np.mean([c["worst_error"] for c in cells]))}


def stream_for_real(router: RoutedEncoder, served: Served, budget: float, batch: int,
                    policy: ThresholdPolicy) -> dict[str, Any]:
    """The queries through the real encoder, in file order, ``batch`` at a time."""
    live = router.with_budget(budget, routing=policy)
    texts = served.dataset.data.query_texts
    vectors, routed = [], []
    started = time.perf_counter()
    for start in range(0, len(texts), batch):
        out = live.route(texts[start:start + batch], batch_size=batch)
        vectors.append(out["vectors"])
        routed.append(out["routed"])
    seconds = time.perf_counter() - started
    q, mask = np.concatenate(vectors), np.concatenate(routed)
    data = served.dataset.data
    ndcg = per_query_ndcg(q, served.dataset.docs, data.query_ids, data.corpus_ids, data.qrels)
    replay = stream_mask(policy, router, budget, served.scores, np.arange(len(texts)), batch)
    return {"share_routed": float(mask.mean()), "error": float(mask.mean() - budget),
            "routed_ndcg10": float(ndcg.mean()), "encoder_routed_share": live.routed_share,
            "replay_agrees": float((replay == mask).mean()), "seconds": seconds,
            "load_average": os.getloadavg()}


STUDENT_NAME = "route-budget-static-corpus"


def train_corpus_student(home: TavaHome) -> Path:
    """A static Stage A student of the SciFact corpus alone (no passages, no span views: the
    teacher's corpus vectors, which every routing bench needs anyway, are all it trains on),
    bench/distill.py's static recipe with a 4-minute budget; cached in the bench home. What this
    benchmark uses when the bench's static-a cannot be rebuilt in time (its 5,000 passages need
    the teacher first)."""
    from tava_core.distill import DistillConfig, distill

    config = DistillConfig(name=STUDENT_NAME, datasets=[str(home.dataset_dir("scifact"))], collections=["corpus"],
                           span_views=0, student="static", lr=5e-3, batch_size=128, projection=True, alpha_cos=1.0,
                           alpha_mse=0.0, max_length=256, steps=1500, time_budget_minutes=4.0, eval_every=100,
                           checkpoint_every=300, patience=4, warmup_steps=150, validation_fraction=0.04,
                           max_epochs=50, threads=1, seed=0)
    return Path(distill(config, home, progress=True).output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", default=None, help="student directory (default: the bench's static-a)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--dev-only", action="store_true", help="stop after the dev selection")
    parser.add_argument("--train-student", action="store_true",
                        help=f"train (or reuse) the static SciFact-corpus student {STUDENT_NAME} and use it")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    started, load_start = time.time(), os.getloadavg()
    teacher = load_encoder("all-MiniLM-L6-v2")
    home = TavaHome(HOME)
    paths = bench_paths(home, teacher)
    student_dir = (train_corpus_student(home) if args.train_student else Path(args.student) if args.student
                   else find_students().get("static-a"))
    if student_dir is None:
        raise SystemExit(f"no static-a student under {HOME}/artifacts/students: see bench/route.py's docstring")
    datasets = load_datasets(paths, teacher)
    student = load_encoder(str(student_dir), cache=False)
    ref = reference_texts(student_dir, paths, teacher)
    if ref is None:
        # never trained on any text (e.g. the teacher's own token table, bench/route.py's static-te0):
        # the "seen" manifold is the odd half of the SciFact calibration spans, as bench/route.py does
        spans = datasets["scifact-dev"]
        ref = (spans.calibration_texts[1::2], spans.calibration_teacher[1::2])
    reference = TextVectors(ref[0], student.encode(ref[0], kind="document"), ref[1])
    report: dict[str, Any] = {
        "benchmark": "share of live queries routed to the teacher vs the budget (issue 16)",
        "student": str(student_dir), "budgets": list(BUDGETS), "batch_sizes": list(BATCHES),
        "orders": f"file order + {SHUFFLES} seeded shuffles", "target": f"|share - budget| <= {TARGET}",
        "scores": {k: v.model_dump(mode="json") for k, v in SCORES.items()},
        "policies": {k: v.model_dump(mode="json") for k, v in POLICIES.items()},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average_at_start": load_start},
        "dev": {}, "test": {}}
    served: dict[str, dict[str, Served]] = {}
    calib_student = {name: student.encode(ds.calibration_texts, kind="query") for name, ds in
                     (("scifact", datasets["scifact-dev"]), ("builtin", datasets["builtin-test"]))}
    for score_name, settings in SCORES.items():
        routers = {name: make_router(student, teacher, reference, datasets[split], calib_student[name], settings,
                                     f"{score_name}-{name}")
                   for name, split in (("scifact", "scifact-dev"), ("builtin", "builtin-test"))}
        for split, ds in datasets.items():
            router = routers[ds.name]
            served.setdefault(split, {})[score_name] = Served(router, ds, student.encode(ds.data.query_texts,
                                                                                          kind="query"))
    # ---- dev: which policy holds the budget (SciFact train queries + built-in test queries)
    dev_splits = ("scifact-dev", "builtin-test")
    for name, policy in POLICIES.items():
        per = {split: {score: evaluate_policy(policy, served[split][score]) for score in SCORES} for split in dev_splits}
        report["dev"][name] = {"summary": summarise(per), **per}
    ranked = sorted(POLICIES, key=lambda n: (round(report["dev"][n]["summary"]["worst_error"], 4),
                                             report["dev"][n]["summary"]["mean_worst_error"]))
    chosen = ranked[0]
    report["dev_ranking"] = [(n, report["dev"][n]["summary"]) for n in ranked[:10]] + [
        ("fixed", report["dev"]["fixed"]["summary"])]
    report["chosen"] = {"policy": chosen, **POLICIES[chosen].model_dump(mode="json")}
    print(json.dumps(report["dev_ranking"], indent=1), flush=True)
    # drift on dev: SciFact-calibrated router, SciFact train traffic then the built-in queries
    drift: dict[str, Any] = {}
    for score in SCORES:
        sci, other = served["scifact-dev"][score], served["builtin-test"][score]
        other_scores = sci.router.confidence(other.dataset.data.query_texts,
                                             student.encode(other.dataset.data.query_texts, kind="query"))
        stream = np.concatenate([sci.scores, other_scores])
        for name in ("fixed", chosen):
            mask = stream_mask(POLICIES[name], sci.router, 0.1, stream, np.arange(len(stream)), 1)
            drift.setdefault(score, {})[name] = {"scifact_dev_share": float(mask[:len(sci.scores)].mean()),
                                                 "builtin_share": float(mask[len(sci.scores):].mean()),
                                                 "total_share": float(mask.mean())}
        threshold = threshold_from(sci.router.calibration, teacher_budget=0.1).threshold
        drift[score]["low_confidence_share_under_calibrated_threshold"] = {
            "scifact_dev": float((sci.scores < threshold).mean()), "builtin": float((other_scores < threshold).mean())}
    report["dev_drift_stream"] = drift
    if args.dev_only:
        report["total_seconds"] = time.time() - started
        save_json(Path(args.out), report)
        return
    # ---- test once: SciFact test, the real encoder streaming in file order + replayed shuffles
    for score in SCORES:
        s = served["scifact-test"][score]
        entry: dict[str, Any] = {"student_ndcg10": float(s.student_ndcg.mean()),
                                 "teacher_ndcg10": float(s.teacher_ndcg.mean())}
        for budget in BUDGETS:
            entry[f"exact_share_{budget:g}_ndcg10"] = s.routed_ndcg(route_lowest(s.scores, budget))
        for name in ("fixed", chosen):
            policy = POLICIES[name]
            real = {f"{budget:g}@{batch}": stream_for_real(s.router, s, budget, batch, policy)
                    for budget in BUDGETS for batch in BATCHES}
            entry[name] = {"streamed": real, "shuffles_replayed": evaluate_policy(policy, s)}
        report["test"][score] = entry
    targets = {}
    for score, entry in report["test"].items():
        for key, cell in entry[chosen]["streamed"].items():
            worst = entry[chosen]["shuffles_replayed"][key]["worst_error"]
            # within +-2 points inclusive: 54 of 300 queries at a 20% budget is exactly -2.00 points
            targets[f"{score} {key}"] = {"share": cell["share_routed"], "error": cell["error"],
                                         "met": abs(cell["error"]) <= TARGET + 1e-9, "worst_error_over_orders": worst,
                                         "met_over_orders": worst <= TARGET + 1e-9,
                                         "fixed_share": entry["fixed"]["streamed"][key]["share_routed"]}
    report["targets"] = targets
    report["machine"]["load_average_at_end"] = os.getloadavg()
    report["total_seconds"] = time.time() - started
    save_json(Path(args.out), report)
    print(json.dumps(targets, indent=1))


if __name__ == "__main__":
    main()
