"""Flow: read a corpus into Parquet text shards with a manifest.

    check the source (format, columns)  ->  ingest (reused when source signature + config are unchanged)
                                        ->  markdown artifact: rows, shards, qrels, skipped

Also the `tava data` commands: `download` (a BEIR zip, checksum-verified) and `builtin`
(build the default docstring corpus and print where it is).
"""
from __future__ import annotations

from typing import Optional

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from tasks.ingest import ingest_task
from tava_core.config import IngestConfig
from tava_core.home import TavaHome
from tava_core.ingest import IngestReport, plan_source


def report_markdown(report: IngestReport) -> str:
    """A short human summary of an ingest (the Prefect artifact)."""
    lines = [f"# Ingested `{report.name}`", "",
             f"Source: `{report.source}` ({report.format}); dataset directory: `{report.path}`", "",
             "| collection | rows |", "| --- | ---: |"]
    lines += [f"| {name} | {rows:,} |" for name, rows in report.collections.items()]
    lines += ["", f"Text shards: {report.shards}"]
    if report.qrels:
        lines += ["", "Qrels: " + ", ".join(f"{split} {pairs:,} pairs" for split, pairs in report.qrels.items())]
    skipped = report.skipped
    lines += ["", f"Skipped: {skipped.count:,}"]
    if skipped.count:
        lines += [f"- {reason}: {count:,}" for reason, count in skipped.by_reason.items()]
        lines += ["", "First examples:", ""] + [f"    {example}" for example in skipped.examples]
    return "\n".join(lines) + "\n"


# The flow's default parameters, built once: Prefect shows them in the deployment's form, and
# the flows only read their config.
DEFAULT_INGEST_CONFIG = IngestConfig(source="builtin")


@flow(name="ingest-corpus", log_prints=True)
def ingest_corpus(config: IngestConfig = DEFAULT_INGEST_CONFIG,
                  home: Optional[str] = None) -> IngestReport:
    """Ingest a BEIR directory, JSONL(.gz), Parquet, CSV/TSV, .txt folder or 'builtin'.

    Args:
        config: What to ingest (source, format, fields) and how to shard and clean it.
        home: tava home directory (data, vectors, artifacts, reports); empty = $TAVA_HOME, else ./.tava.
    """
    logger = get_run_logger()
    tava_home = TavaHome(home)
    plan_source(config, tava_home)  # fail fast on a bad source, before a task run is recorded
    report = ingest_task(config, str(tava_home.root))
    create_markdown_artifact(report_markdown(report), key="ingest-report",
                             description=f"ingest of {report.name}")
    logger.info("ingested %s: %s; %d shards; skipped %d", report.name, report.collections, report.shards,
                report.skipped.count)
    return report


if __name__ == "__main__":
    ingest_corpus(IngestConfig(source="builtin"))
