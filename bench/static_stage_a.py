"""Stage A's static student through `tava distill`, this checkout against an earlier commit, side by side
(issue 18: the per-word token cache, session 57).

Both sides run the same command in one home -- SciFact ingested, its teacher vectors and span views
embedded once by a warm-up run -- with the same seed, so they train on the same batches and their
students must agree (the cache changes no id: same best held-out cosine). The earlier commit runs from a
temporary git worktree (``PYTHONPATH`` points there; the virtual environment is shared). Sides alternate,
``--repeats`` each; what is timed is the training loop (the distill record's ``train_seconds`` when it
has one, else the progress bar's elapsed time) and the whole command's wall time.

    .venv/bin/python bench/static_stage_a.py --before e57be9e   # -> bench/results/static_stage_a.json
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.shared_data import SCIFACT, write_result  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "static_stage_a.json"
ELAPSED = re.compile(r"(\d+)/\1 \[(?:(\d+):)?(\d+):(\d+)")


def distill(checkout: Path, home: Path, name: str, steps: int, seed: int) -> dict[str, Any]:
    """One `tava distill --student static` from ``checkout``'s code; its record, wall and loop seconds."""
    env = {**os.environ, "PYTHONPATH": str(checkout), "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    command = [sys.executable, "-m", "flows.cli", "--home", str(home), "distill", "--student", "static",
               "--static-init", "model2vec", "--datasets", "scifact", "--name", name, "--steps", str(steps),
               "--seed", str(seed)]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    record = json.loads(done.stdout[done.stdout.index("{"):])
    bars = ELAPSED.findall(done.stderr)
    loop = None
    if bars:
        _, hours, minutes, seconds = bars[-1]
        loop = int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds)
    return {"wall_seconds": round(wall, 1), "loop_seconds_progress_bar": loop, "reused": record.get("reused"),
            "best_cosine": record.get("best_cosine"), "best_step": record.get("best_step"),
            "student_texts_per_second": record.get("student_texts_per_second")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the commit to compare against (before the change)")
    parser.add_argument("--steps", type=int, default=2000, help="the static preset's steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="tava-static-stage-a-"))
    before = work / "before"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(before), args.before], check=True)
    home = work / "home"
    try:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        subprocess.run([sys.executable, "-m", "flows.cli", "--home", str(home), "ingest", str(SCIFACT), "--name",
                        "scifact"], cwd=ROOT, env=env, check=True, capture_output=True)
        print("warm-up: teacher vectors and span views", flush=True)
        warm = distill(ROOT, home, "warm", 200, args.seed)
        runs: dict[str, list[dict[str, Any]]] = {"this checkout": [], f"before ({args.before})": []}
        for i in range(args.repeats):
            for side, checkout in (("this checkout", ROOT), (f"before ({args.before})", before)):
                got = distill(checkout, home, f"ab-{i}-{'now' if checkout == ROOT else 'before'}", args.steps, args.seed)
                if got["reused"]:
                    raise SystemExit("a run reused an earlier result: the comparison would time nothing")
                runs[side].append(got)
                print(side, got, flush=True)
        now, old = runs["this checkout"], runs[f"before ({args.before})"]

        def median(rows: list[dict[str, Any]], key: str) -> float:
            values = [r[key] for r in rows if r[key] is not None]
            return float(statistics.median(values)) if values else float("nan")

        summary = {"loop_seconds_median": {"this checkout": median(now, "loop_seconds_progress_bar"),
                                           "before": median(old, "loop_seconds_progress_bar")},
                   "wall_seconds_median": {"this checkout": median(now, "wall_seconds"),
                                           "before": median(old, "wall_seconds")},
                   "same_students": len({r["best_cosine"] for r in now + old}) == 1}
        summary["loop_speedup"] = round(summary["loop_seconds_median"]["before"]
                                        / summary["loop_seconds_median"]["this checkout"], 2)
        summary["wall_speedup"] = round(summary["wall_seconds_median"]["before"]
                                        / summary["wall_seconds_median"]["this checkout"], 2)
        print(summary)
        write_result(args.out, {
            "benchmark": "Stage A's static student through `tava distill` (SciFact documents + span views, model2vec "
                         "start), this checkout against an earlier commit, alternating, same home and seed",
            "before": args.before, "steps": args.steps, "seed": args.seed, "warm_up": warm,
            "machine": {"cpus": os.cpu_count(), "load_average_end": os.getloadavg()},
            "runs": runs, "summary": summary, "total_seconds": round(time.time() - started, 1)})
        print(f"wrote {args.out}")
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
