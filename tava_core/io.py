"""Files that cannot half-happen, checksums, manifests and the Parquet shard contracts.

Text shard:   Parquet with columns ``id`` (string), ``text`` (string), ``title`` (string, may be
              empty) and ``source`` (string).
Vector shard: Parquet with columns ``id`` (string) and ``vector`` (fixed_size_list<float32>[dim]);
              its schema metadata carries the encoder fingerprint, dim and source shard checksum.

Every write goes to a temporary file in the destination's directory, is fsynced and then
``os.replace``d into place, so a reader sees either the old file or the new one, never a part.
Manifests are written last: readers trust only what a manifest lists.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import InputError, IntegrityError

SCHEMA_VERSION = 1
TEXT_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("text", pa.string()),
    ("title", pa.string()),
    ("source", pa.string()),
])
_META_KEY = b"tava"


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so memory stays flat."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def stable_hash(obj: Any, length: int = 16) -> str:
    """Short hex digest of any JSON-serialisable object (keys sorted, so order does not matter)."""
    payload = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(payload).hexdigest()[:length]


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every platform allows opening a directory.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        raise


def write_json(path: str | Path, obj: Any) -> Path:
    """Write JSON atomically (pretty, keys sorted) and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    return Path(path)


def config_format(directory: str | Path) -> str | None:
    """The ``format`` a module directory's ``config.json`` names (an adapter's, a compressor's), or None when
    there is no readable one: a cheap look before loading anything."""
    try:
        value = json.loads((Path(directory) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return value.get("format") if isinstance(value, dict) else None


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError("file not found", path=path) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc.msg})", path=path, line=exc.lineno,
                         hint="the file is damaged; delete it and re-run the step that wrote it") from None


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Build a whole directory in a temporary sibling, then swap it into place.

    The previous directory (if any) stays intact until the new one is complete; on failure
    nothing of the new one is left behind.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        old = None
        if final.exists():
            old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ----------------------------------------------------------------------------- text shards

def write_text_shard(path: str | Path, rows: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """Write a text shard atomically; returns ``{"path", "rows", "sha256"}``."""
    table = pa.table({name: pa.array(list(rows.get(name) or [""] * len(rows["id"])), pa.string())
                      for name in TEXT_SCHEMA.names}, schema=TEXT_SCHEMA)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return {"path": Path(path).name, "rows": table.num_rows, "sha256": sha256_file(path)}


def read_text_shard(path: str | Path) -> pa.Table:
    """Read a text shard (all four columns)."""
    return pq.read_table(path, columns=TEXT_SCHEMA.names)


def document_texts(table: pa.Table) -> list[str]:
    """The text an encoder sees for each row: ``title + " " + text`` where a title exists.

    This is how BEIR (and the published SciFact scores) build document strings.
    """
    titles = table.column("title").to_pylist() if "title" in table.column_names else None
    texts = table.column("text").to_pylist()
    if titles is None:
        return texts
    return [f"{title} {text}" if title else text for title, text in zip(titles, texts, strict=False)]


# --------------------------------------------------------------------------- vector shards

def vector_schema(dim: int, metadata: Mapping[str, Any] | None = None) -> pa.Schema:
    schema = pa.schema([("id", pa.string()), ("vector", pa.list_(pa.float32(), dim))])
    if metadata is not None:
        schema = schema.with_metadata({_META_KEY: json.dumps(dict(metadata), sort_keys=True)})
    return schema


def write_vector_shard(path: str | Path, ids: Sequence[str], vectors: np.ndarray,
                       metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write ``id`` + ``vector`` rows atomically; ``metadata`` goes into the Parquet schema."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise ValueError(f"vectors of shape {vectors.shape} do not match {len(ids)} ids")
    dim = int(vectors.shape[1])
    flat = pa.array(vectors.reshape(-1), pa.float32())
    column = pa.FixedSizeListArray.from_arrays(flat, dim)
    table = pa.Table.from_arrays([pa.array(list(ids), pa.string()), column],
                                 schema=vector_schema(dim, metadata))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="none")  # float noise does not compress
    return {"path": Path(path).name, "rows": len(ids), "dim": dim, "sha256": sha256_file(path)}


def vector_shard_metadata(path: str | Path) -> dict[str, Any]:
    """The tava metadata stored in a vector shard's schema (``{}`` when there is none)."""
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(_META_KEY)
    return json.loads(raw) if raw else {}


def read_vector_shard(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read ``(ids, vectors)`` from a vector shard; vectors are float32 ``(n, dim)``.

    Accepts float16 vectors too (as in ../shared/data/vectors), converting to float32.
    """
    path = Path(path)
    try:
        table = pq.read_table(path, columns=["id", "vector"])
    except (OSError, pa.ArrowInvalid) as exc:
        raise IntegrityError(f"cannot read vector shard ({exc})", path=path,
                             hint="it may be damaged; delete it and re-run `tava embed`") from None
    return table.column("id").to_pylist(), vectors_from_column(table.column("vector"), path)


def vectors_from_column(column: pa.ChunkedArray, path: str | Path | None = None) -> np.ndarray:
    """A fixed-size-list column as a float32 ``(n, dim)`` array."""
    if not pa.types.is_fixed_size_list(column.type):
        raise IntegrityError(f"column 'vector' has type {column.type}, expected a fixed-size list",
                             path=path)
    dim = column.type.list_size
    if column.num_chunks == 0:
        return np.zeros((0, dim), dtype=np.float32)
    values = column.combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.float32).reshape(-1, dim)
