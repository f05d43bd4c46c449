"""Flow ``diagnose``: manifold diagnostics of a student (+ adapter) against its teacher --
k-NN neighbourhood overlap and principal angles between local tangent spaces, per collection
and per query (markdown + JSON + PNG, and a Prefect artifact)."""
from __future__ import annotations

from typing import Any, Optional

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from tava_core.diagnose import DiagnoseConfig
from tava_core.home import TavaHome


@task(name="diagnose", task_run_name="diagnose {config.student}")
def diagnose_task(config: DiagnoseConfig, home: Optional[str]) -> dict[str, Any]:
    from pathlib import Path

    from tava_core.diagnose import run_diagnose

    record = run_diagnose(config, TavaHome(home), show_progress=True)
    create_markdown_artifact(key="diagnose-report", markdown=Path(record["files"]["markdown"]).read_text(),
                             description=f"tava diagnose {config.student} vs {config.teacher.model}")
    return record


@flow(name="diagnose", log_prints=True)
def diagnose_flow(config: DiagnoseConfig, home: Optional[str] = None) -> dict[str, Any]:
    """Where do student and teacher geometries disagree?

    Args:
        config: Dataset, student, teacher, sample size, k and tangent dimension.
        home: tava home directory; empty = $TAVA_HOME, else ./.tava.
    """
    return diagnose_task(config, str(TavaHome(home).root))
