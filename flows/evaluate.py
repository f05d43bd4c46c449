"""Flow: evaluate teacher, student and adapted student on a BEIR-style retrieval set.

    check data, ids, encoders and pair dims   (fails fast, before any encoding)
    -> embed the corpus once per document encoder   (cached: corpus checksum + fingerprint)
    -> encode the split's queries per query encoder (timed: queries/second)
    -> score every mode through mteb + every Matryoshka/quantisation variant in numpy
    -> report (JSON, markdown, PNG, mteb results) + Prefect table and markdown artifacts
    (an identical earlier evaluation -- same settings, data and encoder weights -- is served from its report)
"""
from __future__ import annotations

from typing import Any, Optional

import click
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import BaseModel

from tasks.evaluate import embed_corpus_task, encode_queries_task, plan_task, score_task
from tava_core.evaluate import MODE_ROLES, EvalConfig
from tava_core.evaluate.report import markdown_table
from tava_core.evaluate.vectors import vector_key
from tava_core.home import TavaHome, slug

from .cli import build_config, config_options, echo_record


class EvalResult(BaseModel):
    run: str
    directory: str
    files: dict[str, str]
    teacher_ndcg_at_10: Optional[float]
    rows: list[dict[str, Any]]
    throughput: dict[str, float]
    mteb_agrees: Optional[bool]
    reused: bool = False           # served from an identical earlier evaluation's report
    router: Optional[dict[str, Any]] = None   # the routed mode (--router): curves, costs, files


def _table_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    keys = ("mode", "variant", "dim", "ndcg_at_10", "recall_at_100", "mrr_at_10", "retention")
    return [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if k in keys}
            for row in report["rows"]]


def _encode_and_score(config: EvalConfig, dataset: dict[str, Any], encoders: dict[str, Any], modes: list[str],
                      home: Optional[str]) -> dict[str, Any]:
    """Corpus vectors per document encoder (cached), queries per query encoder (timed), then scores."""
    tava_home = TavaHome(home)
    key = vector_key(dataset["name"], dataset["corpus_checksum"], dataset["ingested"])
    corpus_dirs: dict[str, str] = {}
    by_fingerprint: dict[str, str] = {}
    for role in dict.fromkeys(MODE_ROLES[m][1] for m in modes):     # each document encoder once
        info = encoders[role]
        if info["fingerprint"] not in by_fingerprint:
            expected = str(tava_home.vector_dir(key, "corpus", info["name"], info["fingerprint"]))
            by_fingerprint[info["fingerprint"]] = embed_corpus_task(
                config, role, dataset["corpus_checksum"], info["fingerprint"], expected, home)
        corpus_dirs[role] = by_fingerprint[info["fingerprint"]]

    # one after another, never beside the corpus encoding: the timing is the throughput figure
    query_records = {role: encode_queries_task(config, role, home)
                     for role in dict.fromkeys(MODE_ROLES[m][0] for m in modes)}
    return score_task(config, corpus_dirs, query_records, home)


@flow(name="evaluate", log_prints=True)
def evaluate_flow(config: EvalConfig = EvalConfig(dataset="builtin"), home: Optional[str] = None) -> EvalResult:
    """Score every mode whose encoders are given, with Matryoshka and quantisation variants.

    Args:
        config: Retrieval dataset and split, teacher / student / adapted encoders, modes and variants.
        home: tava home directory (data, vectors, artifacts, reports); empty = $TAVA_HOME, else ./.tava.
    """
    logger = get_run_logger()
    checked = plan_task(config, home)
    dataset, encoders, modes = checked["dataset"], checked["encoders"], checked["modes"]
    logger.info("evaluating %s on %s (%d docs, %d queries)", ", ".join(modes), dataset["name"],
                dataset["documents"], dataset["queries"])
    report = checked["earlier_report"]
    if report is not None:
        logger.info("identical evaluation (same settings, data and encoder weights) reported on %s; served "
                    "from %s (--no-reuse measures again)", report.get("created"), report["directory"])
    else:
        report = _encode_and_score(config, dataset, encoders, modes, home)
    create_table_artifact(key=f"evaluate-{slug(dataset['name']).lower().replace('_', '-').replace('.', '-')}",
                          table=_table_rows(report),
                          description=f"tava evaluate {dataset['name']} ({dataset['split']}): nDCG@10, recall@100, "
                                      "MRR@10, retention per mode and variant")
    create_markdown_artifact(key="evaluate-report", markdown=markdown_table(report),
                             description=f"tava evaluate report {report['run']}")
    checks = report.get("mteb_check") or {}
    routed = None
    if config.router:   # the routed mode: its own files under <report>/router/
        from tasks.route import evaluate_router_task

        routed = evaluate_router_task(config.router, config.dataset, config.split,
                                      f"{report['directory']}/router", home)
    logger.info("report written to %s", report["directory"])
    return EvalResult(run=report["run"], directory=report["directory"], files=report["files"],
                      teacher_ndcg_at_10=report["teacher_ndcg_at_10"], rows=_table_rows(report),
                      throughput={role: rec["queries_per_second"] for role, rec in report["throughput"].items()},
                      mteb_agrees=all(c["agree"] for c in checks.values()) if checks else None,
                      reused=bool(report.get("reused")), router=routed)


@click.command("evaluate")
@config_options(EvalConfig)
@click.pass_context
def cli(ctx: click.Context, **params) -> None:
    """Evaluate encoders on a BEIR set (directory or ingested dataset) through mteb.

    Example: tava evaluate --dataset ../shared/data/beir/scifact --student STUDENT_DIR --adapted ADAPTED_DIR
    """
    config = build_config(EvalConfig, ctx, params)
    echo_record(evaluate_flow(config, home=str(TavaHome().root)))


if __name__ == "__main__":
    cli()
