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

from prefect import flow, get_run_logger

from tasks.backfill import (
    finish_backfill_task,
    prepare_backfill_task,
    report_backfill_task,
    rollback_backfill_task,
    upsert_shard_task,
)
from tasks.embed import embed_shard_task
from tava_core.embed import vector_shard_is_current
from tava_core.home import TavaHome
from tava_core.records import BackfillResult, RollbackResult, ShardUpsert
from tava_core.vectorstore import BackfillConfig, backfill_lock, summarize_backfill

# The flow's default parameters, built once: Prefect shows them in the deployment's form, and
# the flows only read their config.
DEFAULT_BACKFILL_CONFIG = BackfillConfig(dataset="builtin")


@flow(name="backfill-vector-store", log_prints=True)
def backfill_vector_store(config: BackfillConfig = DEFAULT_BACKFILL_CONFIG,
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
        vectors_reused = 0  # pending shards whose vector shard an earlier embed or backfill left current
        # Sequential on purpose: LanceDB commits are serialised per table, and the encoder already
        # uses every core; a vector shard already current is not re-embedded (tava_core.reuse), so a
        # resumed run skips finished work.
        for i in plan.pending:
            job = plan.job(i)
            vectors_reused += vector_shard_is_current(job.out_path, fingerprint=plan.fingerprint,
                                                      source_sha256=job.source_sha256, kind=job.kind)
            t0 = time.perf_counter()
            embed_shard_task(job, config.encoder, plan.fingerprint)
            embed_seconds += time.perf_counter() - t0
            upserts.append(upsert_shard_task(plan, i))
        final = finish_backfill_task(plan, config)
        summary = summarize_backfill(plan, upserts, embed_seconds=embed_seconds,
                                     seconds=time.perf_counter() - started, final=final)
    summary = summary.model_copy(update={"shards_embedded": len(plan.pending) - vectors_reused,
                                         "shards_vectors_reused": vectors_reused})
    report_backfill_task(summary)
    logger.info("table %s: %d rows (%d written); shards: %d upserted (%d embedded, %d from cached vectors), "
                "%d already upserted by an earlier run; index %s", summary.table, summary.table_rows,
                summary.rows_written, summary.shards_upserted, summary.shards_embedded, vectors_reused,
                summary.shards - summary.shards_upserted, summary.index)
    return summary


@flow(name="rollback-vector-store")
def rollback_vector_store(uri: str, table: str) -> RollbackResult:
    """Restore the table to the version tagged before its latest backfill.

    Args:
        uri: The LanceDB database directory (e.g. <home>/lancedb).
        table: The table to restore, as `tava backfill` named it (e.g. <dataset>_<collection>).
    """
    return rollback_backfill_task(uri, table)
