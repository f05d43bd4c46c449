"""Weight decay towards the start (``AdapterConfig.proximal_weight``): the adapter stays near its closed form."""
from __future__ import annotations

import numpy as np
import torch
from adapter_helpers import synthetic

from tava_core.adapter import AdapterConfig
from tava_core.adapter.baselines import fit_procrustes
from tava_core.adapter.losses import ProximalLoss
from tava_core.adapter.model import Vec2VecAdapter
from tava_core.adapter.run import train_adapter_from_arrays
from tava_core.adapter.trainer import AdapterTrainer

torch.set_num_threads(1)
FAST = dict(hidden_dims=[64], batch_size=64, eval_every=25, warmup_steps=10, holdout_fraction=0.2, patience=100,
            init="procrustes", max_steps=200, lr=1e-3, ranking_documents=64)


def test_the_proximal_loss_is_zero_at_the_snapshot_and_its_gradient_points_back():
    torch.manual_seed(0)
    adapter = Vec2VecAdapter(8, 6, hidden_dims=[16])
    loss = ProximalLoss(adapter)
    assert loss().item() == 0.0
    skip = adapter.linear_skip()
    assert skip is not None
    with torch.no_grad():
        skip.weight.add_(0.5)  # every one of the 48 skip weights moved by 0.5
    assert abs(loss().item() - 48 * 0.25) < 1e-4
    loss().backward()
    assert skip.weight.grad is not None and torch.allclose(skip.weight.grad, torch.full_like(skip.weight, 1.0))
    frozen = Vec2VecAdapter(8, 6, hidden_dims=[16])
    frozen_skip = frozen.linear_skip()
    assert frozen_skip is not None
    frozen_skip.weight.requires_grad_(False)  # a frozen skip path is not part of the penalty
    assert len(ProximalLoss(frozen).params) == len(ProximalLoss(adapter).params) - 1


def test_a_trainer_with_a_proximal_weight_reports_the_term_and_without_one_does_not():
    student, teacher = synthetic(n=300)
    adapter = Vec2VecAdapter(16, 16, hidden_dims=[32])
    assert "proximal" in AdapterTrainer(adapter, config=AdapterConfig(proximal_weight=1.0)).train_step(
        student[:64], teacher[:64])
    assert "proximal" not in AdapterTrainer(Vec2VecAdapter(16, 16, hidden_dims=[32]),
                                            config=AdapterConfig()).train_step(student[:64], teacher[:64])


def _distance_from_procrustes(weight: float) -> tuple[float, float]:
    """(squared distance of the trained skip path from the Procrustes start, squared norm of the correction's
    head) after training on a non-linear distortion with ``proximal_weight`` = ``weight``."""
    student, teacher = synthetic(n=1500, kind="nonlinear")
    run = train_adapter_from_arrays(student, teacher, AdapterConfig(**FAST, proximal_weight=weight))
    data_rows = run.report["seed_runs"][0]
    assert data_rows["start"] == "procrustes"
    adapter = run.result.adapter
    skip, head = adapter.linear_skip(), adapter.net.head
    assert skip is not None
    # the start: Procrustes on the same training rows (the held-out split is the first seed's)
    from tava_core.adapter.data import split_paired

    split = split_paired(student, teacher, AdapterConfig(**FAST), 0)
    start = torch.as_tensor(fit_procrustes(split.student, split.teacher).weight.T)
    return float(((skip.weight.detach() - start) ** 2).sum()), float((head.weight.detach() ** 2).sum())


def test_a_strong_pull_keeps_the_trained_adapter_near_its_closed_form_start():
    free_skip, free_head = _distance_from_procrustes(0.0)
    pulled_skip, pulled_head = _distance_from_procrustes(10.0)
    # without the pull the map leaves Procrustes to fit the distortion; with it both parts stay close
    assert free_skip > 1e-3 and free_head > 1e-3
    assert pulled_skip < 0.2 * free_skip and pulled_head < 0.2 * free_head
    assert np.isfinite([pulled_skip, pulled_head]).all()
