"""Flow: learn compressors of an encoder's vectors to fewer dimensions, beside the baselines.

    vectors (given, or encoded and cached)  ->  DIVE + PCA / truncation / Matryoshka-Adaptor /
    Search-Adaptor at every target dim, early-stopped on validation queries  ->  compressors +
    report (JSON, markdown, PNG) under <home>/artifacts/compressors/<name>/  ->  artifacts
"""
from __future__ import annotations

from typing import Optional

import click
from prefect import flow, get_run_logger

from tasks.compress import publish_report_task, resolve_vectors_task, train_task
from tava_core.compress.config import CompressConfig
from tava_core.home import TavaHome
from tava_core.records import CompressorRecord

from .cli import build_config, config_options, echo_record


@flow(name="train-compressor", log_prints=True)
def train_compressor(config: CompressConfig, home: Optional[str] = None) -> CompressorRecord:
    """Train compressors on a retrieval dataset's vectors and report every ratio side by side."""
    logger = get_run_logger()
    sources = resolve_vectors_task(config, home)
    logger.info("%s vectors of %s (%s-d) -> dims %s", sources.encoder.get("name"), sources.dataset,
                sources.encoder.get("dim"), config.dims)
    record = train_task(config, sources, home)
    publish_report_task(record)
    for method, by_dim in record.ndcg_at_10.items():
        logger.info("%s nDCG@10 (%s): %s", method, record.scored_on,
                    ", ".join(f"{d}-d {v:.4f}" for d, v in by_dim.items()))
    return record


@click.command("compress")
@config_options(CompressConfig)
@click.pass_context
def cli(ctx: click.Context, **params) -> None:
    """Learn projections to fewer dimensions (`--dataset DIR --dims 128 --dims 64`); the saved
    compressors are encoders (`--encoder <run>/dive-128d`) for embed, index and evaluate."""
    config = build_config(CompressConfig, ctx, params)
    echo_record(train_compressor(config, home=str(TavaHome().root)))


if __name__ == "__main__":
    cli()
