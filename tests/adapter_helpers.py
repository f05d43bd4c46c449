"""Synthetic vectors and vector directories for the adapter tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tava_core.io import write_vector_shard
from tava_core.manifest import ShardRecord, VectorManifest, save_manifest


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def synthetic(n: int = 1200, dim: int = 16, kind: str = "nonlinear", seed: int = 0):
    rng = np.random.default_rng(seed)
    teacher = unit(rng.standard_normal((n, dim)))
    a = np.linalg.qr(rng.standard_normal((dim, dim)))[0] * 2.0  # scaled rotation: invertible
    student = teacher @ a if kind == "linear" else np.tanh(teacher @ a) + 0.3 * (teacher @ a) ** 2
    return unit(student), teacher


def write_vector_dir(directory: Path, ids, vectors, *, fingerprint: str = "f" * 24, name: str = "enc",
                     dataset: str = "d", collection: str = "texts") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    record = write_vector_shard(directory / "shard-00000.parquet", list(ids), vectors,
                                metadata={"fingerprint": fingerprint, "dim": vectors.shape[1]})
    save_manifest(directory, VectorManifest(
        dataset=dataset, collection=collection, dim=int(vectors.shape[1]), normalized=True,
        encoder={"name": name, "fingerprint": fingerprint, "dim": int(vectors.shape[1]), "normalized": True},
        shards=[ShardRecord(path=record["path"], rows=record["rows"], sha256=record["sha256"])]))
    return directory
