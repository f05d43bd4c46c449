"""Prefect tasks of the nightly adapter refresh: thin wrappers of ``tava_core.refresh``.

No cross-run result cache: each run consumes new files and may move the registry's pointer, and
the expensive inner steps (embedding shards, evaluation vectors) have their own caches.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Optional

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from tava_core import refresh as core
from tava_core.encoders import load_encoder
from tava_core.home import TavaHome
from tava_core.registry import Registry

from . import retry_unless_tava_error

RETRY = dict(retries=1, retry_delay_seconds=[5], retry_condition_fn=retry_unless_tava_error, cache_policy=NO_CACHE)


@task(name="refresh-scan-drop-zone", task_run_name="scan drop zone of {config.name}", **RETRY)
def scan_task(config: core.RefreshConfig, home: str) -> list[dict[str, Any]]:
    """New files (by sha256) in the drop zone."""
    return [f.__dict__ for f in core.scan_drop_zone(config, TavaHome(home))]


@task(name="refresh-resolve", task_run_name="resolve student, teacher, current adapter", **RETRY)
def resolve_task(config: core.RefreshConfig, home: str) -> dict[str, Any]:
    """Load student and teacher (fails early on a bad model) and find the current adapter."""
    registry = Registry(home)
    student_spec, student_source = core.resolve_student(config, registry)
    student, teacher = load_encoder(student_spec), load_encoder(config.teacher)
    current = core.resolve_current_adapter(config, registry, student.fingerprint, teacher.fingerprint,
                                           student_dir=student_spec.model)
    return {"student": {"spec": student_spec.model_dump(mode="json"), "encoder": student.info(), **student_source},
            "teacher": {"spec": config.teacher.model_dump(mode="json"), "encoder": teacher.info()},
            "current": current}


@task(name="refresh-ingest", task_run_name="ingest {dataset}", **RETRY)
def ingest_task(files: list[dict[str, Any]], dataset: str, home: str, config: core.RefreshConfig) -> dict[str, Any]:
    """The new files as one ingested dataset (collection `texts`)."""
    return core.ingest_batch([core.NewFile(**f) for f in files], dataset, TavaHome(home), text_field=config.text_field,
                             on_bad_record=config.on_bad_record)


@task(name="refresh-train", task_run_name="train candidate adapter", **RETRY)
def train_task(config: core.RefreshConfig, home: str, batch: dict[str, Any], resolved: dict[str, Any],
               out_dir: str) -> dict[str, Any]:
    """Continue training the current adapter on new (+ replayed) pairs; candidate saved outside the registry."""
    return core.train_candidate(config, TavaHome(home), batch=batch, student=resolved["student"],
                                teacher=resolved["teacher"], current=resolved["current"], out_dir=out_dir)


@task(name="refresh-calibrate-router", task_run_name="calibrate the candidate's router", **RETRY)
def calibrate_router_task(config: core.RefreshConfig, home: str, batch: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """A router for the candidate on the new batch, saved inside the candidate (published with it)."""
    return core.calibrate_candidate_router(config, TavaHome(home), batch, out_dir)


@task(name="refresh-carry-blend", task_run_name="rebuild the current blend around the candidate", **RETRY)
def carry_blend_task(current_version_dir: str, out_dir: str) -> Optional[dict[str, Any]]:
    """The current version's blend (adapter + static students), rebuilt inside the candidate around the
    new adapter (published with it); None when the current version has none."""
    from tava_core.encoders.blend import BLEND_SUBDIR, carry_blend

    blend = carry_blend(current_version_dir, out_dir)
    if blend is None:
        return None
    return {"directory": BLEND_SUBDIR, "members": [m.name for m in blend.members], "weights": blend.weights}


@task(name="refresh-drift", task_run_name="low-confidence share: new batch vs previous", **RETRY)
def drift_task(config: core.RefreshConfig, home: str, batch: dict[str, Any], current_router: Optional[str],
               candidate_router: Optional[str]) -> dict[str, Any]:
    """Drift of the new batch against the previous one, judged by the serving router."""
    return core.measure_drift(config, TavaHome(home), batch, current_router=current_router,
                              candidate_router=candidate_router)


@task(name="refresh-promote", task_run_name="promote candidate of {name}", cache_policy=NO_CACHE)
def promote_task(name: str, home: str, candidate_dir: str, expected_current: Optional[str], lineage: dict[str, Any],
                 metrics: dict[str, Any], note: str, keep_versions: int) -> dict[str, Any]:
    """Publish the candidate as a new version and make it current — refused (StalePromotionError,
    nothing written) when another run moved `current` since this one started."""
    registry = Registry(home)
    record = registry.publish("adapters", name, candidate_dir, lineage=lineage, metrics=metrics, note=note,
                              promote=True, expected_current=expected_current, move=True)
    registry.prune("adapters", name, keep_versions)
    return {"version": record.version, "path": record.path}


@task(name="refresh-discard", task_run_name="discard candidate", cache_policy=NO_CACHE)
def discard_task(candidate_dir: str) -> None:
    shutil.rmtree(candidate_dir, ignore_errors=True)


def artifact_key(name: str) -> str:
    return "refresh-" + "".join(c if c.isalnum() else "-" for c in name.lower())


def publish_report(record: dict[str, Any], home: str) -> str:
    """The run's report: JSON + markdown under <home>/reports/refresh/, and a markdown artifact
    (called from the flow even when a stage failed, so the UI shows why)."""
    path = core.write_report(TavaHome(home), record)
    try:
        create_markdown_artifact(core.report_markdown(record), key=artifact_key(record["name"]),
                                 description=f"adapter refresh {record['name']}: {record['status']}")
    except Exception:  # noqa: BLE001 - outside a flow run (or API down) the files above still hold it
        pass
    return path


def candidate_dir(home: str, name: str, run: str) -> str:
    return str(core.refresh_dir(TavaHome(home), name) / "candidates" / run)


def cleanup_candidates(home: str, name: str) -> None:
    """Remove staged candidates of earlier runs that died before finishing."""
    root = Path(core.refresh_dir(TavaHome(home), name) / "candidates")
    if root.is_dir():
        for child in root.iterdir():
            shutil.rmtree(child, ignore_errors=True)
