"""`tava diagnose` (flow `diagnose`)."""
from __future__ import annotations

import click

from tava_core.diagnose import DiagnoseConfig
from tava_core.home import TavaHome

from .._server import run_flow
from ..cli import ConfigCommand, build_config, config_options, echo_record
from . import checks


@click.command("diagnose", cls=ConfigCommand)
@config_options(DiagnoseConfig)
@click.pass_context
def cli(ctx: click.Context, **params) -> None:
    """Manifold diagnostics: `tava diagnose --dataset D --student DIR` (report under <home>/reports/diagnose/)."""
    config = build_config(DiagnoseConfig, ctx, params)
    home = TavaHome()
    checks.retrieval_dataset(home, config.dataset)
    checks.encoder(config.student, "--student")
    checks.encoder(config.teacher, "--teacher")
    echo_record(run_flow("flows.diagnose:diagnose_flow", config, home=str(home.root)))
