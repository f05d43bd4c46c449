"""The demo table as JSON: runs exactly what `make demo` / `tava demo` runs (the `tava-pipeline`
flow with its defaults, through the same temporary Prefect server) in the project's ./.tava home
(or $TAVA_HOME) and writes every row (teacher, students, router rows), the per-step seconds and
the machine's load to bench/results/demo.json.

    nice -n 10 .venv/bin/python bench/demo.py            # the first run trains; a re-run is served from cache
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import shared_data  # noqa: F401 - project on sys.path, offline

from flows._server import run_flow
from flows.commands.demo import check_inputs
from flows.pipeline_config import PipelineConfig
from tava_core.home import TavaHome
from tava_core.io import write_json

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(RESULTS / "demo.json"))
    args = parser.parse_args()
    home = TavaHome()
    config = PipelineConfig()
    check_inputs(config, home)
    load_before = os.getloadavg()
    started = time.perf_counter()
    result = run_flow("flows.demo:demo_pipeline", config, home=str(home.root))
    wall = time.perf_counter() - started
    from flows.demo import summary_markdown

    print(summary_markdown(result))
    record = {"command": "nice -n 10 .venv/bin/python bench/demo.py (the `tava demo` flow, defaults)",
              "wall_seconds": round(wall, 1), "load_average_before": load_before, "load_average_after": os.getloadavg(),
              "cpus": os.cpu_count(), "config": config.model_dump(mode="json"),
              "quality": [row.model_dump(mode="json") for row in result.quality], "seconds": result.seconds,
              "work": result.work, "router_dir": result.router_dir, "registry": result.registry}
    route_json = home.reports / "route" / config.registry_adapter / "route.json"
    if result.router_dir and route_json.is_file():   # the router rows' full curves (baselines, costs)
        record["router_curves"] = json.loads(route_json.read_text())
    write_json(args.out, record)
    print(json.dumps({"wall_seconds": record["wall_seconds"], "router_seconds": result.seconds.get("router")}))


if __name__ == "__main__":
    main()
