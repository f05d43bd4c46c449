"""``AdaptedEncoder``: the student encoder followed by an adapter, a drop-in ``Encoder`` whose
vectors live in the teacher's space. Registered as tava encoder type ``adapted``."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..config import EncoderSpec
from ..encoders.base import Encoder, TextKind, combine_fingerprint
from ..errors import ModelLoadError
from ..io import read_json
from .io import ENCODER_MARKER, adapter_weights_hash, load_adapter
from .model import Vec2VecAdapter


class AdaptedEncoder(Encoder):
    """Encode with ``student``, then map through ``adapter`` (batched, no gradients)."""

    normalized = True

    def __init__(self, student: Encoder, adapter: Vec2VecAdapter, *, adapter_hash: str,
                 name: Optional[str] = None) -> None:
        if student.dim != adapter.input_dim:
            raise ModelLoadError(f"the student gives {student.dim}-d vectors but the adapter expects "
                                 f"{adapter.input_dim}-d", hint="pair the adapter with the student it was trained on")
        self.student = student
        self.adapter = adapter.eval()
        self.adapter_hash = adapter_hash
        self.name = name or f"{student.name}+adapter"
        self.dim = adapter.output_dim
        self._fingerprint = combine_fingerprint(student.fingerprint, adapter_hash)

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def encode(self, texts: Sequence[str], *, kind: TextKind = "document", batch_size: int | None = None,
               show_progress: bool = False) -> np.ndarray:
        vectors = self.student.encode(texts, kind=kind, batch_size=batch_size, show_progress=show_progress)
        if len(vectors) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.adapter.map_numpy(vectors)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "student": self.student.info(), "adapter_sha256": self.adapter_hash}


def load_adapted_encoder(directory: str | Path, spec: Optional[EncoderSpec] = None) -> AdaptedEncoder:
    """Factory for ``ENCODER_TYPES['adapted']``: ``tava_encoder.json`` names the student's spec.

    A relative student path is taken relative to the adapter directory. Device, dtype and batch
    size of ``spec`` (the adapter's own spec) apply to the student too."""
    directory = Path(directory)
    marker = read_json(directory / ENCODER_MARKER)
    student_data = dict(marker.get("student") or {})
    if not student_data.get("model"):
        raise ModelLoadError("tava_encoder.json names no student model", path=directory / ENCODER_MARKER,
                             hint="re-run `tava adapt --student MODEL` so the adapter knows its student")
    model = str(student_data["model"])
    candidate = directory / model
    if not Path(model).is_absolute() and candidate.exists():
        student_data["model"] = str(candidate.resolve())
    if spec is not None:
        student_data.update(device=spec.device, dtype=spec.dtype, batch_size=spec.batch_size)
    from ..encoders import load_encoder  # the registry's lock is re-entrant

    student = load_encoder(EncoderSpec.model_validate(student_data))
    adapter = load_adapter(directory)
    return AdaptedEncoder(student, adapter, adapter_hash=adapter_weights_hash(directory), name=directory.name)
