"""Small torch modules saved as a directory: ``model.safetensors`` + ``config.json``
(``{"format", "architecture", ...}``). Adapters (Stage B) and compressors share it; loading
never unpickles."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

from torch import nn

from .errors import ModelLoadError
from .io import read_json, sha256_file, write_json
from .model_dims import ENCODER_MARKER  # noqa: F401 - defined torch-free there, imported from here

ModuleT = TypeVar("ModuleT", bound=nn.Module)

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def write_module_files(directory: str | Path, module: nn.Module, *, fmt: str,
                       metadata: Optional[dict[str, Any]] = None) -> Path:
    """Weights and config of ``module`` (which has a ``config`` dict of constructor arguments) into
    ``directory``; the caller makes it atomic (inside ``io.atomic_directory``)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # safetensors refuses shared or non-contiguous tensors: store plain copies.
    state = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": fmt})
    write_json(directory / CONFIG_NAME, {"format": fmt, "architecture": module.config, **(metadata or {})})
    return directory


def read_module_config(directory: str | Path, *, fmt: str, what: str, hint: str) -> dict[str, Any]:
    """``config.json`` of a module directory of format ``fmt``; ``what`` is e.g. 'an adapter'."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise ModelLoadError(f"not {what} directory (no {CONFIG_NAME})", path=directory, hint=hint)
    config = read_json(path)
    if config.get("format") != fmt or "architecture" not in config:
        raise ModelLoadError(f"{CONFIG_NAME} is not a tava {what.split()[-1]} config (format {config.get('format')!r})",
                             path=path, hint=hint)
    return config


def load_module(directory: str | Path, build: Callable[..., ModuleT], *, fmt: str, what: str, hint: str,
                device: str = "cpu") -> ModuleT:
    """The module saved in ``directory``: ``build(**architecture)`` then its safetensors weights;
    eval mode. A missing or damaged weights file is a ``ModelLoadError`` naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    config = read_module_config(directory, fmt=fmt, what=what, hint=hint)
    weights = directory / WEIGHTS_NAME
    name = what.split()[-1]
    if not weights.is_file():
        raise ModelLoadError(f"{name} has no {WEIGHTS_NAME} (tava never unpickles .bin/.pt files)", path=directory)
    try:
        module = build(**config["architecture"])
        module.load_state_dict(load_file(str(weights), device=device))
    except (SafetensorError, RuntimeError, TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{name} weights do not load: {first}", path=weights,
                             hint=f"the directory is damaged or from another version; {hint}") from None
    return module.to(device).eval()


def weights_hash(directory: str | Path) -> str:
    """sha256 of the weights file (part of the fingerprint of an encoder built on the module)."""
    return sha256_file(Path(directory) / WEIGHTS_NAME)
