"""Fixtures of the routing tests."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from route_helpers import TEXTS

from tava_core.config import EncoderSpec
from tava_core.route.router import save_router, threshold_from


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


@pytest.fixture(scope="module")
def router_dir(tmp_path_factory, static_student) -> Path:
    """A router of ``static_student`` calibrated on TEXTS, saved with a 25% budget (default policy)."""
    from tava_core.encoders import load_encoder
    from tava_core.route.build import TextVectors, fit_router
    from tava_core.route.config import RouterSettings

    student = load_encoder(str(static_student), cache=False)
    teacher = load_encoder("all-MiniLM-L6-v2")
    reference = TextVectors(TEXTS, student.encode(TEXTS), teacher.encode(TEXTS))
    calib = TEXTS[::-1]
    calibration = TextVectors(calib, student.encode(calib, kind="query"), teacher.encode(calib, kind="query"))
    settings = RouterSettings(bank_size=32, pca_dim=8, vector_components=2)
    model, fitted = fit_router(reference, calibration, reference.teacher, settings)
    out = tmp_path_factory.mktemp("routers") / "r"
    save_router(out, student=EncoderSpec(model=str(static_student)), student_fingerprint=student.fingerprint,
                teacher=EncoderSpec(model="all-MiniLM-L6-v2"), teacher_fingerprint=teacher.fingerprint,
                signal_model=model, calibration=fitted, threshold=threshold_from(fitted, teacher_budget=0.25))
    return out
