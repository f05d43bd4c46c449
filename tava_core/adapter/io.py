"""Adapter directories: ``model.safetensors`` + ``config.json`` (+ ``tava_encoder.json`` when the
student is known, which makes the directory a loadable encoder). Loading never unpickles."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from ..io import atomic_directory, write_json
from ..modeldir import ENCODER_MARKER, load_module, read_module_config, weights_hash, write_module_files
from .config import ADAPTER_FORMAT
from .model import Vec2VecAdapter

_HINT = "give a directory written by `tava adapt` (or re-run it)"


def write_adapter_files(directory: Path, adapter: Vec2VecAdapter, *, metadata: Optional[dict[str, Any]] = None,
                        student: Optional[dict[str, Any]] = None) -> None:
    """Write the adapter's files into an existing (temporary) directory."""
    write_module_files(directory, adapter, fmt=ADAPTER_FORMAT, metadata=metadata)
    if student is not None:
        write_json(directory / ENCODER_MARKER, {"type": "adapted", "student": student})


def save_adapter(directory: str | Path, adapter: Vec2VecAdapter, *, metadata: Optional[dict[str, Any]] = None,
                 student: Optional[dict[str, Any]] = None, extra_files: Optional[dict[str, Any]] = None) -> Path:
    """Save atomically: the directory appears complete or not at all (an old one stays until then).

    ``student`` is an ``EncoderSpec`` dump; with it, ``load_encoder(directory)`` runs student then adapter.
    ``extra_files`` maps a file name to a callable ``(path) -> None`` writing it (reports, plots).
    """
    final = Path(directory)
    with atomic_directory(final) as tmp:
        write_adapter_files(tmp, adapter, metadata=metadata, student=student)
        for name, writer in (extra_files or {}).items():
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            writer(target)
    return final


def read_adapter_config(directory: str | Path) -> dict[str, Any]:
    return read_module_config(directory, fmt=ADAPTER_FORMAT, what="an adapter", hint=_HINT)


def load_adapter(directory: str | Path, device: str = "cpu") -> Vec2VecAdapter:
    """The adapter saved in ``directory`` (safetensors only; eval mode)."""
    return load_module(directory, Vec2VecAdapter, fmt=ADAPTER_FORMAT, what="an adapter", hint=_HINT, device=device)


def adapter_weights_hash(directory: str | Path) -> str:
    """sha256 of the weights file (part of an adapted encoder's fingerprint)."""
    return weights_hash(directory)
