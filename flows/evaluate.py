"""Flow: evaluate teacher, student and adapted student on a BEIR-style retrieval set.

    check data, ids, encoders and pair dims   (fails fast, before any encoding)
    -> embed the corpus once per document encoder   (cached: corpus checksum + fingerprint)
    -> encode the split's queries per query encoder (timed: queries/second)
    -> score every mode through mteb + every Matryoshka/quantisation variant in numpy
    -> report (JSON, markdown, PNG, mteb results) + Prefect table and markdown artifacts
    (an identical earlier evaluation -- same settings, data and encoder weights -- is served from its report)
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from prefect import flow, get_run_logger

from tasks.evaluate import embed_corpus_task, encode_queries_task, judge_task, plan_task, publish_task, score_task
from tava_core.embed import EmbedConfig
from tava_core.evaluate import EvalConfig
from tava_core.evaluate.config import JudgeConfig
from tava_core.home import TavaHome, find_dataset
from tava_core.manifest import load_dataset_manifest
from tava_core.records import EvaluationPlan, EvaluationReport

from .embed import embed_dataset_flow


def _encode_and_score(config: EvalConfig, checked: EvaluationPlan, home: Optional[str]) -> EvaluationReport:
    """Corpus vectors per distinct document encoder, queries per query role (timed), then scores:
    who encodes what is the core's ``encoding_plan`` (in ``checked``), decided once."""
    by_role: dict[str, str] = {}
    for role, shared_with in checked.corpus_roles.items():
        if shared_with not in by_role:
            by_role[shared_with] = embed_corpus_task(config, shared_with, home)
        by_role[role] = by_role[shared_with]
    # one after another, never beside the corpus encoding: the timing is the throughput figure
    query_records = {role: encode_queries_task(config, role, home) for role in checked.query_roles}
    return score_task(config, {role: by_role[role] for role in checked.corpus_roles}, query_records, home)


# The flow's default parameters, built once: Prefect shows them in the deployment's form, and
# the flows only read their config.
DEFAULT_EVAL_CONFIG = EvalConfig(dataset="builtin")


@flow(name="evaluate", log_prints=True)
def evaluate_flow(config: EvalConfig = DEFAULT_EVAL_CONFIG, home: Optional[str] = None) -> EvaluationReport:
    """Score every mode whose encoders are given, with Matryoshka and quantisation variants.

    Args:
        config: Retrieval dataset and split, teacher / student / adapted encoders, modes and variants.
        home: tava home directory (data, vectors, artifacts, reports); empty = $TAVA_HOME, else ./.tava.
    """
    logger = get_run_logger()
    checked = plan_task(config, home)
    dataset = checked.dataset
    logger.info("evaluating %s on %s (%d docs, %d queries)", ", ".join(checked.modes), dataset["name"],
                dataset["documents"], dataset["queries"])
    record = checked.earlier
    if record is not None:
        logger.info("identical evaluation (same settings, data and encoder weights) served from %s "
                    "(--no-reuse measures again)", record.directory)
    else:
        record = _encode_and_score(config, checked, home)
    publish_task(record, dataset["name"], dataset["split"])
    if config.router:   # the routed mode: its own files under <report>/router/
        from tasks.route import evaluate_router_task
        from tava_core.route.stored import evaluated_speedup

        # when this evaluation timed the router's student beside the teacher, the router reads its query
        # vectors back and takes the teacher's cost from that ratio instead of timing the teacher again
        speedup = evaluated_speedup(config.router, checked.encoders, record.throughput)
        routed = evaluate_router_task(config.router, config.dataset, config.split, f"{record.directory}/router", home,
                                      config.judgements, student_speedup=speedup)
        record = record.model_copy(update={"router": routed})
    logger.info("report written to %s", record.directory)
    return record


DEFAULT_JUDGE_CONFIG = JudgeConfig()


@flow(name="judge-dataset", log_prints=True)
def judge_flow(config: JudgeConfig = DEFAULT_JUDGE_CONFIG, home: Optional[str] = None) -> dict:
    """Let the teacher judge a corpus without qrels: its own top 10 documents for query-like texts.

    Args:
        config: The dataset, the teacher, how many query-like texts and from where.
        home: tava home directory (data, vectors, artifacts, reports); empty = $TAVA_HOME, else ./.tava.
    """
    dataset_dir = find_dataset(TavaHome(home), config.dataset)
    documents = load_dataset_manifest(Path(dataset_dir)).document_collection or "corpus"
    # the teacher's document vectors: those `tava embed` / the pipeline wrote, else computed now
    embedded = embed_dataset_flow(EmbedConfig(dataset=str(dataset_dir), collections=[documents],
                                              encoder=config.teacher), home=home)
    judged = judge_task(config, str(dataset_dir), embedded.vectors(documents), home)
    print(f"{'reused' if judged['reused'] else 'judged'}: the teacher's top 10 for {judged['queries_from']} "
          f"in {judged['directory']} (split {judged['split']})")
    return judged
