"""Prefect tasks of `tava evaluate`: plan (all checks; which encoder encodes what; an identical
earlier evaluation), embed the corpus per document encoder (vector shards already current are
reused -- the one cache rule of ``tava_core.reuse``), encode queries (timed), score and report.
Tasks pass the config, paths and small records; vectors stay on disk."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks import CORE_DECIDES
from tava_core.evaluate import EvalConfig
from tava_core.evaluate.config import JudgeConfig
from tava_core.evaluate.report import markdown_table
from tava_core.evaluate.runner import (
    earlier_report,
    encoding_plan,
    evaluation_record,
    load_encoders,
    plan,
    retrieval_data,
    score_and_report,
)
from tava_core.evaluate.vectors import embed_corpus, encode_queries, query_vector_path
from tava_core.home import TavaHome, slug
from tava_core.io import read_json
from tava_core.records import EvaluationPlan, EvaluationReport


@task(name="evaluate-plan", task_run_name="check {config.dataset} ({config.split})", cache_policy=CORE_DECIDES)
def plan_task(config: EvalConfig, home: Optional[str] = None) -> EvaluationPlan:
    """Read and check the data, load the encoders, check pair dims; before any encoding. Also finds
    the report of an identical earlier evaluation, which the flow then serves (``config.reuse``)."""
    tava_home = TavaHome(home)
    data, encoders, modes = plan(config, tava_home)
    corpus_roles, query_roles = encoding_plan(modes, {role: enc.fingerprint for role, enc in encoders.items()})
    earlier = earlier_report(config, tava_home, data, encoders)
    return EvaluationPlan(dataset=data.summary(), modes=modes,
                          encoders={role: enc.info() for role, enc in encoders.items()},
                          corpus_roles=corpus_roles, query_roles=query_roles,
                          earlier=evaluation_record(earlier) if earlier is not None else None)


@task(name="evaluate-embed-corpus", task_run_name="embed corpus with {role}", retries=1, cache_policy=CORE_DECIDES)
def embed_corpus_task(config: EvalConfig, role: str, home: Optional[str] = None) -> str:
    """Document vectors of the corpus by the ``role`` encoder; returns their directory."""
    tava_home = TavaHome(home)
    data = retrieval_data(config, tava_home)
    encoder = load_encoders(config)[role]
    return str(embed_corpus(data, encoder, tava_home, batch_size=config.batch_size))


@task(name="evaluate-encode-queries", task_run_name="encode queries with {role}", cache_policy=CORE_DECIDES)
def encode_queries_task(config: EvalConfig, role: str, home: Optional[str] = None) -> dict[str, Any]:
    """The split's queries by the ``role`` encoder (timed: queries/second)."""
    tava_home = TavaHome(home)
    data = retrieval_data(config, tava_home)
    encoder = load_encoders(config)[role]
    return encode_queries(data, encoder, query_vector_path(tava_home, data, encoder), batch_size=config.batch_size)


# log_prints off here: mteb hashes through `datasets`/dill, whose nestedglobals() reads dis.dis()
# output by capturing stdout; Prefect's print capture would steal that output (pages of bytecode
# in the run log) and leave dill's capture empty.
@task(name="evaluate-score-and-report", task_run_name="score {config.dataset} and report", log_prints=False,
      cache_policy=CORE_DECIDES)
def score_task(config: EvalConfig, corpus_dirs: dict[str, str], query_records: dict[str, dict[str, Any]],
               home: Optional[str] = None) -> EvaluationReport:
    """mteb + numpy scores of every mode and variant; the report directory, written atomically."""
    tava_home = TavaHome(home)
    data = retrieval_data(config, tava_home)
    return evaluation_record(score_and_report(config, tava_home, data, load_encoders(config), corpus_dirs,
                                              query_records))


@task(name="evaluate-publish", task_run_name="publish evaluation {record.run}", cache_policy=CORE_DECIDES)
def publish_task(record: EvaluationReport, dataset_name: str, split: str) -> None:
    """The rows as a table artifact and the report as a markdown artifact in the Prefect UI."""
    report = read_json(Path(record.files["json"]))
    create_table_artifact(key=f"evaluate-{slug(dataset_name).lower().replace('_', '-').replace('.', '-')}",
                          table=[row.model_dump() for row in record.rows],
                          description=f"tava evaluate {dataset_name} ({split}): nDCG@10, recall@100, "
                                      "MRR@10, retention per mode and variant")
    create_markdown_artifact(key="evaluate-report", markdown=markdown_table(report),
                             description=f"tava evaluate report {record.run}")


@task(name="judge-with-teacher", task_run_name="teacher judges {config.dataset}", cache_policy=CORE_DECIDES)
def judge_task(config: JudgeConfig, dataset_dir: str, document_vectors: str, home: Optional[str] = None) -> dict[str, Any]:
    """Label-free judgements of a dataset: the teacher's top 10 for query-like texts, written under
    <home>/artifacts/judgements (reused when identical); returns judgements.json's record."""
    from tava_core.evaluate.judgements import judge_with_teacher

    return judge_with_teacher(dataset_dir, document_vectors, config.teacher, artifacts=TavaHome(home).artifacts,
                              queries=config.queries, seed=config.seed, spans=config.spans)
