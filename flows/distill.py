"""Flow: distil the teacher into a small student (Stage A).

    plan (teacher, datasets, short span views of them; config checks)  ->  teacher vectors of the
    corpus and its spans (embedding flow, cached per shard: computed once, never in the training
    loop)  ->  join + check the data, train + save <home>/artifacts/students/<name>/ (one task:
    the data is read once)  ->  curves and metrics as artifacts
"""
from __future__ import annotations

from typing import Optional

from prefect import flow, get_run_logger

from tasks.distill import plan_task, publish_task, train_task
from tava_core.distill import DistillConfig
from tava_core.distill.run import no_gain_note
from tava_core.embed import EmbedConfig
from tava_core.home import TavaHome
from tava_core.records import StudentRecord

# The flow's default parameters, built once: Prefect shows them in the deployment's form, and
# the flows only read their config.
DEFAULT_DISTILL_CONFIG = DistillConfig()


@flow(name="distill-student", log_prints=True)
def distill_student(config: DistillConfig = DEFAULT_DISTILL_CONFIG, home: Optional[str] = None) -> StudentRecord:
    """Train a transformer or static student on the teacher's cached vectors of unlabeled text.

    Args:
        config: Teacher, training texts, student architecture and the training schedule.
        home: tava home directory (data, vectors, artifacts, reports); empty = $TAVA_HOME, else ./.tava.
    """
    from flows.embed import embed_dataset_flow

    logger = get_run_logger()
    home = str(TavaHome(home).root)
    plan = plan_task(config, home)
    to_embed = ([] if config.teacher_vectors else plan.datasets) + plan.span_datasets
    teacher_vectors: dict[str, str] = {}  # "<dataset dir>/<collection>" -> the teacher's vector dir
    for dataset in to_embed:
        embedded = embed_dataset_flow(EmbedConfig(dataset=dataset.dataset, collections=dataset.collections,
                                                  encoder=config.teacher), home=home)
        teacher_vectors.update({f"{dataset.dataset}/{c.collection}": c.vectors_dir for c in embedded.collections})
    record = train_task(config, home)
    logger.info("trained on %d texts (%d held out) from %s", record.texts, record.validation_texts,
                ", ".join(f"{s['dataset']}/{s['collection']}" for s in record.sources))
    publish_task(record)
    logger.info("student %s: held-out cosine %.4f -> %.4f, %.1fx the teacher's speed, saved to %s",
                record.name, record.initial_cosine, record.best_cosine, record.speedup, record.output)
    if (note := no_gain_note(record)) is not None:
        logger.warning("%s", note)
    # What later stages (an adapter on the same texts) need: the span datasets and teacher vectors.
    return record.model_copy(update={"span_datasets": [d.dataset for d in plan.span_datasets],
                                     "teacher_vectors": teacher_vectors})
