"""`tava evaluate` (flow `evaluate`)."""
from __future__ import annotations

import click

from tava_core.evaluate.config import EvalConfig
from tava_core.home import TavaHome

from .._server import run_flow
from ..cli import build_config, config_options, echo_record
from . import checks


@click.command("evaluate")
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
    checks.judged_split(home, config.dataset, config.split, config.judgements)
    for option, spec in (("--teacher", config.teacher), ("--student", config.student), ("--adapted", config.adapted)):
        checks.encoder(spec, option)
    result = run_flow("flows.evaluate:evaluate_flow", config, home=str(home.root))
    if result.reused:
        click.echo(f"reused the identical earlier evaluation in {result.directory} (nothing encoded; "
                   "--no-reuse measures again)", err=True)
    echo_record(result)
