"""A blend of students of one teacher: one unit vector per text whose ranking is the weighted sum of
the members' cosine scores; saved as a directory any tava command loads; refused (nothing written)
when its members do not share one space."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import synthetic_texts, write_static_model
from pydantic import ValidationError

from tava_core.config import EncoderSpec
from tava_core.encoders import load_encoder
from tava_core.encoders.blend import BlendConfig, BlendEncoder, save_blend
from tava_core.errors import ModelLoadError


@pytest.fixture(scope="module")
def members(tmp_path_factory, teacher_path) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("blend-members")
    return (write_static_model(root / "a", teacher_path, 24, seed=1),
            write_static_model(root / "b", teacher_path, 24, seed=2),
            write_static_model(root / "other-size", teacher_path, 16, seed=3))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("weights", [(0.5, 0.5), (0.2, 0.8), (3.0, 1.0)])
def test_blend_ranks_by_the_weighted_sum_of_the_members_scores(members, weights):
    a, b = (load_encoder(str(p), cache=False) for p in members[:2])
    queries = synthetic_texts(40, seed=4)
    blend = BlendEncoder([a, b], list(weights))
    q = blend.encode(queries, kind="query")
    qa, qb = a.encode(queries, kind="query"), b.encode(queries, kind="query")
    assert q.shape == (40, 24) and np.allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(q, _unit(weights[0] * _unit(qa) + weights[1] * _unit(qb)), atol=1e-5)
    docs = _unit(np.random.default_rng(6).standard_normal((200, 24)).astype(np.float32))
    # per query, the blend's order of documents is the order of w_a * cos(a, d) + w_b * cos(b, d)
    summed = weights[0] * _unit(qa) @ docs.T + weights[1] * _unit(qb) @ docs.T
    assert (np.argsort(-(q @ docs.T), axis=1)[:, :10] == np.argsort(-summed, axis=1)[:, :10]).all()
    # and it is neither member: a blend that returned one member would pass the checks above for w = 1
    assert not np.allclose(q, _unit(qa), atol=1e-3) and not np.allclose(q, _unit(qb), atol=1e-3)


def test_saved_blend_loads_as_an_encoder_with_weights_summing_to_one(members, tmp_path, monkeypatch):
    monkeypatch.chdir(members[0].parent)   # members given as relative paths are stored absolute
    out = tmp_path / "blend"
    saved = save_blend(out, [EncoderSpec(model="a"), EncoderSpec(model="b")], [3.0, 1.0])
    marker = json.loads((out / "tava_encoder.json").read_text())
    assert marker["type"] == "blend"
    assert [m["weight"] for m in marker["members"]] == [0.75, 0.25]
    assert all(Path(m["encoder"]["model"]).is_absolute() for m in marker["members"])
    monkeypatch.chdir(tmp_path)
    loaded = load_encoder(str(out), cache=False)
    assert isinstance(loaded, BlendEncoder) and loaded.dim == 24
    texts = synthetic_texts(10, seed=7)
    direct = BlendEncoder([load_encoder(str(p), cache=False) for p in members[:2]], [0.75, 0.25])
    np.testing.assert_allclose(loaded.encode(texts), direct.encode(texts), atol=1e-6)
    # the fingerprint names the weights: another weight, other vectors, another fingerprint
    assert saved.fingerprint == loaded.fingerprint and saved.name == "blend"   # save returns what it wrote
    other = tmp_path / "other"
    save_blend(other, [EncoderSpec(model=str(p)) for p in members[:2]], [1.0, 1.0])
    assert load_encoder(str(other), cache=False).fingerprint != loaded.fingerprint


def test_members_of_different_sizes_are_refused_and_nothing_is_written(members, tmp_path):
    with pytest.raises(ModelLoadError, match="different sizes"):
        save_blend(tmp_path / "bad", [EncoderSpec(model=str(members[0])), EncoderSpec(model=str(members[2]))],
                   [1.0, 1.0])
    assert not (tmp_path / "bad").exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("members_, weights, message", [
    (["a"], [], "at least 2"),
    (["a", "b"], [1.0], "one --weights per --members"),
    (["a", "b"], [1.0, 0.0], "> 0"),
    (["a", "b"], [1.0, float("nan")], "> 0"),
])
def test_config_refuses_bad_members_and_weights(members_, weights, message):
    with pytest.raises(ValidationError, match=message):
        BlendConfig(members=members_, weights=weights)
    assert BlendConfig(members=["a", "b"]).resolved_weights() == [1.0, 1.0]


def test_blend_attached_to_its_adapter_follows_the_adapter_it_sits_in(members, tmp_path):
    """Published inside an adapter's version directory, the blend names that adapter ``..``: copied into a
    new version (the nightly refresh's candidate) it takes that version's adapter, the rest unchanged."""
    import shutil

    from tava_core.encoders.blend import attach_blend, attached_blend, carry_blend

    a, b, _ = members
    blend_dir = tmp_path / "blend"
    save_blend(blend_dir, [EncoderSpec(model=str(a)), EncoderSpec(model=str(b))], [0.7, 0.3])
    version = tmp_path / "v1"
    shutil.copytree(a, version)              # the published copy of member a
    attached = attach_blend(blend_dir, a, version)
    assert attached == attached_blend(version) == version / "blend"
    marker = json.loads((attached / "tava_encoder.json").read_text())
    assert [m["encoder"]["model"] for m in marker["members"]] == ["..", "members/1-b"]   # its own copy of b
    texts = synthetic_texts(10, seed=8)
    np.testing.assert_allclose(load_encoder(str(attached), cache=False).encode(texts),
                               load_encoder(str(blend_dir), cache=False).encode(texts), atol=1e-6)
    candidate = tmp_path / "candidate"
    shutil.copytree(b, candidate)            # another "adapter" in the candidate's place
    carried = carry_blend(version, candidate)
    assert carried is not None and (candidate / "blend" / "tava_encoder.json").is_file()
    np.testing.assert_allclose(carried.members[0].encode(texts), load_encoder(str(candidate), cache=False).encode(texts),
                               atol=1e-6)
    assert Path(carried.members[0].directory) == candidate.resolve()
    assert carried.weights == pytest.approx([0.7, 0.3])
    assert carry_blend(tmp_path / "no-blend-here", candidate) is None
    # a blend that does not contain the adapter it is published with is refused, and nothing is left
    other = tmp_path / "v2"
    shutil.copytree(a, other)
    with pytest.raises(ModelLoadError, match="0 members that are the adapter"):
        attach_blend(blend_dir, tmp_path / "unrelated", other)
    assert attached_blend(other) is None


def test_a_member_retrained_in_place_is_refused_and_a_published_blend_keeps_its_own(teacher_path, tmp_path):
    """A blend names its members by path; a later run retrains a static member at that path. The blend
    refuses the changed member (its fingerprint is recorded) instead of blending it with weights chosen
    for the old one, and the copy published inside an adapter version keeps the member it was made with."""
    import shutil

    from tava_core.encoders.blend import attach_blend

    a = write_static_model(tmp_path / "a", teacher_path, 24, seed=1)
    b = write_static_model(tmp_path / "b", teacher_path, 24, seed=2)
    blend_dir = tmp_path / "blend"
    save_blend(blend_dir, [EncoderSpec(model=str(a)), EncoderSpec(model=str(b))], [0.6, 0.4])
    version = tmp_path / "v1"
    shutil.copytree(a, version)
    attached = attach_blend(blend_dir, a, version)
    texts = synthetic_texts(10, seed=3)
    before = load_encoder(str(blend_dir), cache=False).encode(texts)
    shutil.rmtree(b)
    write_static_model(b, teacher_path, 24, seed=5)            # "retrained": same path, other table
    with pytest.raises(ModelLoadError, match="blend member .* has fingerprint .* but the blend was made with"):
        load_encoder(str(blend_dir), cache=False)
    np.testing.assert_allclose(load_encoder(str(attached), cache=False).encode(texts), before, atol=1e-6)
