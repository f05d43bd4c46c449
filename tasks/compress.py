"""Prefect tasks of `tava compress`: resolve (or encode) the vectors, train + save every method at
every dimension (reused when an identical run finished -- the one cache rule of
``tava_core.reuse``), publish the report as artifacts."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks import CORE_DECIDES, retry_unless_tava_error
from tava_core.compress.config import CompressConfig
from tava_core.compress.report import markdown_report, ndcg_table
from tava_core.compress.run import resolve_vectors, train_compressors
from tava_core.home import TavaHome, slug
from tava_core.io import read_json
from tava_core.records import CompressionSources, CompressorRecord


@task(name="compress-resolve-vectors", task_run_name="vectors for compression", retries=1,
      retry_condition_fn=retry_unless_tava_error, cache_policy=CORE_DECIDES)
def resolve_vectors_task(config: CompressConfig, home: Optional[str] = None) -> CompressionSources:
    """Check qrels and dims, then find or encode (cached) the corpus and judged-query vectors."""
    return resolve_vectors(config, TavaHome(home), show_progress=True)


@task(name="compress-train", task_run_name="train compressors", cache_policy=CORE_DECIDES)
def train_task(config: CompressConfig, sources: CompressionSources, home: Optional[str] = None) -> CompressorRecord:
    """Fit every method at every dimension and save compressors + report atomically; returns the record."""
    return train_compressors(config, sources, TavaHome(home), show_progress=True)


@task(name="compress-publish-report", task_run_name="publish compression report {record.name}",
      cache_policy=CORE_DECIDES)
def publish_report_task(record: CompressorRecord) -> None:
    """The report as a markdown artifact and nDCG@10 by method and dimension as a table artifact."""
    report = read_json(Path(record.directory) / "report.json")
    key = "compress-" + slug(record.name).lower().replace("_", "-").replace(".", "-")
    create_markdown_artifact(markdown_report(report), key=key + "-report", description=f"compressors {record.name}")
    rows = [{"method": m, **{f"{d}-d": round(v, 4) for d, v in sorted(by_dim.items(), reverse=True)}}
            for m, by_dim in ndcg_table(report, record.scored_on).items()]
    rows.append({"method": "uncompressed", "full": record.full_dimension_ndcg_at_10})
    create_table_artifact(rows, key=key + "-ndcg", description=f"nDCG@10 ({record.scored_on}) by dimension")
