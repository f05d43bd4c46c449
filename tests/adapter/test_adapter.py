"""Stage B adapter: losses, baselines, metrics, training guards, save/load, AdaptedEncoder, errors.

Synthetic data: teacher = random unit vectors; student = a fixed (linear or non-linear, invertible)
distortion of them, so how well a map can do is known."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from adapter_helpers import synthetic, unit, write_vector_dir

from tava_core.adapter import (
    AdapterConfig,
    AdapterTrainer,
    AdversarialLoss,
    CycleConsistencyLoss,
    Discriminator,
    GradientPenalty,
    PairedSupervisionLoss,
    Vec2VecAdapter,
    VectorSpacePreservationLoss,
    alignment_metrics,
    fit_baselines,
    load_adapter,
    save_adapter,
)
from tava_core.adapter.data import split_paired
from tava_core.adapter.run import train_adapter_from_arrays, train_adapter_from_dirs
from tava_core.errors import ConfigError, InputError, IntegrityError, ModelLoadError, TrainingError
from tava_core.home import TavaHome
from tava_core.training import Diverged

torch.set_num_threads(1)
FAST = dict(hidden_dims=[64], discriminator_hidden_dim=16, discriminator_layers=1, batch_size=64, eval_every=25, warmup_steps=10,
            holdout_fraction=0.1, patience=4)


# ------------------------------------------------------------------------------------ losses

def test_vsp_is_zero_for_isometries_and_positive_for_distortions():
    torch.manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(32, 8), dim=-1)
    q = torch.linalg.qr(torch.randn(12, 12))[0][:8]  # 8 -> 12 with orthonormal rows: an isometric embedding
    vsp = VectorSpacePreservationLoss("l2")
    assert vsp(x, x @ q).item() < 1e-10
    assert VectorSpacePreservationLoss("l1")(x, x @ q).item() < 1e-6
    assert vsp(x, torch.tanh(3 * x @ torch.randn(8, 12))).item() > 1e-3


def test_cycle_loss_is_zero_for_inverse_maps_and_positive_otherwise():
    torch.manual_seed(0)
    x = torch.randn(16, 6)
    q = torch.linalg.qr(torch.randn(6, 6))[0]
    cycle = CycleConsistencyLoss()
    assert cycle(x, (x @ q) @ q.T).item() < 1e-10
    assert cycle(x, (x @ q) @ q).item() > 1e-2


def test_adversarial_losses_and_gradient_penalties():
    real, fake = torch.full((8,), 1.0), torch.zeros(8)
    assert AdversarialLoss("lsgan").discriminator_loss(real, fake).item() == 0.0  # a perfect LSGAN critic
    assert AdversarialLoss("lsgan").generator_loss(fake).item() == pytest.approx(0.5)
    for kind in ("vanilla", "hinge", "wgan"):
        assert torch.isfinite(AdversarialLoss(kind).discriminator_loss(real, fake))
    with pytest.raises(ValueError):
        AdversarialLoss("nope")
    torch.manual_seed(0)
    disc = Discriminator(8, 16, 2, use_spectral_norm=False)
    a, b = torch.randn(10, 8), torch.randn(10, 8)
    for kind in ("r1", "wgan-gp"):
        penalty = GradientPenalty(kind, weight=2.0)(disc, a, b)
        assert penalty.item() > 0 and penalty.requires_grad  # differentiable: it trains the critic
        penalty.backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in disc.parameters())
        disc.zero_grad()
    assert GradientPenalty("none")(disc, a, b).item() == 0.0


def test_spectral_norm_switch_bounds_the_discriminator():
    torch.manual_seed(0)
    on, off = Discriminator(8, 64, 2, use_spectral_norm=True), Discriminator(8, 64, 2, use_spectral_norm=False)
    assert any("parametrizations" in name for name, _ in on.named_parameters())
    assert not any("parametrizations" in name for name, _ in off.named_parameters())
    for _ in range(20):  # power iteration converges over forward passes in train mode
        on(torch.randn(4, 8))
    sigma = max(torch.linalg.matrix_norm(m.weight, ord=2).item() for m in on.modules()
                if isinstance(m, torch.nn.Linear))
    assert sigma == pytest.approx(1.0, abs=0.05)


def test_paired_supervision_is_zero_at_the_target():
    t = torch.nn.functional.normalize(torch.randn(8, 5), dim=-1)
    loss = PairedSupervisionLoss(1.0, 1.0, contrastive_weight=0.0)
    assert loss(t, t).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(t, -t).item() > 1


def test_ranking_distillation_is_zero_at_the_target_and_sees_only_the_ranking():
    from tava_core.adapter import RankingDistillationLoss

    torch.manual_seed(0)
    t = torch.nn.functional.normalize(torch.randn(16, 8), dim=-1)
    docs = torch.nn.functional.normalize(torch.randn(40, 8), dim=-1)
    loss = RankingDistillationLoss(0.05)
    assert loss(t, t, docs).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(torch.nn.functional.normalize(torch.randn(16, 8), dim=-1), t, docs).item() > 0.1
    # the own column is left out: a row that ranks every other text correctly costs nothing
    own = torch.arange(16)
    assert loss(t, t, t, own).item() == pytest.approx(0.0, abs=1e-6)


def test_retrieval_overlap_is_one_for_the_teacher_and_low_for_noise():
    rng = np.random.default_rng(0)
    target, pool = unit(rng.normal(size=(50, 12))), unit(rng.normal(size=(300, 12)))
    assert alignment_metrics(target, target, k=5, pool=pool)["retrieval_overlap@5"] == 1.0
    noise = alignment_metrics(unit(rng.normal(size=(50, 12))), target, k=5, pool=pool)["retrieval_overlap@5"]
    assert noise < 0.2


# -------------------------------------------------------------------- baselines and metrics

def test_baselines_recover_linear_maps_and_metrics_rank_them():
    student, teacher = synthetic(400, 12, "linear")
    maps = fit_baselines(student, teacher)
    assert set(maps) == {"identity", "ridge", "procrustes"}
    assert alignment_metrics(maps["ridge"](student), teacher)["mean_cosine"] > 0.999
    assert alignment_metrics(maps["procrustes"](student), teacher)["mean_cosine"] > 0.999  # scaled rotation
    ident = alignment_metrics(maps["identity"](student), teacher)
    perfect = alignment_metrics(teacher, teacher, k=5)
    assert perfect["top1"] == 1.0 and perfect["mean_rank"] == 1.0 and perfect["knn_overlap@5"] == 1.0
    assert ident["mean_rank"] > 5 and ident["mean_cosine"] < 0.5
    # Different dims: no identity; Procrustes is semi-orthogonal (isometric embedding).
    wide = fit_baselines(student, np.pad(teacher, ((0, 0), (0, 4))))
    assert "identity" not in wide and "isometric" in wide["procrustes"].note


# ----------------------------------------------------------------------------- training

def test_adapter_from_a_random_start_nears_ridge_on_a_nonlinear_distortion():
    # a random start, so matching the closed-form map is earned by training, not inherited from it
    student, teacher = synthetic(1000, 12, "nonlinear")
    config = AdapterConfig(**FAST, max_steps=150, init="random", lr=3e-3, paired_cosine_weight=1.0,
                           paired_mse_weight=1.0, adversarial_weight=0.02)
    run = train_adapter_from_arrays(student, teacher, config)
    metrics = run.report["metrics"]
    assert set(metrics) == {"adapter", "identity", "ridge", "procrustes"}
    adapter, ridge = metrics["adapter"], metrics["ridge"]
    assert run.result.initial_metrics["mean_cosine"] < ridge["mean_cosine"] - 0.3  # it starts far off
    assert run.result.best_step > 0
    assert adapter["mean_cosine"] > metrics["identity"]["mean_cosine"] + 0.3
    assert adapter["mean_cosine"] >= ridge["mean_cosine"] - 0.01
    assert adapter["mean_rank"] <= metrics["procrustes"]["mean_rank"] + 0.05
    assert run.result.adapter.map_numpy(student[:3]).shape == (3, 12)


def test_auto_start_is_the_identity_only_for_a_student_already_in_the_teachers_space():
    from tava_core.adapter.start import resolve_init

    rng = np.random.default_rng(1)
    teacher = unit(rng.standard_normal((800, 16)))
    aligned = unit(teacher + 0.3 * rng.standard_normal(teacher.shape))       # a Stage A student: near, noisy
    rotated = unit(teacher @ np.linalg.qr(rng.standard_normal((16, 16)))[0])   # another model's basis
    # model2vec-like: the teacher's coordinates (Procrustes rotation = identity) but far-off vectors,
    # which only a fitted non-orthogonal map (ridge) undoes.
    scaled = unit(teacher * np.geomspace(0.05, 3.0, 16))
    auto = AdapterConfig(**FAST)
    start, evidence = resolve_init(auto, aligned, teacher)
    assert start == "identity" and evidence["identity_overlap"] > max(evidence.values()) - 0.03
    start, evidence = resolve_init(auto, rotated, teacher)
    assert start == "procrustes" and evidence["procrustes_overlap"] > evidence["identity_overlap"] + 0.3
    start, evidence = resolve_init(auto, scaled, teacher)
    assert start == "ridge" and evidence["ridge_overlap"] > evidence["procrustes_overlap"] + 0.03
    start, evidence = resolve_init(auto, aligned[:, :12], teacher)  # dims differ: no identity
    assert start in ("procrustes", "ridge") and "identity_overlap" not in evidence
    assert resolve_init(AdapterConfig(**FAST, init="ridge"), aligned, teacher) == ("ridge", None)
    # The chosen start is what training starts from, and the run records it.
    run = train_adapter_from_arrays(aligned, teacher, AdapterConfig(**{**FAST, "eval_every": 1}, max_steps=1))
    assert run.report["seed_runs"][0]["start"] == "identity"
    from tava_core.adapter.report import markdown_report
    assert "- start: **identity** (identity overlap" in markdown_report({**run.report, "name": "a", "mode": "paired"})
    with pytest.raises(ConfigError, match="identity"):
        train_adapter_from_arrays(aligned[:, :12], teacher, AdapterConfig(**FAST, init="identity", max_steps=1))


def test_single_seed_runs_can_share_the_held_out_split_of_best_of_n():
    student, teacher = synthetic(400, 8)
    runs = {seed: train_adapter_from_arrays(student, teacher, AdapterConfig(**FAST, seeds=[seed], max_steps=2),
                                            split_seed=0) for seed in (0, 1)}
    assert np.array_equal(runs[0].data.heldout_student, runs[1].data.heldout_student)
    own_split = train_adapter_from_arrays(student, teacher, AdapterConfig(**FAST, seeds=[1], max_steps=2))
    assert not np.array_equal(own_split.data.heldout_student, runs[1].data.heldout_student)


def test_random_init_adapter_approaches_ridge_on_a_linear_distortion():
    student, teacher = synthetic(1500, 16, "linear")
    config = AdapterConfig(**{**FAST, "hidden_dims": [32]}, init="random", max_steps=250, lr=3e-3,
                           adversarial_weight=0.0, early_stopping_metric="mean_cosine")
    metrics = train_adapter_from_arrays(student, teacher, config).report["metrics"]
    assert metrics["ridge"]["mean_cosine"] > 0.999
    assert metrics["adapter"]["mean_cosine"] > 0.97
    assert metrics["adapter"]["mean_cosine"] > metrics["identity"]["mean_cosine"] + 0.5


def test_unpaired_and_shared_latent_modes_train_and_report():
    student, teacher = synthetic(800, 12, "linear")
    config = AdapterConfig.unpaired_defaults(**FAST, max_steps=40, latent_dim=16, reconstruction_weight=1.0)
    run = train_adapter_from_arrays(student, teacher, config)
    assert run.result.reverse is not None and run.result.reverse.backbone is run.result.adapter.backbone
    assert run.report["data"]["train_student"] + run.report["data"]["train_teacher"] < len(student)  # disjoint halves
    assert {"adapter", "ridge"} <= set(run.report["metrics"])
    assert any("reconstruction" in row and "cycle" in row for row in run.result.history)


def test_unpaired_training_learns_a_rotation_without_pairs():
    # the student is the teacher turned by a rotation; the two sides never share a text. An
    # anisotropic, off-centre cloud has one orientation that matches the teacher's distribution.
    rng = np.random.default_rng(2)
    teacher = unit(rng.standard_normal((1200, 8)) * np.geomspace(3.0, 0.3, 8) + rng.standard_normal(8))
    skew = rng.standard_normal((8, 8))
    skew = 0.4 * (skew - skew.T) / np.linalg.norm(skew - skew.T, 2)
    rotation = np.linalg.solve(np.eye(8) - skew, np.eye(8) + skew)  # Cayley: orthogonal
    assert np.allclose(rotation @ rotation.T, np.eye(8), atol=1e-6)
    student = unit(teacher @ rotation)
    config = AdapterConfig.unpaired_defaults(**{**FAST, "patience": 50}, max_steps=300, lr=4e-3, discriminator_lr=4e-3)
    run = train_adapter_from_arrays(student, teacher, config)
    metrics = run.report["metrics"]
    assert run.report["seed_runs"][0]["start"] == "identity"  # close enough in second moments
    assert metrics["identity"]["top1"] < 0.6                    # the rotation is not negligible
    assert metrics["adapter"]["top1"] > 0.8 and metrics["adapter"]["top1"] > metrics["identity"]["top1"] + 0.3
    assert metrics["adapter"]["mean_rank"] < 1.3


@pytest.mark.parametrize("shared", [0, 2, 200])
def test_unpaired_training_from_directories_of_different_texts(tmp_path, shared):
    """The recipe the docs give: one model's vectors of some texts, the other's of other texts (none shared, or a
    few, which are then held out to measure). Every text of each side is trained on; the map is learned."""
    rng = np.random.default_rng(2)
    teacher = unit(rng.standard_normal((1400, 8)) * np.geomspace(3.0, 0.3, 8) + rng.standard_normal(8))
    skew = rng.standard_normal((8, 8))
    skew = 0.4 * (skew - skew.T) / np.linalg.norm(skew - skew.T, 2)
    rotation = np.linalg.solve(np.eye(8) - skew, np.eye(8) + skew)
    student = unit(teacher @ rotation)
    ids = [f"t{i}" for i in range(1400)]
    a = slice(0, 600 + shared)            # the student model embedded these texts ...
    b = slice(600, 1400)                  # ... the teacher model these (texts 600 .. 600+shared on both sides)
    config = AdapterConfig.unpaired_defaults(
        **{**FAST, "patience": 50}, max_steps=300, lr=4e-3, discriminator_lr=4e-3, name="disjoint",
        student_vectors=[str(write_vector_dir(tmp_path / "s", ids[a], student[a], fingerprint="s" * 24))],
        teacher_vectors=[str(write_vector_dir(tmp_path / "t", ids[b], teacher[b], fingerprint="t" * 24))])
    run = train_adapter_from_dirs(config, TavaHome(tmp_path / "home"))
    data = run.report["data"]
    held = data["heldout_pairs"]
    # a share of 200 shared texts; two would early-stop on noise, so none then
    assert held == (0 if shared < 10 else round(shared * config.holdout_fraction)) and (shared < 10 or held >= 10)
    # each side trains on its own texts, and on its half of the shared ones not held out
    assert data["train_student"] + data["train_teacher"] == 600 + 800 - held
    assert min(data["train_student"], data["train_teacher"]) >= 600
    mapped = run.result.adapter.map_numpy(student[1200:])      # texts the student side never saw
    top1 = float(np.mean(np.argmax(mapped @ teacher[1200:].T, axis=1) == np.arange(200)))
    identity = float(np.mean(np.argmax(student[1200:] @ teacher[1200:].T, axis=1) == np.arange(200)))
    assert top1 > 0.8 and top1 > identity + 0.3, (top1, identity)
    saved = tmp_path / "home" / "artifacts" / "adapters" / "disjoint"
    assert (saved / "model.safetensors").is_file() and (saved / "curves.png").is_file()
    # the report says why it holds no held-out table, rather than an empty one
    assert ("no held-out pairs" in (saved / "report.md").read_text()) == (shared < 10)


@pytest.mark.parametrize("data, said", [({"domain_student": 750, "domain_teacher": 700},
                                         ", + 750 student / 700 teacher in-domain vectors"),
                                        ({"domain_student": 0, "domain_teacher": 0}, ""), ({}, "")])
def test_the_report_counts_the_in_domain_vectors_the_start_read(data, said):
    from tava_core.adapter.report import domain_note

    assert domain_note(data).startswith(said) and bool(domain_note(data)) == bool(said)


def test_unpaired_auto_start_is_the_identity_for_an_aligned_student_and_keeps_its_matches():
    from tava_core.adapter.start import moment_alignment, resolve_init

    rng = np.random.default_rng(2)
    teacher = unit(rng.standard_normal((1200, 16)) + 2.0 * rng.standard_normal(16))  # anisotropic, like embeddings
    aligned = unit(teacher + 0.2 * rng.standard_normal(teacher.shape))
    rotation, _ = np.linalg.qr(rng.standard_normal((16, 16)))
    # disjoint halves, as in unpaired training: the measure needs no pairs
    assert moment_alignment(aligned[:600], teacher[600:]) > 0.9
    assert moment_alignment(aligned[:600] @ rotation, teacher[600:]) < moment_alignment(aligned[:600], teacher[600:]) - 0.2
    config = AdapterConfig.unpaired_defaults(**FAST, max_steps=30)
    assert resolve_init(config, aligned[:600], teacher[600:], paired=False)[0] == "identity"
    # not aligned (a rotation, other dimensions): the pair-free unsupervised linear start (unsupervised.py)
    assert resolve_init(config, aligned[:600] @ rotation, teacher[600:], paired=False)[0] == "unsupervised"
    assert resolve_init(config, aligned[:600, :12], teacher[600:], paired=False)[0] == "unsupervised"
    # ... unless there is no linear path to start (a shared latent space) or too few vectors for anchors
    assert resolve_init(config.model_copy(update={"latent_dim": 8}), aligned[:600] @ rotation, teacher[600:],
                        paired=False)[0] == "random"
    assert resolve_init(config, aligned[:100] @ rotation, teacher[600:], paired=False)[0] == "random"
    with pytest.raises(ConfigError, match="unpaired"):
        AdapterConfig.unpaired_defaults(init="procrustes")
    run = train_adapter_from_arrays(aligned, teacher, config)
    assert run.report["seed_runs"][0]["start"] == "identity"
    # starting aligned, unpaired training keeps the held-out matches the identity has (chance: 1/120);
    # the old random start finds next to none in the same steps
    metrics = run.report["metrics"]
    assert metrics["adapter"]["n"] == 120 and metrics["adapter"]["top1"] >= 0.8 * metrics["identity"]["top1"] > 0.2
    assert metrics["adapter"]["mean_cosine"] >= metrics["identity"]["mean_cosine"] - 0.02
    from_random = train_adapter_from_arrays(aligned, teacher, AdapterConfig.unpaired_defaults(**FAST, max_steps=30,
                                                                                            init="random"))
    assert from_random.report["metrics"]["adapter"]["top1"] < metrics["adapter"]["top1"] - 0.15


def test_nan_during_training_rolls_back_then_recovers(monkeypatch):
    student, teacher = synthetic(600, 8)
    calls = {"n": 0}
    original = PairedSupervisionLoss.forward

    def flaky(self, mapped, target):
        calls["n"] += 1
        out = original(self, mapped, target)
        return out * float("nan") if calls["n"] == 5 else out

    monkeypatch.setattr(PairedSupervisionLoss, "forward", flaky)
    run = train_adapter_from_arrays(student, teacher, AdapterConfig(**FAST, max_steps=30))
    assert run.result.rollbacks == 1
    assert np.isfinite(run.result.adapter.map_numpy(student)).all()


def test_persistent_nan_raises_and_saves_nothing(monkeypatch, tmp_path):
    student, teacher = synthetic(600, 8)
    ids = [f"t{i}" for i in range(len(student))]
    s_dir = write_vector_dir(tmp_path / "s", ids, student, fingerprint="s" * 24)
    t_dir = write_vector_dir(tmp_path / "t", ids, teacher, fingerprint="t" * 24)
    monkeypatch.setattr(PairedSupervisionLoss, "forward", lambda self, m, t: (m * float("nan")).sum())
    home = TavaHome(tmp_path / "home")
    config = AdapterConfig(**FAST, student_vectors=[str(s_dir)], teacher_vectors=[str(t_dir)], name="broken",
                           max_steps=30, max_rollbacks=2, seeds=[0, 1], adversarial_weight=0.02)
    with pytest.raises(TrainingError, match="diverged"):
        train_adapter_from_dirs(config, home)
    adapters = home.artifacts / "adapters"
    assert not (adapters / "broken").exists()
    assert not adapters.exists() or not any(adapters.iterdir())  # no temp leftovers either


def test_collapsed_outputs_are_detected():
    student, teacher = synthetic(300, 8)
    adapter = Vec2VecAdapter(8, 8, [16])
    with torch.no_grad():
        adapter.net.skip.weight.zero_()
        adapter.net.head.weight.zero_()
        adapter.net.head.bias.fill_(1.0)  # every input maps to the same vector
    trainer = AdapterTrainer(adapter, discriminator_hidden_dim=16, use_spectral_norm=False,
                                 gradient_penalty_weight=0.5, config=AdapterConfig(**FAST))
    assert trainer.config.use_spectral_norm is False and trainer.config.gradient_penalty_weight == 0.5
    with pytest.raises(Diverged, match="collapsed"):
        trainer.evaluate(split_paired(student, teacher, trainer.config))
    with pytest.raises(TrainingError, match="broken before training"):
        trainer.fit(split_paired(student, teacher, trainer.config))


def test_train_step_reports_every_configured_loss():
    student, teacher = synthetic(128, 8)
    config = AdapterConfig(**FAST, cycle_weight=1.0, vsp_weight=1.0, adversarial_weight=0.1, adversarial_loss="hinge",
                           gradient_penalty="wgan-gp")
    trainer = AdapterTrainer(Vec2VecAdapter(8, 8, [16]), config=config)
    logs = trainer.train_step(student[:32], teacher[:32])
    assert {"d_loss", "gradient_penalty", "adversarial", "vsp", "cycle", "paired", "g_loss"} <= set(logs)
    assert logs["gradient_penalty"] > 0 and all(np.isfinite(v) for v in logs.values())


def test_weight_averaging_tracks_a_moving_average_and_is_what_training_keeps():
    student, teacher = synthetic(600, 8)
    config = AdapterConfig(**{**FAST, "eval_every": 5, "warmup_steps": 0}, ema_decay=0.9, max_steps=30, lr=1e-2)
    trainer = AdapterTrainer(Vec2VecAdapter(8, 8, [16]), config=config)
    head = lambda: trainer.generator.net.head.weight.detach().clone()
    expected = head()
    for _ in range(3):
        trainer.train_step(student[:64], teacher[:64])
        expected = 0.9 * expected + 0.1 * head()
    assert torch.allclose(trainer.ema.shadow["net.head.weight"], expected, atol=1e-6)
    assert not torch.allclose(trainer.ema.shadow["net.head.weight"], head())  # it lags the raw weights
    # fit() evaluates and keeps the averaged weights, never the raw ones
    data = split_paired(student, teacher, config, 0)
    trainer = AdapterTrainer(Vec2VecAdapter(8, 8, [16]), config=config)
    result = trainer.fit(data)
    kept = result.adapter.state_dict()
    assert all(torch.equal(kept[k], v) for k, v in trainer.ema.shadow.items())
    assert trainer.evaluate(data)["mean_cosine"] == pytest.approx(result.best_metrics["mean_cosine"], abs=1e-6)


# ------------------------------------------------------------------------- save / load

def test_save_load_round_trip_gives_equal_outputs(tmp_path):
    torch.manual_seed(0)
    for latent in (None, 12):
        adapter = Vec2VecAdapter(10, 14, [24, 24], activation="gelu", latent_dim=latent).eval()
        path = save_adapter(tmp_path / f"a{latent}", adapter, metadata={"note": "x"})
        loaded = load_adapter(path)
        x = np.random.default_rng(0).standard_normal((5, 10)).astype(np.float32)
        np.testing.assert_array_equal(adapter.map_numpy(x), loaded.map_numpy(x))
        assert loaded.config == adapter.config
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "config.json").write_text(json.loads(json.dumps('{"format": "tava-adapter/1", "architecture": {}}')))
    torch.save({}, tmp_path / "bin" / "model.bin")
    with pytest.raises(ModelLoadError, match="never unpickles"):
        load_adapter(tmp_path / "bin")
    with pytest.raises(ModelLoadError, match="not an adapter"):
        load_adapter(tmp_path)


def test_a_kept_start_maps_without_the_mlp_and_gives_the_same_numbers(tmp_path):
    # Stage B that keeps its identity or closed-form start saves a zero correction head: mapping skips
    # the blocks (the cost of the static student's "+ adapter" row), with bit-identical output
    x = np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32)
    adapter = Vec2VecAdapter(16, 16, [32])

    def full(a: Vec2VecAdapter) -> np.ndarray:
        with torch.no_grad():
            return a.eval()(torch.from_numpy(x)).numpy()

    with torch.no_grad():
        adapter.net.skip.weight.copy_(torch.eye(16))
    assert adapter.inference_path() == "identity"
    np.testing.assert_array_equal(adapter.map_numpy(x), full(adapter))
    np.testing.assert_allclose(adapter.map_numpy(x), x / np.linalg.norm(x, axis=1, keepdims=True), rtol=1e-6)
    with torch.no_grad():
        adapter.net.skip.weight.copy_(torch.randn(16, 16))      # in place: the cached path must notice
    assert adapter.inference_path() == "linear"
    np.testing.assert_array_equal(adapter.map_numpy(x), full(adapter))
    saved = load_adapter(save_adapter(tmp_path / "kept", adapter))
    assert saved.inference_path() == "linear"
    np.testing.assert_array_equal(saved.map_numpy(x), full(adapter))
    with torch.no_grad():
        adapter.net.head.bias.add_(0.1)                         # a learned correction: the whole MLP runs
    assert adapter.inference_path() == "full"
    np.testing.assert_array_equal(adapter.map_numpy(x), full(adapter))
    assert not np.allclose(adapter.map_numpy(x), saved.map_numpy(x))
    assert Vec2VecAdapter(16, 16, [32], residual=False).inference_path() == "full"
    assert Vec2VecAdapter(16, 16, [32], latent_dim=8).inference_path() == "full"


def test_warm_start_continues_from_the_saved_adapter(tmp_path):
    student, teacher = synthetic(800, 8)
    config = AdapterConfig(**FAST, max_steps=25)
    first = train_adapter_from_arrays(student, teacher, config)
    path = save_adapter(tmp_path / "first", first.result.adapter)
    second = train_adapter_from_arrays(student, teacher, config.model_copy(update={"max_steps": 10}), warm_start=path)
    assert second.result.initial_metrics["mean_cosine"] == pytest.approx(first.result.best_metrics["mean_cosine"],
                                                                         abs=1e-5)
    assert second.report["warm_start"] == str(path)
    with pytest.raises(ConfigError, match="warm-start"):
        train_adapter_from_arrays(student[:, :6].copy(), teacher, config, warm_start=path)


# --------------------------------------------------------------------- adapted encoder

def test_adapted_encoder_loads_through_load_encoder(tmp_path, tiny_model_dir):
    from tava_core.adapter import AdaptedEncoder
    from tava_core.config import EncoderSpec
    from tava_core.encoders import load_encoder

    student = load_encoder(EncoderSpec(model=str(tiny_model_dir)))
    torch.manual_seed(0)
    adapter = Vec2VecAdapter(student.dim, 24, [16]).eval()
    spec = EncoderSpec(model=str(tiny_model_dir)).model_dump(mode="json")
    path = save_adapter(tmp_path / "adapted", adapter, student=spec)
    encoder = load_encoder(EncoderSpec(model=str(path)), cache=False)
    assert isinstance(encoder, AdaptedEncoder) and encoder.dim == 24
    texts = ["a short text", "another, somewhat longer text about proteins"]
    got = encoder.encode(texts, kind="query")
    np.testing.assert_allclose(got, adapter.map_numpy(student.encode(texts, kind="query")), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert encoder.fingerprint != student.fingerprint and encoder.info()["student"]["fingerprint"] == student.fingerprint
    with torch.no_grad():
        adapter.net.head.bias.add_(0.1)
    other = save_adapter(tmp_path / "adapted2", adapter, student=spec)
    assert load_encoder(EncoderSpec(model=str(other)), cache=False).fingerprint != encoder.fingerprint
    wrong = save_adapter(tmp_path / "wrong-dim", Vec2VecAdapter(student.dim + 1, 24, [8]), student=spec)
    with pytest.raises(ModelLoadError, match="expects"):
        load_encoder(EncoderSpec(model=str(wrong)), cache=False)


def test_an_adapter_refuses_a_student_retrained_under_its_name(tmp_path, tiny_model_dir):
    """The adapter's tava_encoder.json names its student by path; a student retrained at that path (a
    second `tava run`, `tava distill` with the same name) must not pair silently with an adapter fitted
    to the first student's vectors: the fingerprint in report.json is checked when it loads."""
    import json
    import shutil

    from tava_core.config import EncoderSpec
    from tava_core.encoders import load_encoder

    student_dir = tmp_path / "students" / "student"
    shutil.copytree(tiny_model_dir, student_dir)
    student = load_encoder(EncoderSpec(model=str(student_dir)), cache=False)
    torch.manual_seed(0)
    path = save_adapter(tmp_path / "adapted", Vec2VecAdapter(student.dim, 24, [16]).eval(),
                        student=EncoderSpec(model=str(student_dir)).model_dump(mode="json"))
    (path / "report.json").write_text(json.dumps({"student": {"fingerprint": student.fingerprint}}))
    assert load_encoder(EncoderSpec(model=str(path)), cache=False).inner.fingerprint == student.fingerprint
    # the student is retrained in place: other weights, same path
    from safetensors.torch import load_file, save_file

    weights = load_file(student_dir / "model.safetensors")
    save_file({k: v + 0.01 for k, v in weights.items()}, student_dir / "model.safetensors")
    with pytest.raises(ModelLoadError, match=f"trained for student fingerprint {student.fingerprint[:12]}"):
        load_encoder(EncoderSpec(model=str(path)), cache=False)


# ---------------------------------------------------------------------------- bad input

def test_bad_inputs_fail_before_training(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"t{i}" for i in range(300)]
    s = write_vector_dir(tmp_path / "s", ids, unit(rng.standard_normal((300, 8))), fingerprint="s" * 24)
    t = write_vector_dir(tmp_path / "t", ids, unit(rng.standard_normal((300, 6))), fingerprint="t" * 24)
    home = TavaHome(tmp_path / "home")

    def run(**kw):
        base = dict(student_vectors=[str(s)], teacher_vectors=[str(t)], batch_size=64, max_steps=1)
        return train_adapter_from_dirs(AdapterConfig(**{**base, **kw}), home)

    other_dim = write_vector_dir(tmp_path / "s2", ids, unit(rng.standard_normal((300, 5))), fingerprint="s" * 24,
                                 collection="other")
    with pytest.raises(IntegrityError, match="different encoders"):
        run(student_vectors=[str(s), str(other_dim)])
    other_fp = write_vector_dir(tmp_path / "s3", ids, unit(rng.standard_normal((300, 8))), fingerprint="x" * 24)
    with pytest.raises(IntegrityError, match="different encoders"):
        run(student_vectors=[str(s), str(other_fp)])
    with pytest.raises(ConfigError, match="same encoder"):
        run(teacher_vectors=[str(s)])
    nan = unit(rng.standard_normal((300, 8)))
    nan[7, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        run(student_vectors=[str(write_vector_dir(tmp_path / "nan", ids, nan, fingerprint="n" * 24))])
    with pytest.raises(InputError, match="no vectors"):
        run(student_vectors=[str(write_vector_dir(tmp_path / "empty", [], np.zeros((0, 8), np.float32),
                                                  fingerprint="e" * 24))])
    with pytest.raises(ConfigError, match="fewer than two batches"):
        run(batch_size=200)
    disjoint = write_vector_dir(tmp_path / "disjoint", [f"u{i}" for i in range(300)],
                                unit(rng.standard_normal((300, 6))), fingerprint="t" * 24)
    with pytest.raises(InputError, match="share no ids"):
        run(teacher_vectors=[str(disjoint)])
    with pytest.raises(InputError, match="missing manifest.json"):
        run(teacher_vectors=[str(tmp_path)])
    with pytest.raises(ConfigError, match="latent"):
        AdapterConfig(reconstruction_weight=1.0)
    with pytest.raises(ConfigError, match="unpaired"):
        AdapterConfig(mode="unpaired", adversarial_weight=0.0)
    assert not (home.artifacts / "adapters").exists()


@pytest.mark.parametrize("n,pool,knn_k", [(600, 5000, 10), (600, 20, 10), (120, 5000, 30), (300, 20, 30)])
def test_the_selection_metric_is_one_the_evaluation_reports(n, pool, knn_k):
    # (300, 20, 30): a pool of 20 is not larger than k = 29, so no retrieval overlap: mean rank decides
    from tava_core.adapter.selection import metric_names, selection_for
    from tava_core.adapter.trainer import AdapterTrainer

    student, teacher = synthetic(n, 8)
    config = AdapterConfig(**FAST, retrieval_pool=pool, knn_k=knn_k)
    data = split_paired(student, teacher, config)
    reported = AdapterTrainer(Vec2VecAdapter(8, 8, [16]), config=config).evaluate(data)
    expected = {k for k in reported if k in ("mean_cosine", "mean_rank") or k.startswith("retrieval_overlap@")}
    assert set(metric_names(config, data)) == expected
    rule = selection_for("retrieval_overlap", metric_names(config, data))
    assert rule.metric in reported
    assert rule.metric.startswith("retrieval_overlap@") == any(k.startswith("retrieval_overlap@") for k in reported)


def test_a_moved_home_finds_its_adapter_names_the_student_there_and_old_records_are_found(tmp_path, tiny_model_dir,
                                                                                         monkeypatch):
    """Stage B's key names its inputs by content: a home copied to another path finds its adapter instead
    of training it again, and the reused adapter names the student where this home keeps it. A report
    written under the key runs had before (directories in it) is still found."""
    import json
    import shutil

    from tava_core.adapter import run as stage

    def setup(home: Path) -> tuple[AdapterConfig, Path]:
        return (AdapterConfig(student_vectors=[str(home / "v" / "s")], teacher_vectors=[str(home / "v" / "t")],
                              student=str(home / "students" / "s"), name="moved", hidden_dims=[16], batch_size=64,
                              max_steps=10, eval_every=5, warmup_steps=2, discriminator_hidden_dim=8,
                              discriminator_layers=1), home / "adapters" / "moved")

    first_home = tmp_path / "first"
    student, teacher = synthetic(400, 8)
    ids = [f"t{i}" for i in range(400)]
    write_vector_dir(first_home / "v" / "s", ids, student, fingerprint="s" * 24)
    write_vector_dir(first_home / "v" / "t", ids, teacher, fingerprint="t" * 24)
    shutil.copytree(tiny_model_dir, first_home / "students" / "s")
    config, out = setup(first_home)
    first = stage.train_adapter(config, stage.check_adapter_inputs(config), out)
    moved_home = tmp_path / "moved"
    shutil.copytree(first_home, moved_home)
    trainings = []
    real_train = stage.train_adapter_from_arrays
    monkeypatch.setattr(stage, "train_adapter_from_arrays", lambda *a, **k: trainings.append(1) or real_train(*a, **k))
    config, out = setup(moved_home)
    again = stage.train_adapter(config, stage.check_adapter_inputs(config), out)
    assert again.reused and trainings == [] and again.run_key == first.run_key
    named = json.loads((out / "tava_encoder.json").read_text())["student"]["model"]
    assert named == str((moved_home / "students" / "s").resolve())
    # a report written the old way: the legacy key is still accepted
    real_key = stage.adapter_run_key
    monkeypatch.setattr(stage, "adapter_run_key", lambda c, k, portable=True: real_key(c, k, portable=False))
    legacy_config = config.model_copy(update={"max_steps": 12})
    old = stage.train_adapter(legacy_config, stage.check_adapter_inputs(legacy_config), out.with_name("legacy"))
    monkeypatch.setattr(stage, "adapter_run_key", real_key)
    found = stage.train_adapter(legacy_config, stage.check_adapter_inputs(legacy_config), out.with_name("legacy"))
    assert not old.reused and found.reused and found.run_key == old.run_key and trainings == [1]


def test_an_adapter_whose_student_is_gone_names_the_file_that_names_it(tmp_path):
    """An adapter copied out of its home names a student directory that is not there: the error says
    which file names it and how to fix it (it listed the built-in aliases)."""
    from tava_core.adapter import Vec2VecAdapter, save_adapter
    from tava_core.config import EncoderSpec
    from tava_core.encoders import load_encoder

    gone = tmp_path / "old-home" / "students" / "s"
    adapter = save_adapter(tmp_path / "adapter", Vec2VecAdapter(32, 32, [16]),
                           student=EncoderSpec(model=str(gone)).model_dump(mode="json"))
    with pytest.raises(ModelLoadError, match=f"names its student at {gone}, which does not exist") as info:
        load_encoder(str(adapter), cache=False)
    assert info.value.path == str(adapter / "tava_encoder.json") and "'student.model'" in info.value.hint
