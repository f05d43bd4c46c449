"""`tava backfill` (flow `backfill-vector-store`; `--rollback`: flow `rollback-vector-store`)."""
from __future__ import annotations

import click

from tava_core.errors import ConfigError
from tava_core.home import TavaHome
from tava_core.vectorstore import BackfillConfig, default_uri, resolve_table_name

from .._server import run_flow
from ..cli import ConfigCommand, build_config, config_options, echo_record
from . import checks


@click.command("backfill", cls=ConfigCommand)
@config_options(BackfillConfig)
@click.option("--rollback", is_flag=True, help="Restore the table as it was before its latest backfill (no embedding).")
@click.pass_context
def cli(ctx: click.Context, rollback: bool, **params) -> None:
    """Re-embed a dataset into a LanceDB table (merge_insert on id; resumable; --rollback undoes)."""
    home = TavaHome()
    if rollback:
        uri = params.get("opt__uri") or str(default_uri(home))
        table = params.get("opt__table")
        if not table:
            if not params.get("opt__dataset"):
                raise ConfigError("--rollback needs --table (or the --dataset [--collection] it was backfilled from)")
            config = build_config(BackfillConfig, ctx, params)
            uri, table = resolve_table_name(config, home)
        echo_record(run_flow("flows.backfill:rollback_vector_store", str(uri), table))
        return
    config = build_config(BackfillConfig, ctx, params)
    checks.ingested_dataset(home, config.dataset)
    checks.encoder(config.encoder, "--encoder")
    summary = run_flow("flows.backfill:backfill_vector_store", config, home=str(home.root))
    click.echo(f"{summary.table}: {summary.shards_upserted} shards upserted "
               f"({summary.shards_embedded} embedded now, {summary.shards_vectors_reused} from cached vectors), "
               f"{summary.shards - summary.shards_upserted} already upserted by an earlier run", err=True)
    echo_record(summary)
