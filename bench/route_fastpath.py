"""Where a routed static query's time goes, and what the compiled confidence (issue 16's cost target).

Target: for the static student, a query the router does NOT send to the teacher costs <= 2x the
static student alone (bench/results/route_cost_run1.json: 2.2-2.5x at batch 64, 6.1-6.8x at
batch 1 with the reference confidence path).

Routers (bench/route_fastpath_data.py: a static student of all-MiniLM-L6-v2, signals fitted on
generic passages, the SciFact corpus as the document bank, calibrated on span views): the
product default score (RouterSettings()), static-a's choice in bench/route.py
(``retrieval_contrast``, full bank), static-b's (``retrieval_entropy``) and two cheaper banks.

1. ``breakdown``: per query, at batch 1 and 64, the student's parts (tokeniser, the rest), each
   signal of the reference path alone, the feature matrix and combiner, ``RoutedEncoder.route``'s
   own overhead, the adaptive threshold; plus a cProfile of the reference route at batch 1.
2. ``compare``: the student alone and three paths through the real ``RoutedEncoder.route``:
   ``reference`` (``fast_path=False``: calibrate.confidence after the student's encode),
   ``compiled`` (fast.py after the student's encode, ``fuse_static=False``) and ``fast`` (the
   default: fused.py, the student's vectors and the confidence from one token pass), timed
   interleaved in the same rounds (bench/route_cost.py: rotating order, median of per-round
   ratios, best-of-rounds, interquartile range, load average), at batch 1 (64 queries one by one)
   and 64 (256 queries), once on the wall clock and once on this process' CPU time (the machine
   is shared: CPU time leaves out the time other processes hold the core). Every router has a
   budget of 0, so every query takes the path of a query not sent to the teacher; the adaptive
   threshold's decision is timed beside it and added (``*_adaptive_over_student``).
   ``agreement`` first checks that the paths give the same confidence (largest difference), the
   same routing at the 10% and 20% thresholds and the same vectors.

Development runs on SciFact train queries (``--split dev``); the reported figures on the test
queries, once (``--split test``).

    python bench/route_fastpath.py --split test    # -> bench/results/route_fastpath.json
"""
from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.route_cost import interleaved_seconds, ratio  # noqa: E402
from bench.route_fastpath_data import Fixture, build_fixture  # noqa: E402
from bench.shared_data import split_results, write_result  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "route_fastpath.json"
ROUNDS = 15
BATCHES = {1: 64, 64: 256}          # batch size -> queries per round


def router_settings() -> dict[str, Any]:
    from tava_core.route.config import RouterSettings

    contrast, entropy = ["retrieval_contrast"], ["retrieval_entropy"]
    return {"default": RouterSettings(),
            "retrieval_contrast": RouterSettings(signals=contrast, vector_components=0),
            "retrieval_entropy": RouterSettings(signals=entropy, vector_components=0),
            "retrieval_contrast@1024x0": RouterSettings(signals=contrast, vector_components=0, doc_bank_size=1024),
            "retrieval_entropy@2048x64": RouterSettings(signals=entropy, vector_components=0, doc_bank_size=2048,
                                                        doc_pca_dim=64),
            # static-a's choice in bench/route.json: two-stage bank, 64-d PCA first stage, 200 rescored
            "retrieval_entropy@8192x64r200": RouterSettings(signals=entropy, vector_components=0, doc_pca_dim=64,
                                                            doc_rescore=200),
            # clustered banks: a query scores only its nearest clusters' documents, exactly
            **{f"retrieval_entropy@c{c}p{p}": RouterSettings(signals=entropy, vector_components=0, doc_clusters=c,
                                                              doc_probe=p)
               for c, p in ((64, 4), (64, 8), (128, 8))}}


def build_routers(fx: Fixture, names: Sequence[str],
                  settings: dict[str, Any] | None = None) -> tuple[Any, dict[str, dict[str, Any]]]:
    """Per score (a name of ``settings``, by default ``router_settings()``): the signal model, the
    calibration, and three router encoders -- reference confidence, compiled confidence after the
    student's own encode, and the fused static path (the default) -- each with a budget of 0 and the
    fixed policy: nothing goes to the teacher."""
    from tava_core.encoders import load_encoder
    from tava_core.route.build import TextVectors, fit_router
    from tava_core.route.config import ThresholdPolicy
    from tava_core.route.router import RoutedEncoder, threshold_from

    student = load_encoder(str(fx.student_dir), cache=False)
    teacher = load_encoder("all-MiniLM-L6-v2")
    reference = TextVectors(fx.reference_texts, student.encode(fx.reference_texts), fx.reference_teacher)
    calibration = TextVectors(fx.calibration_texts, student.encode(fx.calibration_texts, kind="query"),
                              fx.calibration_teacher)
    settings = settings or router_settings()
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        model, fitted = fit_router(reference, calibration, fx.documents, settings[name])

        def router(fast: bool, fuse: bool = True, model=model, fitted=fitted) -> RoutedEncoder:
            return RoutedEncoder(student, teacher, model, fitted, threshold_from(fitted, teacher_budget=0.0),
                                 weights_sha256="bench", name="bench", routing=ThresholdPolicy(mode="fixed"),
                                 fast_path=fast, fuse_static=fuse)

        out[name] = {"model": model, "calibration": fitted, "reference": router(False),
                     "compiled": router(True, fuse=False), "fast": router(True),
                     "settings": settings[name].model_dump(mode="json")}
    return student, out


def agreement(routers: dict[str, Any], texts: Sequence[str], student) -> dict[str, Any]:
    """The two paths on the same queries: largest confidence difference, same decisions at the
    10% and 20% budget thresholds, identical vectors."""
    vectors = student.encode(list(texts), kind="query")
    ref = routers["reference"].confidence(list(texts), vectors)
    fast = routers["fast"].confidence(list(texts), vectors)
    single = np.concatenate([routers["fast"].confidence([t], vectors[i:i + 1]) for i, t in enumerate(texts)])
    calibration = routers["calibration"]
    same = {str(b): bool(np.array_equal(ref < calibration.threshold_for_budget(b),
                                        fast < calibration.threshold_for_budget(b))) for b in (0.1, 0.2)}
    a, b = routers["reference"].route(list(texts)), routers["fast"].route(list(texts))
    fast_single = np.concatenate([routers["fast"].route([t])["confidence"] for t in texts])
    fused = routers["fast"]._fast()[1]
    return {"queries": len(texts), "fused_static_path": fused is not None,
            "fused_table_mb": round(float(fused.table.numel() * 4 / 2**20), 1) if fused is not None else 0.0,
            "max_abs_confidence_difference": float(np.abs(ref - fast).max()),
            "max_abs_confidence_difference_fast_route": float(np.abs(a["confidence"] - b["confidence"]).max()),
            "max_abs_confidence_difference_fast_route_batch1": float(np.abs(a["confidence"] - fast_single).max()),
            "max_abs_vector_difference_fast_route": float(np.abs(a["vectors"] - b["vectors"]).max()),
            "same_routing_fast_route_at_budget": {
                str(budget): bool(np.array_equal(a["confidence"] < calibration.threshold_for_budget(budget),
                                                 b["confidence"] < calibration.threshold_for_budget(budget)))
                for budget in (0.1, 0.2)},
            "max_abs_difference_batch_vs_single": float(np.abs(fast - single).max()),
            "confidence_spread": float(ref.std()), "same_decisions_at_budget": same}


def per_query(fn: Callable[[list[str]], Any], texts: Sequence[str], batch: int, repeats: int = 5) -> float:
    """Median over ``repeats`` passes of CPU seconds (process time: the other processes' share of
    the core left out) per query of ``fn`` on ``texts`` in batches."""
    batches = [list(texts[i:i + batch]) for i in range(0, len(texts), batch)]
    fn(batches[0])
    times = []
    for _ in range(repeats):
        start = time.process_time()
        for b in batches:
            fn(b)
        times.append((time.process_time() - start) / len(texts))
    return float(np.median(times))


def breakdown(student, routers: dict[str, Any], texts: Sequence[str]) -> dict[str, Any]:
    """Microseconds per query of each part of a routed static query, at batch 1 and 64."""
    from tava_core.route.calibrate import features_from_signals
    from tava_core.route.signals import _unit, compute_signals

    model, calibration = routers["model"], routers["calibration"]
    vec = {t: v for t, v in zip(texts, student.encode(list(texts), kind="query"), strict=True)}

    def vectors(batch: list[str]) -> np.ndarray:
        return np.stack([vec[t] for t in batch])

    def tokenise(batch: list[str]) -> Any:
        return student.tokenizer.encode_batch_fast(batch, add_special_tokens=False)

    out: dict[str, Any] = {}
    for batch, n in BATCHES.items():
        part = list(texts[:n])
        us: dict[str, float] = {}
        us["student.encode"] = per_query(lambda b: student.encode(b, kind="query", batch_size=len(b)), part, batch)
        us["student: tokeniser (encode_batch_fast)"] = per_query(tokenise, part, batch)
        us["student: rest (ids, embedding_bag, normalise, copy)"] = (us["student.encode"]
                                                                    - us["student: tokeniser (encode_batch_fast)"])
        us["reference confidence (calibrate.confidence)"] = per_query(
            lambda b: routers["reference"].confidence(b, vectors(b)), part, batch)
        us["reference: stack the cached vectors (bench only)"] = per_query(vectors, part, batch)
        us["reference: unit vectors"] = per_query(lambda b: _unit(vectors(b)), part, batch)
        for name in calibration.signals:
            us[f"reference: signal {name}"] = per_query(lambda b, name=name: compute_signals(model, b, vectors(b),
                                                                                          [name]), part, batch)
        values = compute_signals(model, part[:batch], vectors(part[:batch]), calibration.signals)
        us["reference: feature matrix (from computed signals)"] = per_query(
            lambda b, values=values: features_from_signals(model, values, vectors(b), calibration.signals,
                                                           calibration.vector_components), part[:batch], batch)
        x = features_from_signals(model, values, vectors(part[:batch]), calibration.signals,
                                  calibration.vector_components)
        us["reference: combiner"] = per_query(lambda b, x=x: calibration.confidence_from_features(x), part[:batch],
                                              batch)
        us["compiled confidence (fast.py)"] = per_query(lambda b: routers["fast"].confidence(b, vectors(b)),
                                                        part, batch)
        us["route(), reference confidence"] = per_query(lambda b: routers["reference"].route(b, batch_size=len(b)),
                                                        part, batch)
        us["route(), compiled confidence"] = per_query(lambda b: routers["compiled"].route(b, batch_size=len(b)),
                                                       part, batch)
        fused = routers["fast"]._fast()[1]
        if fused is not None:
            us["fused student + confidence (fused.py)"] = per_query(fused, part, batch)
        us["route(), fast path (fused where built)"] = per_query(lambda b: routers["fast"].route(b, batch_size=len(b)),
                                                     part, batch)
        us["route() overhead beyond student + confidence"] = (
            us["route(), reference confidence"] - us["student.encode"]
            - (us["reference confidence (calibrate.confidence)"] - us["reference: stack the cached vectors (bench only)"]))
        out[str(batch)] = {k: round(v * 1e6, 2) for k, v in us.items()}
        out[str(batch)]["load_average"] = os.getloadavg()
    profiler = cProfile.Profile(time.process_time)    # CPU time, as per_query
    profiler.enable()
    for _ in range(5):
        for t in texts[:64]:
            routers["reference"].route([t], batch_size=1)
    profiler.disable()
    stats = pstats.Stats(profiler)
    calls = 5 * min(64, len(texts))
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:20]   # type: ignore[attr-defined]
    out["cprofile_reference_route_batch1_top_tottime_cpu_us_per_query (profiler overhead included)"] = [
        {"function": f"{Path(f[0]).name}:{f[1]}:{f[2]}", "calls_per_query": round(v[1] / calls, 2),
         "tottime_us": round(v[2] / calls * 1e6, 2), "cumtime_us": round(v[3] / calls * 1e6, 2)}
        for f, v in rows]
    return out


PATHS = ("reference", "compiled", "fast")


def compare(student, routers: dict[str, Any], texts: Sequence[str], rounds: int,
            clock: Callable[[], float]) -> dict[str, Any]:
    """Student alone, the three router paths and the adaptive threshold, interleaved."""
    from tava_core.route.config import ThresholdPolicy
    from tava_core.route.threshold import LiveThreshold

    fast = routers["fast"]
    scores = dict(zip(texts, fast.confidence(list(texts), student.encode(list(texts), kind="query")), strict=True))
    out: dict[str, Any] = {}
    for batch, n in BATCHES.items():
        part = list(texts[:n])
        live = LiveThreshold(ThresholdPolicy(), 0.1, routers["calibration"].quantiles)
        live.decide(np.resize(np.array(list(scores.values())), ThresholdPolicy().window))   # a full window
        calls = {"student": lambda t: student.encode(t, kind="query", batch_size=len(t)),
                 "reference": lambda t: routers["reference"].route(t, batch_size=len(t)),
                 "compiled": lambda t: routers["compiled"].route(t, batch_size=len(t)),
                 "fast": lambda t: fast.route(t, batch_size=len(t)),
                 "live_threshold": lambda t, live=live: live.decide(np.array([scores[x] for x in t]))}
        measured = interleaved_seconds(calls, part, batch_size=batch, rounds=rounds, clock=clock)
        sec = measured["seconds_per_query"]
        for path in PATHS:
            measured[f"{path}_over_student"] = ratio(measured, path, "student")
            adaptive = ((np.array(sec[path]["rounds"]) + np.array(sec["live_threshold"]["rounds"]))
                        / np.array(sec["student"]["rounds"]))
            measured[f"{path}_adaptive_over_student"] = float(np.median(adaptive))
        measured["microseconds_per_query_median"] = {k: round(v["median"] * 1e6, 2) for k, v in sec.items()}
        measured["microseconds_per_query_best"] = {k: round(v["min"] * 1e6, 2) for k, v in sec.items()}
        out[str(batch)] = measured
    return out


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=("dev", "test"), default="dev")
    parser.add_argument("--scores", default=",".join(router_settings()), help="comma list of router scores")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--no-breakdown", action="store_true")
    parser.add_argument("--out", default=None, help=f"default: {RESULTS} (test) or route_fastpath_dev.json (dev)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)     # a shared 2-core machine: one thread, steadier timings
    started = time.time()
    fx = build_fixture()
    texts = fx.test_queries if args.split == "test" else fx.dev_queries
    names = args.scores.split(",")
    student, routers = build_routers(fx, names)
    report: dict[str, Any] = {
        "benchmark": "cost of a routed static query not sent to the teacher (issue 16): reference vs compiled "
                     "confidence",
        "split": f"SciFact {'test' if args.split == 'test' else 'train (dev)'} queries",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "uptime_at_start": uptime(),
                    "threads": "torch 1, OMP/MKL as set by the caller: " + os.environ.get("OMP_NUM_THREADS", "unset")},
        "fixture": {"student": "all-MiniLM-L6-v2's input token embeddings as a static table (30,522 x 384)",
                    "reference_texts": len(fx.reference_texts), "documents": int(len(fx.documents)),
                    "calibration_spans": len(fx.calibration_texts)},
        "rounds": args.rounds, "batches": {str(b): n for b, n in BATCHES.items()}, "routers": {}}
    for name in names:
        entry: dict[str, Any] = {"settings": routers[name]["settings"],
                                 "agreement": agreement(routers[name], texts, student)}
        print(name, entry["agreement"], flush=True)
        if not args.no_breakdown:
            entry["breakdown_us_per_query"] = breakdown(student, routers[name], texts)
        entry["compare"] = {"wall": compare(student, routers[name], texts, args.rounds, time.perf_counter),
                            "cpu": compare(student, routers[name], texts, args.rounds, time.process_time)}
        entry["summary"] = {
            f"{clock}/batch{b}": {
                **{f"{path}_over_student": round(c[f"{path}_over_student"]["median_of_round_ratios"], 3)
                   for path in PATHS},
                "fast_over_student_best_of_rounds": round(c["fast_over_student"]["ratio_of_best"], 3),
                "fast_over_student_iqr": [round(x, 3) for x in c["fast_over_student"]["round_ratio_iqr"]],
                "fast_adaptive_over_student": round(c["fast_adaptive_over_student"], 3),
                "meets_2x": c["fast_adaptive_over_student"] <= 2.0,
                "us_per_query_median": c["microseconds_per_query_median"],
                "load_average": c["load_average_after"]}
            for clock, per in entry["compare"].items() for b, c in per.items()}
        print(name, entry["summary"], flush=True)
        report["routers"][name] = entry
    report["machine"]["uptime_at_end"] = uptime()
    report["total_seconds"] = time.time() - started
    out = split_results(RESULTS, args.split, args.out)
    write_result(out, report)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
