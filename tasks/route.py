"""Prefect tasks of confidence routing: calibrate a router, evaluate a routed mode, diagnose."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tava_core.config import EncoderSpec
from tava_core.home import TavaHome
from tava_core.route.config import RouterConfig, RouterSettings, ThresholdPolicy

from . import CORE_DECIDES


@task(name="calibrate-router", task_run_name="calibrate router {config.name}")
def calibrate_task(config: RouterConfig, home: Optional[str]) -> dict[str, Any]:
    from tava_core.route.run import calibrate_router

    record = calibrate_router(config, TavaHome(home), show_progress=True)
    info = record["calibration"]
    create_table_artifact(key=f"router-{config.name}".lower().replace("_", "-"), table=[
        {"signal": name, "spearman_with_true_agreement": round(value, 4)}
        for name, value in info["spearman_with_target"].items()],
        description=f"router {config.name}: what each confidence signal says about the student's true agreement")
    return record


@task(name="evaluate-router", task_run_name="evaluate router {router}")
def evaluate_router_task(router: str, dataset: str, split: str, out_dir: str, home: Optional[str],
                         judgements: Optional[str] = None, student_speedup: Optional[float] = None
                         ) -> dict[str, Any]:
    """The routed mode's curves (``run.evaluate_router``; ``student_speedup`` as there); markdown artifact."""
    from tava_core.evaluate.data import load_retrieval_data
    from tava_core.route.report import markdown
    from tava_core.route.run import evaluate_router

    tava_home = TavaHome(home)
    curves = evaluate_router(router, load_retrieval_data(dataset, split, tava_home, judgements), tava_home,
                             Path(out_dir), student_speedup=student_speedup)
    create_markdown_artifact(key="evaluate-router", markdown=markdown(curves),
                             description=f"routed mode of {router}: quality vs share sent to the teacher")
    return {k: curves[k] for k in ("files", "rows", "routed_share_at_threshold", "threshold", "costs", "routing",
                                   "routed_share_live", "query_vectors", "teacher_cost")}


@task(name="calibrate-stored-router", task_run_name="calibrate router for {adapted.model}", cache_policy=CORE_DECIDES)
def calibrate_stored_task(adapted: EncoderSpec, teacher: EncoderSpec, student_dirs: list[str], teacher_dirs: list[str],
                          dataset: str, split: str, out: str, settings: RouterSettings, teacher_budget: float,
                          calibration_texts: int, max_reference_texts: int, home: Optional[str],
                          routing: Optional[ThresholdPolicy] = None,
                          judgements: Optional[str] = None) -> dict[str, Any]:
    """A router for a student (+ adapter, or a blend of it) from its stored training pairs, calibrated on span views
    of ``dataset``'s corpus (reused when identical)."""
    from tava_core.route.stored import calibrate_stored, served_retrieval

    tava_home = TavaHome(home)
    served, _ = served_retrieval(dataset, split, teacher, tava_home, judgements)
    return calibrate_stored(adapted=adapted, teacher=teacher, student_dirs=student_dirs, teacher_dirs=teacher_dirs,
                            served=served, out=out, home=tava_home, settings=settings, teacher_budget=teacher_budget,
                            calibration_texts=calibration_texts, max_reference_texts=max_reference_texts,
                            routing=routing)


@task(name="evaluate-router-at", task_run_name="score router {router} at {shares}", cache_policy=CORE_DECIDES)
def evaluate_router_at_task(router: str, dataset: str, split: str, out_dir: str, shares: list[float],
                            measure_costs: bool, home: Optional[str], judgements: Optional[str] = None,
                            student_speedup: Optional[float] = None) -> dict[str, Any]:
    """The router's curve at ``shares`` only (reused when identical); markdown artifact. ``student_speedup``
    (the student's query speed over the teacher's, from its evaluation) spares timing the teacher again."""
    from tava_core.evaluate.data import load_retrieval_data
    from tava_core.route.report import markdown
    from tava_core.route.stored import evaluate_stored

    tava_home = TavaHome(home)
    curves = evaluate_stored(router, load_retrieval_data(dataset, split, tava_home, judgements), tava_home, out_dir,
                             shares=shares, measure_costs=measure_costs, student_speedup=student_speedup)
    create_markdown_artifact(key="router-at-budgets", markdown=markdown(curves),
                             description=f"router {router}: quality at {shares} of queries sent to the teacher")
    return {k: curves[k] for k in ("files", "rows", "routed_share_at_threshold", "threshold", "costs", "reused",
                                   "routing", "routed_share_live",
                                   "student_ndcg10", "teacher_ndcg10", "query_vectors", "teacher_cost")
            if k in curves}
