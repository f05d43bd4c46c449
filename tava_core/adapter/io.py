"""Adapter directories: ``model.safetensors`` + ``config.json`` (+ ``tava_encoder.json`` when the
student is known, which makes the directory a loadable encoder). Loading never unpickles."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from ..errors import ModelLoadError
from ..io import atomic_directory, read_json, sha256_file, write_json
from .model import Vec2VecAdapter

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
ENCODER_MARKER = "tava_encoder.json"
ADAPTER_FORMAT = "tava-adapter/1"


def _state(adapter: Vec2VecAdapter) -> dict[str, Any]:
    # safetensors refuses shared or non-contiguous tensors: store plain copies.
    return {k: v.detach().cpu().contiguous().clone() for k, v in adapter.state_dict().items()}


def write_adapter_files(directory: Path, adapter: Vec2VecAdapter, *, metadata: Optional[dict[str, Any]] = None,
                        student: Optional[dict[str, Any]] = None) -> None:
    """Write the adapter's files into an existing (temporary) directory."""
    from safetensors.torch import save_file

    save_file(_state(adapter), str(directory / WEIGHTS_NAME), metadata={"format": ADAPTER_FORMAT})
    write_json(directory / CONFIG_NAME, {"format": ADAPTER_FORMAT, "architecture": adapter.config,
                                         **(metadata or {})})
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
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise ModelLoadError(f"not an adapter directory (no {CONFIG_NAME})", path=directory,
                             hint="give a directory written by `tava adapt`")
    config = read_json(path)
    if config.get("format") != ADAPTER_FORMAT or "architecture" not in config:
        raise ModelLoadError(f"{CONFIG_NAME} is not a tava adapter config (format {config.get('format')!r})",
                             path=path, hint="give a directory written by `tava adapt`")
    return config


def load_adapter(directory: str | Path, device: str = "cpu") -> Vec2VecAdapter:
    """The adapter saved in ``directory`` (safetensors only; eval mode)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    config = read_adapter_config(directory)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise ModelLoadError(f"adapter has no {WEIGHTS_NAME} (tava never unpickles .bin/.pt files)", path=directory)
    try:
        adapter = Vec2VecAdapter(**config["architecture"])
        adapter.load_state_dict(load_file(str(weights), device=device))
    except (SafetensorError, RuntimeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"adapter weights do not load: {first}", path=weights,
                             hint="the directory is damaged or from another version; re-run `tava adapt`") from None
    return adapter.to(device).eval()


def adapter_weights_hash(directory: str | Path) -> str:
    """sha256 of the weights file (part of an adapted encoder's fingerprint)."""
    return sha256_file(Path(directory) / WEIGHTS_NAME)
