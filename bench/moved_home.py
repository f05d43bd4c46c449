"""A tava home copied to another path: what a re-run there reuses, side by side with the run that made it.

Run keys name content, not directories, for the costly steps (Stage A and Stage B since session 43), so a
home copied or mounted elsewhere -- another worker's mount, a bigger disk -- should not train again. This
copies a finished home (by default the one `make demo` leaves in `.tava`), runs `tava demo` there with
TAVA_HOME pointing at the copy, and records its wall time, its step table (computed or reused) and its
quality rows beside the source run's.

    make demo && python bench/moved_home.py [--home .tava] [--seconds-fresh N]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cli_run import parse_table  # noqa: E402  (the same table `tava run` prints)
from shared_data import ROOT, write_result  # noqa: E402  (sets sys.path)

OUT = ROOT / "bench" / "results" / "moved_home.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=ROOT / ".tava", help="a home a finished `tava demo` left")
    parser.add_argument("--seconds-fresh", type=float, default=None,
                        help="the source run's wall time, when known (make demo prints it)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if not (args.home / "registry").is_dir():
        sys.exit(f"{args.home}: no finished tava home here; run `make demo` first")
    with tempfile.TemporaryDirectory(prefix="tava-moved-") as tmp:
        moved = Path(tmp) / "elsewhere" / "home"
        shutil.copytree(args.home, moved, symlinks=True)
        env = {**os.environ, "TAVA_HOME": str(moved), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        tava = Path(sys.executable).with_name("tava")
        start = time.perf_counter()
        done = subprocess.run([str(tava), "demo"], env=env, capture_output=True, text=True, cwd=tmp)
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"tava demo in the moved home failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    parsed = parse_table(done.stdout)
    steps, rows = parsed["steps"], parsed["rows"]
    report = {"benchmark": "moved_home", "source_home": str(args.home), "command": "tava demo",
              "seconds_moved": round(seconds, 1), "seconds_fresh": args.seconds_fresh, "steps": steps, "rows": rows}
    write_result(args.out, report)
    print(f"moved home: {seconds:.0f} s" + (f" (the run that made it: {args.seconds_fresh:.0f} s)" if args.seconds_fresh else ""))
    for step, info in steps.items():
        print(f"  {step:22s} {info['seconds']:7.1f} s  {info['work']}")


if __name__ == "__main__":
    main()
