"""The demo table as JSON: runs exactly what `make demo` / `tava demo` runs (the `tava-pipeline`
flow with its defaults, through the same temporary Prefect server) in the project's ./.tava home
(or $TAVA_HOME) and writes every row (teacher, students, router rows), the per-step seconds and
the machine's load to bench/results/demo.json.

    nice -n 10 .venv/bin/python bench/demo.py            # the first run trains; a re-run is served from cache
    .venv/bin/python bench/demo.py --backends torch onnx   # two cold demos, one per teacher backend
                                                           # -> bench/results/demo_backend.json

With ``--backends`` each backend gets its own fresh home (nothing reused), one after the other in
this process, and the JSON holds both wall times, their per-step seconds and the ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import shared_data  # noqa: F401 - project on sys.path, offline

from flows._server import run_flow
from flows.commands.pipeline import check_inputs
from flows.pipeline_config import PipelineConfig
from tava_core.home import TavaHome
from tava_core.io import write_json

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None)
    parser.add_argument("--backends", nargs="+", choices=["torch", "onnx", "auto"], default=None,
                        help="teacher backends to compare, each in a fresh temporary home")
    parser.add_argument("--one-backend", choices=["torch", "onnx", "auto"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.backends:
        compare_backends(args.backends, Path(args.out or RESULTS / "demo_backend.json"))
        return
    args.out = args.out or str(RESULTS / "demo.json")
    home = TavaHome()
    config = PipelineConfig()
    if args.one_backend:
        from tava_core.config import EncoderSpec

        config = PipelineConfig(teacher=EncoderSpec(backend=args.one_backend))
    check_inputs(config, home)
    load_before = os.getloadavg()
    started = time.perf_counter()
    result = run_flow("flows.pipeline:tava_pipeline", config, home=str(home.root))
    wall = time.perf_counter() - started
    from flows.pipeline import summary_markdown

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


def compare_backends(backends: list[str], out: Path) -> None:
    """The demo's wall time per teacher backend (issue 18), each cold in its own home and its own
    process (a process serves one temporary Prefect server: its client settings outlive the first)."""
    import shutil
    import subprocess
    import sys
    import tempfile

    runs = {}
    for backend in backends:
        root = Path(tempfile.mkdtemp(prefix=f"tava-demo-{backend}-"))
        started = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--one-backend", backend, "--out", str(root / "run.json")],
                       check=True, env={**os.environ, "TAVA_HOME": str(root)})
        run = json.loads((root / "run.json").read_text())
        runs[backend] = {"wall_seconds": run["wall_seconds"], "process_seconds": round(time.perf_counter() - started, 1),
                         "seconds": run["seconds"], "load_average_before": run["load_average_before"],
                         "load_average_after": run["load_average_after"],
                         "quality": {row["system"]: row["ndcg_at_10"] for row in run["quality"]}}
        print(json.dumps({backend: runs[backend]["wall_seconds"]}), flush=True)
        shutil.rmtree(root, ignore_errors=True)
    record = {"command": f".venv/bin/python bench/demo.py --backends {' '.join(backends)}", "cpus": os.cpu_count(),
              "runs": runs}
    if "torch" in runs and "onnx" in runs:
        record["onnx_vs_torch_wall"] = round(runs["torch"]["wall_seconds"] / runs["onnx"]["wall_seconds"], 3)
    write_json(out, record)
    print(json.dumps({k: v for k, v in record.items() if k != "runs"}))

if __name__ == "__main__":
    main()
