"""Word trust: which words the student gets wrong, learned from the calibration texts' TRUE
agreement with the teacher (no labels; the teacher runs offline at calibration time).

A static student averages token vectors, so its error is a property of the words a query holds:
a word whose meaning depends on its context, or that the training text rarely showed, pulls
every query holding it away from the teacher. The generic signals (distance to the training
manifold, head disagreement) see that only through the vector. Here a ridge regression over
hashed bags of words predicts each calibration text's agreement from its words:

    agreement_i - mean  ~  (1 / |words_i|) * sum over words w of text i of trust[w]

The query-time signal ``word_trust`` is minus that prediction (higher = less trustworthy, as
for every signal): one table lookup per word, on the word buckets the word signals already
hash (``words.word_buckets``).

The combiner is calibrated on the same texts, so the values it learns from must not have seen
their own text's agreement: ``cross_fitted_trust`` gives each text the prediction of a table
fitted on the other folds (what a new query gets), and the saved table is fitted on all texts.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .words import WORD_BUCKETS, WordBags

TRUST_RIDGE = 3.0          # in "texts": a word seen in a few texts is shrunk hard towards 0
TRUST_ITERATIONS = 50      # conjugate-gradient steps on the normal equations (converges well before)
TRUST_FOLDS = 5


def fit_word_trust(texts: Sequence[str], agreement: np.ndarray, *, ridge: float = TRUST_RIDGE,
                   iterations: int = TRUST_ITERATIONS) -> np.ndarray:
    """(WORD_BUCKETS,) float32 table: ridge regression of the centred agreement on mean word bags,
    solved by conjugate gradient on (X'X + ridge * I / n) t = X'y (X never formed)."""
    y = np.asarray(agreement, dtype=np.float64)
    if len(texts) != len(y):
        raise ValueError(f"{len(texts)} texts but {len(y)} agreement values")
    bags = WordBags(texts)
    # the penalty is scaled per text so ``ridge`` reads as "texts' worth of evidence" whatever n is
    damp = ridge / max(bags.n, 1)
    b = bags.adjoint(y - y.mean()) / max(bags.n, 1)
    used = np.zeros(WORD_BUCKETS, dtype=bool)
    used[bags.buckets] = True

    def normal(t: np.ndarray) -> np.ndarray:
        return bags.adjoint(bags.predict(t)) / max(bags.n, 1) + damp * t

    t = np.zeros(WORD_BUCKETS)
    r = b.copy()
    p = r.copy()
    rr = float(r @ r)
    for _ in range(iterations):
        if rr < 1e-20:
            break
        q = normal(p)
        step = rr / float(p @ q)
        t += step * p
        r -= step * q
        new = float(r @ r)
        p = r + (new / rr) * p
        rr = new
    t[~used] = 0.0      # never seen: no evidence either way
    return t.astype(np.float32)


def word_trust_signal(table: np.ndarray, texts: Sequence[str] | WordBags) -> np.ndarray:
    """The ``word_trust`` signal of each text: minus the mean trust of its words (higher = less
    trustworthy); ``texts`` may be already tokenised (``WordBags``)."""
    bags = texts if isinstance(texts, WordBags) else WordBags(texts)
    return (-bags.predict(table)).astype(np.float32)


def cross_fitted_trust(texts: Sequence[str], agreement: np.ndarray, *, folds: int = TRUST_FOLDS,
                       ridge: float = TRUST_RIDGE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(signal per text from tables fitted on the other folds, table fitted on every text)."""
    y = np.asarray(agreement, dtype=np.float64)
    fold = np.random.default_rng(seed).permutation(len(texts)) % max(folds, 2)
    signal = np.zeros(len(texts), np.float32)
    for k in range(max(folds, 2)):
        held = np.flatnonzero(fold == k)
        train = np.flatnonzero(fold != k)
        table = fit_word_trust([texts[i] for i in train.tolist()], y[train], ridge=ridge)
        signal[held] = word_trust_signal(table, [texts[i] for i in held.tolist()])
    return signal, fit_word_trust(texts, y, ridge=ridge)
