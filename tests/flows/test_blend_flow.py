"""`tava blend`'s flow: two students of one space become one encoder directory under the home,
with a record of what it wrote; a rerun replaces it whole."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from helpers import synthetic_texts


def _static(directory: Path, teacher_path: Path, seed: int) -> str:
    from safetensors.numpy import save_file

    directory.mkdir(parents=True)
    table = np.random.default_rng(seed).standard_normal((30522, 12)).astype(np.float32)
    save_file({"embeddings": table}, str(directory / "model.safetensors"))
    shutil.copy(teacher_path / "tokenizer.json", directory / "tokenizer.json")
    (directory / "config.json").write_text(json.dumps({"model_type": "model2vec", "normalize": True}))
    return str(directory)


def test_blend_flow_writes_a_loadable_blend(prefect_harness, tava_home, teacher_path, tmp_path):
    from flows.blend import blend_students
    from tava_core.encoders import load_encoder
    from tava_core.encoders.blend import BlendConfig, BlendEncoder

    a, b = _static(tmp_path / "a", teacher_path, 1), _static(tmp_path / "b", teacher_path, 2)
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
