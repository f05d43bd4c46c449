"""`tava export` (flow `export-query-encoder`)."""
from __future__ import annotations

import click

from tava_core.export.config import ExportConfig
from tava_core.home import TavaHome

from .._server import run_flow
from ..cli import ConfigCommand, build_config, config_options, echo_record
from . import checks


@click.command("export", cls=ConfigCommand)
@config_options(ExportConfig)
@click.pass_context
def cli(ctx: click.Context, **params) -> None:
    """Export a query encoder as one ONNX file with its tokenizer and a JSON card (`--model DIR
    [--precision int8]`); runs with onnxruntime + tokenizers only."""
    config = build_config(ExportConfig, ctx, params)
    checks.encoder(config.model, "--model")
    checks.encoder(config.teacher, "--teacher")
    echo_record(run_flow("flows.export:export_query_encoder_flow", config, home=str(TavaHome().root)))
