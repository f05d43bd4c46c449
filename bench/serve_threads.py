"""One query at a time on a torch encoder: intra-op threads against the machine's other work.

bench/route_threads.py found a routed static query 4-5x slower beside one busy process because a
second BLAS thread busy-waited between queries. torch's intra-op pool (OpenMP) does the same after
each parallel region. This bench times a transformer encoder (all-MiniLM-L6-v2, the default teacher;
a transformer student has the same layers, fewer of them) encoding SciFact's train queries one at a
time, in a fresh process per setting (OpenMP reads its wait policy once, at start):

- ``1 thread``: torch.set_num_threads(1);
- ``2 threads``: torch's default here (one per core), OpenMP's default wait policy (busy-wait a while);
- ``2 threads, passive``: the same with OMP_WAIT_POLICY=PASSIVE (workers sleep at once).

Conditions: ``idle``, and ``busy`` (one CPU-bound process beside, started and stopped by the bench).
Settings alternate, the order rotating, ``--repeats`` times; per process: 8 warm-up queries, then
64 queries x 3 passes; wall and CPU milliseconds per query, median over repeats.

    .venv/bin/python bench/serve_threads.py     # -> bench/results/serve_threads.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.shared_data import busy_process_beside, cpu_info, write_result  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "serve_threads.json"
SETTINGS = {"1 thread": (1, None), "2 threads": (2, None), "2 threads, passive": (2, "PASSIVE")}

CHILD = r"""
import json, sys, time
import torch
torch.set_num_threads(int(sys.argv[1]))
sys.path.insert(0, sys.argv[2])
from bench.shared_data import scifact_train_queries
from tava_core.encoders import load_encoder
encoder = load_encoder(sys.argv[3])
queries = scifact_train_queries()[:64]
for q in queries[:8]:
    encoder.encode([q], kind="query", batch_size=1)
wall, cpu = time.perf_counter(), time.process_time()
for _ in range(3):
    for q in queries:
        encoder.encode([q], kind="query", batch_size=1)
n = 3 * len(queries)
print(json.dumps({"wall_ms": (time.perf_counter() - wall) / n * 1e3, "cpu_ms": (time.process_time() - cpu) / n * 1e3}))
"""


def run_child(threads: int, policy: str | None, encoder: str) -> dict[str, float]:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    env.pop("OMP_NUM_THREADS", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run([sys.executable, "-c", CHILD, str(threads), str(ROOT), encoder], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="all-MiniLM-L6-v2")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    started = time.time()
    report: dict[str, Any] = {"benchmark": "batch-1 query encoding with torch: intra-op threads, idle and beside "
                                           "one busy process", "encoder": args.encoder,
                              "queries": "SciFact train (dev) queries, 64 x 3 passes per process, one at a time",
                              "machine": cpu_info(), "repeats": args.repeats, "conditions": {}}
    names = list(SETTINGS)
    for condition in ("idle", "busy"):
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
        with busy_process_beside(condition == "busy"):
            for r in range(args.repeats):
                for name in names[r % len(names):] + names[:r % len(names)]:
                    runs[name].append(run_child(*SETTINGS[name], args.encoder))
                    print(condition, name, runs[name][-1], flush=True)
        report["conditions"][condition] = {
            name: {"wall_ms_median": round(statistics.median(x["wall_ms"] for x in v), 2),
                   "cpu_ms_median": round(statistics.median(x["cpu_ms"] for x in v), 2), "runs": v}
            for name, v in runs.items()}
    report["load_average_end"] = os.getloadavg()
    report["seconds"] = round(time.time() - started, 1)
    write_result(args.out, report)
    for condition, rows in report["conditions"].items():
        for name, row in rows.items():
            print(f"{condition:5s} {name:20s} wall {row['wall_ms_median']:6.2f} ms  cpu {row['cpu_ms_median']:6.2f} ms")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
