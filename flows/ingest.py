"""Flow: read a corpus into Parquet text shards with a manifest.

    check the source (format, columns)  ->  ingest (reused when source signature + config are unchanged)
                                        ->  markdown artifact: rows, shards, qrels, skipped

Also the `tava data` commands: `download` (a BEIR zip, checksum-verified) and `builtin`
(build the default docstring corpus and print where it is).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from tasks.ingest import ingest_task
from tava_core.config import IngestConfig
from tava_core.home import TavaHome
from tava_core.ingest import IngestReport, plan_source

from .cli import build_config, config_options, echo_record


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


@flow(name="ingest-corpus", log_prints=True)
def ingest_corpus(config: IngestConfig = IngestConfig(source="builtin"),
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


@click.command("ingest")
@click.argument("opt__source", metavar="SOURCE", required=False)
@config_options(IngestConfig, exclude=("source",))
@click.pass_context
def cli(ctx: click.Context, **params) -> None:
    """Read SOURCE into Parquet text shards under <home>/data/<name>/.

    SOURCE is a BEIR directory (corpus.jsonl, queries.jsonl, qrels/*.tsv), a .jsonl/.jsonl.gz,
    .parquet, .csv or .tsv file, a folder of .txt files, or 'builtin' (the default corpus made
    from installed packages' docstrings).
    """
    config = build_config(IngestConfig, ctx, params)
    echo_record(ingest_corpus(config, home=str(TavaHome().root)))


# ------------------------------------------------------------------------------ tava data

@click.group("data")
def data_cli() -> None:
    """Built-in and downloadable datasets."""


@data_cli.command("download")
@click.argument("name")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Directory to unpack into (NAME/ goes inside) [default: <home>/downloads].")
@click.option("--base-url", default=None, help="Archive location; {base-url}/{NAME}.zip is fetched "
              "[default: the public BEIR archive].")
@click.option("--md5", default=None, help="Expected md5 of the zip (needed for names not in the known table).")
@click.option("--sha256", default=None, help="Expected sha256 of the zip (checked instead of the md5).")
@click.option("--force", is_flag=True, help="Replace an existing download.")
def download_cmd(name: str, out_dir: Optional[str], base_url: Optional[str], md5: Optional[str],
                 sha256: Optional[str], force: bool) -> None:
    """Download the BEIR dataset NAME (scifact, nfcorpus, fiqa, arguana, scidocs, trec-covid, quora, ...),
    verify its checksum and unpack it; then `tava ingest <printed path>`."""
    from tava_core.datasets.download import BEIR_BASE_URL, download_beir

    out = Path(out_dir) if out_dir else TavaHome().root / "downloads"
    path = download_beir(name, out, base_url=base_url or BEIR_BASE_URL, md5=md5, sha256=sha256, force=force)
    echo_record({"dataset": name, "path": str(path), "next": f"tava ingest {path}"})


@data_cli.command("builtin")
@click.option("--force", is_flag=True, help="Rebuild even when the installed package versions are unchanged.")
def builtin_cmd(force: bool) -> None:
    """Build the built-in docstring corpus (BEIR layout) and print where it is."""
    from tava_core.datasets.builtin import ensure_builtin_source

    path, info = ensure_builtin_source(TavaHome(), force=force)
    echo_record({"path": str(path), "counts": info["counts"], "packages": info["packages"],
                 "next": "tava ingest builtin"})


if __name__ == "__main__":
    ingest_corpus(IngestConfig(source="builtin"))
