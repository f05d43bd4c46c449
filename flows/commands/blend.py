"""`tava blend` (flow `blend-students`)."""
from __future__ import annotations

import click

from tava_core.encoders.blend import BlendConfig
from tava_core.home import TavaHome

from .._server import run_flow
from ..cli import ConfigCommand, build_config, config_options, echo_record
from . import checks


@click.command("blend", cls=ConfigCommand)
@config_options(BlendConfig)
@click.pass_context
def cli(ctx: click.Context, **params) -> None:
    """Blend students of one teacher into one query encoder (`--members ADAPTER_DIR --members
    STATIC_DIR`); then `tava evaluate --adapted <home>/artifacts/blends/NAME`."""
    config = build_config(BlendConfig, ctx, params)
    for member in config.members:
        checks.encoder(member, "--members")
    echo_record(run_flow("flows.blend:blend_students", config, home=str(TavaHome().root)))
