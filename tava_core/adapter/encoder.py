"""``AdaptedEncoder``: the student encoder followed by an adapter, a drop-in ``Encoder`` whose
vectors live in the teacher's space. Registered as tava encoder type ``adapted``."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from ..config import EncoderSpec
from ..encoders.base import Encoder, combine_fingerprint
from ..encoders.mapped import MappedEncoder, load_inner_encoder
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


def load_adapted_encoder(directory: str | Path, spec: Optional[EncoderSpec] = None) -> AdaptedEncoder:
    """Factory for ``ENCODER_TYPES['adapted']``: ``tava_encoder.json`` names the student's spec."""
    student = load_inner_encoder(directory, "student", spec,
                                 hint="re-run `tava adapt --student MODEL` so the adapter knows its student")
    return AdaptedEncoder(student, load_adapter(directory), adapter_hash=adapter_weights_hash(directory),
                          name=Path(directory).name)
