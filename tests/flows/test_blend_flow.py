"""`tava blend`'s flow: two students of one space become one encoder directory under the home,
with a record of what it wrote; a rerun replaces it whole."""
from __future__ import annotations

from pathlib import Path

from helpers import synthetic_texts, write_static_model


def test_blend_flow_writes_a_loadable_blend(prefect_harness, tava_home, teacher_path, tmp_path):
    from flows.blend import blend_students
    from tava_core.encoders import load_encoder
    from tava_core.encoders.blend import BlendConfig, BlendEncoder

    a, b = (str(write_static_model(tmp_path / name, teacher_path, 12, seed=seed)) for name, seed in (("a", 1), ("b", 2)))
    result = blend_students(BlendConfig(members=[a, b], weights=[2.0, 1.0], name="pair"), home=str(tava_home))
    assert Path(result.directory) == tava_home / "artifacts" / "blends" / "pair"
    assert [round(m["weight"], 4) for m in result.members] == [0.6667, 0.3333] and result.dim == 12
    blend = load_encoder(result.directory, cache=False)
    assert isinstance(blend, BlendEncoder) and blend.fingerprint == result.fingerprint
    texts = synthetic_texts(8, seed=3)
    assert blend.encode(texts).shape == (8, 12)
    again = blend_students(BlendConfig(members=[a, b], name="pair"), home=str(tava_home))
    assert again.fingerprint != result.fingerprint and [m["weight"] for m in again.members] == [0.5, 0.5]
    assert sorted(p.name for p in (tava_home / "artifacts" / "blends").iterdir()) == ["pair"]
