"""Flow: re-embed a dataset into a LanceDB table, shard by shard, resumable and reversible.

    prepare (dim check, create table/column, tag the version before the run, or resume)
      -> for each pending shard: embed (cached vector shard) -> merge_insert on id -> record done
      -> finish (IVF index, optimise) -> summary artifact

`tava backfill --rollback` restores the version tagged before the latest run. This flow is the
only place the backfill steps of ``tava_core.vectorstore`` are chained (tests run it too).
"""
from __future__ import annotations

import time
from typing import Optional

import click
from prefect import flow, get_run_logger

from tasks.backfill import (finish_backfill_task, prepare_backfill_task, report_backfill_task,
                            rollback_backfill_task, upsert_shard_task)
from tasks.embed import embed_shard_task
from tava_core.errors import ConfigError
from tava_core.home import TavaHome
from tava_core.records import BackfillResult, RollbackResult, ShardUpsert
from tava_core.vectorstore import BackfillConfig, backfill_lock, default_uri, resolve_table_name, summarize_backfill

from .cli import build_config, config_options, echo_record


@flow(name="backfill-vector-store", log_prints=True)
def backfill_vector_store(config: BackfillConfig = BackfillConfig(dataset="builtin"),
                          home: Optional[str] = None) -> BackfillResult:
    """Embed the collection with the chosen encoder and upsert it into the LanceDB table.

    Args:
        config: Which dataset collection, which encoder, and which LanceDB table to write.
        home: tava home directory (data, vectors, artifacts, reports); empty = $TAVA_HOME, else ./.tava.
    """
    logger = get_run_logger()
    # One run per table from plan to finish (a second one waits or stops: lock_timeout_seconds).
    with backfill_lock(config, TavaHome(home)):
        started = time.perf_counter()
        plan = prepare_backfill_task(config, str(TavaHome(home).root))
        if plan.resumed:
            logger.info("resuming: %d of %d shards left", len(plan.pending), len(plan.jobs))
        embed_seconds = 0.0
        upserts: list[ShardUpsert] = []
        # Sequential on purpose: LanceDB commits are serialised per table, and the encoder already
        # uses every core; a vector shard already current is not re-embedded (tava_core.reuse), so a
        # resumed run skips finished work.
        for i in plan.pending:
            t0 = time.perf_counter()
            embed_shard_task(plan.job(i), config.encoder, plan.fingerprint)
            embed_seconds += time.perf_counter() - t0
            upserts.append(upsert_shard_task(plan, i))
        final = finish_backfill_task(plan, config)
        summary = summarize_backfill(plan, upserts, embed_seconds=embed_seconds,
                                     seconds=time.perf_counter() - started, final=final)
    report_backfill_task(summary)
    logger.info("table %s: %d rows (%d written), index %s", summary.table, summary.table_rows, summary.rows_written,
                summary.index)
    return summary


@flow(name="rollback-vector-store")
def rollback_vector_store(uri: str, table: str) -> RollbackResult:
    """Restore the table to the version tagged before its latest backfill."""
    return rollback_backfill_task(uri, table)


@click.command("backfill")
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
        echo_record(rollback_vector_store(str(uri), table))
        return
    config = build_config(BackfillConfig, ctx, params)
    echo_record(backfill_vector_store(config, home=str(home.root)))


if __name__ == "__main__":
    cli()
