"""The last step of the unsupervised search: sharpen a map that is right in rank but coarse.

The k-NN-average refinement (``unsupervised.refine``) converges from a rough start because the mean
of 50 target neighbours moves steadily towards the right place -- but near the answer the same
averaging stops it short: a wide neighbourhood hardly changes when the map turns a little (a flat
basin), and it leans towards the target's dense regions (hubs), so the map it ends on lands every
source vector near *some* crowd of targets rather than near its own counterpart. On MiniLM -> a
rotation of itself the refined map ranks held-out pairs perfectly at a mean cosine of only 0.74-0.86
where the exact map gives 1.0.

This module is the self-learning loop of unsupervised word translation (VecMap; MUSE's Procrustes
refinement), for vectors of *disjoint* texts: each round re-pairs every source vector with its best
target under CSLS -- the cosine minus how crowded both ends' neighbourhoods are, which cancels the
pull of hubs -- keeps the confident pairs (mutual best matches, or each source vector's few best
targets averaged) and fits orthogonal Procrustes on them. A partner is another text than the source
vector's own, but one close to it; over thousands of pairs that noise is symmetric and averages out of
Procrustes, where the hub bias does not.

Pure numpy/torch, deterministic (no sampling unless a side exceeds ``sample``, then a fixed-seed one).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Optional

import numpy as np
import torch

# unsupervised.py imports this module inside its sharpening step only, so this import is not circular
from .unsupervised import procrustes_weight


@dataclass(frozen=True)
class SelfLearningSettings:
    """Knobs of ``self_learn``; the defaults are what the search uses (``UnsupervisedSettings.final_*``),
    chosen on dev data (bench/translate_final.py)."""

    rounds: int = 4
    csls_k: int = 10        # neighbourhood that measures how crowded a vector's surroundings are
    neighbours: int = 5     # 0: mutual best CSLS pairs only; m >= 1: each row and its m best matches
    sample: int = 10000     # vectors per side a round pairs (all if fewer; a fixed sample if more)
    smoothing: float = 0.0  # weight of the previous map in each round
    # "forward": source rows pick targets; "union": target rows pick sources too
    direction: Literal["forward", "union"] = "union"
    # "csls": best CSLS matches; "sinkhorn": a balanced transport plan (every row and column carries
    # equal mass, so no target can be a hub)
    pairing: Literal["csls", "sinkhorn"] = "csls"
    epsilon: float = 0.02   # entropic regularisation of the transport plan (in cosine units)
    # 0: a row is paired as it is; m >= 1: as the unit mean of its m nearest rows on its own side (itself
    # excluded), so both ends of a pseudo-pair are averages of neighbours alike (see ``own_side_means``)
    own_side_neighbours: int = 0


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def similarities(xa: np.ndarray, xb: np.ndarray, weight: np.ndarray) -> torch.Tensor:
    """cos(x_a W, x_b) for every pair (unit rows, W (semi-)orthogonal). For a source of lower dimension
    W has orthonormal rows, so the product is taken in the source's dimension (x_a · x_b W'): half the
    work for 384 -> 768, the same numbers."""
    if weight.shape[0] <= weight.shape[1]:
        left, right = xa, xb @ weight.T
    else:  # a projection shortens vectors: normalise the mapped source
        left, right = _unit(xa @ weight), xb
    return torch.from_numpy(np.ascontiguousarray(left, dtype=np.float32)) @ \
        torch.from_numpy(np.ascontiguousarray(right, dtype=np.float32)).T


def csls(sims: torch.Tensor, k: int) -> torch.Tensor:
    """CSLS scores (Conneau et al. 2018) in place of the similarity matrix: 2 cos - r_a - r_b, r = the
    mean cosine of a row's (column's) k nearest on the other side."""
    k = max(1, min(k, sims.shape[0], sims.shape[1]))
    r_a = sims.topk(k, dim=1).values.mean(1)
    r_b = sims.topk(k, dim=0).values.mean(0)
    return sims.mul_(2).sub_(r_a[:, None]).sub_(r_b[None, :])


def weighted_procrustes(source: np.ndarray, target: np.ndarray, row_weights: Optional[np.ndarray]) -> np.ndarray:
    """Orthogonal Procrustes where pair i counts ``row_weights[i]`` times (plain Procrustes when None)."""
    if row_weights is None:
        return procrustes_weight(source, target)
    return procrustes_weight(source * row_weights[:, None].astype(np.float32), target)


def pseudo_pairs(scores: torch.Tensor, xb: np.ndarray, neighbours: int) -> tuple[np.ndarray, np.ndarray]:
    """(source rows, their partners) from a CSLS matrix: with ``neighbours`` 0 the mutual best matches
    only (the confident pairs), else every source row with the unit mean of its ``neighbours`` best."""
    if neighbours <= 0:
        forward = scores.argmax(1)
        backward = scores.argmax(0)
        rows = torch.arange(scores.shape[0])
        mutual = backward[forward] == rows
        return rows[mutual].numpy(), xb[forward[mutual].numpy()]
    idx = scores.topk(min(neighbours, scores.shape[1]), dim=1).indices.numpy()
    return np.arange(scores.shape[0]), _unit(xb[idx].mean(1))


def sinkhorn_plan(sims: torch.Tensor, epsilon: float, iterations: int = 200) -> torch.Tensor:
    """The entropic optimal-transport plan between two equal-mass sets (uniform marginals), overwriting
    ``sims``: rows sum to 1/n, columns to 1/m. Scaling-form Sinkhorn on exp((cos - 1) / epsilon)."""
    n, m = sims.shape
    kernel = sims.sub_(1).div_(epsilon).exp_().clamp_(min=1e-30)
    u, v = torch.full((n,), 1.0 / n), torch.full((m,), 1.0 / m)
    for _ in range(iterations):
        u = (1.0 / n) / (kernel @ v)
        v = (1.0 / m) / (kernel.T @ u)
    return kernel.mul_(u[:, None]).mul_(v[None, :])


def own_side_means(x: np.ndarray, neighbours: int, block: int = 2048) -> np.ndarray:
    """Each row replaced by the unit mean of its ``neighbours`` nearest other rows of ``x`` (cosine).

    Why: a pseudo-pair joins a source vector with the mean of a few *target* vectors near its image. Between
    disjoint samples that mean is a smoothed point -- pulled towards where targets are dense -- while the source
    end is not, so Procrustes fits the smoothing too, and the loop settles off the true map (the rotation pair
    ends at held-out cosine 0.93, not 1). Averaging the source end over its own neighbours smooths both ends
    alike: under the true map the two averages estimate the same thing."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    k = max(1, min(neighbours, len(x) - 1))
    out = np.empty_like(x, dtype=np.float32)
    for start in range(0, len(x), block):
        sims = t[start:start + block] @ t.T
        rows = torch.arange(start, min(start + block, len(x)))
        sims[rows - start, rows] = -float("inf")  # itself excluded: its counterpart is not on the other side
        idx = sims.topk(k, dim=1).indices.numpy()
        out[start:start + block] = x[idx].mean(1)
    return _unit(out)


def _cross(a: np.ndarray, b: np.ndarray, weight: np.ndarray, settings: SelfLearningSettings,
           weights_a: Optional[np.ndarray] = None, weights_b: Optional[np.ndarray] = None,
           paired_a: Optional[np.ndarray] = None, paired_b: Optional[np.ndarray] = None,
           ) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """(source rows, target rows, pair weights or None) whose Procrustes fit is this round's map; a pair
    weighs what the row that picked it weighs (``weights_a`` / ``weights_b``, one per row of a / b).
    ``paired_a`` / ``paired_b``: what stands for a picking row in its pair (default: the row itself)."""
    paired_a = a if paired_a is None else paired_a
    paired_b = b if paired_b is None else paired_b
    sims = similarities(a, b, weight)
    if settings.pairing == "sinkhorn":
        plan = sinkhorn_plan(sims, settings.epsilon)
        # x_i paired with its plan-weighted mean target (the barycentric projection), weighted by row mass
        return paired_a, (plan @ torch.from_numpy(b)).numpy() * len(a), weights_a
    scores = csls(sims, settings.csls_k)
    rows, partners = pseudo_pairs(scores, b, settings.neighbours)
    forward_weights = None if weights_a is None else weights_a[rows]
    if settings.direction != "union":
        return paired_a[rows], partners, forward_weights
    back_rows, back_partners = pseudo_pairs(scores.T.contiguous(), a, settings.neighbours)
    pair_weights = None
    if weights_a is not None or weights_b is not None:
        pair_weights = np.concatenate([np.ones(len(rows)) if forward_weights is None else forward_weights,
                                       np.ones(len(back_rows)) if weights_b is None else weights_b[back_rows]])
    return (np.concatenate([paired_a[rows], back_partners]), np.concatenate([partners, paired_b[back_rows]]),
            pair_weights)


def _fixed_sample_rows(n: int, size: int, seed: int) -> np.ndarray:
    """The rows a round pairs: all of them, or a fixed-seed sample of ``size``."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def self_learn(xa: np.ndarray, xb: np.ndarray, weight: np.ndarray, settings: SelfLearningSettings,
               on_round: Optional[Callable[[int, np.ndarray, int], None]] = None,
               weights_a: Optional[np.ndarray] = None, weights_b: Optional[np.ndarray] = None) -> np.ndarray:
    """``settings.rounds`` rounds of CSLS re-pairing + orthogonal Procrustes from ``weight`` (centred unit
    rows on both sides; W maps a source row into the target's space). ``on_round(round, weight, pairs)``
    sees every round's map (dev benches trace the curve with it). ``weights_a`` / ``weights_b``: a weight
    per row of each side; the pairs a row picks count that many times in Procrustes (the search up-weights
    domain rows: ``UnsupervisedSettings.domain_weight``)."""
    rows_a = _fixed_sample_rows(len(xa), settings.sample, 1)
    rows_b = _fixed_sample_rows(len(xb), settings.sample, 2)
    a, b = xa[rows_a], xb[rows_b]
    wa = None if weights_a is None else np.asarray(weights_a, dtype=np.float64)[rows_a]
    wb = None if weights_b is None else np.asarray(weights_b, dtype=np.float64)[rows_b]
    paired_a = paired_b = None
    if settings.own_side_neighbours > 0:
        paired_a = own_side_means(a, settings.own_side_neighbours)
        paired_b = own_side_means(b, settings.own_side_neighbours)
    eye = np.eye(len(weight), dtype=np.float32)
    for round_ in range(1, settings.rounds + 1):
        sources, partners, pair_weights = _cross(a, b, weight, settings, wa, wb, paired_a, paired_b)
        if len(sources) < weight.shape[0]:  # too few confident pairs to pin every direction: keep the map
            break
        new = weighted_procrustes(sources, partners, pair_weights)
        weight = new if settings.smoothing <= 0 else procrustes_weight(
            eye, settings.smoothing * weight + (1 - settings.smoothing) * new)
        if on_round is not None:
            on_round(round_, weight, len(sources))
    return weight
