"""Drift: the share of low-confidence queries in a new batch against a previous one. A router
calibrated on the traffic it serves routes about its budget; a batch from elsewhere falls off
the student's manifold and its low-confidence share rises -- a signal that no label is needed for.

A batch is scored the way the router's threshold was calibrated, or the shares mean nothing: the
calibration texts are one span view (``distill.spans``: a sentence or a short word window) of each
served document, cut with the calibration's seed, and their documents are in the router's bank.
A refresh batch holds whole passages, and new ones: scored as queries against a bank without them,
a retrieval signal finds no document that answers them and calls most of any batch low-confidence
(in-domain or not: 79% in-domain against 72% from another domain at a 10% budget, in the audit that
found it). ``span_views`` cuts a batch's texts the same way and ``low_confidence_share(...,
documents=)`` adds their documents (the teacher's vectors) to the bank for the measurement, so an
in-domain batch reads near the budget (8.7%) and one from another domain higher (26.7%).

Beside it, the share of *unseen-word* queries (most of their words never occur in the student's
training texts): a router that scores by retrieval alone (the default) rates text far from
everything -- nonsense, another language, codes -- as confident when its flat results over a small
corpus look alike, so that share catches what the confidence cannot."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..adapter.baselines import normalize_rows
from .router import RoutedEncoder
from .signals import SignalModel


@dataclass
class DriftTexts:
    """What a drift measurement scores for one batch: ``texts`` (query-like views), ``what`` they
    are in words, and ``documents``: the teacher's vectors of the documents they were cut from
    (added to the router's bank while they are scored), or None."""

    texts: list[str]
    what: str
    documents: Optional[np.ndarray] = None


Batch = Union[Sequence[str], DriftTexts]


def span_views(ids: Sequence[str], texts: Sequence[str], n: int, *, documents: Optional[np.ndarray] = None,
               seed: Optional[int] = None) -> DriftTexts:
    """One span view of each text, ``n`` of them (a seeded sample, in text order): exactly the
    router's calibration texts (``route.stored.calibration_views``, its seed by default), with the
    teacher vectors of the sampled views' documents when ``documents`` (rows of ``texts``) is given."""
    from ..distill.spans import seeded_sample, span_view
    from .stored import CALIBRATION_SEED

    seed = CALIBRATION_SEED if seed is None else seed
    views = [(row, span_view(text_id, text, 0, seed)) for row, (text_id, text) in enumerate(zip(ids, texts, strict=True))]
    picked = seeded_sample([(row, view) for row, view in views if view], n, seed)
    rows = [row for row, _ in picked]
    return DriftTexts(texts=[view for _, view in picked], what=f"span views of {len(picked)} texts",
                      documents=None if documents is None else np.asarray(documents, np.float32)[rows])


def bank_with(model: SignalModel, documents: np.ndarray) -> SignalModel:
    """A copy of ``model`` whose document bank also holds ``documents`` (teacher vectors), in the
    bank's form (PCA-reduced, exact copies, cluster order as the model keeps them). A model
    without a bank (no retrieval signal) is returned as it is."""
    if not model.documents.size or not len(documents):
        return model
    docs = normalize_rows(np.asarray(documents, dtype=np.float32)).astype(np.float32)
    if model.doc_probe:     # full-dimension bank sorted by cluster: each document joins its nearest cluster
        assign = np.argmax(docs @ model.doc_centroids.T, axis=1)
        parts, offsets = [], [0]
        for c in range(len(model.doc_offsets) - 1):
            parts += [model.documents[model.doc_offsets[c]:model.doc_offsets[c + 1]], docs[assign == c]]
            offsets.append(offsets[-1] + len(parts[-2]) + len(parts[-1]))
        return dataclasses.replace(model, documents=np.ascontiguousarray(np.concatenate(parts)),
                                   doc_offsets=np.asarray(offsets, np.int64), doc_rows=None, _folded=None)
    rows = (docs @ model.doc_pca).astype(np.float32) if model.doc_pca.size else docs
    exact = np.concatenate([model.doc_exact, docs]) if model.doc_exact.size else model.doc_exact
    return dataclasses.replace(model, documents=np.concatenate([model.documents, rows]), doc_exact=exact,
                               doc_rows=None, _folded=None)


def low_confidence_share(router: RoutedEncoder, texts: Sequence[str], *,
                         documents: Optional[np.ndarray] = None) -> float:
    """Share of ``texts`` the router would send to the teacher (confidence under its calibrated
    threshold); ``documents``: teacher vectors added to its bank while they are scored (``bank_with``)."""
    if not texts:
        return 0.0
    vectors = router.student.encode(list(texts), kind="query")
    if documents is None or not len(documents) or not router.signal_model.documents.size:
        scores = router.confidence(list(texts), vectors)
    else:
        from .calibrate import confidence

        scores = confidence(bank_with(router.signal_model, documents), router.calibration, list(texts), vectors)
    return float((scores < router.threshold.threshold).mean())


UNSEEN_MAJORITY = 0.5     # a query is an unseen-word query when more than this share of its words is rare


def unseen_word_share(router: RoutedEncoder, texts: Sequence[str]) -> float:
    """Share of ``texts`` most of whose words the student's training texts never (or once) had."""
    if not texts:
        return 0.0
    from .signals import rare_word_shares

    return float((rare_word_shares(router.signal_model, list(texts)) > UNSEEN_MAJORITY).mean())


def _as_drift_texts(batch: Batch) -> DriftTexts:
    return batch if isinstance(batch, DriftTexts) else DriftTexts(list(batch), f"{len(batch)} texts as given")


CALIBRATION_BASELINE_FACTOR = 2.0   # a first night's rise over the calibration share must exceed this x tolerance


def drift_report(router: RoutedEncoder, previous: Optional[Batch], new: Batch, *,
                 tolerance: float = 0.05) -> dict[str, Any]:
    """Low-confidence and unseen-word shares of both batches; ``drifted`` when either share of the
    new one exceeds the previous one's by more than ``tolerance`` (absolute). A batch is texts scored
    as given, or ``DriftTexts`` (``span_views``: scored as the calibration texts were). Without a
    previous batch the baseline is the router's own calibration share (its threshold's
    ``expected_share``: the budget) and the unseen-word share has nothing to be compared with."""
    new_batch = _as_drift_texts(new)
    after = low_confidence_share(router, new_batch.texts, documents=new_batch.documents)
    unseen_after = unseen_word_share(router, new_batch.texts)
    expected = float(np.clip(router.threshold.expected_share, 0, 1))
    if previous is None:
        old: Optional[DriftTexts] = None
        before, unseen_before = expected, None
        baseline = f"the router's calibration share ({expected:.1%} of its calibration texts under the threshold)"
    else:
        old = _as_drift_texts(previous)
        before = low_confidence_share(router, old.texts, documents=old.documents)
        unseen_before = unseen_word_share(router, old.texts)
        baseline = f"the previous batch ({old.what})"
    # Against the calibration share the two sides are measured under different conditions (the served corpus's
    # own views against a new batch's, the bank grown by the batch), so a first night needs twice the rise: the
    # audit's first night read an in-domain batch 18.0% and a SciFact batch 27.3% against a 10% calibration
    # share -- flagging both at 5 points would call every first night drift.
    margin = tolerance if old is not None else CALIBRATION_BASELINE_FACTOR * tolerance
    confidence_rose = after > before + margin
    unseen_rose = unseen_before is not None and unseen_after > unseen_before + tolerance
    scored = f"new batch: {new_batch.what}; baseline: {baseline}"
    advice = ": the traffic moved away from what the student was trained on; consider retraining it or raising " \
             "the teacher budget"
    if confidence_rose:
        message = f"low-confidence share rose from {before:.1%} to {after:.1%} ({scored}){advice}"
    elif unseen_rose:
        message = (f"unseen-word share rose from {unseen_before:.1%} to {unseen_after:.1%} (low-confidence share "
                   f"{before:.1%} -> {after:.1%}; {scored}){advice}")
    else:
        unseen = (f"unseen-word share {unseen_after:.1%}" if unseen_before is None
                  else f"unseen-word share {unseen_before:.1%} -> {unseen_after:.1%}")
        message = f"low-confidence share {before:.1%} -> {after:.1%}, {unseen} ({scored}): no drift beyond {margin:.0%}"
    return {"previous_share": before, "new_share": after, "previous_unseen_share": unseen_before,
            "new_unseen_share": unseen_after, "drifted": bool(confidence_rose or unseen_rose), "tolerance": margin,
            "threshold": router.threshold.__dict__, "baseline": "previous batch" if old is not None else "calibration",
            "previous_texts": None if old is None else len(old.texts), "new_texts": len(new_batch.texts),
            "previous_scored": baseline if old is None else old.what, "new_scored": new_batch.what,
            "message": message, "expected_share": expected}
