"""Flow: learn compressors of an encoder's vectors to fewer dimensions, beside the baselines.

    vectors (given, or encoded and cached)  ->  DIVE + PCA / truncation / Matryoshka-Adaptor /
    Search-Adaptor at every target dim, early-stopped on validation queries  ->  compressors +
    report (JSON, markdown, PNG) under <home>/artifacts/compressors/<name>/  ->  artifacts
"""
from __future__ import annotations

from typing import Optional

from prefect import flow, get_run_logger

from tasks.compress import publish_report_task, resolve_vectors_task, train_task
from tava_core.compress.config import CompressConfig
from tava_core.records import CompressorRecord


@flow(name="train-compressor", log_prints=True)
def train_compressor(config: CompressConfig, home: Optional[str] = None) -> CompressorRecord:
    """Train compressors on a retrieval dataset's vectors and report every ratio side by side.

    Args:
        config: The dataset whose vectors to compress (required), the target dims, methods and training.
        home: tava home directory (data, vectors, artifacts, reports); empty = $TAVA_HOME, else ./.tava.
    """
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
