"""How long a signalled `tava embed` takes to end, and whether it reports the stop: the code before
session 38's change (commit b324fa8, unpacked from git) and the working tree, side by side in one
run, alternating, on the same machine and load.

    .venv/bin/python bench/cli_signals.py [--repeats 2] [--out FILE.json]

Each case embeds one shard of 1,200 texts of ~256 tokens with all-MiniLM-L6-v2 (minutes of encoding
here) in a fresh tava home with no PREFECT_API_URL, waits until the first batch is done, then sends
`kill PID` (SIGTERM to the command alone, as systemd or a job runner sends it) or Ctrl-C (SIGINT to the
whole process group, as a terminal sends it). Measured: seconds from the signal to the command's exit,
its exit code, whether the run was reported as crashed to its server, whether the server was gone first
("has stopped" in the output), vector shards written, and former descendants alive 20 s later.

The third case, `ui-cancel`, is Cancel in the Prefect UI: the same embed as a run of prefect.yaml's `embed`
deployment on a local `prefect server` (tests/prefect_server.py of the tree under test), executed by a process
worker; the run is set to Cancelling after its first batch, and the worker sends its process SIGTERM (then
SIGKILL 30 s later). Measured: seconds until the run is Cancelled, and whether the flow engine reported the
cancellation itself ("Flow run was cancelled."; a killed process cannot).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT / "tests"))
sys.path.insert(0, str(PROJECT / "bench"))
from cli_errors import env_for, unpack  # noqa: E402
from processes import signal_busy_embed  # noqa: E402
from shared_data import write_result  # noqa: E402

BEFORE_COMMIT = "b324fa8"
def signal_case(tree: Path, home: Path, how: str) -> dict:
    try:
        ended = signal_busy_embed(tree, env_for(tree, home), home, how, survivors_within=20)
    except RuntimeError as exc:   # it ended by itself (say, its server did not start in time): nothing to measure
        return {"ended_before_signal": True, "error": str(exc)[-1500:]}
    text = ended["output"]
    return {"seconds_to_exit": ended["seconds_to_exit"], "exit_code": ended["exit_code"],
            "crash_reported": "Finished in state Crashed" in text, "server_gone_first": "has stopped" in text,
            "vector_shards_written": ended["vector_shards_written"], "alive_20s_after": len(ended["survivors"])}


def ui_cancel_case(tree: Path, root: Path) -> dict:
    """Runs in a child process (``--ui-cancel-case``): the working tree's test server, pointed at ``tree``
    (its prefect.yaml, its flows, its tava_core through PYTHONPATH)."""
    os.environ["PYTHONPATH"] = str(tree)
    import prefect_server

    prefect_server.PROJECT = tree
    (root / "server").mkdir(parents=True)
    server = prefect_server.LocalPrefectServer(root=root / "server")
    try:
        server.start()
        server.deploy_project()
        ended = prefect_server.embed_then_cancel(server, root / "home", root / "worker.log")
    finally:
        server.stop()
    return {"seconds_to_exit": ended["seconds_to_final_state"], "final_state": ended["final_state"],
            "crash_reported": "Flow run was cancelled." in ended["worker_output"],
            "vector_shards_written": ended["vector_shards_written"]}


def ui_cancel(tree: Path, root: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--ui-cancel-case", str(tree), str(root)], capture_output=True,
                          text=True, timeout=1800)
    if done.returncode != 0:
        return {"failed": True, "stderr_tail": done.stderr[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(PROJECT / "bench" / "results" / "cli_signals.json"))
    parser.add_argument("--cases", default="sigterm-to-command,ctrl-c-to-group,ui-cancel")
    parser.add_argument("--ui-cancel-case", nargs=2, metavar=("TREE", "ROOT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ui_cancel_case:
        print(json.dumps(ui_cancel_case(Path(args.ui_cancel_case[0]), Path(args.ui_cancel_case[1]))))
        return
    cases = args.cases.split(",")
    raw: dict[str, dict[str, list[dict]]] = {how: {"before": [], "after": []} for how in cases}
    with tempfile.TemporaryDirectory(prefix="tava-signal-bench-") as tmp:
        scratch = Path(tmp)
        trees = {"before": unpack(BEFORE_COMMIT, scratch / "before"), "after": PROJECT}
        for repeat in range(args.repeats):
            for how in cases:
                for variant in (("before", "after") if repeat % 2 == 0 else ("after", "before")):
                    root = scratch / f"home-{how}-{variant}-{repeat}"
                    row = ui_cancel(trees[variant], root) if how == "ui-cancel" else signal_case(trees[variant], root, how)
                    raw[how][variant].append(row)
                    print(how, variant, row, flush=True)
    summary = {how: {variant: {"median_seconds_to_exit": statistics.median(r.get("seconds_to_exit", float("nan"))
                                                                          for r in runs),
                               "exit_codes": sorted({r.get("exit_code") for r in runs}, key=str),
                               "crash_reported": all(r.get("crash_reported") for r in runs),
                               "server_gone_first": any(r.get("server_gone_first") for r in runs),
                               "alive_20s_after": max(r.get("alive_20s_after", 0) for r in runs)}
                     for variant, runs in by_variant.items()}
               for how, by_variant in raw.items()}
    record = {"benchmark": "cli_signals", "before_commit": BEFORE_COMMIT,
              "after": subprocess.run(["git", "-C", str(PROJECT), "rev-parse", "--short", "HEAD"],
                                      capture_output=True, text=True).stdout.strip(),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "load_average_at_end": os.getloadavg()},
              "repeats": args.repeats, "summary": summary, "raw": raw}
    write_result(Path(args.out), record)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
