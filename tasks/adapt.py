"""Prefect tasks of `tava adapt`: check the inputs (cheap, before training), train + save
(cached on the input shards' checksums + config), publish the report as artifacts."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import TaskRunContext

from tava_core.adapter.config import AdapterConfig
from tava_core.adapter.io import adapter_weights_hash
from tava_core.adapter.report import markdown_report
from tava_core.adapter.run import (default_name, load_training_vectors, save_run, student_spec_for,
                                     train_adapter_from_arrays)
from tava_core.home import TavaHome, slug
from tava_core.io import read_json, stable_hash
from tava_core.manifest import load_vector_manifest


def inputs_checksum(config: AdapterConfig) -> str:
    """Hash of every input shard's sha256 (from the manifests) and the warm-start weights."""
    shards = []
    for directory in [*config.student_vectors, *config.teacher_vectors]:
        manifest = load_vector_manifest(directory)
        shards.append([manifest.fingerprint, [s.sha256 for s in manifest.shards]])
    warm = adapter_weights_hash(config.warm_start) if config.warm_start else None
    return stable_hash([shards, warm])


@task(name="adapt-check-inputs", task_run_name="check adapter inputs")
def check_inputs_task(config: AdapterConfig) -> dict[str, Any]:
    """Read both sides, join pairs and raise on bad input (dims, fingerprints, NaN, too few pairs)."""
    student, teacher, keys, _, _ = load_training_vectors(config)
    return {"name": config.name or default_name(student, teacher), "pairs": len(keys),
            "student": {"encoder": student.encoder, "rows": len(student.keys)},
            "teacher": {"encoder": teacher.encoder, "rows": len(teacher.keys)},
            "inputs_checksum": inputs_checksum(config)}


def train_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> Optional[str]:
    """Reuse a finished run only while its adapter directory is on disk with the same weights."""
    out_dir = Path(parameters["out_dir"])
    record_hash = parameters.get("inputs_checksum")
    if not (out_dir / "model.safetensors").is_file() or not record_hash:
        return None
    config: AdapterConfig = parameters["config"]
    return "adapt-" + stable_hash([record_hash, config.model_dump(mode="json"), str(out_dir),
                                   adapter_weights_hash(out_dir)])


@task(name="adapt-train", task_run_name="train adapter {name}", cache_key_fn=train_cache_key,
      persist_result=True)
def train_task(config: AdapterConfig, name: str, out_dir: str, inputs_checksum: str) -> dict[str, Any]:
    """Train (best of the configured seeds) and save adapter + report atomically; returns the record.
    A diverged run raises TrainingError and leaves ``out_dir`` as it was."""
    run_key = stable_hash([inputs_checksum, config.model_dump(mode="json")])
    saved = Path(out_dir) / "report.json"
    if saved.is_file() and (Path(out_dir) / "model.safetensors").is_file():
        report = read_json(saved)
        if report.get("run_key") == run_key:  # an identical finished run: reuse it, even on a new cache
            return {"name": name, "adapter_dir": out_dir, "metrics": report["metrics"], "training": report["training"],
                    "loadable_encoder": (Path(out_dir) / "tava_encoder.json").is_file(), "reused": True}
    student, teacher, _, x, y = load_training_vectors(config)
    run = train_adapter_from_arrays(x, y, config, name=name, student_info=dict(student.encoder, dirs=student.dirs),
                                    teacher_info=dict(teacher.encoder, dirs=teacher.dirs),
                                    warm_start=config.warm_start, show_progress=True)
    run.report["run_key"] = run_key
    save_run(run, out_dir, student_spec=student_spec_for(config, student))
    return {"name": name, "adapter_dir": out_dir, "metrics": run.report["metrics"],
            "training": run.report["training"], "loadable_encoder": (Path(out_dir) / "tava_encoder.json").is_file(),
            "reused": False}


@task(name="adapt-publish-report", task_run_name="publish adapter report {record[name]}")
def publish_report_task(record: dict[str, Any]) -> None:
    """The report as a markdown artifact and the metrics as a table artifact in the Prefect UI."""
    report = read_json(Path(record["adapter_dir"]) / "report.json")
    key = "adapter-" + slug(record["name"]).lower().replace("_", "-").replace(".", "-")
    create_markdown_artifact(markdown_report(report), key=key + "-report", description=f"adapter {record['name']}")
    rows = [{"map": name, **{k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}}
            for name, metrics in report["metrics"].items()]
    if rows:
        create_table_artifact(rows, key=key + "-metrics", description="held-out alignment vs closed-form baselines")


def adapter_dir(home: TavaHome, name: str) -> str:
    return str(home.artifacts / "adapters" / slug(name))
