"""`tava evaluate` (flow `evaluate`) and `tava judge` (flow `judge-dataset`)."""
from __future__ import annotations

import click

from tava_core.evaluate.config import EvalConfig, JudgeConfig
from tava_core.home import TavaHome

from .._server import run_flow
from ..cli import ConfigCommand, build_config, config_options, echo_record
from . import checks


@click.command("evaluate", cls=ConfigCommand)
@config_options(EvalConfig)
@click.pass_context
def cli(ctx: click.Context, **params) -> None:
    """Evaluate encoders on a BEIR set (directory or ingested dataset) through mteb.

    Example: tava evaluate --dataset ../shared/data/beir/scifact --student STUDENT_DIR --adapted ADAPTED_DIR
    """
    config = build_config(EvalConfig, ctx, params)
    home = TavaHome()
    checks.retrieval_dataset(home, config.dataset)
    checks.existing_dir(config.judgements, "--judgements")
    checks.existing_dir(config.router, "--router")
    if config.router:
        from tava_core.route.config import router_meta_path

        router_meta_path(config.router)
    checks.judged_split(home, config.dataset, config.split, config.judgements)
    for option, spec in (("--teacher", config.teacher), ("--student", config.student), ("--adapted", config.adapted)):
        checks.encoder(spec, option)
    result = run_flow("flows.evaluate:evaluate_flow", config, home=str(home.root))
    if result.reused:
        click.echo(f"reused the identical earlier evaluation in {result.directory} (nothing encoded; "
                   "--no-reuse measures again)", err=True)
    if result.router:
        # the routed mode's full curves (every method at every share, intervals, costs: ~350 lines) are in its
        # route.json; the printed record keeps where they are and the figures a person reads
        click.echo(f"routed mode: {result.router.get('files', {}).get('markdown')}", err=True)
        result = result.model_copy(update={"router": router_summary(result.router)})
    echo_record(result)


def router_summary(curves: dict) -> dict:
    """The routed mode as the command prints it: its files, warnings, the router's own routed share and, per
    share sent to the teacher, nDCG@10 of the router, random routing and the label-free oracle."""
    return {"files": curves.get("files", {}), **({"warnings": curves["warnings"]} if curves.get("warnings") else {}),
            "student_ndcg10": curves.get("student_ndcg10"), "teacher_ndcg10": curves.get("teacher_ndcg10"),
            "routed_share_at_threshold": curves.get("routed_share_at_threshold"),
            "curve": [{"share": row["share"], **{m: row[m]["ndcg10"] for m in ("router", "random", "label_free_oracle")
                                                 if m in row}} for row in curves.get("rows", [])]}


@click.command("judge", cls=ConfigCommand)
@config_options(JudgeConfig)
@click.pass_context
def judge_cli(ctx: click.Context, **params) -> None:
    """Let the teacher judge a corpus without qrels: its own top 10 documents for query-like texts
    become the judgements that `tava evaluate --judgements DIR --split teacher-top10` scores against.

    Example: tava judge --dataset mydocs --teacher all-MiniLM-L6-v2
    """
    config = build_config(JudgeConfig, ctx, params)
    home = TavaHome()
    checks.ingested_dataset(home, config.dataset)
    checks.encoder(config.teacher, "--teacher")
    judged = run_flow("flows.evaluate:judge_flow", config, home=str(home.root))
    click.echo(f"judgements: {judged['directory']} ({judged['queries']} queries, split {judged['split']}"
               f"{', reused' if judged['reused'] else ''})\n"
               f"score against them: tava evaluate --dataset {config.dataset} --judgements {judged['directory']} "
               f"--split {judged['split']} --adapted ...")
