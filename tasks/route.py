"""Prefect tasks of confidence routing: calibrate a router, evaluate a routed mode, diagnose."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tava_core.home import TavaHome
from tava_core.route.config import RouterConfig


@task(name="calibrate-router", task_run_name="calibrate router {config.name}")
def calibrate_task(config: RouterConfig, home: Optional[str]) -> dict[str, Any]:
    from tava_core.route.run import calibrate_router

    record = calibrate_router(config, TavaHome(home))
    info = record["calibration"]
    create_table_artifact(key=f"router-{config.name}".lower().replace("_", "-"), table=[
        {"signal": name, "spearman_with_true_agreement": round(value, 4)}
        for name, value in info["spearman_with_target"].items()],
        description=f"router {config.name}: what each confidence signal says about the student's true agreement")
    return record


@task(name="evaluate-router", task_run_name="evaluate router {router}")
def evaluate_router_task(router: str, dataset: str, split: str, out_dir: str, home: Optional[str]) -> dict[str, Any]:
    from tava_core.evaluate.data import load_retrieval_data
    from tava_core.route.report import markdown
    from tava_core.route.run import evaluate_router

    tava_home = TavaHome(home)
    curves = evaluate_router(router, load_retrieval_data(dataset, split, tava_home), tava_home, Path(out_dir))
    create_markdown_artifact(key="evaluate-router", markdown=markdown(curves),
                             description=f"routed mode of {router}: quality vs share sent to the teacher")
    return {k: curves[k] for k in ("files", "rows", "routed_share_at_threshold", "threshold", "costs")}
