"""Prefect tasks of `tava distill`: plan (config checks, before anything is embedded), train + save
the student (``tava_core.distill.distill``: the data is joined once, an identical finished run is
reused -- the one cache rule of ``tava_core.reuse``), publish curves and metrics as artifacts."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks import CORE_DECIDES
from tava_core.distill import DistillConfig, distill, plan_distillation
from tava_core.home import TavaHome, slug
from tava_core.records import DistillPlan, StudentRecord


@task(name="distill-plan", task_run_name="plan distillation {config.name}", cache_policy=CORE_DECIDES)
def plan_task(config: DistillConfig, home: Optional[str]) -> DistillPlan:
    """Teacher identity and the (dataset, collections) whose teacher vectors must exist; raises on a
    config that cannot work before anything is embedded or trained."""
    return plan_distillation(config, TavaHome(home))


@task(name="distill-train", task_run_name="train student {config.name}", cache_policy=CORE_DECIDES)
def train_task(config: DistillConfig, home: Optional[str]) -> StudentRecord:
    """Check the joined data, train and save the student atomically (resuming from its last
    checkpoint after a crash; reused when an identical run finished)."""
    return distill(config, TavaHome(home), progress=True)


@task(name="distill-publish", task_run_name="publish student report {record.name}", cache_policy=CORE_DECIDES)
def publish_task(record: StudentRecord) -> None:
    """Curves (markdown with the PNG) and metrics (table) as Prefect artifacts."""
    out = Path(record.output)
    key = "student-" + slug(record.name).lower().replace("_", "-").replace(".", "-")
    readme = (out / "README.md").read_text()
    body = readme.split("---", 2)[-1].replace("(curves.png)", f"({(out / 'curves.png').as_uri()})")
    create_markdown_artifact(body + f"\n\nStudent directory: `{out}`\n", key=key + "-card",
                             description=f"Stage A student {record.name}")
    create_table_artifact([
        {"metric": "held-out cosine (start)", "value": round(record.initial_cosine, 4)},
        {"metric": "held-out cosine (best)", "value": round(record.best_cosine, 4)},
        {"metric": "best step", "value": record.best_step},
        {"metric": "steps run", "value": record.steps},
        {"metric": "stopped", "value": record.stopped},
        {"metric": "student texts/s", "value": round(record.student_texts_per_second, 1)},
        {"metric": "teacher texts/s", "value": round(record.teacher_texts_per_second, 1)},
        {"metric": "speed-up", "value": round(record.speedup, 2)},
    ], key=key + "-metrics", description=f"Stage A student {record.name}: validation and speed")
