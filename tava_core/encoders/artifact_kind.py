"""Registers the ``students`` artifact kind: a version is a student model directory that must
load as an encoder (``tava_core.store.register_kind``)."""
from __future__ import annotations

from pathlib import Path

from ..store import ArtifactKind, register_kind, verify_not_empty

_MODEL_FILES = ("modules.json", "config.json", "tava_encoder.json")


def verify_student(version_dir: Path) -> None:
    verify_not_empty(version_dir)
    if any((version_dir / name).is_file() for name in _MODEL_FILES):
        load_student(version_dir)


def load_student(version_dir: Path):
    from . import load_encoder

    return load_encoder(str(version_dir), cache=False)


STUDENTS = register_kind(ArtifactKind(name="students", verify=verify_student, load=load_student))
