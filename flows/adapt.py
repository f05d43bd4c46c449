"""Flow: train a Stage B adapter from student vectors into the teacher's space.

    check inputs (dims, fingerprints, NaN, pairs)  ->  train best-of-N seeds with guards
    ->  save adapter + report (JSON, markdown, PNG) under <home>/artifacts/adapters/<name>/
    ->  markdown + table artifacts
"""
from __future__ import annotations

from typing import Optional

from prefect import flow, get_run_logger

from tasks.adapt import adapter_dir, check_inputs_task, publish_report_task, train_task
from tava_core.adapter.config import AdapterConfig
from tava_core.home import TavaHome
from tava_core.records import AdapterRecord

# The flow's default parameters, built once: Prefect shows them in the deployment's form, and
# the flows only read their config.
DEFAULT_ADAPTER_CONFIG = AdapterConfig()


@flow(name="train-adapter", log_prints=True)
def train_adapter(config: AdapterConfig = DEFAULT_ADAPTER_CONFIG, home: Optional[str] = None) -> AdapterRecord:
    """Train an adapter on student/teacher vector directories (made by `tava embed`).

    Args:
        config: Student and teacher vector directories (required), adapter architecture, losses, schedule.
        home: tava home directory (data, vectors, artifacts, reports); empty = $TAVA_HOME, else ./.tava.
    """
    logger = get_run_logger()
    checked = check_inputs_task(config)
    sides = (f'{checked.student["encoder"].get("name")} ({checked.student["encoder"].get("dim")}-d) -> '
             f'{checked.teacher["encoder"].get("name")} ({checked.teacher["encoder"].get("dim")}-d)')
    if config.mode == "paired":
        logger.info("%d pairs: %s", checked.pairs, sides)
    else:   # unpaired: texts both sides have only measure (held out) or are halved between the sides
        logger.info("unpaired: %d texts of the student side, %d of the teacher side, %s: %s", checked.student["rows"],
                    checked.teacher["rows"], sides,
                    f"{checked.pairs} on both sides (a share held out to measure, the rest halved between the sides)"
                    if checked.pairs else "no text on both sides (nothing held out: the unsupervised criterion chooses)")
    record = train_task(config, checked, adapter_dir(TavaHome(home), checked.name))
    publish_report_task(record)
    metrics = record.metrics
    if metrics:
        line = ", ".join(f"{name} cos {m['mean_cosine']:.4f} rank {m['mean_rank']:.3f}" for name, m in metrics.items())
        logger.info("held-out: %s", line)
    return record
