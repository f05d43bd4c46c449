"""An encoder followed by a small vector map (a Stage B adapter, a compressor), itself an
``Encoder``; and how such a directory names its inner encoder (``tava_encoder.json``)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Protocol, Sequence

import numpy as np

from ..config import EncoderSpec
from ..errors import ModelLoadError
from ..io import read_json, write_json
from ..modeldir import ENCODER_MARKER
from .base import Encoder, TextKind


class VectorMap(Protocol):
    # read-only: adapters expose their dims as properties
    @property
    def input_dim(self) -> int: ...

    @property
    def output_dim(self) -> int: ...

    def map_numpy(self, vectors: np.ndarray) -> np.ndarray: ...


class MappedEncoder(Encoder):
    """Encode with ``inner``, then map (batched, no gradients); unit-length output."""

    normalized = True
    # the directory the map was loaded from (set by the loaders; None for one built in memory): named in errors
    directory: Optional[Path] = None

    def __init__(self, inner: Encoder, mapper: VectorMap, *, fingerprint: str, name: str,
                 roles: tuple[str, str]) -> None:
        inner_role, map_role = roles  # e.g. ("student", "adapter"): for the error message
        if inner.dim != mapper.input_dim:
            raise ModelLoadError(f"the {inner_role} gives {inner.dim}-d vectors but the {map_role} expects "
                                 f"{mapper.input_dim}-d", hint=f"pair the {map_role} with the {inner_role} it was trained on")
        self.inner = inner
        self.mapper = mapper
        self.name = name
        self.dim = mapper.output_dim
        self._fingerprint = fingerprint

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def encode(self, texts: Sequence[str], *, kind: TextKind = "document", batch_size: int | None = None,
               show_progress: bool = False) -> np.ndarray:
        vectors = self.inner.encode(texts, kind=kind, batch_size=batch_size, show_progress=show_progress)
        if len(vectors) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.mapper.map_numpy(vectors)


def load_inner_encoder(directory: str | Path, key: str, spec: Optional[EncoderSpec], *, hint: str) -> Encoder:
    """The encoder ``tava_encoder.json[key]`` names (a path relative to ``directory`` is resolved
    against it). Device, dtype, batch size and backend of ``spec`` (the outer spec) apply to it too."""
    directory = Path(directory)
    data = dict(read_json(directory / ENCODER_MARKER).get(key) or {})
    if not data.get("model"):
        raise ModelLoadError(f"{ENCODER_MARKER} names no {key} encoder", path=directory / ENCODER_MARKER, hint=hint)
    model = str(data["model"])
    if Path(model).is_absolute() and not Path(model).exists():
        # a directory the marker names that is gone (a moved or copied home): say which file names it; the
        # loader's own error would only list the built-in aliases
        raise ModelLoadError(f"{ENCODER_MARKER} names its {key} at {model}, which does not exist (moved or deleted?)",
                             path=directory / ENCODER_MARKER,
                             hint=f"point '{key}.model' in that file at the {key}'s directory (a registry version "
                                  f"that `tava run` published carries its own copy, named relatively), or {hint}")
    return load_named_encoder(directory, data, spec)


def rename_inner_encoder(directory: str | Path, key: str, model: str) -> None:
    """Point ``tava_encoder.json[key]`` (e.g. an adapter's student) at ``model``, the same encoder
    elsewhere (a published version's own copy, a moved home's); its other settings are kept, and a marker
    that already names it is left as it is."""
    marker = Path(directory) / ENCODER_MARKER
    data = read_json(marker)
    if not isinstance(data.get(key), dict):
        raise ModelLoadError(f"{ENCODER_MARKER} names no {key} encoder", path=marker)
    if data[key].get("model") != str(model):
        data[key] = {**data[key], "model": str(model)}
        write_json(marker, data)


def load_named_encoder(directory: Path, data: dict, spec: Optional[EncoderSpec]) -> Encoder:
    """The encoder an ``EncoderSpec`` dict saved in ``directory``'s marker names (with a model): a relative
    model path resolves against ``directory``; the outer ``spec``'s device, dtype, batch size and backend
    apply to it."""
    data = dict(data)
    model = str(data["model"])
    if not Path(model).is_absolute() and (directory / model).exists():
        data["model"] = str((directory / model).resolve())
    if spec is not None:
        data.update(device=spec.device, dtype=spec.dtype, batch_size=spec.batch_size, backend=spec.backend)
    from . import load_encoder  # the registry's lock is re-entrant

    return load_encoder(EncoderSpec.model_validate(data))

