"""An encoder's output dimension read from its files, without loading it.

The CLI checks its inputs before torch is imported or a server starts (``flows/commands/checks.py``):
a store's vectors of the wrong model (mpnet's 768-d given with the default 384-d teacher) should be
refused in a second, not after ingestion. Importing ``tava_core.encoders`` costs torch (~2 s), so the
dims are read here from the same files the encoder reads: the built-in aliases' from a table (checked
against the loaded encoders by ``tests/encoders/test_model_dims.py``), a sentence-transformers or Hugging
Face directory's from its last Dense module or its ``config.json``. Anything else (a tava model
directory, a model2vec one) is ``None``: the stage that loads it checks.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

from .config import TEACHER_ALIAS
from .errors import ModelLoadError

MPNET_ALIAS = "all-mpnet-base-v2"
# The built-in aliases' output dims (encoders.ALIASES names each of them, also as sentence-transformers/<name>).
ALIAS_DIMS = {TEACHER_ALIAS: 384, "teacher": 384, MPNET_ALIAS: 768}
HIDDEN_SIZE_KEYS = ("hidden_size", "d_model", "dim", "n_embd")
ENCODER_MARKER = "tava_encoder.json"   # a tava model directory's marker (modeldir, encoders): its type, not a dim


def transformer_output_dim(directory: Path, dense_dirs: Sequence[Path]) -> int:
    """What a transformer encoder outputs: its last Dense module's ``out_features``, else the hidden size."""
    if dense_dirs:
        return int(json.loads((Path(dense_dirs[-1]) / "config.json").read_text())["out_features"])
    config = json.loads((Path(directory) / "config.json").read_text())
    for key in HIDDEN_SIZE_KEYS:
        if key in config:
            return int(config[key])
    raise ModelLoadError("config.json names no hidden size (hidden_size / d_model / dim)",
                         path=Path(directory) / "config.json")


def dense_module_dirs(directory: Path) -> list[Path]:
    """The Dense modules of a sentence-transformers directory, in order (none without ``modules.json``)."""
    modules_file = Path(directory) / "modules.json"
    if not modules_file.is_file():
        return []
    return [Path(directory) / m.get("path", "") for m in json.loads(modules_file.read_text())
            if m.get("type", "").rsplit(".", 1)[-1] == "Dense"]


def declared_dim(model: str) -> Optional[int]:
    """The output dim of the encoder ``model`` names (an alias or a directory), or None when it cannot be
    read cheaply (a tava or model2vec directory, a missing or unreadable one: the loading stage says why)."""
    name = model.removeprefix("sentence-transformers/")
    if name in ALIAS_DIMS:
        return ALIAS_DIMS[name]
    directory = Path(model).expanduser()
    if not (directory / "config.json").is_file() or (directory / ENCODER_MARKER).exists():
        return None
    try:
        if json.loads((directory / "config.json").read_text()).get("model_type") == "model2vec":
            return None
        return transformer_output_dim(directory, dense_module_dirs(directory))
    except (OSError, ValueError, KeyError, ModelLoadError):
        return None


def aliases_of_dim(dim: int) -> list[str]:
    """Built-in aliases whose vectors have ``dim`` coordinates (for a hint: which teacher made these?)."""
    return [name for name, d in ALIAS_DIMS.items() if d == dim and name != "teacher"]
