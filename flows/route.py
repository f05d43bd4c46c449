"""Flow ``calibrate-router``: fit a confidence router (student answers, teacher takes the least
confident queries) and save it as a directory that ``load_encoder`` turns into one query encoder.

    teacher vectors of the served corpus (cached, shared with `tava evaluate`)
    -> signals fitted on the student's training texts -> combiner calibrated on span views of the
    corpus against the student's true agreement with the teacher (no labels)
    -> <home>/artifacts/routers/<name>/ (router.safetensors + router.json + tava_encoder.json)
"""
from __future__ import annotations

from typing import Any, Optional

from prefect import flow, get_run_logger

from tasks.route import calibrate_task
from tava_core.home import TavaHome
from tava_core.route.config import RouterConfig


@flow(name="calibrate-router", log_prints=True)
def calibrate_router_flow(config: RouterConfig, home: Optional[str] = None) -> dict[str, Any]:
    """Calibrate a router for a student on the corpus it will serve.

    Args:
        config: Student, teacher, served dataset, training texts, budget or target agreement, settings.
        home: tava home directory; empty = $TAVA_HOME, else ./.tava.
    """
    logger = get_run_logger()
    record = calibrate_task(config, str(TavaHome(home).root))
    t = record["threshold"]
    logger.info("router %s: threshold %.4f (%s %s, about %.0f%% of queries to the teacher), saved to %s",
                config.name, t["threshold"], t["mode"], t["value"], 100 * t["expected_share"], record["directory"])
    return record
