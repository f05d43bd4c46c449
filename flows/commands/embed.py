"""`tava embed` (flow `embed-dataset`)."""
from __future__ import annotations

import click

from tava_core.embed import EmbedConfig
from tava_core.home import TavaHome

from .._server import run_flow
from ..cli import ConfigCommand, build_config, config_options, echo_record
from . import checks


@click.command("embed", cls=ConfigCommand)
@config_options(EmbedConfig)
@click.pass_context
def cli(ctx: click.Context, **params) -> None:
    """Embed an ingested dataset into vector shards (cached per shard and encoder)."""
    config = build_config(EmbedConfig, ctx, params)
    home = TavaHome()
    checks.ingested_dataset(home, config.dataset, collections=config.collections)
    checks.encoder(config.encoder, "--encoder")
    checks.imported_vectors(config.import_vectors, config.encoder, "--import-vectors",
                            vector_column=config.import_vector_column)
    result = run_flow("flows.embed:embed_dataset_flow", config, home=str(home.root))
    for collection in result.collections:
        computed = f"imported from {collection.imported_from}" if collection.imported_from else "computed"
        click.echo(f"{collection.collection}: {collection.computed_shards} shards {computed} "
                   f"({collection.computed_rows} rows), {collection.reused_shards} reused "
                   f"({collection.reused_rows} rows)", err=True)
    echo_record(result)
