"""DistillationLoss: zero when the student equals the teacher, and each term reacts as it should."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tava_core.distill.losses import DistillationLoss


def _unit(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g), dim=-1)


def test_zero_when_student_equals_teacher():
    teacher = _unit(16, 32, 0)
    loss, parts = DistillationLoss(alpha_cos=1, alpha_mse=1, alpha_sim=1, temperature=0.05,
                                   alpha_cross=1)(teacher.clone(), teacher)
    assert float(loss) == pytest.approx(0.0, abs=1e-6)
    assert set(parts) == {"cos", "mse", "sim_kl", "cross_kl"}
    assert all(abs(v) < 1e-6 for v in parts.values())


def test_terms_grow_with_distance_and_weights_scale_them():
    teacher = _unit(16, 32, 0)
    near = F.normalize(teacher + 0.1 * _unit(16, 32, 1), dim=-1)
    far = F.normalize(teacher + 1.0 * _unit(16, 32, 1), dim=-1)
    loss_fn = DistillationLoss(alpha_cos=1, alpha_mse=0)
    assert float(loss_fn(near, teacher)[0]) < float(loss_fn(far, teacher)[0])
    cos_only = float(DistillationLoss(alpha_cos=1, alpha_mse=0)(far, teacher)[0])
    mse_only = float(DistillationLoss(alpha_cos=0, alpha_mse=1)(far, teacher)[0])
    both = float(DistillationLoss(alpha_cos=2, alpha_mse=3)(far, teacher)[0])
    assert both == pytest.approx(2 * cos_only + 3 * mse_only, rel=1e-5)
    # For unit vectors the summed squared error is exactly 2 (1 - cos).
    assert mse_only == pytest.approx(2 * cos_only, rel=1e-4)


def test_mse_sees_the_norm_cosine_does_not():
    teacher = _unit(8, 16, 0)
    scaled = 3.0 * teacher
    cos_loss, _ = DistillationLoss(alpha_cos=1, alpha_mse=0)(scaled, teacher)
    mse_loss, _ = DistillationLoss(alpha_cos=0, alpha_mse=1)(scaled, teacher)
    assert float(cos_loss) == pytest.approx(0.0, abs=1e-6)
    assert float(mse_loss) == pytest.approx(4.0, rel=1e-5)  # ||3t - t||^2 = 4


def test_similarity_kl_is_scale_free_sensitive_to_geometry_and_temperature():
    teacher = _unit(12, 24, 0)
    loss_fn = DistillationLoss(alpha_cos=0, alpha_mse=0, alpha_sim=1, temperature=0.05)
    # Same geometry at another scale: the KL only sees cosine similarities.
    assert float(loss_fn(5 * teacher, teacher)[0]) == pytest.approx(0.0, abs=1e-5)
    # A rotation keeps every pairwise similarity: KL 0, while the per-vector cosine loss is large.
    q, _ = torch.linalg.qr(torch.randn(24, 24, generator=torch.Generator().manual_seed(3)))
    rotated = teacher @ q
    assert float(loss_fn(rotated, teacher)[0]) == pytest.approx(0.0, abs=1e-4)
    assert float(DistillationLoss(alpha_cos=1, alpha_mse=0)(rotated, teacher)[0]) > 0.3
    # Noise breaks the geometry: a positive KL that the temperature changes.
    noisy = F.normalize(teacher + 0.7 * _unit(12, 24, 5), dim=-1)
    kl = {t: float(DistillationLoss(0, 0, temperature=t, alpha_sim=1)(noisy, teacher)[0]) for t in (0.1, 1.0)}
    assert kl[0.1] > 1e-3 and kl[1.0] > 0
    assert kl[0.1] != pytest.approx(kl[1.0], rel=0.1)


def test_cross_similarity_kl_sees_the_teacher_space_the_symmetric_term_does_not():
    teacher = _unit(12, 24, 0)
    symmetric = DistillationLoss(alpha_cos=0, alpha_mse=0, alpha_sim=1, temperature=0.05)
    cross = DistillationLoss(alpha_cos=0, alpha_mse=0, alpha_cross=1, temperature=0.05)
    # A rotated student keeps its own geometry (symmetric KL ~0) but searches the teacher's vectors
    # badly: the cross term, which ranks teacher vectors by the student vector, is large.
    q, _ = torch.linalg.qr(torch.randn(24, 24, generator=torch.Generator().manual_seed(3)))
    rotated = teacher @ q
    assert float(symmetric(rotated, teacher)[0]) == pytest.approx(0.0, abs=1e-4)
    assert float(cross(rotated, teacher)[0]) > 1.0
    # Scale-free like the symmetric term, and smaller for a student nearer the teacher.
    assert float(cross(4 * teacher, teacher)[0]) == pytest.approx(0.0, abs=1e-5)
    near = F.normalize(teacher + 0.1 * _unit(12, 24, 5), dim=-1)
    far = F.normalize(teacher + 0.5 * _unit(12, 24, 5), dim=-1)
    assert 0 < float(cross(near, teacher)[0]) < float(cross(far, teacher)[0])
    # By hand for one row: KL(softmax(t0.t_j/T) || softmax(s0.t_j/T)), batch mean over rows.
    t_logp = F.log_softmax(teacher @ teacher.T / 0.05, dim=-1)
    s_logp = F.log_softmax(far @ teacher.T / 0.05, dim=-1)
    expected = float((t_logp.exp() * (t_logp - s_logp)).sum(-1).mean())
    assert float(cross(far, teacher)[0]) == pytest.approx(expected, rel=1e-4)


def test_gradients_flow_and_bad_temperature_is_refused():
    teacher = _unit(8, 16, 0)
    student = torch.randn(8, 16, requires_grad=True)
    loss, _ = DistillationLoss(alpha_sim=0.5, alpha_cross=0.5)(student, teacher)
    loss.backward()
    assert student.grad is not None and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        DistillationLoss(temperature=0)


def test_neighbour_ranking_kl_scores_the_order_among_each_rows_own_candidates():
    teacher = _unit(10, 24, 0)
    candidates = torch.stack([_unit(6, 24, 10 + i) for i in range(10)])     # (batch, k, dim)
    rank = DistillationLoss(alpha_cos=0, alpha_mse=0, alpha_rank=1, temperature=0.05)
    loss, parts = rank(teacher.clone(), teacher, candidates)
    assert float(loss) == pytest.approx(0.0, abs=1e-6) and set(parts) == {"rank_kl"}
    assert float(rank(3 * teacher, teacher, candidates)[0]) == pytest.approx(0.0, abs=1e-5)   # scale-free
    near = F.normalize(teacher + 0.1 * _unit(10, 24, 5), dim=-1)
    far = F.normalize(teacher + 0.5 * _unit(10, 24, 5), dim=-1)
    assert 0 < float(rank(near, teacher, candidates)[0]) < float(rank(far, teacher, candidates)[0])
    # By hand for row 0 (batch mean over rows): KL(softmax(t0.c0j/T) || softmax(s0.c0j/T)).
    p = torch.softmax(candidates[0] @ teacher[0] / 0.05, dim=0)
    q = torch.softmax(candidates[0] @ far[0] / 0.05, dim=0)
    one = DistillationLoss(alpha_cos=0, alpha_mse=0, alpha_rank=1, temperature=0.05)(far[:1], teacher[:1],
                                                                                     candidates[:1])[0]
    assert float(one) == pytest.approx(float((p * (p.log() - q.log())).sum()), rel=1e-4)
    with pytest.raises(ValueError, match="candidates"):
        rank(teacher, teacher)


def test_teacher_neighbours_are_the_nearest_training_rows_never_itself_nor_held_out():
    import numpy as np

    from tava_core.distill.trainer import teacher_neighbours

    vectors = _unit(50, 16, 0).numpy()
    train = np.setdiff1d(np.arange(50), [3, 17])                        # rows 3 and 17 held out
    found = teacher_neighbours(vectors, train, k=5, chunk=7)           # chunks that do not divide 50
    sims = vectors @ vectors.T
    for row in range(50):
        allowed = [j for j in train if j != row]
        expected = sorted(allowed, key=lambda j: -sims[row, j])[:5]
        assert list(found[row]) == expected
    assert not np.isin(found, [3, 17]).any()
