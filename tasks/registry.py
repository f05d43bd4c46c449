"""Prefect task: publish an artifact directory as the registry's current version of a name,
unless the current version already is that artifact (so a cached pipeline re-run adds nothing)."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Optional

from prefect import task
from prefect.cache_policies import NO_CACHE

from tava_core.registry import BUNDLED_STUDENT, Registry


@task(name="registry-publish", task_run_name="publish {kind}/{name}", cache_policy=NO_CACHE)
def publish_current_task(kind: str, name: str, source_dir: str, identity: str, home: Optional[str],
                         lineage: dict[str, Any], metrics: Optional[dict[str, Any]] = None,
                         router_dir: Optional[str] = None, blend_dir: Optional[str] = None,
                         student_dir: Optional[str] = None) -> dict[str, Any]:
    """``identity`` names the artifact's content (a run key or weights checksum): when the
    current version carries the same one, nothing is published. ``router_dir``: a router
    calibrated for this adapter, ``blend_dir``: a blend of this adapter with static students, each
    published inside the same version (``router/``, ``blend/``). ``student_dir``: the adapter's student,
    copied into the version (``student/``) and named there instead of its artifact directory -- a later
    run retrains that directory in place, and a rolled-back adapter must still find the student it was
    trained for. (The registry's own student version would do, but its record file is hashed into its
    fingerprint, so it is not the student the adapter's report names.)"""
    registry = Registry(home)
    current = registry.current_version(kind, name)
    if current is not None and registry.record(kind, name, current).lineage.get("identity") == identity:
        return {"kind": kind, "name": name, "version": current, "published": False,
                "path": str(registry.current_path(kind, name))}
    source: Any = source_dir
    if router_dir is not None or blend_dir is not None or student_dir is not None:
        from tava_core.encoders.blend import attach_blend
        from tava_core.encoders.mapped import rename_inner_encoder
        from tava_core.route.publish import attach_router

        def source(staging: Path) -> None:
            shutil.copytree(source_dir, staging, dirs_exist_ok=True)
            if student_dir is not None:
                shutil.copytree(student_dir, staging / BUNDLED_STUDENT)
                rename_inner_encoder(staging, "student", BUNDLED_STUDENT)
            if blend_dir is not None:     # first: a router over the blend names it ../blend
                attach_blend(blend_dir, source_dir, staging)
            if router_dir is not None:
                attach_router(router_dir, staging, blend_source=blend_dir)
    record = registry.publish(kind, name, source, lineage={**lineage, "identity": identity},
                              metrics=metrics or {}, note="published by the pipeline", promote=True)
    return {"kind": kind, "name": name, "version": record.version, "published": True,
            "path": str(registry.current_path(kind, name))}
