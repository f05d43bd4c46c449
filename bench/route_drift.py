"""Drift through the nightly refresh (issue 16's drift target): a student refreshed three times --
docstring traffic, more docstring traffic, then SciFact claims -- each run recalibrating a router
and judging the new batch's low-confidence share against the previous batch's with the router that
served it (the current version's). Each refresh is one `tava refresh` process, as the nightly
deployment runs it. Writes bench/results/route_drift.json.

    nice -n 10 .venv/bin/python bench/demo.py          # first: the built-in data (and a student)
    nice -n 10 .venv/bin/python bench/route_drift.py [--student DIR]

Traffic stand-ins: summary lines of the built-in data's *unlabeled* docstrings (never its
evaluation queries) and SciFact's train claims. The gate scores the built-in evaluation set.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import shared_data
import yaml

from tava_core.datasets.builtin import builtin_source_dir, split_summary
from tava_core.home import TavaHome
from tava_core.io import write_json
from tava_core.registry import Registry

RESULTS = Path(__file__).resolve().parent / "results"


def docstring_traffic(source: Path, n: int, seed: int) -> list[str]:
    rows = [json.loads(line) for line in (source / "unlabeled.jsonl").open(encoding="utf-8")]
    summaries = list(dict.fromkeys(s for s in (split_summary(r["text"])[0] for r in rows) if 4 <= len(s.split()) <= 30))
    random.Random(seed).shuffle(summaries)
    return summaries[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo-home", default=str(shared_data.ROOT / ".tava"), help="where `tava demo` ran")
    parser.add_argument("--home", default=str(shared_data.ROOT / ".tava" / "bench-route-drift"),
                        help="this benchmark's own tava home (emptied first)")
    parser.add_argument("--student", default=None, help="student directory (default: the demo's registry student)")
    parser.add_argument("--texts", type=int, default=400, help="texts per batch")
    parser.add_argument("--max-steps", type=int, default=300, help="adapter training steps per refresh")
    parser.add_argument("--out", default=str(RESULTS / "route_drift.json"))
    args = parser.parse_args()

    demo = TavaHome(args.demo_home)
    student = Path(args.student) if args.student else Registry(demo).current_path("students", "student")
    source = builtin_source_dir(demo)
    if student is None or not (source / "unlabeled.jsonl").is_file():
        raise SystemExit(f"run the demo first (no current student or built-in data under {demo.root})")
    shutil.rmtree(args.home, ignore_errors=True)
    home = TavaHome(args.home)
    zone = home.root / "dropzone"
    zone.mkdir(parents=True)
    docstrings = docstring_traffic(source, 2 * args.texts, seed=0)
    batches = [("docstrings-1", docstrings[:args.texts]), ("docstrings-2", docstrings[args.texts:]),
               ("scifact-claims", shared_data.scifact_train_queries()[:args.texts])]
    settings = {"drop_zone": str(zone), "student": {"model": str(Path(student).resolve())},
                "evaluation": [str(source)], "max_steps": args.max_steps}
    config_file = home.root / "refresh.yaml"
    config_file.write_text(yaml.safe_dump(settings))
    tava = Path(sys.executable).with_name("tava")
    runs = []
    for name, texts in batches:
        (zone / f"{name}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
        started = time.perf_counter()
        subprocess.run([str(tava), "refresh", "--config", str(config_file)], check=True,
                       env={**os.environ, "TAVA_HOME": str(home.root)}, stdout=subprocess.DEVNULL)
        record = json.loads(sorted((home.reports / "refresh" / "nightly").glob("*.json"))[-1].read_text())
        drift = record.get("drift", {})
        runs.append({"batch": name, "texts": len(texts), "status": record["status"], "message": record["message"],
                     "seconds": round(time.perf_counter() - started, 1), "router": record.get("router"),
                     "decision": record.get("decision"), "drift": drift})
        print(f"{name}: {record['status']}; {drift.get('message')}", flush=True)
    write_json(args.out, {"command": "nice -n 10 .venv/bin/python bench/route_drift.py " + " ".join(sys.argv[1:]),
                          "student": str(student), "evaluation": str(source), "settings": settings, "runs": runs,
                          "load_average": os.getloadavg(), "cpus": os.cpu_count()})


if __name__ == "__main__":
    main()
