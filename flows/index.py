"""Flow: rebuild a FAISS index from vector shards and publish it as a new version.

    build (train on a seeded sample, add shard by shard, measure recall@10 vs exact search)
      -> publish (version directory renamed into place, then `current` swapped atomically)

`tava index --rollback` points `current` back at the previous version instead.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click
from prefect import flow, get_run_logger

from tasks.index import build_index_task, rollback_index_task
from tava_core.errors import ConfigError
from tava_core.home import TavaHome
from tava_core.index import IndexConfig, default_index_dir
from tava_core.manifest import load_vector_manifest
from tava_core.records import IndexRecord, IndexRollback

from .cli import build_config, config_options, echo_record


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
    """Point the index's `current` back at the previous complete version."""
    return rollback_index_task(index_dir)


def resolve_index_dir(vectors: Optional[str], index_dir: Optional[str], home: TavaHome) -> str:
    """The index directory a rollback acts on: --index-dir, else the default for --vectors."""
    if index_dir:
        return str(Path(index_dir).expanduser().resolve())
    if vectors:
        return str(default_index_dir(home, load_vector_manifest(Path(vectors).expanduser().resolve())))
    raise ConfigError("--rollback needs --index-dir (or the --vectors the index was built from)")


@click.command("index")
@config_options(IndexConfig)
@click.option("--rollback", is_flag=True, help="Point the index back at its previous version (no build).")
@click.pass_context
def cli(ctx: click.Context, rollback: bool, **params) -> None:
    """Build a FAISS index from vector shards (any factory string) and publish it atomically."""
    home = TavaHome()
    if rollback:
        echo_record(rollback_index_flow(resolve_index_dir(params.get("opt__vectors"),
                                                          params.get("opt__index_dir"), home)))
        return
    config = build_config(IndexConfig, ctx, params)
    record = rebuild_index(config, home=str(home.root))
    record.pop("source", None)  # shard list: in the manifest, too long for a terminal
    echo_record(record)


if __name__ == "__main__":
    cli()
