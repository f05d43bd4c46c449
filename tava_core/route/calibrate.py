"""Calibration: the student's TRUE agreement with the teacher on held-out unlabeled texts (the
teacher runs offline here, never at query time) and a small linear combiner of the signals that
predicts it. The combiner's output is the confidence: predicted agreement, in the target's units,
so a target agreement is directly a threshold and a budget is a quantile of it.

Combiners (all linear in the standardised features, so the saved form and the query-time cost
are the same): ``ridge`` regresses the agreement; ``rank`` regresses its ranks (a budget only
needs the ORDER of queries right, and ranks are not pulled by the many ties of top-10 overlap);
``pairwise`` is a logistic model of "i agrees more than j" on sampled pairs; ``low`` a logistic
model of "among the least agreeing ``low_share``" (what a small budget routes); ``equal`` fits
nothing: every named signal counts alike, with the sign it is defined with (higher = less
trustworthy), and the vector components not at all -- a fitted combiner can give a signal that
routes well on its own a weight of the wrong sign when the signals are correlated, an equal one
cannot. Each non-ridge score is then mapped onto the agreement's units by a least-squares line
(order unchanged)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np

from tava_core import linalg

from ..evaluate.metrics import rows_per_block
from .signals import SignalModel, compute_signals

Target = Literal["overlap", "cosine", "mean"]
Combiner = Literal["ridge", "rank", "pairwise", "low", "equal"]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def top_k_sets(queries: np.ndarray, documents: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """(n, k) indices of the k best documents per query by cosine (order within the k not kept);
    ``exclude``: per query, a document row left out (-1: none)."""
    scores = _unit(queries) @ _unit(documents).T
    if exclude is not None:
        rows = np.flatnonzero(exclude >= 0)
        scores[rows, exclude[rows]] = -np.inf
    k = min(k, scores.shape[1])
    return np.argpartition(-scores, k - 1, axis=1)[:, :k]


def true_agreement(student: np.ndarray, teacher: np.ndarray, documents: np.ndarray, *, k: int = 10,
                   chunk: int | None = None, exclude: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per text: cosine of the student's (mapped) vector to the teacher's, and the share of the
    teacher's top-k documents that the student's top-k also holds. ``exclude``: per text, the
    corpus row of the document a span view was cut from (-1: none), left out of both lists.
    ``chunk``: texts scored at a time; by default `rows_per_block` (evaluation's memory bound)."""
    cos = np.sum(_unit(student) * _unit(teacher), axis=1).astype(np.float32)
    overlap = np.empty(len(student), dtype=np.float32)
    chunk = chunk or rows_per_block(len(documents))
    for start in range(0, len(student), chunk):
        part = None if exclude is None else exclude[start:start + chunk]
        a = top_k_sets(student[start:start + chunk], documents, k, part)
        b = top_k_sets(teacher[start:start + chunk], documents, k, part)
        for row in range(len(a)):
            overlap[start + row] = len(np.intersect1d(a[row], b[row], assume_unique=True)) / a.shape[1]
    return {"cosine": cos, "overlap": overlap}


def agreement_target(agreement: dict[str, np.ndarray], target: Target) -> np.ndarray:
    if target == "mean":
        return (0.5 * (agreement["cosine"] + agreement["overlap"])).astype(np.float32)
    return agreement[target]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a)).astype(np.float64)
    rb = np.argsort(np.argsort(b)).astype(np.float64)
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


@dataclass
class Calibration:
    """Ridge combiner over standardised features, plus the confidence distribution it produced on
    the calibration texts (for budget thresholds) and what each signal was worth there."""

    signals: list[str]
    vector_components: int            # leading PCA components of the student vector used as features
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    target: str
    quantiles: np.ndarray             # confidence at 0, 1, ..., 100 % of the calibration texts
    info: dict = field(default_factory=dict)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"calibration_mean": self.mean, "calibration_scale": self.scale, "calibration_weights": self.weights,
                "calibration_quantiles": self.quantiles}

    def header(self) -> dict:
        return {"signals": self.signals, "vector_components": self.vector_components, "bias": self.bias,
                "target": self.target, "info": self.info}

    @classmethod
    def from_parts(cls, header: dict, arrays: dict[str, np.ndarray]) -> "Calibration":
        return cls(signals=list(header["signals"]), vector_components=int(header["vector_components"]),
                   mean=np.asarray(arrays["calibration_mean"]), scale=np.asarray(arrays["calibration_scale"]),
                   weights=np.asarray(arrays["calibration_weights"]), bias=float(header["bias"]),
                   target=str(header["target"]), quantiles=np.asarray(arrays["calibration_quantiles"]),
                   info=dict(header.get("info", {})))

    def confidence_from_features(self, x: np.ndarray) -> np.ndarray:
        """Predicted agreement from a feature matrix (``feature_matrix``'s columns)."""
        return (((x - self.mean) / self.scale) @ self.weights + self.bias).astype(np.float32)

    def threshold_for_budget(self, budget: float) -> float:
        """The confidence below which ``budget`` of the calibration texts fall."""
        return float(np.interp(budget * 100.0, np.arange(101), self.quantiles))

    def share_below(self, threshold: float) -> float:
        """Share of calibration texts whose confidence is below ``threshold``."""
        return float(np.interp(threshold, self.quantiles, np.arange(101)) / 100.0)


def features_from_signals(model: SignalModel, values: dict[str, np.ndarray], student: np.ndarray,
                          signals: Sequence[str], vector_components: int) -> np.ndarray:
    """The combiner's columns: the named signals (log length), then leading PCA components of the
    student vector. Lets a caller compute every signal once and try several signal sets."""
    columns = [np.log1p(values[name]) if name == "length" else values[name] for name in signals]
    if vector_components:
        reduced = (_unit(student) - model.pca_mean) @ model.pca[:, 1:vector_components + 1]
        columns.extend(reduced.T)
    return np.stack(columns, axis=1).astype(np.float64) if columns else np.zeros((len(student), 0))


def feature_matrix(model: SignalModel, texts: Sequence[str], student: np.ndarray, signals: Sequence[str],
                   vector_components: int, *, exclude: np.ndarray | None = None) -> np.ndarray:
    values = compute_signals(model, texts, student, signals, exclude=exclude)
    return features_from_signals(model, values, student, signals, vector_components)


def _ridge(z: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    return linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (y - y.mean()))


def _logistic(x: np.ndarray, labels: np.ndarray, alpha: float, *, iterations: int = 25) -> np.ndarray:
    """L2-penalised logistic regression without intercept (Newton steps; features are few)."""
    w = np.zeros(x.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -30, 30)))
        grad = x.T @ (p - labels) + alpha * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + alpha * np.eye(x.shape[1])
        step = linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-6:
            break
    return w


def _ranks(y: np.ndarray) -> np.ndarray:
    """Average ranks scaled to [0, 1] (ties share a rank: overlap takes few distinct values)."""
    order = np.argsort(y, kind="stable")
    ranks = np.empty(len(y))
    ranks[order] = np.arange(len(y))
    _, inverse = np.unique(y, return_inverse=True)
    ranks = np.bincount(inverse, ranks) / np.bincount(inverse)
    return ranks[inverse] / max(len(y) - 1, 1)


def combiner_weights(z: np.ndarray, y: np.ndarray, combiner: Combiner, alpha: float, *, low_share: float = 0.2,
                     pairs: int = 20000, seed: int = 0, signals: int | None = None) -> np.ndarray:
    """Weights over standardised features ``z``; higher score = more agreement for every combiner.
    ``signals``: how many of the leading columns are named signals (the rest are vector
    components); only ``equal`` reads it (default: all columns)."""
    if not z.shape[1]:
        return np.zeros(0)
    if combiner == "equal":
        named = z.shape[1] if signals is None else signals
        if not named:
            raise ValueError("the equal combiner weighs named signals and leaves vector components out: "
                             "name at least one signal, or use another combiner")
        weights = np.zeros(z.shape[1])
        weights[:named] = -1.0 / max(named, 1)
        return weights
    if combiner == "ridge":
        return _ridge(z, y, alpha)
    if combiner == "rank":
        return _ridge(z, _ranks(y), alpha)
    if combiner == "pairwise":
        rng = np.random.default_rng(seed)
        i, j = rng.integers(0, len(y), size=(2, pairs))
        keep = y[i] != y[j]
        i, j = i[keep], j[keep]
        return _logistic(z[i] - z[j], (y[i] > y[j]).astype(np.float64), alpha)
    if combiner == "low":
        low = (y <= np.quantile(y, low_share)).astype(np.float64)
        # an intercept column so the weights need not absorb the base rate; dropped afterwards
        w = _logistic(np.hstack([z, np.ones((len(z), 1))]), low, alpha)
        return -w[:-1]
    raise ValueError(f"unknown combiner {combiner!r}; known: ridge, rank, pairwise, low, equal")


def fit_calibration(model: SignalModel, texts: Sequence[str], student: np.ndarray, agreement: dict[str, np.ndarray],
                    *, signals: Sequence[str], target: Target = "overlap", vector_components: int = 0,
                    alpha: float = 10.0, combiner: Combiner = "ridge", low_share: float = 0.2,
                    exclude: np.ndarray | None = None, features: np.ndarray | None = None) -> Calibration:
    """Fit the combiner on calibration texts (held out from the student's training). ``exclude``:
    per text, the corpus row of its source document (span views), left out of the retrieval
    signals (pass the same to true_agreement). ``features``: feature_matrix's result for these
    texts when the caller already has it."""
    x = features if features is not None else feature_matrix(model, texts, student, signals, vector_components,
                                                              exclude=exclude)
    y = agreement_target(agreement, target).astype(np.float64)
    mean, scale = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-9)
    z = (x - mean) / scale
    weights = combiner_weights(z, y, combiner, alpha, low_share=low_share, signals=len(signals))
    bias = float(y.mean())
    if combiner != "ridge" and weights.size:
        # onto the agreement's units: y ~ a * (z @ w) + b, a > 0 keeps the order the combiner chose
        raw = z @ weights
        a = float(np.cov(raw, y)[0, 1] / max(raw.var(ddof=1), 1e-12)) if raw.std() > 0 else 0.0
        a = a if a > 0 else 1e-6
        weights, bias = weights * a, float(y.mean() - a * raw.mean())
    calibration = Calibration(signals=list(signals), vector_components=vector_components, mean=mean, scale=scale,
                              weights=weights, bias=bias, target=target, quantiles=np.zeros(101))
    confidence = calibration.confidence_from_features(x)
    calibration.quantiles = np.percentile(confidence, np.arange(101))
    calibration.info = {
        "texts": len(texts), "alpha": alpha, "combiner": combiner,
        # the first columns are the signals (log length: same ranks), "higher = less trustworthy"
        "spearman_with_target": {name: spearman(-x[:, i], y) for i, name in enumerate(signals)},
        "combined_spearman_in_sample": spearman(confidence, y),
        "mean_agreement": {k: float(v.mean()) for k, v in agreement.items()},
    }
    return calibration


def confidence(model: SignalModel, calibration: Calibration, texts: Sequence[str], student: np.ndarray) -> np.ndarray:
    """Predicted agreement with the teacher per text (higher = safer to answer with the student)."""
    x = feature_matrix(model, texts, student, calibration.signals, calibration.vector_components)
    return calibration.confidence_from_features(x)
