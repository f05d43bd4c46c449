"""``AdaptedEncoder``: the student encoder followed by an adapter, a drop-in ``Encoder`` whose
vectors live in the teacher's space. Registered as tava encoder type ``adapted``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from ..config import EncoderSpec
from ..encoders.base import Encoder, combine_fingerprint
from ..encoders.mapped import MappedEncoder, load_inner_encoder
from ..errors import ModelLoadError
from ..modeldir import ENCODER_MARKER
from .io import adapter_weights_hash, load_adapter
from .model import Vec2VecAdapter


class AdaptedEncoder(MappedEncoder):
    """Encode with ``student``, then map through ``adapter`` (batched, no gradients)."""

    def __init__(self, student: Encoder, adapter: Vec2VecAdapter, *, adapter_hash: str,
                 name: Optional[str] = None) -> None:
        super().__init__(student, adapter.eval(), fingerprint=combine_fingerprint(student.fingerprint, adapter_hash),
                         name=name or f"{student.name}+adapter", roles=("student", "adapter"))
        self.adapter_hash = adapter_hash

    def info(self) -> dict[str, Any]:
        return {**super().info(), "student": self.inner.info(), "adapter_sha256": self.adapter_hash}


def trained_student_fingerprint(directory: str | Path) -> Optional[str]:
    """The fingerprint of the student whose vectors the adapter was trained on (``report.json``), or
    None for an adapter saved without one."""
    try:
        report = json.loads((Path(directory) / "report.json").read_text())
    except (OSError, ValueError):
        return None
    student = report.get("student") if isinstance(report, dict) else None
    return student.get("fingerprint") if isinstance(student, dict) else None


def load_adapted_encoder(directory: str | Path, spec: Optional[EncoderSpec] = None) -> AdaptedEncoder:
    """Factory for ``ENCODER_TYPES['adapted']``: ``tava_encoder.json`` names the student's spec. The
    student found there must be the one the adapter was trained for: a student retrained under the same
    name (or replaced) would otherwise pair silently with an adapter fitted to another student's vectors."""
    student = load_inner_encoder(directory, "student", spec,
                                 hint="re-run `tava adapt --student MODEL` so the adapter knows its student")
    trained_for = trained_student_fingerprint(directory)
    if trained_for and student.fingerprint != trained_for:
        raise ModelLoadError(
            f"the adapter was trained for student fingerprint {trained_for[:12]}, but its student "
            f"{student.name!r} now has {student.fingerprint[:12]} (retrained, replaced, or other options)",
            path=Path(directory) / ENCODER_MARKER,
            hint="load the adapter's version in the registry (a version `tava run` publishes carries its own copy "
                 "of the student), or train the adapter again for this student (`tava adapt`)")
    encoder = AdaptedEncoder(student, load_adapter(directory), adapter_hash=adapter_weights_hash(directory),
                             name=Path(directory).name)
    encoder.directory = Path(directory)
    return encoder
