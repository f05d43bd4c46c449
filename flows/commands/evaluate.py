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
    echo_record(result)


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
