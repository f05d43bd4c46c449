"""Fixtures of the routing tests."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def static_student(tmp_path_factory, teacher_path) -> Path:
    """A static student in the teacher's space: the teacher's own input token embeddings (a real,
    cheap student whose agreement with the teacher varies by query, unlike a random tiny model)."""
    from safetensors.numpy import load_file, save_file

    out = tmp_path_factory.mktemp("static-student")
    table = load_file(str(teacher_path / "model.safetensors"))["embeddings.word_embeddings.weight"]
    save_file({"embeddings": table.astype(np.float32)}, str(out / "model.safetensors"))
    shutil.copy(teacher_path / "tokenizer.json", out / "tokenizer.json")
    (out / "config.json").write_text(json.dumps({"model_type": "model2vec", "normalize": True}))
    return out
