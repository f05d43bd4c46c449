"""How fast `tava` reports a bad input, and whether a killed run leaves processes behind:
the code before this change (commit 5c7cca4, unpacked from git) and the working tree, side by
side in one run, alternating, on the same machine and load.

    .venv/bin/python bench/cli_errors.py [--repeats 2] [--no-kill] [--only evaluate] [--out FILE.json]

Each case runs `python -m flows.cli ARGS` from the tree under test in a fresh tava home with no
PREFECT_API_URL, as a new user would; wall time is from process start to exit. The kill case
starts `tava embed` on 20 shards, waits for the first shard, SIGKILLs the parent only (as the
OOM killer does) and counts its former descendants still alive 20 s later.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "tests"))
from processes import alive, descendants  # noqa: E402  (tests/)
from shared_data import write_result  # noqa: E402  (bench/, beside this file)

BEFORE_COMMIT = "5c7cca4"


def unpack(commit: str, into: Path) -> Path:
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(PROJECT), "archive", commit], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def env_for(tree: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "TAVA_HOME"}
    env.update({"TAVA_HOME": str(home), "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "DO_NOT_TRACK": "1"})
    return env


def cases(scratch: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (arguments, text the error should show)."""
    broken = scratch / "broken.yaml"
    broken.write_text("dataset: [small\n")
    return {
        "embed: unknown dataset": (["embed", "--dataset", "nope"], "no ingested dataset named 'nope'"),
        "embed: bad encoder path": (["embed", "--dataset", "small", "--encoder", str(scratch / "no-model")],
                                    "no-model"),
        "embed: unparseable config file": (["embed", "--config", str(broken)], "cannot parse config"),
        "ingest: missing source": (["ingest", str(scratch / "missing.jsonl")], "source not found"),
        "index: missing vectors": (["index", "--vectors", str(scratch / "vectors")], "vectors"),
        "backfill: unknown dataset": (["backfill", "--dataset", "nope"], "no ingested dataset named 'nope'"),
        "evaluate: unknown dataset": (["evaluate", "--dataset", "nope"], "nope"),
        "distill: unknown dataset": (["distill", "--datasets", "nope"], "no ingested dataset named 'nope'"),
        "adapt: missing vectors": (["adapt", "--student-vectors", str(scratch / "s"), "--teacher-vectors",
                                    str(scratch / "t")], "vector directory not found"),
        "run: missing source, options alone": (["run", "--source", str(scratch / "corpus")], "source not found"),
    }


def run_case(tree: Path, home: Path, args: list[str], expected: str) -> dict:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=tree, env=env_for(tree, home),
                          capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 2), "exit_code": done.returncode, "message_shown": expected in done.stderr,
            "prefect_server_started": "Starting temporary server" in done.stderr + done.stdout}


def kill_case(tree: Path, home: Path) -> dict:
    from helpers import synthetic_texts, write_dataset

    write_dataset(home, "big", {"texts": synthetic_texts(600, seed=3)}, shard_size=30)
    log_path = home / "embed.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "embed", "--dataset", "big", "--encoder",
                                 "all-MiniLM-L6-v2", "--encoder-batch-size", "16"], cwd=tree, env=env_for(tree, home),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    shards = home / "vectors" / "big" / "texts"
    deadline = time.time() + 900
    while not list(shards.glob("*/shard-*.parquet")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    children = descendants(proc.pid)
    if proc.poll() is not None:  # it ended by itself (say, its server did not start in time): no kill to measure
        return {"ended_before_kill": True, "exit_code": proc.returncode,
                "log_tail": log_path.read_text(errors="replace")[-1500:]}
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(20)
    survivors = [pid for pid in children if alive(pid)]
    for pid in survivors:  # leave the machine as it was
        os.kill(pid, signal.SIGKILL)
    return {"descendants_before_kill": len(children), "alive_20s_after_kill": len(survivors)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-kill", action="store_true", help="skip the kill -9 case")
    parser.add_argument("--only", default="", help="run only the error cases whose name contains one of these comma-separated texts")
    parser.add_argument("--out", default=str(PROJECT / "bench" / "results" / "cli_errors.json"))
    args = parser.parse_args()
    from helpers import synthetic_texts, write_dataset

    with tempfile.TemporaryDirectory(prefix="tava-cli-bench-") as tmp:
        scratch = Path(tmp)
        trees = {"before": unpack(BEFORE_COMMIT, scratch / "before"), "after": PROJECT}
        table = {name: case for name, case in cases(scratch).items() if any(part in name for part in args.only.split(","))}
        raw: dict[str, dict[str, list[dict]]] = {name: {"before": [], "after": []} for name in table}
        for repeat in range(args.repeats):
            for name, (argv, expected) in table.items():
                for variant in (("before", "after") if repeat % 2 == 0 else ("after", "before")):
                    home = scratch / f"home-{variant}-{repeat}"
                    if not (home / "data" / "small").exists():
                        write_dataset(home, "small", {"texts": synthetic_texts(20)}, shard_size=10)
                    raw[name][variant].append(run_case(trees[variant], home, argv, expected))
                    print(name, variant, raw[name][variant][-1], flush=True)
        summary = {name: {variant: {"median_seconds": statistics.median(r["seconds"] for r in runs),
                                    "exit_codes": sorted({r["exit_code"] for r in runs}),
                                    "message_shown": all(r["message_shown"] for r in runs),
                                    "prefect_server_started": any(r["prefect_server_started"] for r in runs)}
                          for variant, runs in by_variant.items()}
                   for name, by_variant in raw.items()}
        for row in summary.values():
            row["speedup"] = round(row["before"]["median_seconds"] / row["after"]["median_seconds"], 2)
        killed = {}
        if not args.no_kill:
            for variant in ("before", "after"):
                killed[variant] = kill_case(trees[variant], scratch / f"kill-{variant}")
                print("kill -9", variant, killed[variant], flush=True)
    record = {"benchmark": "cli_errors", "before_commit": BEFORE_COMMIT,
              "after": subprocess.run(["git", "-C", str(PROJECT), "rev-parse", "--short", "HEAD"],
                                      capture_output=True, text=True).stdout.strip(),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "load_average_at_end": os.getloadavg()},
              "repeats": args.repeats, "error_paths": summary, "raw": raw, "kill_9_embed": killed}
    write_result(Path(args.out), record)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
