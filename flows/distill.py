"""Flow: distil the teacher into a small student (Stage A).

    plan (teacher, datasets, short span views of them; config checks)  ->  teacher vectors of the
    corpus and its spans (embedding flow, cached per shard: computed once, never in the training
    loop)  ->  check the joined data  ->  train + save <home>/artifacts/students/<name>/  ->  curves and metrics as artifacts
"""
from __future__ import annotations

from typing import Any, Optional

from prefect import flow, get_run_logger

from tasks.distill import check_data_task, plan_task, publish_task, train_task
from tava_core.config import EncoderSpec
from tava_core.distill import DistillConfig
from tava_core.embed import EmbedConfig
from tava_core.home import TavaHome


@flow(name="distill-student", log_prints=True)
def distill_student(config: DistillConfig = DistillConfig(), home: Optional[str] = None) -> dict[str, Any]:
    """Train a transformer or static student on the teacher's cached vectors of unlabeled text.

    Args:
        config: Teacher, training texts, student architecture and the training schedule.
        home: tava home directory (data, vectors, artifacts, reports); empty = $TAVA_HOME, else ./.tava.
    """
    from flows.embed import embed_dataset_flow

    logger = get_run_logger()
    home = str(TavaHome(home).root)
    plan = plan_task(config, home)
    to_embed = ([] if config.teacher_vectors else plan["datasets"]) + plan["span_datasets"]
    teacher_vectors: dict[str, str] = {}  # "<dataset dir>/<collection>" -> the teacher's vector dir
    for dataset in to_embed:
        embedded = embed_dataset_flow(EmbedConfig(dataset=dataset["dataset"], collections=dataset["collections"],
                                                  encoder=EncoderSpec(model=config.teacher)), home=home)
        teacher_vectors.update({f"{dataset['dataset']}/{c.collection}": c.vectors_dir for c in embedded.collections})
    checked = check_data_task(config, home)
    logger.info("training on %d texts (%d held out) from %s", checked["texts"], checked["validation"],
                ", ".join(f"{s['dataset']}/{s['collection']}" for s in checked["sources"]))
    record = train_task(config, home, checked["data_key"])
    publish_task(record)
    v, s = record["validation"], record["speed"]
    logger.info("student %s: held-out cosine %.4f -> %.4f, %.1fx the teacher's speed, saved to %s",
                record["name"], v["initial_cosine"], v["best_cosine"], s["speedup"], record["output"])
    # What later stages (an adapter on the same texts) need: the span datasets and teacher vectors.
    return {**record, "span_datasets": [d["dataset"] for d in plan["span_datasets"]],
            "teacher_vectors": teacher_vectors}
