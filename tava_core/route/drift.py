"""Drift: the share of low-confidence queries in a new batch against a previous one. A router
calibrated on the traffic it serves routes about its budget; a batch from elsewhere falls off
the student's manifold and its low-confidence share rises -- a signal that no label is needed for."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .router import RoutedEncoder


def low_confidence_share(router: RoutedEncoder, texts: Sequence[str]) -> float:
    """Share of ``texts`` the router would send to the teacher (confidence under its threshold)."""
    if not texts:
        return 0.0
    vectors = router.student.encode(list(texts), kind="query")
    return float((router.confidence(list(texts), vectors) < router.threshold.threshold).mean())


def drift_report(router: RoutedEncoder, previous: Sequence[str], new: Sequence[str], *,
                 tolerance: float = 0.05) -> dict[str, Any]:
    """Low-confidence shares of both batches; ``drifted`` when the new one exceeds the previous
    by more than ``tolerance`` (absolute)."""
    before, after = low_confidence_share(router, previous), low_confidence_share(router, new)
    drifted = after > before + tolerance
    message = (f"low-confidence share rose from {before:.1%} to {after:.1%}: the traffic moved away from what "
               "the student was trained on; consider retraining it or raising the teacher budget"
               if drifted else f"low-confidence share {before:.1%} -> {after:.1%}: no drift beyond {tolerance:.0%}")
    return {"previous_share": before, "new_share": after, "drifted": bool(drifted), "tolerance": tolerance,
            "threshold": router.threshold.__dict__, "previous_texts": len(previous), "new_texts": len(new),
            "message": message, "expected_share": float(np.clip(router.threshold.expected_share, 0, 1))}
