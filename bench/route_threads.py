"""A routed static query's cost: its products on the calling thread (torch) against numpy's BLAS threads,
on an idle and on a busy CPU (issue 16).

The question: why a static query that the router keeps with the student cost 6.0x the student alone
at batch 1 in earlier runs (bench/route_cell_bank.py, session 31, another host), where a quiet process
here read 2.3-2.6x, and why the process's CPU time was twice its wall time. Thread by thread
(`top -H`), a routed query at batch 1 kept a second thread busy all the time: numpy's OpenBLAS
splits the query's matrix-vector product against the document bank over both cores, then that
worker busy-waits for the next call. On an idle machine that buys a little wall time for twice the
CPU; beside one busy process it takes the core the tokenizer and the rest of the query need.

Since this bench, every product a live query makes in `CompiledConfidence` goes through torch
(`tava_core/route/fast.py`, `_matmul`), which runs one query's matrix-vector products on the calling
thread. (A first fix limited numpy's OpenBLAS to one thread around the call; its thread count is
process-wide, and a worker thread's setting did not hold -- measured: a server thread's products stayed
on two threads -- so it was dropped.) Here both paths run side by side, interleaved in the same
rounds (as bench/route_cost.py: rotating order, median of per-round ratios; here with a 0.3 s pause
before each timed pass, so a worker still spinning from one pass is not charged to the next), against
the static student alone:

- ``two threads``: the products in numpy, on its OpenBLAS threads (the bench swaps ``fast._matmul``
  for a numpy product around each call: the code before at batch 1; at batch 64 the code before
  already multiplied by the bank in torch, so that column is not the old code);
- ``one thread``: the shipped path.

Scores: the product default (``retrieval_cell_margin`` on the full 5,183-document bank) and the
same signal on a two-stage bank (96-d PCA, 200 candidates rescored exactly; bench/route.py showed
it routes the same queries). Conditions: ``idle`` and ``busy`` (one CPU-bound process beside the
bench, started and stopped by it). Batches 1 (64 queries one at a time) and 64 (256 queries).
Clocks: wall and this process' CPU time. Fixture: bench/route_fastpath_data.py (a static student
with MiniLM's token table; cost depends on shapes, not on training).

    python bench/route_threads.py --split dev    # -> bench/results/route_threads_dev.json
    python bench/route_threads.py --split test   # -> bench/results/route_threads.json
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.route_cost import interleaved_seconds, ratio  # noqa: E402
from bench.route_fastpath import BATCHES, build_routers  # noqa: E402
from bench.route_fastpath_data import build_fixture  # noqa: E402
from bench.shared_data import busy_process_beside, split_results, write_result  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "route_threads.json"
ROUNDS = 11
SETTLE = 0.3                        # seconds of pause before each timed pass (route_cost.interleaved_seconds)


def settings() -> dict[str, Any]:
    from tava_core.route.config import RouterSettings

    return {"default (cell margin, full bank)": RouterSettings(),
            "cell margin, two-stage bank 96/200": RouterSettings(doc_pca_dim=96, doc_rescore=200)}


def routers(fx: Any) -> tuple[Any, dict[str, dict[str, Any]]]:
    """Per score: the shipped router (bench/route_fastpath.py's fast path: fused static student, compiled
    confidence) and the same router with its products in numpy."""
    every = settings()
    student, built = build_routers(fx, list(every), settings=every)
    return student, {name: {"one thread": r["fast"], "two threads": NumpyProducts(r["fast"]),
                            "settings": r["settings"]} for name, r in built.items()}


def _numpy_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float32) @ np.asarray(b, dtype=np.float32)


class NumpyProducts:
    """The same router with its products in numpy (on OpenBLAS's threads), as before this bench."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder

    def route(self, texts: list[str], **kwargs: Any) -> dict[str, np.ndarray]:
        from tava_core.route import fast

        shipped, fast._matmul = fast._matmul, _numpy_matmul
        try:
            return self.encoder.route(texts, **kwargs)
        finally:
            fast._matmul = shipped


def same_results(pair: dict[str, Any], texts: Sequence[str]) -> dict[str, float]:
    """The two paths compute the same numbers up to float rounding."""
    one = np.concatenate([pair["one thread"].route([t])["confidence"] for t in texts])
    two = np.concatenate([pair["two threads"].route([t])["confidence"] for t in texts])
    return {"queries": len(texts), "max_abs_confidence_difference_batch1": float(np.abs(one - two).max())}


def measure(student: Any, pair: dict[str, Any], texts: Sequence[str], rounds: int,
            clock: Callable[[], float]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for batch, n in BATCHES.items():
        part = list(texts[:n])
        calls = {"student": lambda t: student.encode(t, kind="query", batch_size=len(t)),
                 "one thread": lambda t: pair["one thread"].route(t, batch_size=len(t)),
                 "two threads": lambda t: pair["two threads"].route(t, batch_size=len(t))}
        measured = interleaved_seconds(calls, part, batch_size=batch, rounds=rounds, clock=clock, settle=SETTLE)
        measured["one_thread_over_student"] = ratio(measured, "one thread", "student")
        measured["two_threads_over_student"] = ratio(measured, "two threads", "student")
        measured["microseconds_per_query_median"] = {
            k: round(v["median"] * 1e6, 1) for k, v in measured["seconds_per_query"].items()}
        out[str(batch)] = measured
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=("dev", "test"), default="dev")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--out", default=None, help=f"default: {RESULTS} (test) or route_threads_dev.json (dev)")
    args = parser.parse_args()
    import torch

    started = time.time()
    fx = build_fixture()
    texts = fx.test_queries if args.split == "test" else fx.dev_queries
    student, pairs = routers(fx)
    from threadpoolctl import threadpool_info

    report: dict[str, Any] = {
        "benchmark": "a routed static query not sent to the teacher: its products on the calling thread "
                     "(torch, shipped: 'one thread') against numpy's OpenBLAS threads ('two threads'), idle and "
                     "beside one busy process",
        "split": f"SciFact {'test' if args.split == 'test' else 'train (dev)'} queries",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor(),
                    "blas": [lib for lib in threadpool_info() if lib["user_api"] == "blas"],
                    "torch_threads": torch.get_num_threads()},
        "rounds": args.rounds, "batches": {str(b): n for b, n in BATCHES.items()}, "scores": {}}
    for name, pair in pairs.items():
        entry: dict[str, Any] = {"settings": pair["settings"], "agreement": same_results(pair, texts[:64])}
        for condition in ("idle", "busy"):
            with busy_process_beside(condition == "busy"):
                entry[condition] = {"wall": measure(student, pair, texts, args.rounds, time.perf_counter),
                                    "cpu": measure(student, pair, texts, args.rounds, time.process_time)}
        entry["summary"] = {
            f"{condition}/{clock}/batch{b}": {
                "one_thread_over_student": round(c["one_thread_over_student"]["median_of_round_ratios"], 2),
                "two_threads_over_student": round(c["two_threads_over_student"]["median_of_round_ratios"], 2),
                "one_thread_iqr": [round(x, 2) for x in c["one_thread_over_student"]["round_ratio_iqr"]],
                "us_per_query_median": c["microseconds_per_query_median"],
                "load_average_after": c["load_average_after"]}
            for condition in ("idle", "busy") for clock, per in entry[condition].items() for b, c in per.items()}
        for key, row in entry["summary"].items():
            print(f"{name:36s} {key:22s} one thread {row['one_thread_over_student']:5.2f}x  "
                  f"two threads {row['two_threads_over_student']:5.2f}x  {row['us_per_query_median']}", flush=True)
        report["scores"][name] = entry
    report["total_seconds"] = round(time.time() - started, 1)
    out = split_results(RESULTS, args.split, args.out)
    write_result(out, report)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
