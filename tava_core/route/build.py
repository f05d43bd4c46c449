"""Fit a router from arrays: the signals on the student's training texts, the combiner on
held-out span views of the corpus against the student's true agreement with the teacher."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .calibrate import Calibration, agreement_target, features_from_signals, fit_calibration, true_agreement
from .config import RouterSettings
from .signals import RETRIEVAL_SIGNALS, SignalModel, compute_signals, fit_signal_model
from .trust import cross_fitted_trust


@dataclass
class TextVectors:
    """Texts with their student (+ adapter) and teacher vectors, row-aligned."""

    texts: Sequence[str]
    student: np.ndarray
    teacher: np.ndarray


def fit_router(reference: TextVectors, calibration: TextVectors, documents: np.ndarray,
               settings: RouterSettings) -> tuple[SignalModel, Calibration]:
    """``reference``: the student's training texts; ``calibration``: held-out query stand-ins;
    ``documents``: the teacher's vectors of the corpus the router will serve."""
    # the document bank is saved in the router (up to doc_bank_size x d floats): only when a signal reads it
    bank = documents if set(settings.signals) & set(RETRIEVAL_SIGNALS) else None
    model = fit_signal_model(reference.texts, reference.student, reference.teacher, n_heads=settings.n_heads,
                             bank_size=settings.bank_size, pca_dim=settings.pca_dim, knn=settings.knn,
                             seed=settings.seed, documents=bank, doc_bank_size=settings.doc_bank_size,
                             doc_pca_dim=settings.doc_pca_dim, doc_rescore=settings.doc_rescore,
                             doc_clusters=settings.doc_clusters, doc_probe=settings.doc_probe)
    agreement = true_agreement(calibration.student, calibration.teacher, documents)
    features = None
    if "word_trust" in settings.signals:
        # the trust table learns from the calibration texts' agreement, and so does the combiner:
        # the combiner gets each text's out-of-fold trust (what a new query gets), the router the
        # table fitted on every calibration text
        out_of_fold, model.word_trust = cross_fitted_trust(
            calibration.texts, agreement_target(agreement, settings.target), ridge=settings.word_trust_ridge,
            seed=settings.seed)
        values = compute_signals(model, calibration.texts, calibration.student,
                                 [s for s in settings.signals if s != "word_trust"])
        features = features_from_signals(model, {**values, "word_trust": out_of_fold}, calibration.student,
                                         settings.signals, settings.vector_components)
    fitted = fit_calibration(model, calibration.texts, calibration.student, agreement, signals=settings.signals,
                             target=settings.target, vector_components=settings.vector_components,
                             alpha=settings.ridge_alpha, combiner=settings.combiner, features=features)
    return model, fitted
