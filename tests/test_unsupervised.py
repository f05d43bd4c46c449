"""The unsupervised linear start: a map between two spaces found from two unpaired sets (synthetic data)."""
from __future__ import annotations

import numpy as np
import pytest

from tava_core.adapter.metrics import alignment_metrics
from tava_core.adapter.unsupervised import (UnsupervisedSettings, fit_unsupervised, inverse_of, mapped_criterion,
                                            match_anchors, spherical_kmeans)
from tava_core.errors import ConfigError

LATENT = 16
FAST = UnsupervisedSettings(clusters=12, anchor_runs=3, qap_inits=3, kmeans_iterations=15, refine_rounds=6,
                            refine_sample=1200, restarts=2, criterion_sample=800)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def texts(n: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    """'Texts' as latent points: a mixture of anisotropic clusters (a corpus has topics)."""
    labels = rng.integers(0, len(centres), n)
    return centres[labels] + 0.35 * rng.normal(size=(n, LATENT))


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, LATENT)) * rng.uniform(0.5, 2.0, size=(20, 1))
    model_a = rng.normal(size=(LATENT, 24))          # two "models": different linear views of the latent
    q, _ = np.linalg.qr(rng.normal(size=(40, 40)))
    model_b = model_a @ q[:24] * 1.0                  # 24 -> 40 dims: the same geometry, rotated and embedded
    shift_b = 0.3 * rng.normal(size=40)               # and a different mean, as real models have
    a_texts, b_texts, held = texts(2500, rng, centres), texts(2500, rng, centres), texts(400, rng, centres)

    def side_a(z):
        return unit(z @ model_a)

    def side_b(z):
        return unit(z @ model_b + shift_b)

    return {"source": side_a(a_texts), "target": side_b(b_texts), "held_source": side_a(held),
            "held_target": side_b(held)}


def test_unpaired_sets_of_different_dimension_align(world):
    result = fit_unsupervised(world["source"], world["target"], seed=0, settings=FAST)
    metrics = alignment_metrics(result.linear_map(world["held_source"]), world["held_target"], k=0)
    assert metrics["top1"] >= 0.9, metrics
    assert result.linear_map.weight.shape == (24, 40)
    # the inverse goes back: target vectors land next to their own source vectors
    back = alignment_metrics(result.inverse_map(world["held_target"]), world["held_source"], k=0)
    assert back["top1"] >= 0.9, back
    assert len(result.restarts) == FAST.restarts and result.criterion == max(r["criterion"] for r in result.restarts)


def test_same_seed_same_map_and_criterion_separates_right_from_wrong(world):
    first = fit_unsupervised(world["source"], world["target"], seed=3, settings=FAST)
    second = fit_unsupervised(world["source"], world["target"], seed=3, settings=FAST)
    np.testing.assert_array_equal(first.linear_map.weight, second.linear_map.weight)
    # the pair-free criterion: the found map scores far above a random semi-orthogonal one
    rng = np.random.default_rng(9)
    q, _ = np.linalg.qr(rng.normal(size=(40, 24)))
    wrong = unit(world["source"] @ q.T.astype(np.float32))
    assert mapped_criterion(first.linear_map(world["source"]), world["target"], FAST) > \
        3 * mapped_criterion(wrong, world["target"], FAST)


def test_anchor_matching_recovers_a_permutation():
    rng = np.random.default_rng(1)
    points = unit(rng.normal(size=(600, 8)) + 3 * rng.normal(size=(10, 8))[rng.integers(0, 10, 600)])
    centroids = spherical_kmeans(points, 10, rng)
    shuffle = rng.permutation(10)
    perm = match_anchors(centroids, centroids[shuffle], rng, inits=5)
    np.testing.assert_array_equal(shuffle[perm], np.arange(10))


def test_inverse_of_a_scaled_semi_orthogonal_map_round_trips(world):
    result = fit_unsupervised(world["source"], world["target"], seed=0, settings=FAST)
    inverse = inverse_of(result.linear_map)
    np.testing.assert_allclose(inverse.weight, result.inverse_map.weight, atol=1e-4)


def test_bad_inputs(world):
    with pytest.raises(ConfigError, match="look like one model's vectors"):
        fit_unsupervised(world["source"][:1200], world["source"][1200:], settings=FAST)
    with pytest.raises(ConfigError, match="needs at least"):
        fit_unsupervised(world["source"][:20], world["target"], settings=FAST)
    broken = world["source"].copy()
    broken[5, 0] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        fit_unsupervised(broken, world["target"], settings=FAST)
