"""Flow: export a query encoder (student, or student + adapter) as one ONNX file.

    load the fp32 torch encoder  ->  export one graph (int8: quantise the matmuls)
    ->  measure agreement through the exported files  ->  refuse under the gate, else save
"""
from __future__ import annotations

from typing import Any, Optional

from prefect import flow, get_run_logger

from tasks.export import export_task
from tava_core.export.config import ExportConfig


@flow(name="export-query-encoder", log_prints=True)
def export_query_encoder_flow(config: ExportConfig, home: Optional[str] = None) -> dict[str, Any]:
    """Export the query encoder `config` names as ONNX (+ tokenizer and card) for serving without torch.

    Args:
        config: The student or adapter directory (required), precision, output directory, gate.
        home: tava home directory (data, vectors, artifacts, reports); empty = $TAVA_HOME, else ./.tava.
    """
    logger = get_run_logger()
    card = export_task(config, home)
    agreement = card["agreement"]
    logger.info("%s export in %s: mean cosine %.5f to the fp32 torch encoder (gate %s)", card["precision"],
                card["path"], agreement["mean_cosine"], agreement["gate_min_mean_cosine"])
    return card
