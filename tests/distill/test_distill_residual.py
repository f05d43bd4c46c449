"""A blend's second student trained towards what its partner misses (DistillConfig.blend_partner)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from distill_helpers import toy_texts
from test_distill import _config, teacher_dir, toy_home  # noqa: F401 - module fixtures, reused

from tava_core.distill import distill
from tava_core.distill.data import TrainingData
from tava_core.distill.residual import residual_targets, towards_residual
from tava_core.encoders import load_encoder
from tava_core.errors import ConfigError


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize("weight", [0.0, 0.3, 0.7])
def test_the_partner_and_its_residual_add_back_up_to_the_teacher(weight):
    rng = np.random.default_rng(0)
    teacher, partner = rng.normal(size=(50, 24)), rng.normal(size=(50, 24))
    targets = residual_targets(teacher, partner, weight)
    assert targets.dtype == np.float32 and np.allclose(np.linalg.norm(targets, axis=1), 1.0, atol=1e-5)
    # weight * partner + some positive amount of the target is the teacher's direction, row by row
    rest = _unit(teacher) - weight * _unit(partner)
    scale = (rest * targets).sum(1)
    assert np.all(scale > 0) and np.allclose(weight * _unit(partner) + scale[:, None] * targets, _unit(teacher), atol=1e-5)
    if weight == 0.0:
        assert np.allclose(targets, _unit(teacher), atol=1e-6)


def test_residual_targets_refuse_a_weight_of_one_and_unequal_shapes():
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        residual_targets(np.ones((2, 4)), np.ones((2, 4)), 1.0)
    with pytest.raises(ValueError, match="differ in shape"):
        residual_targets(np.ones((2, 4)), np.ones((3, 4)), 0.5)


def test_a_partner_of_another_dimension_is_refused_before_any_encoding(tiny_model_dir):
    partner = load_encoder(str(tiny_model_dir))   # 32-d
    data = TrainingData(texts=["a", "b"], vectors=np.ones((2, 16), dtype=np.float32))
    with pytest.raises(ConfigError, match="32-d vectors, the teacher 16-d") as info:
        towards_residual(data, partner, 0.7, spec=str(tiny_model_dir))
    assert "same teacher" in info.value.hint


def test_a_student_with_a_blend_partner_learns_the_residual_not_the_teacher(toy_home, teacher_dir):  # noqa: F811
    static = {"student": "static", "static_init": "token_embeddings", "lr": 2e-2}
    partner = distill(_config(teacher_dir, name="partner", steps=20, **static), toy_home, progress=False)
    plain = distill(_config(teacher_dir, name="plain", **static), toy_home, progress=False)
    member = distill(_config(teacher_dir, name="member", blend_partner=partner.output, blend_partner_weight=0.7,
                             **static), toy_home, progress=False)
    card = json.loads(member.card_path.read_text())
    partner_encoder = load_encoder(partner.output, cache=False)
    assert card["targets"] == {"kind": "residual", "partner": partner.output, "weight": 0.7,
                               "partner_fingerprint": partner_encoder.fingerprint}
    assert json.loads(plain.card_path.read_text())["targets"] == {"kind": "teacher"}
    assert member.run_key != plain.run_key
    assert "A blend member" in (Path(member.output) / "README.md").read_text()

    # what each student was trained towards, computed here from the teacher and the partner
    texts = toy_texts(200, seed=1)   # texts of the training kind, not the training texts themselves
    teacher = load_encoder(str(teacher_dir)).encode(texts)
    wanted = residual_targets(teacher, partner_encoder.encode(texts, kind="query"), 0.7)

    def agreement(student: str, target: np.ndarray) -> float:
        return float((_unit(load_encoder(student, cache=False).encode(texts, kind="query")) * target).sum(1).mean())

    assert agreement(member.output, wanted) > agreement(plain.output, wanted) + 0.02
    assert agreement(plain.output, _unit(teacher)) > agreement(member.output, _unit(teacher))
    # the same run again is found finished before the partner encodes a text (its encoding of every training
    # text is most of a member's cost: 25 minutes for an mpnet student on SciFact)
    from tava_core.distill import residual

    encoded: list[int] = []
    real = residual.towards_residual
    residual.towards_residual = lambda data, *a, **k: encoded.append(len(data.texts)) or real(data, *a, **k)
    try:
        repeat = distill(_config(teacher_dir, name="member", blend_partner=partner.output, blend_partner_weight=0.7,
                                 **static), toy_home, progress=False)
    finally:
        residual.towards_residual = real
    assert repeat.reused is True and repeat.run_key == member.run_key and encoded == []
    # a new partner weight is a new run, not a reuse
    again = distill(_config(teacher_dir, name="member", blend_partner=partner.output, blend_partner_weight=0.5,
                            **static), toy_home, progress=False)
    assert again.reused is False and again.run_key != member.run_key


def test_a_partner_with_a_residual_memory_gives_its_map_alone_on_the_texts_the_memory_holds(tiny_model_dir):
    from tava_core.adapter.encoder import AdaptedEncoder
    from tava_core.adapter.memory import build_memory
    from tava_core.adapter.model import Vec2VecAdapter

    student = load_encoder(str(tiny_model_dir), cache=False)   # 32-d
    texts = toy_texts(30)
    keys = student.encode(texts, kind="query")
    adapter = Vec2VecAdapter(32, 32, hidden_dims=[16]).eval()
    teacher = np.random.default_rng(0).normal(size=(len(texts), 32)).astype(np.float32)
    memory = build_memory(keys, teacher, adapter.map_numpy(keys), k=3, temperature=1e-4, weight=1.0)
    adapter.attach_memory(memory)
    partner = AdaptedEncoder(student, adapter, adapter_hash="h" * 64)
    # with the memory, the partner returns the teacher's own vectors of these texts: nothing left to learn
    assert np.allclose(partner.encode(texts, kind="query"), _unit(teacher), atol=1e-4)
    data = TrainingData(texts=texts, vectors=teacher)
    targets = towards_residual(data, partner, 0.7, spec="partner").vectors
    assert adapter.memory is memory  # put back: the blend serves queries with it
    adapter.attach_memory(None)
    assert np.allclose(targets, residual_targets(teacher, partner.encode(texts, kind="query"), 0.7), atol=1e-5)
    assert not np.allclose(targets, _unit(teacher), atol=1e-2)


def test_a_member_reads_the_vectors_its_partner_already_wrote_instead_of_encoding(toy_home, teacher_dir,  # noqa: F811
                                                                                  monkeypatch):
    # `tava run` embeds the student's vectors of every training text for Stage B; the static member's residual
    # targets read them (for an mpnet student on SciFact, 15,163 texts: most of the member's 32 minutes)
    from distill_helpers import embed_toy

    from tava_core.distill.residual import cached_vectors
    from tava_core.distill.run import prepare_training
    from tava_core.home import TavaHome

    home = TavaHome(toy_home)
    partner = distill(_config(teacher_dir, name="cached-partner", steps=20, student="static",
                              static_init="token_embeddings", lr=2e-2), home, progress=False)
    data = prepare_training(_config(teacher_dir), home, load_encoder(str(teacher_dir)), progress=False)
    encoder = load_encoder(partner.output, cache=False)
    encoded = towards_residual(data, encoder, 0.7, spec="p", home=home)   # nothing cached yet: encodes
    assert cached_vectors(data, encoder, home) is None

    embed_toy(toy_home, partner.output)
    cached = cached_vectors(data, encoder, home)
    assert cached is not None and cached.shape == (len(data.texts), encoder.dim)
    np.testing.assert_allclose(cached, encoder.encode(data.texts, kind="query"), atol=1e-5)
    monkeypatch.setattr(encoder, "encode", lambda *a, **k: pytest.fail("encoded texts its cache holds"))
    read = towards_residual(data, encoder, 0.7, spec="p", home=home)
    np.testing.assert_allclose(read.vectors, encoded.vectors, atol=1e-5)
    assert read.key == encoded.key

    # an encoder with prompts encodes queries unlike the documents the cache holds: it is not read
    monkeypatch.setattr(encoder, "spec", encoder.spec.model_copy(update={"query_prefix": "query: "}))
    assert cached_vectors(data, encoder, home) is None
