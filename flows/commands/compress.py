"""`tava compress` (flow `train-compressor`)."""
from __future__ import annotations

import click

from tava_core.compress.config import CompressConfig
from tava_core.home import TavaHome

from .._server import run_flow
from ..cli import ConfigCommand, build_config, config_options, echo_record
from . import checks


@click.command("compress", cls=ConfigCommand)
@config_options(CompressConfig)
@click.pass_context
def cli(ctx: click.Context, **params) -> None:
    """Learn projections to fewer dimensions (`--dataset DIR --dims 128 --dims 64`); the saved
    compressors are encoders (`--encoder <run>/dive-128d`) for embed, index and evaluate."""
    config = build_config(CompressConfig, ctx, params)
    home = TavaHome()
    checks.retrieval_dataset(home, config.dataset)
    checks.encoder(config.encoder, "--encoder")
    checks.vector_dirs([config.corpus_vectors], "--corpus-vectors")
    checks.vector_dirs([config.query_vectors], "--query-vectors")
    checks.compress_dims(config)
    echo_record(run_flow("flows.compress:train_compressor", config, home=str(home.root)))
