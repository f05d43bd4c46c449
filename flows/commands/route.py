"""`tava calibrate-router` (flow `calibrate-router`)."""
from __future__ import annotations

import click

from tava_core.home import TavaHome
from tava_core.route.config import RouterConfig, reference_location

from .._server import run_flow
from ..cli import ConfigCommand, build_config, config_options, echo_record
from . import checks


@click.command("calibrate-router", cls=ConfigCommand)
@config_options(RouterConfig)
@click.pass_context
def cli(ctx: click.Context, **params) -> None:
    """Calibrate a confidence router: `--student DIR --dataset D --teacher-budget 0.1`.

    Use it as an encoder (`load_encoder(DIR)`) or score it: `tava evaluate --dataset D --router DIR`.
    """
    config = build_config(RouterConfig, ctx, params)
    home = TavaHome()
    checks.encoder(config.student, "--student")
    checks.encoder(config.teacher, "--teacher")
    checks.retrieval_dataset(home, config.dataset)
    for source in config.reference:
        reference_location(source, home)
    echo_record(run_flow("flows.route:calibrate_router_flow", config, home=str(home.root)))
