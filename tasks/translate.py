"""Prefect tasks for `tava translate`: one task per vector shard (skipped inside when already done),
one for a LanceDB table, and the summary artifact.

No cross-run result cache: the core already skips shards whose output is stamped with the same
source shard sha256 and translation fingerprint, which is the cache that matters (it survives a
killed run, where Prefect's result store may not).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from tava_core.home import TavaHome
from tava_core.manifest import ShardRecord
from tava_core.translate import TranslateConfig, load_translation, translate_shard, translate_table

from . import markdown_facts, retry_unless_tava_error


@task(name="translate-shard", task_run_name="translate {source_path}", retries=1, retry_delay_seconds=[5],
      retry_condition_fn=retry_unless_tava_error, cache_policy=NO_CACHE)
def translate_shard_task(adapter: str, direction: str, source_path: str, source_sha256: str, out_path: str,
                         fingerprint: str, encoder_name: str) -> tuple[ShardRecord, bool]:
    """Translate one vector shard atomically (or skip it when its output is current)."""
    translation = load_translation(adapter, direction)
    return translate_shard(translation, Path(source_path), source_sha256, Path(out_path), fingerprint, encoder_name)


@task(name="translate-table", retries=1, retry_delay_seconds=[5], retry_condition_fn=retry_unless_tava_error,
      cache_policy=NO_CACHE)
def translate_table_task(config: TranslateConfig, home_root: str) -> dict[str, Any]:
    """Translate a LanceDB table into a new one (resumable by batch, idempotent by id)."""
    return translate_table(config, TavaHome(home_root))


def publish_summary(record: dict[str, Any]) -> None:
    adapter = record.get("adapter", {})
    create_markdown_artifact(markdown_facts("Translated vectors", [
        ("output", f"`{record.get('out') or record.get('table')}`"),
        ("source", f"`{record.get('source') or record.get('source_table')}` (encoder "
                   f"`{str(record.get('source_fingerprint'))[:12]}`)"),
        ("adapter", f"`{adapter.get('path')}` ({adapter.get('direction')}, sha256 `{str(adapter.get('sha256'))[:12]}`)"),
        ("rows x dim", f"{record.get('rows')} x {record.get('dim')}"),
        ("translated / skipped", f"{record.get('shards_translated', record.get('rows_translated'))} / "
                                 f"{record.get('shards_skipped', '-')}"),
        ("fingerprint", f"`{record.get('fingerprint')}`"),
        ("seconds", record.get("seconds")),
    ]), key="translate-vectors", description="tava translate")
