"""In-domain vectors for unpaired mode's unsupervised start: config rules, reading the directories, and
that they reach ``fit_unsupervised`` (whose effect on the map tests/adapter/test_unsupervised.py
measures)."""
from __future__ import annotations

import numpy as np
import pytest

from tava_core.adapter.config import AdapterConfig
from tava_core.adapter.data import read_side
from tava_core.adapter.run import inputs_checksum, load_domain_vectors
from tava_core.adapter.start import fit_start
from tava_core.adapter.unsupervised import UnsupervisedSettings, fit_unsupervised
from tava_core.errors import ConfigError
from tests.adapter_helpers import write_vector_dir

TINY = UnsupervisedSettings(clusters=8, anchor_runs=2, qap_inits=1, kmeans_iterations=5, relative_neighbours=10,
                            refine_rounds=3, refine_sample=300, refine_neighbours=10, restarts=1, criterion_sample=300)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("options, message", [
    ({"mode": "paired", "domain_student_vectors": ["a"], "domain_teacher_vectors": ["b"]}, "unpaired mode"),
    ({"mode": "unpaired", "domain_student_vectors": ["a"]}, "both sides"),
    ({"mode": "unpaired", "domain_teacher_vectors": ["b"]}, "both sides"),
])
def test_domain_vectors_config_rules(options, message):
    with pytest.raises(ConfigError, match=message):
        AdapterConfig(**options)


@pytest.fixture
def sides(tmp_path):
    rng = np.random.default_rng(0)
    dirs = {}
    for role, fingerprint, dim in (("student", "s" * 24, 8), ("teacher", "t" * 24, 12)):
        for part, n in (("train", 300), ("domain", 120)):
            dirs[f"{role}-{part}"] = write_vector_dir(tmp_path / f"{role}-{part}", [f"{part}{i}" for i in range(n)],
                                                      unit(rng.normal(size=(n, dim))), fingerprint=fingerprint)
    return dirs


def test_domain_vectors_are_read_checked_and_counted_in_the_inputs(sides, tmp_path):
    config = AdapterConfig(mode="unpaired", student_vectors=[str(sides["student-train"])],
                           teacher_vectors=[str(sides["teacher-train"])],
                           domain_student_vectors=[str(sides["student-domain"])],
                           domain_teacher_vectors=[str(sides["teacher-domain"])])
    student, teacher = read_side(config.student_vectors, "student"), read_side(config.teacher_vectors, "teacher")
    domain = load_domain_vectors(config, student, teacher)
    assert domain is not None
    np.testing.assert_array_equal(domain[0], read_side([sides["student-domain"]], "x").vectors)
    np.testing.assert_array_equal(domain[1], read_side([sides["teacher-domain"]], "x").vectors)
    plain = config.model_copy(update={"domain_student_vectors": [], "domain_teacher_vectors": []})
    assert load_domain_vectors(plain, student, teacher) is None
    assert inputs_checksum(config) != inputs_checksum(plain)    # a changed domain set re-trains
    # the teacher's in-domain vectors offered as the student's: refused, naming the option
    swapped = config.model_copy(update={"domain_student_vectors": [str(sides["teacher-domain"])]})
    with pytest.raises(ConfigError, match="--domain-student-vectors"):
        load_domain_vectors(swapped, student, teacher)


def test_fit_start_hands_the_domain_vectors_to_the_unsupervised_search():
    """Generic 'texts' with a fifth of the spread in 4 of 16 latent directions, domain texts with the
    full spread (the construction of test_unsupervised's domain test): the domain vectors change the
    start, and fit_start's map is fit_unsupervised's with them."""
    rng = np.random.default_rng(3)
    flat = np.r_[np.ones(12), np.full(4, 0.2)]
    generic_centres = rng.normal(size=(20, 16)) * flat
    domain_centres = rng.normal(size=(20, 16)) * 1.5

    def points(n, centres):
        return centres[rng.integers(0, 20, n)] + 0.35 * rng.normal(size=(n, 16))

    a, b = rng.normal(size=(16, 24)), rng.normal(size=(16, 32))
    source, target = unit(points(800, generic_centres) * flat @ a), unit(points(800, generic_centres) * flat @ b)
    domain = (unit(points(400, domain_centres) @ a), unit(points(400, domain_centres) @ b))
    with_domain = fit_start(source, target, "unsupervised", seed=0, domain=domain, settings=TINY)
    direct = fit_unsupervised(source, target, seed=0, settings=TINY, domain_source=domain[0],
                              domain_target=domain[1]).linear_map
    np.testing.assert_allclose(with_domain.weight, direct.weight, atol=1e-6)
    without = fit_start(source, target, "unsupervised", seed=0, settings=TINY)
    assert not np.allclose(with_domain.weight, without.weight, atol=1e-4)


def test_the_adapter_config_sets_the_searchs_domain_weight():
    from tava_core.adapter.start import unsupervised_settings

    assert unsupervised_settings(AdapterConfig(mode="unpaired")).domain_weight == UnsupervisedSettings().domain_weight
    assert unsupervised_settings(AdapterConfig(mode="unpaired", domain_weight=3.5)).domain_weight == 3.5
    with pytest.raises(ValueError, match="domain_weight"):
        AdapterConfig(mode="unpaired", domain_weight=0)
