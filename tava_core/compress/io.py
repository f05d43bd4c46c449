"""Compressor directories: ``model.safetensors`` + ``config.json`` (+ ``tava_encoder.json`` naming
the encoder whose vectors it compresses, which makes the directory a loadable encoder).
Loading never unpickles."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from ..io import write_json
from ..modeldir import ENCODER_MARKER, load_module, read_module_config, weights_hash, write_module_files
from .config import COMPRESSOR_FORMAT
from .model import CompressionAdapter

ENCODER_TYPE = "compressed"
_HINT = "give a directory written by `tava compress` (<run>/<method>-<dim>d), or re-run it"


def write_compressor_files(directory: str | Path, model: CompressionAdapter, *,
                           metadata: Optional[dict[str, Any]] = None,
                           base_encoder: Optional[dict[str, Any]] = None) -> Path:
    """Write a compressor into ``directory`` (made if missing; the caller makes it atomic, e.g.
    inside ``io.atomic_directory``). ``base_encoder`` is an ``EncoderSpec`` dump."""
    directory = write_module_files(directory, model, fmt=COMPRESSOR_FORMAT, metadata=metadata)
    if base_encoder is not None:
        write_json(directory / ENCODER_MARKER, {"type": ENCODER_TYPE, "base": base_encoder})
    return directory


def save_compressor(directory: str | Path, model: CompressionAdapter, *, metadata: Optional[dict[str, Any]] = None,
                    base_encoder: Optional[dict[str, Any]] = None) -> Path:
    """Save one compressor atomically (the directory appears complete or not at all)."""
    from ..io import atomic_directory

    final = Path(directory)
    with atomic_directory(final) as tmp:
        write_compressor_files(tmp, model, metadata=metadata, base_encoder=base_encoder)
    return final


def read_compressor_config(directory: str | Path) -> dict[str, Any]:
    return read_module_config(directory, fmt=COMPRESSOR_FORMAT, what="a compressor", hint=_HINT)


def load_compressor(directory: str | Path, device: str = "cpu") -> CompressionAdapter:
    """The compressor saved in ``directory`` (safetensors only; eval mode)."""
    return load_module(directory, CompressionAdapter, fmt=COMPRESSOR_FORMAT, what="a compressor", hint=_HINT,
                       device=device)


def compressor_weights_hash(directory: str | Path) -> str:
    """sha256 of the weights file (part of a compressed encoder's fingerprint)."""
    return weights_hash(directory)
