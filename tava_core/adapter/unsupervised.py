"""An unsupervised linear map between two embedding spaces, from two *unpaired* vector sets.

After mini-vec2vec (arXiv 2510.02348), written for tava:

1. **Pre-processing**: each side is centred on its own mean and re-normalised (the means differ
   between models and would dominate every cosine).
2. **Anchor matching**: spherical k-means on each side; the two sets of centroids are matched by
   their *relational* structure -- a quadratic assignment between the two centroid-similarity
   matrices (scipy's FAQ solver) -- so anchor j on one side corresponds to anchor π(j) on the other.
   Several k-means runs are stacked, and every vector is described by its cosines to all matched
   anchors (a relative representation, comparable across the two spaces).
3. **Pseudo-pairs + Procrustes**: each source vector is paired with the mean of its nearest
   target vectors in relative space, and an orthogonal (or, for different dimensions,
   semi-orthogonal) map is fitted on those pseudo-pairs.
4. **Refinement rounds**: map, take mutual nearest neighbours under CSLS (the hubness-corrected
   cosine of Conneau et al. 2018) as new pseudo-pairs, re-fit Procrustes, smoothed with the last map.

Restarts (different k-means/QAP seeds), the anchor runs inside them and the refinement rounds are
compared by a criterion that needs no pairs, the **relational agreement**: do the nearest target
vectors of mapped source vectors reproduce the source vectors' own similarities (correlation of
the two similarity matrices over a fixed sample)? The first choice, the mutual-NN share (fraction
of mapped vectors whose CSLS-nearest target has them as its own nearest), ranked MiniLM -> mpnet
maps of known quality backwards; ``bench/translate.py --criterion-check`` shows both against
held-out top-1. Everything is a
function of the seed: the same inputs and seed give the same map.

The result is a ``LinearMap`` in the raw (uncentred) coordinates: ``x @ W + b`` then L2-normalised,
so it is also a valid start for the adapter's linear skip path (``init_from_closed_form``).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch

from ..errors import ConfigError
from .baselines import LinearMap

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UnsupervisedSettings:
    """Knobs of ``fit_unsupervised`` (defaults chosen on held-out passage pairs, bench/translate.py)."""

    clusters: int = 32            # k-means centroids per run (anchors per run)
    anchor_runs: int = 8          # k-means + QAP runs stacked into one relative representation
    qap_inits: int = 10           # random starts of the FAQ quadratic-assignment solver per run
    kmeans_iterations: int = 30
    kmeans_inits: int = 4         # k-means runs per side per anchor run; the tightest is kept
    relative_neighbours: int = 10  # target vectors averaged per source vector in the first pseudo-pairs
    refine_rounds: int = 20
    refine_sample: int = 6000     # vectors per side used in a refinement round (all if fewer)
    csls_k: int = 10
    smoothing: float = 0.5        # weight of the previous map in each refinement round
    restarts: int = 3
    criterion_sample: int = 4000  # source / target vectors the mutual-NN criterion is measured on


@dataclass
class UnsupervisedResult:
    """The chosen map, its criterion, and every restart's record (for reports and benches)."""

    linear_map: LinearMap
    inverse_map: LinearMap  # target -> source, the transpose (a semi-orthogonal map's pseudo-inverse)
    criterion: float
    seed: int
    restarts: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


# ---------------------------------------------------------------------- small helpers

def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _centre(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unit rows of x minus its mean, the mean): the pre-processing of both sides."""
    x = np.asarray(x, dtype=np.float32)
    mean = x.mean(0)
    return _unit(x - mean).astype(np.float32), mean


def procrustes_weight(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(Semi-)orthogonal W minimising ||source W - target|| (W = U V' from the SVD of source' target)."""
    u, _, vt = np.linalg.svd(source.astype(np.float64).T @ target.astype(np.float64), full_matrices=False)
    return (u @ vt).astype(np.float32)


def _nearest(queries: torch.Tensor, keys: torch.Tensor, k: int, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k cosine (values, indices) of every query row among the key rows (both unit rows)."""
    values, indices = [], []
    for start in range(0, len(queries), chunk):
        sims = queries[start:start + chunk] @ keys.T
        top = sims.topk(min(k, keys.shape[0]), dim=1)
        values.append(top.values)
        indices.append(top.indices)
    return torch.cat(values), torch.cat(indices)


def csls_mutual_pairs(mapped: np.ndarray, target: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray, float]:
    """Mutual nearest neighbours under CSLS between mapped source rows and target rows (unit rows).

    Returns (source indices, target indices, share of source rows that have a mutual partner).
    One similarity matrix serves both directions (sizes here are a few thousand rows a side)."""
    a = torch.from_numpy(np.ascontiguousarray(mapped, dtype=np.float32))
    b = torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32))
    sims = a @ b.T
    k = min(k, len(a), len(b))
    r_a = sims.topk(k, dim=1).values.mean(1)  # how crowded each mapped source row's neighbourhood is
    r_b = sims.topk(k, dim=0).values.mean(0)
    csls = sims.mul_(2).sub_(r_a[:, None]).sub_(r_b[None, :])
    best_b = csls.argmax(1)
    best_a = csls.argmax(0)
    source = torch.arange(len(a))
    mutual = best_a[best_b] == source
    return source[mutual].numpy(), best_b[mutual].numpy(), float(mutual.float().mean())


def mutual_nn_share(mapped: np.ndarray, target: np.ndarray, k: int = 10) -> float:
    """The unsupervised criterion: share of mapped source rows with a mutual CSLS nearest target row."""
    return csls_mutual_pairs(_unit(mapped), _unit(target), k)[2]


# Second-moment agreement (trainer.moment_alignment) above which two unpaired sets are taken for the
# same model's vectors: disjoint halves of one model's passages agree to ~0.99+; a Stage A student and
# its teacher to 0.93-0.94 (trainer.AUTO_IDENTITY_MOMENTS), a rotated copy to 0.18.
SAME_MODEL_MOMENTS = 0.99


def check_distinct_spaces(source: np.ndarray, target: np.ndarray) -> None:
    """Refuse two sets that are one model's vectors passed as two models' (nothing to translate)."""
    from .trainer import moment_alignment

    if source.shape[1] != target.shape[1]:
        return
    agreement = moment_alignment(source[:20000], target[:20000])
    if agreement >= SAME_MODEL_MOMENTS:
        raise ConfigError(f"the two vector sets look like one model's vectors (second-moment agreement "
                          f"{agreement:.3f} >= {SAME_MODEL_MOMENTS}): there is nothing to translate",
                          hint="give the other model's vectors as the target; if two different models really "
                               "share coordinates, start at the identity (--init identity)")


# ---------------------------------------------------------------------- anchors

def spherical_kmeans(x: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 30, inits: int = 1
                     ) -> np.ndarray:
    """Unit centroids of ``k`` clusters of unit rows (k-means++ seeding, cosine assignment); with
    ``inits`` > 1 the tightest of several runs (the most canonical clustering: two sides' clusterings
    then correspond more often)."""
    if inits > 1:
        runs = [spherical_kmeans(x, k, rng, iterations) for _ in range(inits)]
        t = torch.from_numpy(x)
        return max(runs, key=lambda c: float((t @ torch.from_numpy(c).T).max(1).values.sum()))
    t = torch.from_numpy(x)
    first = int(rng.integers(len(x)))
    centroids = [t[first]]
    closest = 1 - t @ t[first]
    for _ in range(1, k):
        weights = torch.clamp(closest, min=0).double().numpy()
        pick = int(rng.choice(len(x), p=weights / weights.sum())) if weights.sum() > 0 else int(rng.integers(len(x)))
        centroids.append(t[pick])
        closest = torch.minimum(closest, 1 - t @ t[pick])
    c = torch.stack(centroids)
    for _ in range(iterations):
        assign = (t @ c.T).argmax(1)
        sums = torch.zeros_like(c).index_add_(0, assign, t)
        counts = torch.bincount(assign, minlength=k)
        empty = counts == 0
        sums[empty] = c[empty]  # an empty cluster keeps its centroid
        c = torch.nn.functional.normalize(sums, dim=1)
    return c.numpy()


def match_anchors(ca: np.ndarray, cb: np.ndarray, rng: np.random.Generator, inits: int) -> np.ndarray:
    """Permutation ``p`` with ``cb[p[j]]`` matched to ``ca[j]``, from the centroid-similarity matrices
    alone (quadratic assignment maximising sum S_a[i,j] S_b[p i, p j]; best of ``inits`` FAQ starts)."""
    from scipy.optimize import quadratic_assignment

    sa, sb = ca @ ca.T, cb @ cb.T
    np.fill_diagonal(sa, 0)
    np.fill_diagonal(sb, 0)
    best, best_score = None, -np.inf
    for i in range(inits):
        options = {"maximize": True, "rng": np.random.default_rng(int(rng.integers(2**31 - 1)))}
        if i:
            options["P0"] = "randomized"
        result = quadratic_assignment(sa, sb, method="faq", options=options)
        if result.fun > best_score:
            best, best_score = result.col_ind, result.fun
    return np.asarray(best)


def _relative(x: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Cosines to the anchors, centred and unit-normalised per row (comparable across the two spaces)."""
    rel = x @ anchors.T
    return _unit(rel - rel.mean(1, keepdims=True)).astype(np.float32)


def _partners(rel_a: np.ndarray, rel_b: np.ndarray, xb: np.ndarray, neighbours: int) -> np.ndarray:
    """Each source row's pseudo-partner: the mean of its nearest target rows in relative space."""
    _, idx = _nearest(torch.from_numpy(rel_a), torch.from_numpy(rel_b), neighbours)
    return _unit(xb[idx.numpy()].mean(1))


def relative_pseudo_pairs(xa: np.ndarray, xb: np.ndarray, settings: UnsupervisedSettings,
                          rng: np.random.Generator) -> tuple[np.ndarray, list[float]]:
    """Target-side pseudo-partners of every source row, from cosines to matched anchors.

    Each of ``anchor_runs`` k-means + QAP runs is screened on its own: its pseudo-pairs give a
    Procrustes map whose criterion (``_criterion``) is measured; a k-means run whose clusters do not correspond
    across the two sides gives a scattered map and a low share. The better half of the runs are
    stacked into one relative representation for the final pseudo-pairs. Returns (partners, the
    runs' screening criteria)."""
    runs = []
    for _ in range(settings.anchor_runs):
        ca = spherical_kmeans(xa, settings.clusters, rng, settings.kmeans_iterations, settings.kmeans_inits)
        cb = spherical_kmeans(xb, settings.clusters, rng, settings.kmeans_iterations, settings.kmeans_inits)
        perm = match_anchors(ca, cb, rng, settings.qap_inits)
        rel_a, rel_b = _relative(xa, ca), _relative(xb, cb[perm])
        weight = procrustes_weight(xa, _partners(rel_a, rel_b, xb, settings.relative_neighbours))
        runs.append((_criterion(xa, xb, weight, settings, screening=True), rel_a, rel_b))
    runs.sort(key=lambda run: -run[0])
    kept = runs[:max(1, len(runs) // 2)]
    rel_a = _unit(np.concatenate([run[1] for run in kept], 1))
    rel_b = _unit(np.concatenate([run[2] for run in kept], 1))
    return _partners(rel_a, rel_b, xb, settings.relative_neighbours), [round(run[0], 4) for run in runs]


# ---------------------------------------------------------------------- refinement and restarts

def refine(xa: np.ndarray, xb: np.ndarray, weight: np.ndarray, settings: UnsupervisedSettings,
           rng: np.random.Generator) -> np.ndarray:
    """Rounds of: map, mutual CSLS nearest neighbours as pseudo-pairs, Procrustes, smoothed."""
    best_weight, best_score = weight, _criterion(xa, xb, weight, settings, screening=True)
    for _ in range(settings.refine_rounds):
        sa = xa[rng.choice(len(xa), min(settings.refine_sample, len(xa)), replace=False)]
        sb = xb[rng.choice(len(xb), min(settings.refine_sample, len(xb)), replace=False)]
        src, dst, _ = csls_mutual_pairs(_unit(sa @ weight), sb, settings.csls_k)
        if len(src) < 2 * xa.shape[1] // 8:  # too few pairs to pin the map down: stop here
            break
        new = procrustes_weight(sa[src], sb[dst])
        weight = procrustes_weight(np.eye(len(weight), dtype=np.float32),
                                   settings.smoothing * weight + (1 - settings.smoothing) * new)
        # mutual-NN re-pairing can drift to a self-consistent wrong map: keep the best round
        score = _criterion(xa, xb, weight, settings, screening=True)
        if score > best_score:
            best_weight, best_score = weight, score
    return best_weight


def _criterion(xa: np.ndarray, xb: np.ndarray, weight: np.ndarray, settings: UnsupervisedSettings,
               screening: bool = False) -> float:
    """The pair-free criterion restarts, anchor runs and refinement rounds are judged by: the
    relational agreement of the map (``relational_agreement``). The mutual-NN share was the first
    choice, but for MiniLM -> mpnet it ranks maps of known quality backwards (a map from shuffled
    pairs scores 0.484, the right one 0.466), while relational agreement follows held-out top-1
    (0.15 -> 0.63 as top-1 goes 0.002 -> 0.995; bench/results/translate_criterion.json)."""
    size = settings.criterion_sample // (2 if screening else 1)
    return relational_agreement(xa @ weight, xb, sample=min(size, 1500))


def to_linear_maps(weight: np.ndarray, mean_a: np.ndarray, mean_b: np.ndarray, xa_raw: np.ndarray,
                   xb_raw: np.ndarray, note: str) -> tuple[LinearMap, LinearMap]:
    """The centred-space map as affine maps of raw vectors, both ways: y ≈ s (x - mean_a) W + mean_b and
    x ≈ (y - mean_b) W' / s + mean_a, where s scales the source's typical centred norm to the target's
    (the final L2 normalisation does the rest)."""
    scale = float(np.linalg.norm(xb_raw - mean_b, axis=1).mean()
                  / max(np.linalg.norm(xa_raw - mean_a, axis=1).mean(), 1e-12))
    forward_w = (scale * weight).astype(np.float32)
    inverse_w = (weight.T / scale).astype(np.float32)
    forward = LinearMap("unsupervised", forward_w, (mean_b - mean_a @ forward_w).astype(np.float32), note=note)
    inverse = LinearMap("unsupervised-inverse", inverse_w, (mean_a - mean_b @ inverse_w).astype(np.float32),
                        note=f"transpose of: {note}")
    return forward, inverse


def fit_unsupervised(source: np.ndarray, target: np.ndarray, *, seed: int = 0,
                     settings: Optional[UnsupervisedSettings] = None,
                     on_restart: Optional[Any] = None) -> UnsupervisedResult:
    """A linear map source space -> target space from two unpaired sets (rows = texts, not the same
    texts on both sides). ``on_restart(record, linear_map)`` is called after each restart (benches
    score restarts on held-out pairs with it)."""
    settings = settings or UnsupervisedSettings()
    started = time.perf_counter()
    source = np.asarray(source, dtype=np.float32)
    target = np.asarray(target, dtype=np.float32)
    for name, x in (("source", source), ("target", target)):
        if x.ndim != 2 or len(x) < 4 * settings.clusters:
            raise ConfigError(f"the {name} set has {len(x)} vectors; the unsupervised start needs at least "
                              f"{4 * settings.clusters} ({settings.clusters} anchors, 4 vectors each)",
                              hint="give more texts (a few thousand per side work well)")
        if not np.isfinite(x).all():
            raise ConfigError(f"the {name} set holds NaN or inf values", hint="re-embed the texts")
    check_distinct_spaces(source, target)
    if source.shape[1] > target.shape[1]:
        log.info("source dimension %d > target %d: the map projects onto a subspace", source.shape[1], target.shape[1])
    xa, mean_a = _centre(source)
    xb, mean_b = _centre(target)
    best: Optional[tuple[float, np.ndarray, int]] = None
    records = []
    for restart in range(settings.restarts):
        run_seed = seed * 1000 + restart
        t0 = time.perf_counter()
        rng = np.random.default_rng(run_seed)
        partners, screening = relative_pseudo_pairs(xa, xb, settings, rng)
        initial = procrustes_weight(xa, partners)
        initial_score = _criterion(xa, xb, initial, settings)
        weight = refine(xa, xb, initial, settings, rng)
        score = _criterion(xa, xb, weight, settings)
        record = {"restart": restart, "seed": run_seed, "anchor_run_criteria": screening,
                  "initial_criterion": round(initial_score, 4),
                  "criterion": round(score, 4), "seconds": round(time.perf_counter() - t0, 1)}
        records.append(record)
        log.info("unsupervised start, restart %d: relational agreement %.3f -> %.3f", restart, initial_score, score)
        if on_restart is not None:
            on_restart(record, to_linear_maps(weight, mean_a, mean_b, source, target, "restart")[0])
        if best is None or score > best[0]:
            best = (score, weight, run_seed)
    assert best is not None
    forward, inverse = to_linear_maps(best[1], mean_a, mean_b, source, target,
                                      note=f"mini-vec2vec-style unsupervised start, relational agreement {best[0]:.3f}")
    return UnsupervisedResult(forward, inverse, best[0], best[2], records, time.perf_counter() - started)


def mapped_criterion(mapped_source: np.ndarray, target: np.ndarray, settings: Optional[UnsupervisedSettings] = None
                     ) -> float:
    """The criterion of already-mapped source vectors against target vectors (a trained adapter and its
    start compare on the same fixed sample)."""
    settings = settings or UnsupervisedSettings()
    return relational_agreement(mapped_source, target, sample=min(settings.criterion_sample, 1500))


def keep_if_criterion_improves(result: Any, start_adapter: Any, start_map: LinearMap, source: np.ndarray,
                               target: np.ndarray) -> dict[str, float]:
    """After adversarial training from an unsupervised start: keep the trained adapter only if its
    criterion (relational agreement) beats the start map's; otherwise put the start back (``start_adapter``, a fresh
    adapter, gets the start map on its linear path) -- so a GAN never makes a translation worse.
    Returns the evidence (both criteria, and whether the trained adapter was kept)."""
    from .trainer import init_from_closed_form

    start_score = mapped_criterion(start_map(source), target)
    trained_score = mapped_criterion(result.adapter.map_numpy(source), target)
    kept = trained_score > start_score
    if not kept and init_from_closed_form(start_adapter, start_map):
        result.adapter.load_state_dict(start_adapter.state_dict())
        result.stopped = f"{result.stopped}; adversarial result dropped (relational agreement {trained_score:.3f} " \
                         f"<= start {start_score:.3f})"
    return {"start_criterion": round(start_score, 4), "trained_criterion": round(trained_score, 4),
            "adversarial_kept": float(kept)}


def inverse_of(linear_map: LinearMap) -> LinearMap:
    """The affine map back: x ≈ (y - b) pinv(W) (exact for a semi-orthogonal W scaled by s: W'/s²)."""
    if linear_map.weight is None:  # the identity is its own inverse (up to the bias)
        raise ValueError("inverse_of needs a fitted weight; the identity map has none")
    pinv = np.linalg.pinv(linear_map.weight.astype(np.float64))
    bias = -(linear_map.bias.astype(np.float64) @ pinv) if linear_map.bias is not None else None
    return LinearMap(f"{linear_map.name}-inverse", pinv.astype(np.float32),
                     None if bias is None else bias.astype(np.float32), note=f"inverse of: {linear_map.note}")


def relational_agreement(mapped_source: np.ndarray, target: np.ndarray, sample: int = 1000) -> float:
    """A second pair-free criterion: do the nearest target vectors of mapped source vectors reproduce
    the source vectors' own similarities? Correlation between cos(x_i, x_k) and cos(y_j(i), y_j(k)) over
    a fixed sample, j(i) = nearest target of mapped x_i. An orthogonal map keeps the source's geometry
    whatever it is, so only the partners it picks can make this high (bench/translate.py
    --criterion-check compares it with the mutual-NN share against held-out top-1)."""
    rng = np.random.default_rng(0)
    centre = target.mean(0)
    a = _unit(mapped_source[np.sort(rng.choice(len(mapped_source), min(sample, len(mapped_source)), replace=False))]
              - centre)
    b = _unit(target - centre)
    partners = b[(torch.from_numpy(a) @ torch.from_numpy(b).T).argmax(1).numpy()]
    upper = np.triu_indices(len(a), 1)
    return float(np.corrcoef((a @ a.T)[upper], (partners @ partners.T)[upper])[0, 1])
