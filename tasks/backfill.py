"""Prefect tasks of a LanceDB backfill: prepare (checks, tag), upsert one shard, finish (index,
optimise), roll back. Embedding itself reuses ``tasks.embed.embed_shard_task`` (cached per shard).

Results are not cached across runs: each step's effect lives in the table and in the backfill
state file, which the core reads to resume a crashed run; re-upserting a shard is harmless.
"""
from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from tava_core.home import TavaHome
from tava_core.records import BackfillFinish, BackfillResult, RollbackResult, ShardUpsert
from tava_core.vectorstore import (
    BackfillConfig,
    BackfillPlan,
    finish_backfill,
    prepare_backfill,
    rollback_backfill,
    upsert_shard,
)

from . import markdown_facts, retry_unless_tava_error


@task(name="prepare-backfill", cache_policy=NO_CACHE, retry_condition_fn=retry_unless_tava_error)
def prepare_backfill_task(config: BackfillConfig, home_root: str) -> BackfillPlan:
    """Check dims, create the table or column, tag the version before the run (or resume)."""
    return prepare_backfill(config, TavaHome(home_root))


@task(name="upsert-shard", task_run_name="upsert shard {i}", retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=retry_unless_tava_error, cache_policy=NO_CACHE)
def upsert_shard_task(plan: BackfillPlan, i: int) -> ShardUpsert:
    """merge_insert one embedded shard on id (idempotent: a retry overwrites the same rows)."""
    return upsert_shard(plan, i)


@task(name="finish-backfill", retries=1, retry_delay_seconds=[5], retry_condition_fn=retry_unless_tava_error,
      cache_policy=NO_CACHE)
def finish_backfill_task(plan: BackfillPlan, config: BackfillConfig) -> BackfillFinish:
    """(Re)build the IVF index and optimise the table."""
    return finish_backfill(plan, config)


def backfill_summary_markdown(record: BackfillResult) -> str:
    return markdown_facts(f"LanceDB backfill `{record.table}`", [
        ("database", f"`{record.uri}`"),
        ("dataset / collection", f"{record.dataset} / {record.collection}"),
        ("encoder", f"{record.encoder} `{record.fingerprint[:12]}` ({record.dim}-d, column `{record.column}`)"),
        ("shards upserted / total", f"{record.shards_upserted} / {record.shards} (resumed: {record.resumed})"),
        ("rows written / table rows", f"{record.rows_written} / {record.table_rows}"),
        ("rows per second", record.rows_per_second),
        ("embed / upsert / total seconds", f"{record.embed_seconds} / {record.upsert_seconds} / {record.seconds}"),
        ("vector index", record.index),
        ("rollback", f"`tava backfill --rollback --table {record.table}` restores tag `{record.tag}`"),
    ])


@task(name="report-backfill", cache_policy=NO_CACHE)
def report_backfill_task(record: BackfillResult) -> None:
    create_markdown_artifact(backfill_summary_markdown(record), key="lancedb-backfill",
                             description=f"backfill of {record.table}")


@task(name="rollback-backfill", cache_policy=NO_CACHE)
def rollback_backfill_task(uri: str, table: str) -> RollbackResult:
    """Restore the table to the version tagged before its latest backfill."""
    record = rollback_backfill(uri, table)
    create_markdown_artifact(f"# LanceDB backfill rolled back\n\n`{record.table}` restored to tag "
                             f"`{record.tag}` (version {record.restored_version}); now "
                             f"{record.table_rows} rows\n", key="lancedb-rollback")
    return record
