"""An unsupervised linear map between two embedding spaces, from two *unpaired* vector sets.

After mini-vec2vec (Dar, arXiv 2510.02348), written for tava:

1. **Pre-processing**: each side is centred on its own mean and re-normalised (the means differ
   between models and would dominate every cosine).
2. **Anchor matching**: many small k-means runs per side (``anchor_runs`` x ``clusters``); in each
   run the two sets of centroids are matched by their *relational* structure -- a quadratic
   assignment between the two double-centred centroid-similarity matrices (scipy's 2-opt, best of
   ``qap_inits`` starts) -- so anchor j on one side corresponds to anchor π(j) on the other. One run's
   matching is often partly wrong (k-means is unstable, small Gram matrices are noisy); stacking all
   runs into one relative representation (each vector's cosines to every matched anchor) lets the
   right matches outvote the wrong ones.
3. **Pseudo-pairs + Procrustes**: each source vector is paired with the mean of its
   ``relative_neighbours`` nearest target vectors in relative space, and an orthogonal (or, for
   different dimensions, semi-orthogonal) map is fitted on those pseudo-pairs.
4. **Refinement rounds** (mini-vec2vec's "iterative closest point average"): map a sample of source
   vectors, pair each with the mean of its ``refine_neighbours`` nearest target vectors, re-fit
   Procrustes, smoothed with the last map. Averaging many neighbours is what makes this converge from
   a rough start: the mean of 50 neighbours moves steadily towards the right place, where a single
   (mutual, CSLS) nearest neighbour -- the first design -- locks onto a self-consistent wrong map
   (MiniLM -> its own rotation: 0.23 held-out top-1 with mutual CSLS pairs; from a start of 0.20,
   k-NN averaging reaches 0.96; bench/translate.py).
5. **Sharpening** (``self_learning.py``): near the answer the same averaging stops short -- the map is
   right in rank but coarse (held-out mean cosine 0.58 where paired Procrustes has 0.67; on the rotation
   pair 0.74-0.86 where the exact map has 1.0) -- so a few self-learning rounds follow, as in unsupervised
   word translation: every row's few best matches under CSLS (hub-corrected), in both directions, and
   Procrustes on them. The pair-free criterion keeps the result only if it rises.

Restarts (different seeds) are compared by a criterion that needs no pairs, the **relational
agreement**: do the nearest target vectors of mapped source vectors reproduce the source vectors'
own similarities (correlation of the two similarity matrices over a fixed sample)? The first choice,
the mutual-NN share, ranked MiniLM -> mpnet maps of known quality backwards; ``bench/translate.py
--criterion-check`` shows both against held-out top-1. Everything is a function of the seed: the
same inputs and seed give the same map.

The result is a ``LinearMap`` in the raw (uncentred) coordinates: ``x @ W + b`` then L2-normalised,
so it is also a valid start for the adapter's linear skip path (``init_from_closed_form``).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import numpy as np
import torch

from tava_core import linalg

from ..errors import ConfigError
from .baselines import LinearMap

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UnsupervisedSettings:
    """Knobs of ``fit_unsupervised``. Defaults follow mini-vec2vec's own settings where they fit a
    2-core budget, checked on held-out passage pairs (dev; bench/translate.py): MiniLM -> mpnet at
    9,500 texts a side, anchors alone give held-out top-1 0.40 and refinement takes it to 0.97."""

    clusters: int = 20            # k-means centroids per run (anchors per run): small runs are stabler
    anchor_runs: int = 30         # k-means + QAP runs stacked into one relative representation
    qap_inits: int = 10           # random starts of the 2-opt quadratic-assignment solver per run
    kmeans_iterations: int = 20
    kmeans_inits: int = 1         # k-means runs per side per anchor run; the tightest is kept
    anchor_sample: int = 10000    # vectors per side the k-means runs see (all if fewer)
    relative_neighbours: int = 50  # target vectors averaged per source vector in the first pseudo-pairs
    refine_rounds: int = 50
    refine_sample: int = 1000     # source vectors paired in a refinement round (all if fewer)
    refine_neighbours: int = 50   # target vectors averaged per source vector in a refinement round
    smoothing: float = 0.5        # weight of the previous map in each refinement round
    cluster_refine_rounds: int = 0  # rounds of cluster_refine after the nearest-neighbour rounds
    cluster_refine_clusters: int = 500
    # The last step (self_learning.py), chosen on dev (bench/translate_final.py; MiniLM -> mpnet, 9,500 a
    # side): 4 rounds of each row's 5 best CSLS matches, both directions. SciFact dev nDCG@10 through the
    # map 0.219 -> 0.311, held-out mean cosine 0.577 -> 0.628 (mutual pairs: 0.268; Sinkhorn: 0.296).
    final_rounds: int = 4         # self-learning rounds (CSLS re-pairing + Procrustes) that sharpen the result
    final_neighbours: int = 5     # 0: mutual best CSLS pairs; m >= 1: each row's m best matches averaged
    final_direction: Literal["forward", "union"] = "union"  # "union": source rows pick targets and target rows pick sources
    final_csls_k: int = 10
    final_sample: int = 10000     # vectors per side a self-learning round pairs
    # Weight of the pairs domain rows pick in the sharpening step's Procrustes (1 = one pair like any other).
    # Chosen on dev (bench/translate_domain.py; MiniLM -> mpnet, 9,500 passages + halves of SciFact's documents
    # and one span view of them a side): SciFact dev nDCG@10 0.497 / 0.509 / 0.515 at 1 / 2 / 3, held-out
    # passage cosine 0.628 / 0.619 / 0.611 (2: most of the gain for under 0.01 of cosine); with two span
    # views 0.512 / 0.522 at 1 / 2. No effect without domain vectors.
    domain_weight: float = 2.0
    restarts: int = 2
    criterion_sample: int = 4000  # source / target vectors the criterion is measured on


VECTORS_PER_ANCHOR = 10  # fewer vectors per k-means cluster give centroids too noisy to match


def minimum_vectors(settings: "UnsupervisedSettings") -> int:
    """The fewest vectors per side the unsupervised start accepts."""
    return VECTORS_PER_ANCHOR * settings.clusters


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
    u, _, vt = linalg.svd(source.astype(np.float64).T @ target.astype(np.float64))
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


# Second-moment agreement (start.moment_alignment) above which two unpaired sets are taken for the
# same model's vectors: disjoint halves of one model's passages agree to ~0.99+; a Stage A student and
# its teacher to 0.93-0.94 (start.AUTO_IDENTITY_MOMENTS), a rotated copy to 0.18.
SAME_MODEL_MOMENTS = 0.99


def check_distinct_spaces(source: np.ndarray, target: np.ndarray) -> None:
    """Refuse two sets that are one model's vectors passed as two models' (nothing to translate)."""
    from .start import moment_alignment

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
    return lloyd(x, torch.stack(centroids).numpy(), iterations)


def lloyd(x: np.ndarray, centroids: np.ndarray, iterations: int) -> np.ndarray:
    """Spherical k-means (Lloyd) rounds from the given unit centroids; row j stays cluster j."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    c = torch.from_numpy(np.ascontiguousarray(centroids, dtype=np.float32))
    for _ in range(iterations):
        assign = (t @ c.T).argmax(1)
        sums = torch.zeros_like(c).index_add_(0, assign, t)
        counts = torch.bincount(assign, minlength=len(c))
        empty = counts == 0
        sums[empty] = c[empty]  # an empty cluster keeps its centroid
        c = torch.nn.functional.normalize(sums, dim=1)
    return c.numpy()


def _double_centred(gram: np.ndarray) -> np.ndarray:
    """A Gram matrix with row, column and grand means removed and a zero diagonal: the relational part
    only (the two sides' centroids differ in overall spread, and the diagonal -- each centroid's own
    norm -- would reward matching by norm and give the QAP many false optima)."""
    out = gram - gram.mean(0, keepdims=True) - gram.mean(1, keepdims=True) + gram.mean()
    np.fill_diagonal(out, 0)
    return out


def match_anchors(ca: np.ndarray, cb: np.ndarray, rng: np.random.Generator, inits: int) -> tuple[np.ndarray, float]:
    """(permutation ``p`` with ``cb[p[j]]`` matched to ``ca[j]``, its QAP objective), from the
    centroid-similarity matrices alone: a quadratic assignment maximising sum K_a[i,j] K_b[p i, p j]
    over the double-centred Gram matrices; ``inits`` starts of FAQ (the first from the barycentre, the
    others random), each polished by 2-opt swaps from FAQ's answer (FAQ's relaxation finds the right
    basin, 2-opt the exact optimum in it; either alone misses the optimum of these small problems often)."""
    from scipy.optimize import quadratic_assignment

    ka, kb = _double_centred(ca @ ca.T), _double_centred(cb @ cb.T)
    best, best_score = np.arange(len(ca)), -np.inf
    for i in range(max(1, inits)):
        faq_options: dict[str, Any] = {"maximize": True, "rng": np.random.default_rng(int(rng.integers(2**31 - 1)))}
        if i:
            faq_options["P0"] = "randomized"
        faq = quadratic_assignment(ka, kb, method="faq", options=faq_options)
        guess = np.column_stack([np.arange(len(ca)), faq.col_ind])
        polished = quadratic_assignment(ka, kb, method="2opt", options={
            "maximize": True, "partial_guess": guess, "rng": np.random.default_rng(int(rng.integers(2**31 - 1)))})
        for result in (faq, polished):
            if result.fun > best_score:
                best, best_score = np.asarray(result.col_ind), float(result.fun)
    return best, best_score


def _subsample(x: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    return x if len(x) <= size else x[np.sort(rng.choice(len(x), size, replace=False))]


def matched_anchors(xa: np.ndarray, xb: np.ndarray, settings: UnsupervisedSettings, rng: np.random.Generator
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``anchor_runs`` x ``clusters`` anchors per side, row j of one matched to row j of the other."""
    anchors_a, anchors_b = [], []
    for _ in range(settings.anchor_runs):
        ca = spherical_kmeans(_subsample(xa, settings.anchor_sample, rng), settings.clusters, rng,
                              settings.kmeans_iterations, settings.kmeans_inits)
        cb = spherical_kmeans(_subsample(xb, settings.anchor_sample, rng), settings.clusters, rng,
                              settings.kmeans_iterations, settings.kmeans_inits)
        perm, _ = match_anchors(ca, cb, rng, settings.qap_inits)
        anchors_a.append(ca)
        anchors_b.append(cb[perm])
    return np.concatenate(anchors_a), np.concatenate(anchors_b)


def _relative(x: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Cosines to the anchors as a unit row (comparable across the two spaces once anchors match)."""
    return _unit(x @ anchors.T).astype(np.float32)


def _neighbour_means(queries: np.ndarray, keys: np.ndarray, values: np.ndarray, neighbours: int) -> np.ndarray:
    """For every query row, the unit mean of the ``values`` rows of its nearest ``keys`` rows."""
    _, idx = _nearest(torch.from_numpy(np.ascontiguousarray(queries)), torch.from_numpy(keys), neighbours)
    return _unit(values[idx.numpy()].mean(1))


def relative_pseudo_pairs(xa: np.ndarray, xb: np.ndarray, settings: UnsupervisedSettings,
                          rng: np.random.Generator) -> np.ndarray:
    """Target-side pseudo-partners of every source row: the mean of its ``relative_neighbours``
    nearest target rows in relative space (cosines to matched anchors, ``matched_anchors``)."""
    anchors_a, anchors_b = matched_anchors(xa, xb, settings, rng)
    return _neighbour_means(_relative(xa, anchors_a), _relative(xb, anchors_b), xb, settings.relative_neighbours)


# ---------------------------------------------------------------------- refinement and restarts

def refine(xa: np.ndarray, xb: np.ndarray, weight: np.ndarray, settings: UnsupervisedSettings,
           rng: np.random.Generator) -> np.ndarray:
    """Rounds of: map a sample of source rows, pair each with the mean of its nearest target rows,
    Procrustes, smoothed with the last map (and made (semi-)orthogonal again). The criterion is
    checked every ``CHECK_EVERY`` rounds and the best map kept, so a drifting run cannot end worse
    than it was."""
    targets = torch.from_numpy(xb)
    eye = np.eye(len(weight), dtype=np.float32)
    best_weight, best_score = weight, _criterion(xa, xb, weight, settings, screening=True)
    for round_ in range(1, settings.refine_rounds + 1):
        sample = _subsample(xa, settings.refine_sample, rng)
        _, idx = _nearest(torch.from_numpy(np.ascontiguousarray(sample @ weight)), targets, settings.refine_neighbours)
        partners = _unit(xb[idx.numpy()].mean(1))
        new = procrustes_weight(sample, partners)
        weight = procrustes_weight(eye, settings.smoothing * weight + (1 - settings.smoothing) * new)
        if round_ % CHECK_EVERY == 0 or round_ == settings.refine_rounds:
            score = _criterion(xa, xb, weight, settings, screening=True)
            if score > best_score:
                best_weight, best_score = weight, score
    return best_weight


CHECK_EVERY = 10  # refinement rounds between two criterion checks (a check costs about three rounds)


def cluster_refine(xa: np.ndarray, xb: np.ndarray, weight: np.ndarray, settings: UnsupervisedSettings,
                   rng: np.random.Generator) -> np.ndarray:
    """mini-vec2vec's second refinement: many small source clusters; the target's clusters grown from
    the mapped source centroids (so cluster j corresponds on both sides by construction); Procrustes
    between the two sets of centroids, smoothed with the last map. A centroid averages a whole region
    on each side, where a source vector's nearest-neighbour mean averages only the target side -- the
    pull of the target's dense regions that biases the nearest-neighbour rounds cancels out."""
    clusters = min(settings.cluster_refine_clusters, min(len(xa), len(xb)) // VECTORS_PER_ANCHOR)
    if settings.cluster_refine_rounds <= 0 or clusters < 2:
        return weight
    eye = np.eye(len(weight), dtype=np.float32)
    for _ in range(settings.cluster_refine_rounds):
        ca = spherical_kmeans(xa, clusters, rng, settings.kmeans_iterations)
        cb = lloyd(xb, _unit(ca @ weight), settings.kmeans_iterations)
        new = procrustes_weight(ca, cb)
        weight = procrustes_weight(eye, settings.smoothing * weight + (1 - settings.smoothing) * new)
    return weight


def sharpen(xa: np.ndarray, xb: np.ndarray, weight: np.ndarray, settings: UnsupervisedSettings,
            extra: int = 0, domain_rows: tuple[int, int] = (0, 0)) -> np.ndarray:
    """The last step: self-learning rounds (``self_learning.self_learn``: CSLS re-pairing + Procrustes)
    that take the refined map from right-in-rank to close (the k-NN averaging stops short of it).
    ``extra``: rows of domain vectors appended to both sides, added to the sample cap so they never
    crowd the main sets out of it. ``domain_rows``: how many of each side's rows (the last ones) are
    domain rows; the pairs they pick weigh ``settings.domain_weight``. Generic text outnumbers the domain
    text and its pairs pin the directions it varies in; weighting the domain's pairs up lets the
    directions only domain text varies in count for more (SciFact dev 0.497 -> 0.509 at weight 2)."""
    if settings.final_rounds <= 0:
        return weight
    from .self_learning import SelfLearningSettings, self_learn

    def row_weights(n: int, domain: int) -> Optional[np.ndarray]:
        if not domain or settings.domain_weight == 1.0:
            return None
        return np.where(np.arange(n) >= n - domain, settings.domain_weight, 1.0)

    return self_learn(xa, xb, weight, SelfLearningSettings(
        rounds=settings.final_rounds, csls_k=settings.final_csls_k, neighbours=settings.final_neighbours,
        sample=settings.final_sample + extra, direction=settings.final_direction),
        weights_a=row_weights(len(xa), domain_rows[0]), weights_b=row_weights(len(xb), domain_rows[1]))


def _domain_rows(x: Optional[np.ndarray], mean: np.ndarray, dim: int, name: str) -> np.ndarray:
    """Domain vectors of one side, centred on that side's main set (the map's own mean), or no rows."""
    if x is None:
        return np.zeros((0, dim), np.float32)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != dim:
        raise ConfigError(f"the {name} domain vectors are {x.shape}; their side's vectors are {dim}-d",
                          hint=f"give the {name} model's vectors of the domain texts")
    if not np.isfinite(x).all():
        raise ConfigError(f"the {name} domain vectors hold NaN or inf values", hint="re-embed the texts")
    return _unit(x - mean).astype(np.float32)


def _criterion(xa: np.ndarray, xb: np.ndarray, weight: np.ndarray, settings: UnsupervisedSettings,
               screening: bool = False) -> float:
    """The pair-free criterion restarts and refinement rounds are judged by: the neighbour similarity of
    the (semi-)orthogonal map (``neighbour_similarity``). It follows the held-out mean cosine of maps of
    known quality monotonically (MiniLM -> mpnet and -> its rotation, 2,500 texts a side), where the
    relational agreement saturates near the top (a map from 50% shuffled pairs scores above the right
    one) and the mutual-NN share ranks maps backwards (bench/results/translate_criterion.json).
    An orthogonal map cannot collapse the source's cloud, so landing near target vectors is earned."""
    size = settings.criterion_sample // (2 if screening else 1)
    return neighbour_similarity(xa @ weight, xb, sample=min(size, 2000))


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
                     on_restart: Optional[Any] = None, domain_source: Optional[np.ndarray] = None,
                     domain_target: Optional[np.ndarray] = None) -> UnsupervisedResult:
    """A linear map source space -> target space from two unpaired sets (rows = texts, not the same
    texts on both sides). ``on_restart(record, linear_map)`` is called after each restart (benches
    score restarts on held-out pairs with it).

    ``domain_source`` / ``domain_target``: optional unpaired vectors of texts from the domain the map
    will be searched in (e.g. each model's vectors of a different half of the documents), used in the
    sharpening step only. The search pins a direction only where the sets vary, and generic text barely
    varies where a specialist domain's queries do (MiniLM -> mpnet: the found map agrees with the paired
    one at cosine 0.98 on the passages' top 32 principal directions, 0.35 on the last 32, where SciFact's
    claims hold proportionally more of their variance; SciFact dev nDCG@10 0.31 without, 0.48 with
    disjoint halves of SciFact's documents; bench/translate_diagnose.py). They stay out of the anchor
    search and refinement, which they destabilise when mixed in (seed 1 of the two run failed in both restarts).
    In the sharpening step the pairs they pick weigh ``settings.domain_weight`` (generic text outnumbers them;
    0.48 -> 0.51 on SciFact dev with a span view of each half's documents added, 0.52 with two;
    bench/translate_domain.py)."""
    settings = settings or UnsupervisedSettings()
    started = time.perf_counter()
    source = np.asarray(source, dtype=np.float32)
    target = np.asarray(target, dtype=np.float32)
    for name, x in (("source", source), ("target", target)):
        if x.ndim != 2 or len(x) < minimum_vectors(settings):
            raise ConfigError(f"the {name} set has {len(x)} vectors; the unsupervised start needs at least "
                              f"{minimum_vectors(settings)} ({settings.clusters} anchors per k-means run, "
                              f"{VECTORS_PER_ANCHOR} vectors each)",
                              hint="give more texts (a few thousand per side work well)")
        if not np.isfinite(x).all():
            raise ConfigError(f"the {name} set holds NaN or inf values", hint="re-embed the texts")
    check_distinct_spaces(source, target)
    if source.shape[1] > target.shape[1]:
        log.info("source dimension %d > target %d: the map projects onto a subspace", source.shape[1], target.shape[1])
    xa, mean_a = _centre(source)
    xb, mean_b = _centre(target)
    da = _domain_rows(domain_source, mean_a, source.shape[1], "source")
    db = _domain_rows(domain_target, mean_b, target.shape[1], "target")
    # the sets the sharpening step pairs (and its keep-or-drop criterion is measured on)
    pooled_a, pooled_b = (np.concatenate([xa, da]), np.concatenate([xb, db])) if len(da) or len(db) else (xa, xb)
    best: Optional[tuple[float, np.ndarray, int]] = None
    records = []
    for restart in range(settings.restarts):
        run_seed = seed * 1000 + restart
        t0 = time.perf_counter()
        rng = np.random.default_rng(run_seed)
        # a step can take minutes on 2 cores: say each one as it ends (restart r of n)
        step = f"unsupervised start, restart {restart + 1} of {settings.restarts}"
        initial = procrustes_weight(xa, relative_pseudo_pairs(xa, xb, settings, rng))
        initial_score = _criterion(xa, xb, initial, settings)
        log.info("%s: %d anchor runs matched, relational agreement %.3f (%.0f s)", step, settings.anchor_runs,
                 initial_score, time.perf_counter() - t0)
        weight = cluster_refine(xa, xb, refine(xa, xb, initial, settings, rng), settings, rng)
        refined_score = _criterion(pooled_a, pooled_b, weight, settings)
        log.info("%s: %d refinement rounds, relational agreement %.3f (%.0f s)", step, settings.refine_rounds,
                 refined_score, time.perf_counter() - t0)
        sharpened = sharpen(pooled_a, pooled_b, weight, settings, extra=max(len(da), len(db)),
                            domain_rows=(len(da), len(db)))
        sharpened_score = _criterion(pooled_a, pooled_b, sharpened, settings) if sharpened is not weight else refined_score
        # the pair-free criterion decides whether the sharpened map replaces the refined one
        kept = sharpened is not weight and sharpened_score > refined_score
        weight, score = (sharpened, sharpened_score) if kept else (weight, refined_score)
        record = {"restart": restart, "seed": run_seed,
                  "initial_criterion": round(initial_score, 4), "refined_criterion": round(refined_score, 4),
                  "criterion": round(score, 4), "seconds": round(time.perf_counter() - t0, 1)}
        records.append(record)
        log.info("%s: sharpened %s, relational agreement %.3f -> %.3f (%.0f s)", step,
                 "and kept" if kept else "but not kept", initial_score, score, record["seconds"])
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
    start compare on the same fixed sample): the relational agreement, not the neighbour similarity the
    orthogonal search uses -- a trained (non-orthogonal) adapter could raise the neighbour similarity by
    crowding its outputs into dense regions, while crowding destroys the relational agreement."""
    settings = settings or UnsupervisedSettings()
    return relational_agreement(mapped_source, target, sample=min(settings.criterion_sample, 1500))


def keep_if_criterion_improves(result: Any, start_adapter: Any, start_map: LinearMap, source: np.ndarray,
                               target: np.ndarray) -> dict[str, float]:
    """After adversarial training from an unsupervised start: keep the trained adapter only if its
    criterion (relational agreement) beats the start map's; otherwise put the start back (``start_adapter``, a fresh
    adapter, gets the start map on its linear path) -- so a GAN never makes a translation worse.
    Returns the evidence (both criteria, and whether the trained adapter was kept)."""
    from .start import init_from_closed_form

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
    pinv = linalg.pinv(linear_map.weight.astype(np.float64))
    bias = -(linear_map.bias.astype(np.float64) @ pinv) if linear_map.bias is not None else None
    return LinearMap(f"{linear_map.name}-inverse", pinv.astype(np.float32),
                     None if bias is None else bias.astype(np.float32), note=f"inverse of: {linear_map.note}")


def relational_agreement(mapped_source: np.ndarray, target: np.ndarray, sample: int = 1000) -> float:
    """A second pair-free criterion: do the nearest target vectors of mapped source vectors reproduce
    the source vectors' own similarities? Correlation between cos(x_i, x_k) and cos(y_j(i), y_j(k)) over
    a fixed sample, j(i) = nearest target of mapped x_i. An orthogonal map keeps the source's geometry
    whatever it is, so only the partners it picks can make this high (bench/translate.py
    --criterion-check compares it with neighbour similarity against held-out top-1)."""
    rng = np.random.default_rng(0)
    centre = target.mean(0)
    a = _unit(mapped_source[np.sort(rng.choice(len(mapped_source), min(sample, len(mapped_source)), replace=False))]
              - centre)
    b = _unit(target - centre)
    partners = b[(torch.from_numpy(a) @ torch.from_numpy(b).T).argmax(1).numpy()]
    upper = np.triu_indices(len(a), 1)
    return float(np.corrcoef((a @ a.T)[upper], (partners @ partners.T)[upper])[0, 1])


def neighbour_similarity(mapped_source: np.ndarray, target: np.ndarray, sample: int = 2000, k: int = 10) -> float:
    """A third pair-free criterion: the mean cosine between mapped source vectors (a fixed sample) and
    their ``k`` nearest target vectors, both centred on the target's mean. An orthogonal map cannot
    shrink the source's cloud, so it scores high only by landing source vectors where target vectors are
    (the quantity the refinement rounds improve)."""
    rng = np.random.default_rng(0)
    centre = target.mean(0)
    a = _unit(mapped_source[np.sort(rng.choice(len(mapped_source), min(sample, len(mapped_source)), replace=False))]
              - centre)
    values, _ = _nearest(torch.from_numpy(a.astype(np.float32)), torch.from_numpy(_unit(target - centre).astype(np.float32)), k)
    return float(values.mean())


def pair_free_quality(linear_map: LinearMap, source: np.ndarray, target: np.ndarray, seed: int = 0
                      ) -> dict[str, float]:
    """What a user with no pairs can read of a found map: its neighbour similarity (the criterion the
    restarts are picked by; with pairs shuffled away it falls monotonically with held-out top-1,
    docs/translation.md) beside a random semi-orthogonal map's of the same shape, the floor."""
    rng = np.random.default_rng(seed)
    d_in, d_out = source.shape[1], target.shape[1]
    random_weight = procrustes_weight(rng.standard_normal((d_in, d_in)), rng.standard_normal((d_in, d_out)))
    floor, _ = to_linear_maps(random_weight, source.mean(0), target.mean(0), source, target, "random")
    return {"neighbour_similarity": neighbour_similarity(linear_map(source), target),
            "random_map_neighbour_similarity": neighbour_similarity(floor(source), target)}
