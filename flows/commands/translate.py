"""`tava translate` (flow `translate-vectors`)."""
from __future__ import annotations

import click

from tava_core.home import TavaHome
from tava_core.translate import TranslateConfig

from .._server import run_flow
from ..cli import ConfigCommand, build_config, config_options, echo_record
from . import checks


@click.command("translate", cls=ConfigCommand)
@config_options(TranslateConfig)
@click.pass_context
def cli(ctx: click.Context, **params) -> None:
    """Apply a saved adapter to stored vectors (Parquet shards or a LanceDB table): a new collection
    in the adapter's output space (or its input space, --direction inverse), without the texts."""
    config = build_config(TranslateConfig, ctx, params)
    home = TavaHome()
    checks.existing_dir(config.adapter, "--adapter")
    checks.translation_map(config.adapter)
    checks.vector_dirs([config.vectors], "--vectors")
    echo_record(run_flow("flows.translate:translate_vectors", config, home=str(home.root)))
