"""Prefect task: export a query encoder as one ONNX file (+ tokenizer, card), with a summary artifact.

No cross-run result cache: the export directory is a side effect, and a refused export must be
measured (and refused) again, not served from a cache.
"""
from __future__ import annotations

from typing import Any, Optional

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from tava_core.export.config import ExportConfig
from tava_core.export.query_encoder import export_query_encoder
from tava_core.home import TavaHome

from . import markdown_facts, retry_unless_tava_error


def export_summary_markdown(card: dict[str, Any]) -> str:
    agreement = card.get("agreement", {})
    teacher = card.get("teacher") or {}
    return markdown_facts(f"ONNX query encoder — {card['encoder']['name']} ({card['precision']})", [
        ("directory", f"`{card.get('path')}`"),
        ("search against", teacher.get("name") or teacher.get("model") or "unknown (pass --teacher)"),
        ("dim", card.get("dim")),
        ("mean / min cosine to fp32 torch", f"{agreement.get('mean_cosine', float('nan')):.5f} / "
                                            f"{agreement.get('min_cosine', float('nan')):.5f} on {agreement.get('texts')} texts"),
        ("gate", agreement.get("gate_min_mean_cosine")),
        ("size", f"{card.get('bytes', 0) / 1e6:.1f} MB"),
        *_router_facts(card.get("router")),
    ])


def _router_facts(router: Optional[dict[str, Any]]) -> list[tuple[str, Any]]:
    if not router:
        return []
    agreement = router.get("agreement", {})
    return [("router: to the teacher when confidence <", f"{router['threshold']:.4f} "
                                                         f"({router['threshold_mode']} {router['value']:g})"),
            ("router: max |diff| of confidence / same decisions as fp32 torch",
             f"{agreement.get('max_abs_diff_confidence', float('nan')):.1e} / "
             f"{agreement.get('same_decisions_as_fp32_torch', float('nan')):.3f}")]


@task(name="export-onnx", task_run_name="export {config.precision}", retries=1, retry_delay_seconds=[5],
      retry_condition_fn=retry_unless_tava_error, cache_policy=NO_CACHE)
def export_task(config: ExportConfig, home_root: Optional[str] = None) -> dict[str, Any]:
    """Export, measure agreement, gate, save atomically; returns the card (with its path)."""
    card = export_query_encoder(config, TavaHome(home_root))
    create_markdown_artifact(export_summary_markdown(card), key="onnx-export",
                             description=f"ONNX export of {card['encoder']['name']}")
    return card
