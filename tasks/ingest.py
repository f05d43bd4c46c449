"""Prefect task: ingest one source into a dataset directory. An unchanged source (same signature:
paths, sizes, mtimes; package versions for 'builtin') ingested with the same config is not read
again -- the core decides from the dataset's manifest (the one cache rule, ``tava_core.reuse``)."""
from __future__ import annotations

from prefect import task

from tasks import CORE_DECIDES, retry_unless_tava_error
from tava_core.config import IngestConfig
from tava_core.home import TavaHome
from tava_core.ingest import IngestReport, ingest


@task(name="ingest", task_run_name="ingest {config.source}", retries=1, retry_delay_seconds=[2],
      retry_condition_fn=retry_unless_tava_error, cache_policy=CORE_DECIDES)
def ingest_task(config: IngestConfig, home_root: str) -> IngestReport:
    """Ingest ``config.source`` under ``home_root`` (atomically; see tava_core.ingest)."""
    return ingest(config, TavaHome(home_root))
