"""Stage A on another device, checked on a machine without a GPU.

A student moved to the ``meta`` device computes shapes only, and torch refuses to mix its tensors with
CPU ones exactly as it refuses to mix CUDA and CPU tensors ("Expected all tensors to be on the same
device"). So a step whose inputs, targets and candidates all reach the student's device on ``meta``
reaches it on a GPU too; one built on the CPU (``torch.from_numpy`` without ``.to``) fails here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from distill_helpers import toy_texts

from tava_core.distill import DistillConfig, StaticStudent, Trainer, TransformerStudent
from tava_core.distill import trainer as trainer_module
from tava_core.distill.trainer import DistillStage, training_device

META = torch.device("meta")


def _student(kind: str, teacher_dir: Path) -> torch.nn.Module:
    if kind == "transformer":
        return TransformerStudent.from_teacher(teacher_dir, layers=[1], projection=True, teacher_dim=32, max_length=32)
    return StaticStudent.from_teacher(teacher_dir, static_dim=16, projection=True, teacher_dim=32, init="token_embeddings")


@pytest.mark.parametrize("kind, alpha_rank", [("transformer", 0.0), ("transformer", 1.0), ("static", 1.0)])
def test_a_step_keeps_every_tensor_on_the_students_device(tmp_path, tiny_model_dir, monkeypatch, kind, alpha_rank):
    texts = toy_texts(120)
    teacher = np.random.default_rng(0).standard_normal((len(texts), 32)).astype(np.float32)
    config = DistillConfig(teacher=str(tiny_model_dir), student=kind, steps=4, batch_size=8, device="cpu",
                           alpha_sim=1.0, alpha_cross=1.0, alpha_rank=alpha_rank, rank_candidates=4, span_views=0)
    trainer = Trainer(_student(kind, tiny_model_dir), texts, teacher, config, tmp_path, progress=False)
    # transformers' mask builder asks whether the mask is all ones, to skip it (a host read, impossible on
    # meta, harmless on a GPU); the full mask it builds otherwise is on the input's device all the same
    import transformers.masking_utils as masking

    monkeypatch.setattr(masking, "_ignore_bidirectional_mask_sdpa", lambda *args, **kwargs: False)
    trainer.student.to(META)
    stage = DistillStage(trainer)

    features, targets, candidates = stage.batch(0)
    moved = [*features.values(), targets] + ([] if candidates is None else [candidates])
    assert all(tensor.device == META for tensor in moved)
    out = trainer.student(features)   # raises on a CPU tensor meeting the student's weights
    terms = trainer.loss_fn.terms(out, targets, candidates)
    total = trainer.loss_fn.total(terms, out)
    assert out.device == META and total.device == META and set(terms) >= {"cos", "mse", "sim_kl", "cross_kl"}
    assert ("rank_kl" in terms) == bool(alpha_rank)


def test_training_moves_the_student_to_its_device_and_back(tmp_path, tiny_model_dir, monkeypatch):
    # trained where config.device resolves to, handed back on the CPU (saving, the speed check and Stage B
    # expect it), also when training fails. The move is recorded, not made: this machine has one device.
    monkeypatch.setattr(trainer_module, "training_device", lambda requested: META)
    texts = toy_texts(120)
    teacher = np.random.default_rng(0).standard_normal((len(texts), 32)).astype(np.float32)
    config = DistillConfig(teacher=str(tiny_model_dir), steps=3, batch_size=8, eval_every=3, device="auto",
                           span_views=0, layers=[1])
    student = _student("transformer", tiny_model_dir)
    moves: list[object] = []
    real_to = student.to
    monkeypatch.setattr(student, "to", lambda device: moves.append(device) or real_to("cpu"))
    trainer = Trainer(student, texts, teacher, config, tmp_path, progress=False)
    assert trainer.device == META
    trainer.train()
    assert moves == [META, "cpu"]

    moves.clear()
    monkeypatch.setattr(DistillStage, "loss", lambda stage, step: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        Trainer(student, texts, teacher, config.model_copy(update={"resume": False}), tmp_path,
                progress=False).train()
    assert moves == [META, "cpu"]


@pytest.mark.parametrize("requested, found, expected", [
    ("auto", "cuda", "cuda"),
    ("auto", "mps", "cpu"),      # Apple's MPS has no sparse gradients: a static student could not train there
    ("mps", "mps", "mps"),       # asked for by name: the user's call
    ("auto", "cpu", "cpu"),
])
def test_auto_trains_on_a_gpu_but_never_on_mps(monkeypatch, requested, found, expected):
    monkeypatch.setattr(trainer_module, "resolve_device", lambda name: torch.device(found))
    assert training_device(requested).type == expected


def test_the_teacher_is_a_full_encoder_spec_and_keeps_old_run_keys(tiny_model_dir):
    from tava_core.config import EncoderSpec

    by_name = DistillConfig(teacher=str(tiny_model_dir))
    by_spec = DistillConfig(teacher=EncoderSpec(model=str(tiny_model_dir), max_length=24, device="cpu"))
    assert by_name.teacher == EncoderSpec(model=str(tiny_model_dir))
    assert by_spec.teacher.max_length == 24
    # the run key names the model only (how it encoded is in the data key, through its vectors), so
    # checkpoints and reused students from before the full spec stay valid
    assert by_name.training_key()["teacher"] == by_spec.training_key()["teacher"] == str(tiny_model_dir)
