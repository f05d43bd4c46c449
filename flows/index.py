"""Flow: rebuild a FAISS index from vector shards and publish it as a new version.

    build (train on a seeded sample, add shard by shard, measure recall@10 vs exact search)
      -> publish (version directory renamed into place, then `current` swapped atomically)

`tava index --rollback` points `current` back at the previous version instead.
"""
from __future__ import annotations

from typing import Optional

from prefect import flow, get_run_logger

from tasks.index import build_index_task, rollback_index_task
from tava_core.home import TavaHome
from tava_core.index import IndexConfig
from tava_core.records import IndexRecord, IndexRollback


@flow(name="rebuild-index", log_prints=True)
def rebuild_index(config: IndexConfig, home: Optional[str] = None) -> IndexRecord:
    """Build the index `config` describes and publish it; the previous version stays until then.

    Args:
        config: Which vectors to index (required: a vector directory), the FAISS factory and where it is published.
        home: tava home directory (data, vectors, artifacts, reports); empty = $TAVA_HOME, else ./.tava.
    """
    logger = get_run_logger()
    # Submitted, so a flow run with a Dask task runner builds on a Dask worker (else a thread here).
    record = build_index_task.submit(config, str(TavaHome(home).root)).result()
    if record.skipped:
        logger.info("current version %s already indexes these shards; nothing rebuilt", record.version)
    else:
        logger.info("published version %s of %s: %d vectors, recall@10 %s, %.1f s", record.version,
                    record.index_dir, record.count, record.recall_at_10, record.build_seconds or 0.0)
    return record


@flow(name="rollback-index")
def rollback_index_flow(index_dir: str) -> IndexRollback:
    """Point the index's `current` back at the previous complete version.

    Args:
        index_dir: The index directory to roll back (its `current` and `versions/`), as `tava index` printed it.
    """
    return rollback_index_task(index_dir)
