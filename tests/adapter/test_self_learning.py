"""The self-learning step (CSLS re-pairing + Procrustes) on synthetic pairs with a known map."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tava_core.adapter.metrics import alignment_metrics
from tava_core.adapter.self_learning import SelfLearningSettings, csls, pseudo_pairs, self_learn, similarities
from tava_core.adapter.unsupervised import _centre, procrustes_weight

LATENT = 16
SOURCE_DIM = 24


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def pair_world(target_dim: int, noise: float, seed: int) -> dict[str, np.ndarray]:
    """Two 'models' of one latent corpus: the target is the source's geometry turned by a random
    (semi-)orthogonal map, shifted, plus noise; the two sides are disjoint 'texts'; held-out pairs
    score the result. Returned in the centred unit coordinates the search works in."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, LATENT)) * rng.uniform(0.5, 2.0, size=(20, 1))
    view = rng.normal(size=(LATENT, SOURCE_DIM))
    q, _ = np.linalg.qr(rng.normal(size=(target_dim, target_dim)))
    turn = q[:SOURCE_DIM]
    shift = 0.3 * rng.normal(size=target_dim)

    def texts(n: int) -> np.ndarray:
        return centres[rng.integers(0, len(centres), n)] + 0.35 * rng.normal(size=(n, LATENT))

    def side_b(z: np.ndarray) -> np.ndarray:
        return unit(z @ view @ turn + shift + noise * rng.normal(size=(len(z), target_dim)))

    held = texts(500)
    xa, mean_a = _centre(unit(texts(3000) @ view))
    xb, mean_b = _centre(side_b(texts(3000)))
    held_a, held_b = unit(unit(held @ view) - mean_a), unit(side_b(held) - mean_b)
    return {"xa": xa, "xb": xb, "held_a": held_a, "held_b": held_b,
            "right": procrustes_weight(held_a, held_b),  # what pairs would give (for the test only)
            "wrong": np.linalg.qr(rng.normal(size=(target_dim, SOURCE_DIM)))[0].T.astype(np.float32)}


def coarse(world: dict, share_right: float) -> np.ndarray:
    """A start that is right in rank but coarse: the right map blended with a random one."""
    blend = share_right * world["right"] + (1 - share_right) * world["wrong"]
    return procrustes_weight(np.eye(SOURCE_DIM, dtype=np.float32), blend)


def cosine(world: dict, weight: np.ndarray) -> float:
    return alignment_metrics(world["held_a"] @ weight, world["held_b"], k=0)["mean_cosine"]


@pytest.mark.parametrize("target_dim", [SOURCE_DIM, 40])
@pytest.mark.parametrize("neighbours,direction", [(0, "forward"), (1, "forward"), (5, "forward"), (5, "union")])
@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_self_learning_sharpens_a_coarse_map(target_dim, neighbours, direction, noise):
    world = pair_world(target_dim, noise, seed=target_dim + neighbours)
    start = coarse(world, 0.6)
    learned = self_learn(world["xa"], world["xb"], start,
                         SelfLearningSettings(rounds=4, neighbours=neighbours, direction=direction))
    before, after, best = cosine(world, start), cosine(world, learned), cosine(world, world["right"])
    assert after > before + 0.5 * (best - before), (before, after, best)  # more than half the gap closed
    assert after >= best - 0.02, (after, best)
    # it recovers the known map where the data lives (the latent spans fewer dimensions than the
    # source, so the map is free elsewhere): held-out vectors land where the right map puts them
    agree = alignment_metrics(world["held_a"] @ learned, world["held_a"] @ world["right"], k=0)["mean_cosine"]
    assert agree > alignment_metrics(world["held_a"] @ start, world["held_a"] @ world["right"], k=0)["mean_cosine"]
    assert agree >= 0.97, agree


@pytest.mark.parametrize("pairing", ["csls", "sinkhorn"])
def test_a_right_map_stays_right(pairing):
    """Where the two sides really are one geometry turned, the right map is a fixed point."""
    world = pair_world(40, 0.05, seed=3)
    learned = self_learn(world["xa"], world["xb"], world["right"], SelfLearningSettings(rounds=3, pairing=pairing))
    assert cosine(world, learned) >= cosine(world, world["right"]) - 0.005


def test_balanced_transport_also_sharpens_a_coarse_map():
    world = pair_world(40, 0.05, seed=8)
    start = coarse(world, 0.6)
    learned = self_learn(world["xa"], world["xb"], start, SelfLearningSettings(rounds=4, pairing="sinkhorn"))
    assert cosine(world, learned) > cosine(world, start) + 0.5 * (cosine(world, world["right"]) - cosine(world, start))


def test_csls_penalises_a_hub():
    """A target row a little closer to every source row than their own counterparts (a hub) wins plain
    nearest-neighbour pairing everywhere; CSLS discounts its crowded neighbourhood and the counterparts
    win back, as mutual pairs."""
    rng = np.random.default_rng(0)
    n = 30
    sims = torch.from_numpy(rng.uniform(0.0, 0.3, size=(n, n + 1)).astype(np.float32))
    sims[torch.arange(n), torch.arange(n)] = 0.6  # each source row's own counterpart
    sims[:, n] = 0.65                             # the hub
    assert bool((sims.argmax(1) == n).all())
    target = np.eye(n + 1, dtype=np.float32)      # partner vectors name their row
    rows, partners = pseudo_pairs(csls(sims.clone(), k=3), target, neighbours=0)
    np.testing.assert_array_equal(rows, np.arange(n))
    np.testing.assert_array_equal(partners.argmax(1), np.arange(n))
    # the k-best form: each row's best is its counterpart, so the counterpart leads every blend
    _, blended = pseudo_pairs(csls(sims.clone(), k=3), target, neighbours=2)
    np.testing.assert_array_equal(blended[:, :n].argmax(1), np.arange(n))


def test_similarities_in_the_source_dimension_equal_the_mapped_cosines():
    world = pair_world(40, 0.05, seed=5)
    weight = world["right"]
    direct = torch.from_numpy(unit(world["xa"][:50] @ weight)) @ torch.from_numpy(world["xb"][:60]).T
    np.testing.assert_allclose(similarities(world["xa"][:50], world["xb"][:60], weight).numpy(), direct.numpy(),
                               atol=1e-5)


def test_the_transport_plan_gives_every_row_and_column_equal_mass():
    from tava_core.adapter.self_learning import sinkhorn_plan

    rng = np.random.default_rng(4)
    sims = torch.from_numpy(unit(rng.normal(size=(40, 8))) @ unit(rng.normal(size=(40, 8))).T)
    sims[:, 0] += 0.5  # a column every row prefers: a plan cannot give it more than its share
    plan = sinkhorn_plan(sims.clone(), epsilon=0.05, iterations=500)
    np.testing.assert_allclose(plan.sum(1).numpy(), np.full(40, 1 / 40), rtol=1e-3)
    np.testing.assert_allclose(plan.sum(0).numpy(), np.full(40, 1 / 40), rtol=1e-3)


def test_a_pair_weight_counts_as_that_many_copies_of_the_pair():
    """Weighted Procrustes with integer weights is plain Procrustes on the pairs repeated that often."""
    from tava_core.adapter.self_learning import weighted_procrustes

    rng = np.random.default_rng(6)
    source, target = unit(rng.normal(size=(60, 8))), unit(rng.normal(size=(60, 12)))
    counts = rng.integers(1, 4, size=60)
    repeated = procrustes_weight(np.repeat(source, counts, axis=0), np.repeat(target, counts, axis=0))
    np.testing.assert_allclose(weighted_procrustes(source, target, counts.astype(float)), repeated, atol=1e-5)
    assert not np.allclose(repeated, procrustes_weight(source, target), atol=1e-3)  # the weights mattered
    np.testing.assert_allclose(weighted_procrustes(source, target, None), procrustes_weight(source, target))


def test_row_weights_of_one_change_nothing_and_up_weighted_rows_pull_the_map():
    """Weights of 1 give the unweighted rounds exactly; up-weighting half of the source rows changes the map."""
    world = pair_world(40, 0.05, seed=11)
    start = coarse(world, 0.6)
    settings = SelfLearningSettings(rounds=3)
    plain = self_learn(world["xa"], world["xb"], start, settings)
    ones = self_learn(world["xa"], world["xb"], start, settings, weights_a=np.ones(len(world["xa"])),
                      weights_b=np.ones(len(world["xb"])))
    np.testing.assert_allclose(ones, plain, atol=1e-5)
    half = np.where(np.arange(len(world["xa"])) < len(world["xa"]) // 2, 4.0, 1.0)
    assert not np.allclose(self_learn(world["xa"], world["xb"], start, settings, weights_a=half), plain, atol=1e-4)


def test_own_side_means_average_each_rows_nearest_others():
    """The option measured in session 20 (off by default): each row becomes the unit mean of its k nearest
    *other* rows, computed blockwise; checked against a direct computation, with a block edge inside."""
    from tava_core.adapter.self_learning import own_side_means

    x = unit(np.random.default_rng(3).normal(size=(37, 8)))
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    expected = unit(x[np.argsort(-sims, axis=1)[:, :4]].mean(1))
    np.testing.assert_allclose(own_side_means(x, 4, block=16), expected, atol=1e-6)
    # with it on, the step still runs from the right map and keeps a right-in-rank result
    world = pair_world(SOURCE_DIM, 0.0, seed=5)
    weight = self_learn(world["xa"], world["xb"], world["right"],
                        SelfLearningSettings(rounds=2, neighbours=5, own_side_neighbours=5))
    assert alignment_metrics(world["held_a"] @ weight, world["held_b"], k=0)["top1"] > 0.5
