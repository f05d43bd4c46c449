"""Prefect tasks: build and publish a FAISS index version, or roll one back.

No cross-run result cache: publishing a version is a side effect, and the core already skips
the build when the current version indexes the same shards (sha256) with the same settings.
"""
from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from tava_core.home import TavaHome
from tava_core.index import IndexConfig, build_index, rollback_index
from tava_core.records import IndexRecord, IndexRollback

from . import markdown_facts, retry_unless_tava_error


def index_summary_markdown(record: dict[str, Any]) -> str:
    recall = record.get("recall_at_10")
    source = record.get("source", {})
    return markdown_facts(f"FAISS index `{record['factory']}` — version {record.get('version')}", [
        ("index dir", f"`{record.get('index_dir')}`"),
        ("vectors", f"`{source.get('vector_dir')}` ({len(source.get('shards', []))} shards)"),
        ("encoder", f"{source.get('encoder', {}).get('name')} `{str(source.get('fingerprint'))[:12]}`"),
        ("count x dim", f"{record['count']} x {record['dim']} ({record['metric']})"),
        ("recall@10 vs exact", f"{'n/a' if recall is None else f'{recall:.4f}'} on {record.get('recall_queries')} queries"),
        ("train / add / build seconds", f"{record.get('train_seconds')} / {record.get('add_seconds')} / {record.get('build_seconds')}"),
        ("search params", record.get("search_params")),
        ("skipped (already current)", record.get("skipped", False)),
    ])


@task(name="build-index", task_run_name="index {config.factory}", retries=1, retry_delay_seconds=[5],
      retry_condition_fn=retry_unless_tava_error, cache_policy=NO_CACHE)
def build_index_task(config: IndexConfig, home_root: str) -> IndexRecord:
    """Build from vector shards and publish atomically; returns the manifest's small record."""
    record = build_index(config, TavaHome(home_root), show_progress=True)
    create_markdown_artifact(index_summary_markdown(record), key="faiss-index",
                             description=f"FAISS index {config.factory}")
    return IndexRecord.from_manifest(record)


@task(name="rollback-index", cache_policy=NO_CACHE)
def rollback_index_task(index_dir: str) -> IndexRollback:
    """Point the index's `current` at the previous complete version."""
    record = IndexRollback.model_validate(rollback_index(index_dir))
    create_markdown_artifact(f"# FAISS index rolled back\n\n`{record.index_dir}`: version "
                             f"{record.from_version} -> {record.to_version}\n", key="faiss-index-rollback")
    return record
