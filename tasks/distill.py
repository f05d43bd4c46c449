"""Prefect tasks of `tava distill`: check the inputs (cheap, before any training), train + save the
student (reused when an identical run already finished), publish curves and metrics as artifacts."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import TaskRunContext

from tava_core.distill import DistillConfig, check_student_config, output_dir, prepare_training
from tava_core.distill.run import span_datasets
from tava_core.distill.spans import SPAN_COLLECTION
from tava_core.distill.data import training_collections
from tava_core.distill.trainer import check_corpus_size
from tava_core.encoders import load_encoder
from tava_core.home import TavaHome, find_dataset, slug
from tava_core.io import read_json, sha256_file, stable_hash
from tava_core.manifest import load_dataset_manifest


@task(name="distill-plan", task_run_name="plan distillation {config.name}")
def plan_task(config: DistillConfig, home: Optional[str]) -> dict[str, Any]:
    """Teacher identity and the (dataset, collections) whose teacher vectors must exist; raises on a
    config that cannot work before anything is embedded or trained."""
    teacher = load_encoder(config.teacher)
    check_student_config(config, teacher.dim)
    tava_home = TavaHome(home)
    datasets = []
    for dataset in config.datasets:
        dataset_dir = find_dataset(tava_home, dataset)
        manifest = load_dataset_manifest(dataset_dir)
        datasets.append({"dataset": str(dataset_dir), "name": manifest.name,
                         "collections": training_collections(list(manifest.collections), config.collections,
                                                             dataset_dir)})
    # Span views are a derived dataset (written here, cheap); the flow embeds them like the rest.
    spans = [{"dataset": str(d), "name": d.name, "collections": [SPAN_COLLECTION]}
             for d in span_datasets(config, tava_home)]
    return {"teacher": teacher.info(), "datasets": datasets, "span_datasets": spans}


@task(name="distill-check-data", task_run_name="check training data {config.name}")
def check_data_task(config: DistillConfig, home: Optional[str]) -> dict[str, Any]:
    """Join texts with teacher vectors (fingerprints, dims, NaN) and check the corpus size."""
    teacher = load_encoder(config.teacher)
    data = prepare_training(config, TavaHome(home), teacher)
    split = check_corpus_size(len(data.texts), config,
                              source=", ".join(f"{s['dataset']}/{s['collection']}" for s in data.sources))
    return {"texts": len(data.texts), "train": len(split.train), "validation": len(split.validation),
            "data_key": data.key, "sources": data.sources}


def train_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> Optional[str]:
    """Reuse a finished run only while its student is on disk with the weights it was saved with."""
    config: DistillConfig = parameters["config"]
    out = output_dir(config, TavaHome(parameters.get("home")))
    card_file, weights = out / "model_card.json", out / "model.safetensors"
    if not card_file.is_file() or not weights.is_file():
        return None
    return "distill-" + stable_hash([config.training_key(), parameters["data_key"], read_json(card_file).get("run_key"),
                                     sha256_file(weights)])


@task(name="distill-train", task_run_name="train student {config.name}", cache_key_fn=train_cache_key,
      persist_result=True)
def train_task(config: DistillConfig, home: Optional[str], data_key: str) -> dict[str, Any]:
    """Train and save the student atomically (resuming from its last checkpoint after a crash)."""
    from tava_core.distill import distill

    card = distill(config, TavaHome(home), progress=True)
    return {k: card[k] for k in ("name", "kind", "output", "validation", "speed", "corpus", "student", "reused")} | {
        "steps": card["training"]["steps_done"], "stopped": card["training"]["stopped"]}


@task(name="distill-publish", task_run_name="publish student report {record[name]}")
def publish_task(record: dict[str, Any]) -> None:
    """Curves (markdown with the PNG) and metrics (table) as Prefect artifacts."""
    out = Path(record["output"])
    key = "student-" + slug(record["name"]).lower().replace("_", "-").replace(".", "-")
    readme = (out / "README.md").read_text()
    body = readme.split("---", 2)[-1].replace("(curves.png)", f"({(out / 'curves.png').as_uri()})")
    create_markdown_artifact(body + f"\n\nStudent directory: `{out}`\n", key=key + "-card",
                             description=f"Stage A student {record['name']}")
    v, s = record["validation"], record["speed"]
    create_table_artifact([
        {"metric": "held-out cosine (start)", "value": round(v["initial_cosine"], 4)},
        {"metric": "held-out cosine (best)", "value": round(v["best_cosine"], 4)},
        {"metric": "best step", "value": v["best_step"]},
        {"metric": "steps run", "value": record["steps"]},
        {"metric": "stopped", "value": record["stopped"]},
        {"metric": "student texts/s", "value": round(s["student_texts_per_second"], 1)},
        {"metric": "teacher texts/s", "value": round(s["teacher_texts_per_second"], 1)},
        {"metric": "speed-up", "value": round(s["speedup"], 2)},
    ], key=key + "-metrics", description=f"Stage A student {record['name']}: validation and speed")
