"""Drift: the share of low-confidence queries in a new batch against a previous one. A router
calibrated on the traffic it serves routes about its budget; a batch from elsewhere falls off
the student's manifold and its low-confidence share rises -- a signal that no label is needed for.

Beside it, the share of *unseen-word* queries (most of their words never occur in the student's
training texts): a router that scores by retrieval alone (the default) rates text far from
everything -- nonsense, another language, codes -- as confident when its flat results over a small
corpus look alike, so that share catches what the confidence cannot."""
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


UNSEEN_MAJORITY = 0.5     # a query is an unseen-word query when more than this share of its words is rare


def unseen_word_share(router: RoutedEncoder, texts: Sequence[str]) -> float:
    """Share of ``texts`` most of whose words the student's training texts never (or once) had."""
    if not texts:
        return 0.0
    from .signals import rare_word_shares

    return float((rare_word_shares(router.signal_model, list(texts)) > UNSEEN_MAJORITY).mean())


def drift_report(router: RoutedEncoder, previous: Sequence[str], new: Sequence[str], *,
                 tolerance: float = 0.05) -> dict[str, Any]:
    """Low-confidence and unseen-word shares of both batches; ``drifted`` when either share of the
    new one exceeds the previous one's by more than ``tolerance`` (absolute)."""
    before, after = low_confidence_share(router, previous), low_confidence_share(router, new)
    unseen_before, unseen_after = unseen_word_share(router, previous), unseen_word_share(router, new)
    confidence_rose, unseen_rose = after > before + tolerance, unseen_after > unseen_before + tolerance
    drifted = confidence_rose or unseen_rose
    advice = ": the traffic moved away from what the student was trained on; consider retraining it or raising " \
             "the teacher budget"
    if confidence_rose:
        message = f"low-confidence share rose from {before:.1%} to {after:.1%}{advice}"
    elif unseen_rose:
        message = (f"unseen-word share rose from {unseen_before:.1%} to {unseen_after:.1%} (low-confidence share "
                   f"{before:.1%} -> {after:.1%}){advice}")
    else:
        message = (f"low-confidence share {before:.1%} -> {after:.1%}, unseen-word share {unseen_before:.1%} -> "
                   f"{unseen_after:.1%}: no drift beyond {tolerance:.0%}")
    return {"previous_share": before, "new_share": after, "previous_unseen_share": unseen_before,
            "new_unseen_share": unseen_after, "drifted": bool(drifted), "tolerance": tolerance,
            "threshold": router.threshold.__dict__, "previous_texts": len(previous), "new_texts": len(new),
            "message": message, "expected_share": float(np.clip(router.threshold.expected_share, 0, 1))}
