"""Flow `nightly_adapter_refresh`: keep the adapter current as new texts arrive.

    scan the drop zone for files no finished run consumed (nothing new: say so, stop)
      -> resolve student (configured or the registry's current), teacher, current adapter
      -> ingest the new files as one batch  ->  embed it with student and teacher (cached shards)
      -> continue training the current adapter on new (+ replayed) pairs -> candidate (staged)
      -> a blend published with the current adapter (<version>/blend) is rebuilt around the
         candidate: same static students and weights, the candidate as its adapter member
      -> recalibrate a confidence router for the candidate (over its blend, when it has one) on the
         new batch (saved inside it, so it is published in the same registry version: <version>/router)
      -> evaluate candidate and current (student+adapter queries vs teacher documents; routed,
         each with its own router, at router_budget of the queries to the teacher; and each blend)
      -> drift: the low-confidence share of the new batch against the previous batch (the current
         version's router judges both); the report says so in words when it rose
      -> promote if not worse than current - threshold (registry: compare-and-set under a lock),
         else keep current  ->  record consumed files; report (JSON, markdown, Prefect artifact)

One refresh per adapter name runs at a time (fcntl lock); a stage that fails for good stops the
run with its reason in the report, and the registry, the state file and the drop zone stay as
they were (the files are picked up again next time).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

from prefect import flow, get_run_logger

from tasks.refresh import (
    calibrate_router_task,
    candidate_dir,
    carry_blend_task,
    cleanup_candidates,
    discard_task,
    drift_task,
    ingest_task,
    promote_task,
    publish_report,
    resolve_task,
    scan_task,
    train_task,
)
from tava_core import refresh as core
from tava_core.config import EncoderSpec
from tava_core.embed import EmbedConfig
from tava_core.encoders.blend import attached_blend
from tava_core.errors import TavaError
from tava_core.home import TavaHome, slug
from tava_core.registry import RegistryLockedError, file_lock
from tava_core.route.publish import attached_router

from .embed import embed_dataset_flow
from .evaluate import evaluate_flow


class StageFailed(Exception):
    """Internal: carries the failed stage's name to the flow's report."""


def _reason(exc: BaseException) -> str:
    cause: Optional[BaseException] = exc
    while cause is not None and not isinstance(cause, TavaError):
        cause = cause.__cause__ or cause.__context__
    return str(cause or exc).strip() or type(exc).__name__


def _embed(dataset_dir: str, spec: dict[str, Any], home: str) -> dict[str, Any]:
    result = embed_dataset_flow(EmbedConfig(dataset=dataset_dir, collections=[core.BATCH_COLLECTION],
                                            encoder=EncoderSpec.model_validate(spec)), home=home)
    return {"vectors": result.collections[0].vectors_dir, "encoder": result.encoder}


def _evaluate_adapter(adapter_dir: str, config: core.RefreshConfig, home: str, tag: str) -> dict[str, float]:
    """nDCG@10 (adapted/teacher) on every evaluation set, each an `evaluate` sub-flow (retried once,
    as the task it replaces was)."""
    evaluate = evaluate_flow.with_options(retries=1, retry_delay_seconds=5)
    return {dataset: evaluate(eval_config, home=home).ndcg(core.EVAL_MODE)
            for dataset, eval_config in core.evaluation_configs(adapter_dir, config, tag).items()}


def _evaluate_routed(router_dir: str, config: core.RefreshConfig, home: str, tag: str) -> dict[str, float]:
    """Routed nDCG@10 on every evaluation set: the router sends exactly ``router_budget`` of the
    queries (its least confident) to the teacher (quality only: no cost timing in the gate)."""
    from tasks.route import evaluate_router_at_task
    from tava_core.route.stored import curve_row

    scores = {}
    for dataset in config.evaluation:
        out = TavaHome(home).reports / "refresh" / slug(config.name) / "route" / f"{tag}-{slug(Path(dataset).name)}"
        curves = evaluate_router_at_task(router_dir, dataset, config.split, str(out), [config.router_budget], False,
                                         home)
        scores[dataset] = curve_row(curves, config.router_budget)["router"]["ndcg10"]
    return scores


def _evaluate_all(stage, config: core.RefreshConfig, home: str, record: dict[str, Any], out_dir: str,
                  current: dict[str, Any], candidate_router: Optional[str], current_router: Optional[str],
                  ) -> tuple[dict[str, Any], Optional[dict[str, Any]], Optional[dict[str, Any]]]:
    """What the gate compares, candidate against current, each a stage: the adapter's nDCG@10, the routed
    one (with a router) and the blend's (when one is published). No evaluation sets: nothing (the gate falls back to held-out cosine)."""
    scores: dict[str, Any] = {"candidate": {}, "current": None}
    routed: Optional[dict[str, Any]] = None
    blended: Optional[dict[str, Any]] = None
    if not config.evaluation:
        return scores, routed, blended
    run, version = record["run"], current["version"]
    scores["candidate"] = stage("evaluate candidate", _evaluate_adapter, out_dir, config, home, f"candidate-{run}")
    if version is not None:
        scores["current"] = stage("evaluate current", _evaluate_adapter, current["path"], config, home,
                                  f"v{version}-{run}")
    if candidate_router is not None:
        routed = {"candidate": stage("evaluate candidate routed", _evaluate_routed, candidate_router, config, home,
                                     f"candidate-{run}"),
                  "current": None if current_router is None else stage(
                      "evaluate current routed", _evaluate_routed, current_router, config, home, f"v{version}-{run}")}
        record["routed"] = routed
    if record.get("blend"):
        # both blends scored the same way; the candidate's scores also go into the report's blend line
        record["blend"]["evaluation"] = stage("evaluate candidate blend", _evaluate_adapter,
                                              str(Path(out_dir) / record["blend"]["directory"]), config, home,
                                              f"candidate-blend-{run}")
        blended = {"candidate": record["blend"]["evaluation"],
                   "current": stage("evaluate current blend", _evaluate_adapter, str(attached_blend(current["path"])),
                                    config, home, f"v{version}-blend-{run}")}
    return scores, routed, blended


# The flow's default parameters, built once: Prefect shows them in the deployment's form, and
# the flows only read their config.
DEFAULT_REFRESH_CONFIG = core.RefreshConfig()


@flow(name="nightly-adapter-refresh", log_prints=True)
def nightly_adapter_refresh(config: core.RefreshConfig = DEFAULT_REFRESH_CONFIG,
                            home: Optional[str] = None) -> dict[str, Any]:
    """Train the current adapter further on texts that arrived since the last run; promote it only
    if it is not worse on the evaluation sets.

    Args:
        config: Drop zone, student/teacher, evaluation sets, promotion threshold, training settings.
        home: tava home directory (data, vectors, artifacts, reports); empty = $TAVA_HOME, else ./.tava.
    """
    logger = get_run_logger()
    root = str(TavaHome(home).root)
    record: dict[str, Any] = {"name": config.name, "run": core.new_run_id(), "started": core.now_iso(),
                              "status": "running", "new_files": [], "config": config.model_dump(mode="json")}
    started = time.perf_counter()
    try:
        with file_lock(core.run_lock_path(TavaHome(root), config.name), timeout=config.lock_timeout_seconds,
                       what=f"the refresh of adapter {config.name!r}"):
            _refresh(config, root, record, logger)
    except RegistryLockedError as exc:
        record.update(status="locked", message=f"another refresh is running; this one did nothing. {exc}")
        logger.warning(record["message"])
    except BaseException as exc:  # outside any stage (say, interrupted): still say so in the report
        record.update(status="failed", message=f"refresh stopped: {_reason(exc)}")
        raise
    finally:
        record["seconds"] = round(time.perf_counter() - started, 2)
        record["finished"] = core.now_iso()
        record["report"] = publish_report(record, root)
    if record["status"] == "failed":
        raise StageFailed(record["message"])
    return record


def _refresh(config: core.RefreshConfig, home: str, record: dict[str, Any], logger) -> None:
    def stage(name: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except BaseException as exc:
            after = (f"Version {record['promoted_version']} was already promoted; the consumed-files state was "
                     "not updated, so the next run trains on these files again." if record.get("promoted_version")
                     else "The registry and the consumed-files state are unchanged; the new files will be picked "
                          "up again by the next run.")
            record.update(status="failed", failed_stage=name,
                          message=f"stage '{name}' failed: {_reason(exc)}\n\n{after}")
            logger.error("refresh stopped at stage %s: %s", name, _reason(exc))
            raise StageFailed(name) from exc

    try:
        cleanup_candidates(home, config.name)
        new_files = stage("scan", scan_task, config, home)
        record["new_files"] = new_files
        if not new_files:
            record.update(status="nothing-new", message=f"No new files in the drop zone "
                          f"`{core.drop_zone(config, TavaHome(home))}` since the last run: nothing was trained.")
            logger.info(record["message"])
            return
        logger.info("%d new file(s): %s", len(new_files), ", ".join(f["relative"] for f in new_files))

        resolved = stage("resolve", resolve_task, config, home)
        current = resolved["current"]
        record["current_version"] = current["version"]
        logger.info("student %s, teacher %s; %s", resolved["student"]["encoder"]["name"],
                    resolved["teacher"]["encoder"]["name"], current["note"])

        dataset = f"refresh-{slug(config.name)}-{record['run']}"
        batch = stage("ingest", ingest_task, new_files, dataset, home, config)
        record["batch"] = batch
        student = stage("embed student", _embed, batch["path"], resolved["student"]["spec"], home)
        teacher = stage("embed teacher", _embed, batch["path"], resolved["teacher"]["spec"], home)
        batch.update(student_vectors=student["vectors"], teacher_vectors=teacher["vectors"],
                     student_fingerprint=student["encoder"]["fingerprint"],
                     teacher_fingerprint=teacher["encoder"]["fingerprint"])

        out_dir = candidate_dir(home, config.name, record["run"])
        trained = stage("train", train_task, config, home, batch, resolved, out_dir)
        record["training"] = trained
        logger.info("candidate trained on %d new + %d replayed pairs in %s s", trained["pairs_new"],
                    trained["pairs_replayed"], trained["seconds"])

        if current["path"] is not None:
            # a blend published with the current adapter keeps its static students and weights and
            # takes the candidate as its adapter member; it is what users are served, so the gate judges it
            # (carried before the router is calibrated: the router sits on the blend when there is one)
            record["blend"] = stage("carry blend", carry_blend_task, current["path"], out_dir)
        candidate_router = current_router = None
        if config.router:
            record["router"] = stage("calibrate router", calibrate_router_task, config, home, batch, out_dir)
            candidate_router = record["router"]["directory"]
            logger.info("candidate's router: threshold %.4f (%.0f%% to the teacher), %d pairs, %d span views",
                        record["router"]["threshold"]["threshold"], 100 * config.router_budget,
                        record["router"]["reference_texts"], record["router"]["calibration_texts"])
        if current["path"] is not None and attached_router(current["path"]) is not None:
            current_router = str(attached_router(current["path"]))

        scores, routed, blended = _evaluate_all(stage, config, home, record, out_dir, current, candidate_router,
                                                current_router)
        decision = core.compare(config, scores["candidate"], scores["current"], trained, routed, blended)
        record["decision"] = decision
        logger.info(decision["why"])

        if config.router:
            record["drift"] = stage("drift", drift_task, config, home, batch, current_router, candidate_router)
            (logger.warning if record["drift"].get("drifted") else logger.info)(record["drift"]["message"])

        if decision["promote"]:
            lineage = {
                "data": {"batch": {k: batch[k] for k in ("dataset", "path", "rows", "manifest_sha256")},
                         "files": [{k: f[k] for k in ("relative", "sha256")} for f in new_files],
                         "replayed_from": trained["replayed_from"],
                         "evaluation": config.evaluation},
                "teacher": {"name": teacher["encoder"]["name"], "fingerprint": teacher["encoder"]["fingerprint"],
                            "spec": resolved["teacher"]["spec"]},
                "student": {"name": student["encoder"]["name"], "fingerprint": student["encoder"]["fingerprint"],
                            "source": resolved["student"]["source"], "version": resolved["student"].get("version"),
                            "spec": resolved["student"]["spec"]},
                "parent_version": current["version"] if trained["warm_start"] else None,
                "replaced_version": current["version"], "run": record["run"],
                "blend": record.get("blend"),   # None, or the blend published inside this version
            }
            if candidate_router is not None:
                lineage["router"] = {"directory": "router", "budget": config.router_budget,
                                     "threshold": record["router"]["threshold"], "served": record["router"]["served"]}
            metrics = {"evaluation": scores["candidate"], "heldout": trained["heldout"],
                       "decision_metric": decision["metric"],
                       **({"routed": routed["candidate"]} if routed is not None else {}),
                       **({"blend": blended["candidate"]} if blended is not None else {})}
            promoted = stage("promote", promote_task, config.name, home, out_dir, current["version"], lineage,
                             metrics, decision["why"], config.keep_versions)
            record.update(status="promoted", promoted_version=promoted["version"],
                          message=f"Promoted version {promoted['version']}: {decision['why']}.")
        else:
            discard_task(out_dir)
            record.update(status="kept", message=f"Current version {current['version']} stays: {decision['why']}.")

        if record.get("drift", {}).get("drifted"):
            record["message"] += f" Drift: {record['drift']['message']}."
        # Only a finished run consumes its files (also a kept one: its texts were trained on and
        # judged; they stay available to later runs through replay).
        stage("record state", core.record_run, TavaHome(home), config.name, record, new_files, batch)
    except StageFailed:
        return
