"""The adapter's start: which closed-form map its linear skip path starts at, and fitting that map.

``resolve_init`` picks the start ``AdapterConfig.init`` names ('auto': paired, by the held-out retrieval
overlap of the closed forms, ``closed_form_overlaps``; unpaired, by the two sets' ``moment_alignment``);
``fit_start`` fits it (identity, ridge, Procrustes, or the unsupervised map of ``unsupervised.py`` with
``unsupervised_settings``) and ``init_from_closed_form`` writes it into an adapter.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import torch

from ..errors import ConfigError
from .baselines import LinearMap, fit_baselines, fit_procrustes, fit_ridge
from .config import AdapterConfig
from .data import MIN_QUERY_LIKE
from .metrics import retrieval_overlap
from .model import Vec2VecAdapter

if TYPE_CHECKING:
    from .unsupervised import UnsupervisedSettings


def unsupervised_settings(config: AdapterConfig) -> "UnsupervisedSettings":
    """The unsupervised search's settings an adapter config sets (the rest are the search's defaults)."""
    from .unsupervised import UnsupervisedSettings

    return UnsupervisedSettings(domain_weight=config.domain_weight)


def fit_start(x: np.ndarray, y: np.ndarray, kind: str, seed: int = 0,
              domain: Optional[tuple[np.ndarray, np.ndarray]] = None, settings: Optional[Any] = None) -> LinearMap:
    """The closed-form map a skip path starts at: 'identity' (equal dimensions), 'ridge' or 'procrustes'
    (fitted on pairs), or 'unsupervised' (from the two sets' own geometry, no pairs; ``unsupervised.py``;
    ``domain``: each side's vectors of other in-domain texts, for its last step; ``settings``: its
    ``UnsupervisedSettings``, default when None)."""
    if kind == "unsupervised":
        from .unsupervised import fit_unsupervised

        source_domain, target_domain = domain if domain is not None else (None, None)
        return fit_unsupervised(x, y, seed=seed, settings=settings, domain_source=source_domain,
                                domain_target=target_domain).linear_map
    if kind == "identity":
        if x.shape[1] != y.shape[1]:
            raise ConfigError(f"init 'identity' needs equal dimensions, not {x.shape[1]} -> {y.shape[1]}",
                              hint="use init 'procrustes' or 'ridge'")
        return LinearMap("identity", np.eye(x.shape[1], dtype=np.float32))
    return fit_ridge(x, y) if kind == "ridge" else fit_procrustes(x, y)


@torch.no_grad()
def init_from_closed_form(adapter: Vec2VecAdapter, start: LinearMap) -> bool:
    """Start a direct adapter's linear skip path at a closed-form map (``fit_start``); False if it has
    no skip path (shared latent space, or no residual)."""
    skip = adapter.linear_skip()
    if skip is None or adapter.net is None:  # linear_skip() is None whenever net is
        return False
    if start.weight is None:
        raise ValueError("an identity map has no weight to start from; fit_start gives ridge or procrustes maps")
    skip.weight.copy_(torch.as_tensor(start.weight.T))
    if start.bias is not None:
        adapter.net.head.bias.copy_(torch.as_tensor(start.bias))
    else:
        adapter.net.head.bias.zero_()
    return True


# Paired 'auto' start: held-out retrieval overlap@10 a fitted map must gain over the next simpler
# start (identity, then Procrustes) to be preferred. Fitted maps tilt towards the training texts'
# domain, so near-ties go to the geometry-preserving start (bench/adapter.py, SciFact, generic
# pairs: Stage A transformer student overlap identity 0.643 / Procrustes 0.654 / ridge 0.666 but
# nDCG@10 0.630 / 0.624 / 0.620; model2vec student overlap 0.08 / 0.13 / 0.47, nDCG 0.14 / 0.09 /
# 0.46; MiniLM -> mpnet overlap Procrustes 0.527 / ridge 0.510, nDCG 0.462 / 0.384).
AUTO_START_MARGIN = 0.03
AUTO_START_HELDOUT = 2000  # held-out pairs the starts are compared on
# Second-moment agreement without pairs (SciFact bench, disjoint passages): Stage A students
# 0.93-0.94, the teacher against a random rotation or permutation of itself 0.18.
AUTO_IDENTITY_MOMENTS = 0.5


def moment_alignment(x: np.ndarray, y: np.ndarray) -> float:
    """Cosine between the second-moment matrices ``x'x/n`` and ``y'y/m`` of two vector sets: needs no
    pairs, and is near 1 only when both sets live in the same coordinates (same space, same basis)."""
    a = x.T.astype(np.float64) @ x / max(len(x), 1)
    b = y.T.astype(np.float64) @ y / max(len(y), 1)
    return float((a * b).sum() / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def closed_form_overlaps(x: np.ndarray, y: np.ndarray, k: int = 10, pool_size: int = 5000,
                         seed: int = 0, query_like: Optional[np.ndarray] = None) -> dict[str, float]:
    """Held-out retrieval overlap@k of every closed-form start (identity when dims match, Procrustes,
    ridge), fitted on all but a held-out slice of the training pairs; ``pool_size`` of the rest are the
    document pool. With ``query_like`` (a bool per row), the slice is drawn from those rows only."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    candidates = order if query_like is None else order[np.asarray(query_like, dtype=bool)[order]]
    n_check = min(AUTO_START_HELDOUT, max(len(candidates) // 10, 1))
    check = candidates[:n_check]
    fit = order[~np.isin(order, check)]
    pool = y[fit[:pool_size]]
    return {name: retrieval_overlap(linear_map(x[check]), y[check], pool, min(k, len(pool) - 1))
            for name, linear_map in fit_baselines(x[fit], y[fit]).items()}


def resolve_init(config: AdapterConfig, x: np.ndarray, y: np.ndarray, *, paired: bool = True,
                 query_like: Optional[np.ndarray] = None) -> tuple[str, Optional[dict[str, float]]]:
    """The start ``config.init`` names; returns (start, the evidence for an 'auto' choice, else None).

    'auto', paired: the closed form whose held-out retrieval overlap is best, preferring the identity,
    then Procrustes, unless a fitted map beats it by ``AUTO_START_MARGIN`` (``closed_form_overlaps``):
    a Stage A student keeps the identity, an unrelated model of the same size does not (its coordinates
    may even match, as model2vec's do, without its vectors landing near the teacher's). Under
    selection_rows 'query_like' the overlaps are measured on query-like rows (``query_like``, a bool per
    row) when there are enough (evidence keys ``<map>_query_overlap``).
    'auto', unpaired: the identity when the two disjoint sets' ``moment_alignment`` is high (same
    coordinates), else the unsupervised linear start (``unsupervised.fit_unsupervised``)."""
    if config.init != "auto":
        return config.init, None
    if not paired:
        evidence = {} if x.shape[1] != y.shape[1] else {"second_moment": moment_alignment(x[:20000], y[:20000])}
        if evidence and evidence["second_moment"] >= AUTO_IDENTITY_MOMENTS:
            return "identity", evidence
        from .unsupervised import UnsupervisedSettings, minimum_vectors

        # the unsupervised start needs a linear skip path to start (no shared latent) and a few
        # vectors per k-means anchor; without either, the plain random start
        if config.latent_dim is not None or min(len(x), len(y)) < minimum_vectors(UnsupervisedSettings()):
            return "random", evidence or None
        return "unsupervised", evidence or {"dimensions_differ": 1.0}
    queries = query_like if config.selection_rows == "query_like" else None
    if queries is not None and int(np.sum(queries)) // 10 < MIN_QUERY_LIKE:
        queries = None  # too few to check on: all rows
    overlaps = closed_form_overlaps(x, y, k=config.knn_k, pool_size=config.retrieval_pool, query_like=queries)
    order = [name for name in ("identity", "procrustes", "ridge") if name in overlaps]
    start = order[0]
    for name in order[1:]:
        if overlaps[name] >= overlaps[start] + AUTO_START_MARGIN:
            start = name
    suffix = "_query_overlap" if queries is not None else "_overlap"
    return start, {f"{name}{suffix}": round(value, 4) for name, value in overlaps.items()}
