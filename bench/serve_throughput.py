"""Query throughput on the whole machine: the torch student (+ adapter) against its ONNX exports, each
run the way a server would use N cores -- one process with N intra-op threads, or N single-thread
worker processes sharing the queries -- so each side is measured at its own best configuration.

bench/speed.py compares every side at the same intra-op thread count. On 2 cores that
configuration is not the best for everything: a small query encoder's batch of 64 short queries
gives an int8 graph too little work per operator to split across threads, while independent
requests parallelise perfectly. This bench times, for each side, 1 process x N threads and N
processes x 1 thread (a barrier starts the workers together; the parent times from the barrier
to the last worker done), rounds interleaved with the order rotating, best and median of rounds.

    .venv/bin/python bench/serve_throughput.py --model ADAPTER_OR_STUDENT_DIR [--cores 2] [--rounds 5]

SciFact's 809 train queries (dev split: vectors only). Writes bench/results/serve_throughput.json.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from shared_data import ROOT, cpu_info, scifact_train_queries, write_result

BATCH = 64


def _make(side: str, model: str, exports: dict[str, str], threads: int) -> Any:
    """An ``encode(list[str])`` callable for one side, with ``threads`` intra-op threads."""
    import torch

    torch.set_num_threads(threads)
    if side == "torch":
        from tava_core.encoders import load_encoder

        encoder = load_encoder(model, cache=False)
        return lambda batch: encoder.encode(batch, kind="query", batch_size=BATCH)
    from tava_core.export.standalone import ExportedQueryEncoder

    exported = ExportedQueryEncoder(exports[side], threads=threads)
    return lambda batch: exported.encode(batch, batch_size=BATCH)


def _worker(side: str, model: str, exports: dict[str, str], threads: int, texts: list[str], rounds: int,
            barrier: Any) -> None:
    encode = _make(side, model, exports, threads)
    encode(texts[:BATCH])                            # warm-up: allocations, first-call work
    for _ in range(rounds):
        barrier.wait()                               # all workers start together
        for start in range(0, len(texts), BATCH):
            encode(texts[start:start + BATCH])
        barrier.wait()                               # the parent's clock stops when the last is done


def run_config(side: str, model: str, exports: dict[str, str], workers: int, threads: int, texts: list[str],
               rounds: int) -> list[float]:
    """Queries per second of ``rounds`` rounds (spawned workers, each with its share of ``texts``)."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(workers + 1)
    shares = [texts[i::workers] for i in range(workers)]
    procs = [ctx.Process(target=_worker, args=(side, model, exports, threads, share, rounds, barrier))
             for share in shares]
    for p in procs:
        p.start()
    rates = []
    try:
        for _ in range(rounds):
            barrier.wait(timeout=600)
            start = time.perf_counter()
            barrier.wait(timeout=600)
            rates.append(len(texts) / (time.perf_counter() - start))
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a transformer student, or an adapter over one")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per configuration and cycle")
    parser.add_argument("--cycles", type=int, default=3, help="passes over all configurations (interleaving)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "serve_throughput.json"))
    args = parser.parse_args()

    from tava_core.export.config import ExportConfig
    from tava_core.export.query_encoder import export_query_encoder
    from tava_core.home import TavaHome

    texts = scifact_train_queries()
    started = time.perf_counter()
    load_start = list(os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="tava-serve-") as tmp:
        exports = {}
        for precision in ("fp32", "int8"):
            card = export_query_encoder(ExportConfig(model=args.model, precision=precision,
                                                     out=f"{tmp}/{precision}"), TavaHome(Path(tmp) / "home"))
            exports[f"exported {precision}"] = card["path"]
        sides = ["torch", "exported fp32", "exported int8"]
        configs = [(1, args.cores), (args.cores, 1)]
        plan = [(side, w, t) for side in sides for (w, t) in configs]
        rates: dict[str, list[float]] = {f"{s} | {w}x{t}": [] for s, w, t in plan}
        for cycle in range(args.cycles):
            shift = cycle % len(plan)
            for side, workers, threads in plan[shift:] + plan[:shift]:
                got = run_config(side, args.model, exports, workers, threads, texts, args.rounds)
                rates[f"{side} | {workers}x{threads}"] += got
                print(f"{side} {workers} proc x {threads} thr: {max(got):.0f} q/s", flush=True)
    summary = {k: {"best_per_second": round(max(v), 1), "median_per_second": round(statistics.median(v), 1),
                   "rounds": [round(x, 1) for x in v]} for k, v in rates.items()}
    best = {side: max(((k, v["median_per_second"]) for k, v in summary.items() if k.startswith(side + " |")),
                      key=lambda kv: kv[1]) for side in sides}
    same_config = {f"{w}x{t}": {f"{s} / torch": round(summary[f"{s} | {w}x{t}"]["median_per_second"]
                                                      / summary[f"torch | {w}x{t}"]["median_per_second"], 3)
                                for s in sides[1:]} for w, t in configs}
    report = {
        "benchmark": "serve_throughput", "model": args.model, "cores": args.cores, "cpu": cpu_info(),
        "queries": len(texts),
        "batch_size": BATCH, "split": "SciFact train queries (dev); no labels read",
        "protocol": "per configuration: spawned workers, barrier start, wall time to the last worker; "
                    "configurations interleaved over cycles; ratios of medians",
        "load_average_start": load_start, "load_average_end": list(os.getloadavg()),
        "throughput": summary,
        "same_configuration_ratios": same_config,
        "best_configuration": {side: {"config": k.split(" | ")[1], "median_per_second": v} for side, (k, v) in best.items()},
        "best_vs_best_torch": {side: round(v / best["torch"][1], 3) for side, (k, v) in best.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_result(Path(args.out), report)
    print(json.dumps({k: report[k] for k in ("same_configuration_ratios", "best_configuration",
                                             "best_vs_best_torch")}, indent=1))


if __name__ == "__main__":
    main()
