"""Compressors compose with the rest of tava:

- ``CompressedEncoder``: any encoder (the teacher, or a student + adapter directory) followed by a
  compressor; registered as tava encoder type ``compressed``, so ``load_encoder(<compressor dir>)``,
  `tava embed --encoder <compressor dir>` and `tava evaluate` send documents and queries through it.
- vectors already on disk (a `tava embed` directory or a LanceDB table) are compressed by `tava translate
  --adapter <compressor dir>` (``tava_core.translate``), into vectors with this encoder's fingerprint.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from ..config import EncoderSpec
from ..encoders.base import Encoder, combine_fingerprint
from ..encoders.mapped import MappedEncoder, load_inner_encoder
from .io import compressor_weights_hash, load_compressor
from .model import CompressionAdapter


def compressed_fingerprint(base_fingerprint: str, weights_hash: str) -> str:
    return combine_fingerprint(base_fingerprint, "compressor", weights_hash)


class CompressedEncoder(MappedEncoder):
    """Encode with ``base``, then compress (batched, no gradients); unit-length output."""

    def __init__(self, base: Encoder, compressor: CompressionAdapter, *, weights_hash: str,
                 name: Optional[str] = None) -> None:
        super().__init__(base, compressor.eval(), fingerprint=compressed_fingerprint(base.fingerprint, weights_hash),
                         name=name or f"{base.name}+{compressor.method}-{compressor.output_dim}d",
                         roles=("encoder", "compressor"))
        self.weights_hash = weights_hash
        self.method = compressor.method

    def info(self) -> dict[str, Any]:
        return {**super().info(), "base": self.inner.info(), "compressor_sha256": self.weights_hash,
                "method": self.method}


def load_compressed_encoder(directory: str | Path, spec: Optional[EncoderSpec] = None) -> CompressedEncoder:
    """Factory for ``ENCODER_TYPES['compressed']``: ``tava_encoder.json`` names the base encoder's spec."""
    base = load_inner_encoder(directory, "base", spec,
                              hint="re-run `tava compress --encoder MODEL` so the compressor knows its encoder")
    encoder = CompressedEncoder(base, load_compressor(directory), weights_hash=compressor_weights_hash(directory),
                                name=Path(directory).name)
    encoder.directory = Path(directory)
    return encoder
