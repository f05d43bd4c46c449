"""Closed-form maps a user would try first: identity, ridge least squares, orthogonal Procrustes.

Each is a ``LinearMap`` (``x @ weight + bias``, then L2 normalisation) fitted in numpy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from tava_core import linalg


def normalize_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass
class LinearMap:
    """A fitted closed-form map; ``note`` says how it was made (e.g. a dimension change)."""

    name: str
    weight: Optional[np.ndarray]  # (input_dim, output_dim); None = identity
    bias: Optional[np.ndarray] = None
    note: str = ""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = x if self.weight is None else x @ self.weight
        if self.bias is not None:
            out = out + self.bias
        return normalize_rows(np.asarray(out, dtype=np.float32))


def identity_map(input_dim: int, output_dim: int) -> Optional[LinearMap]:
    """Identity, only when both spaces have the same dimension (else None)."""
    return LinearMap("identity", None, note="no mapping") if input_dim == output_dim else None


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float = 1e-2) -> LinearMap:
    """Least squares with an L2 penalty ``alpha * trace(X^T X)/d`` (scale-free), on centred data."""
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    mx, my = x64.mean(0), y64.mean(0)
    xc, yc = x64 - mx, y64 - my
    gram = xc.T @ xc
    lam = alpha * np.trace(gram) / gram.shape[0]
    weight = linalg.solve(gram + lam * np.eye(gram.shape[0]), xc.T @ yc)
    bias = my - mx @ weight
    return LinearMap("ridge", weight.astype(np.float32), bias.astype(np.float32), note=f"alpha={alpha}")


def fit_procrustes(x: np.ndarray, y: np.ndarray) -> LinearMap:
    """Orthogonal Procrustes: ``W = U V^T`` from the SVD of ``X^T Y``.

    With different dimensions W is semi-orthogonal (orthonormal rows or columns): for a smaller
    input it is an isometric embedding (the same as zero-padding the input to the output's
    dimension and fitting a square rotation); for a larger input it is a projection.
    """
    u, _, vt = linalg.svd(x.astype(np.float64).T @ y.astype(np.float64))
    weight = (u @ vt).astype(np.float32)
    note = "square rotation" if x.shape[1] == y.shape[1] else (
        "semi-orthogonal: isometric embedding (= zero-padding + rotation)" if x.shape[1] < y.shape[1]
        else "semi-orthogonal: projection onto a subspace (not an isometry)")
    return LinearMap("procrustes", weight, note=note)


def fit_baselines(x: np.ndarray, y: np.ndarray, ridge_alpha: float = 1e-2) -> dict[str, LinearMap]:
    """Every closed-form baseline that applies to these dimensions."""
    maps = {"ridge": fit_ridge(x, y, ridge_alpha), "procrustes": fit_procrustes(x, y)}
    ident = identity_map(x.shape[1], y.shape[1])
    if ident is not None:
        maps = {"identity": ident, **maps}
    return maps
