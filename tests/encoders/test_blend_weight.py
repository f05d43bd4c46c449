"""The blend's weight chosen without labels: the share of the first member whose blended vectors lie
closest to the teacher's. With two members that are the teacher plus independent noise, the best blend
weighs each by the inverse of its noise, so the rule must find that weight, follow it when the noise
moves from one member to the other, and refuse inputs it cannot score."""
from __future__ import annotations

import numpy as np
import pytest

from tava_core.encoders.blend_weight import WEIGHTS, choose_weight


def _noisy_members(noise_first: float, noise_second: float, n: int = 4000, dim: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    teacher = rng.standard_normal((n, dim))
    teacher /= np.linalg.norm(teacher, axis=1, keepdims=True)
    # noise per coordinate scaled so that a member's squared error is noise**2 on average
    first = teacher + noise_first * rng.standard_normal((n, dim)) / np.sqrt(dim)
    second = teacher + noise_second * rng.standard_normal((n, dim)) / np.sqrt(dim)
    return first, second, teacher


@pytest.mark.parametrize("noise_first, noise_second", [(0.5, 0.5), (0.4, 0.8), (0.8, 0.4), (0.3, 1.2)])
def test_the_chosen_weight_is_the_inverse_noise_weight(noise_first, noise_second):
    first, second, teacher = _noisy_members(noise_first, noise_second)
    choice = choose_weight(first, second, teacher)
    # the least-squares blend of two unbiased, independent estimates: w = v2 / (v1 + v2)
    ideal = noise_second ** 2 / (noise_first ** 2 + noise_second ** 2)
    assert abs(choice.weight - ideal) <= 0.1 + 1e-9
    assert choice.views == len(first) and sorted(choice.cosine) == list(WEIGHTS)
    assert choice.cosine[choice.weight] == max(choice.cosine.values())
    # the blend beats either member alone at the chosen weight
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)   # noqa: E731
    alone = max(np.mean(np.sum(unit(m) * teacher, axis=1)) for m in (first, second))
    assert choice.cosine[choice.weight] > alone


def test_the_weight_follows_the_noise_from_one_member_to_the_other():
    better_first = choose_weight(*_noisy_members(0.4, 0.9))
    better_second = choose_weight(*_noisy_members(0.9, 0.4))
    assert better_first.weight > 0.5 > better_second.weight
    assert better_first.weight + better_second.weight == pytest.approx(1.0)


@pytest.mark.parametrize("shapes, weights, match", [
    (((0, 8), (0, 8), (0, 8)), WEIGHTS, "non-empty"),
    (((10, 8), (10, 8), (9, 8)), WEIGHTS, "same non-empty"),
    (((10, 8), (10, 8), (10, 8)), (0.0, 0.5), r"in \(0, 1\)"),
    (((10, 8), (10, 8), (10, 8)), (), r"in \(0, 1\)"),
])
def test_bad_input_is_refused(shapes, weights, match):
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal(shape) for shape in shapes]
    with pytest.raises(ValueError, match=match):
        choose_weight(*arrays, weights=weights)
