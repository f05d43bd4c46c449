"""Compressor directories: ``model.safetensors`` + ``config.json`` (+ ``tava_encoder.json`` naming
the encoder whose vectors it compresses, which makes the directory a loadable encoder).
Loading never unpickles."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from ..errors import ModelLoadError
from ..io import read_json, sha256_file, write_json
from .model import CompressionAdapter

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
ENCODER_MARKER = "tava_encoder.json"
COMPRESSOR_FORMAT = "tava-compressor/1"
ENCODER_TYPE = "compressed"


def write_compressor_files(directory: str | Path, model: CompressionAdapter, *,
                           metadata: Optional[dict[str, Any]] = None,
                           base_encoder: Optional[dict[str, Any]] = None) -> Path:
    """Write a compressor into ``directory`` (made if missing; the caller makes it atomic, e.g.
    inside ``io.atomic_directory``). ``base_encoder`` is an ``EncoderSpec`` dump."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # safetensors refuses shared or non-contiguous tensors: store plain copies
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": COMPRESSOR_FORMAT})
    write_json(directory / CONFIG_NAME, {"format": COMPRESSOR_FORMAT, "architecture": model.config,
                                         **(metadata or {})})
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
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise ModelLoadError(f"not a compressor directory (no {CONFIG_NAME})", path=directory,
                             hint="give a directory written by `tava compress` (<run>/<method>-<dim>d)")
    config = read_json(path)
    if config.get("format") != COMPRESSOR_FORMAT or "architecture" not in config:
        raise ModelLoadError(f"{CONFIG_NAME} is not a tava compressor config (format {config.get('format')!r})",
                             path=path, hint="give a directory written by `tava compress`")
    return config


def load_compressor(directory: str | Path, device: str = "cpu") -> CompressionAdapter:
    """The compressor saved in ``directory`` (safetensors only; eval mode)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    config = read_compressor_config(directory)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise ModelLoadError(f"compressor has no {WEIGHTS_NAME} (tava never unpickles .bin/.pt files)",
                             path=directory)
    try:
        model = CompressionAdapter(**config["architecture"])
        model.load_state_dict(load_file(str(weights), device=device))
    except (SafetensorError, RuntimeError, TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"compressor weights do not load: {first}", path=weights,
                             hint="the directory is damaged or from another version; re-run `tava compress`") from None
    return model.to(device).eval()


def compressor_weights_hash(directory: str | Path) -> str:
    """sha256 of the weights file (part of a compressed encoder's fingerprint)."""
    return sha256_file(Path(directory) / WEIGHTS_NAME)
