"""Compressors compose with the rest of tava:

- ``CompressedEncoder``: any encoder (the teacher, or a student + adapter directory) followed by a
  compressor; registered as tava encoder type ``compressed``, so ``load_encoder(<compressor dir>)``,
  `tava embed --encoder <compressor dir>` and `tava evaluate` send documents and queries through it.
- ``compress_vector_dir``: compress vectors already on disk (a `tava embed` directory) into a new
  vector directory that `tava index` / `tava backfill` take as they are, without re-encoding.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..config import EncoderSpec
from ..encoders.base import Encoder, TextKind, combine_fingerprint
from ..errors import ConfigError, ModelLoadError
from ..io import read_json, read_vector_shard, sha256_file, write_vector_shard
from ..manifest import ShardRecord, VectorManifest, load_vector_manifest, save_manifest
from .io import ENCODER_MARKER, compressor_weights_hash, load_compressor, read_compressor_config
from .model import CompressionAdapter


def compressed_fingerprint(base_fingerprint: str, weights_hash: str) -> str:
    return combine_fingerprint(base_fingerprint, "compressor", weights_hash)


class CompressedEncoder(Encoder):
    """Encode with ``base``, then compress (batched, no gradients); unit-length output."""

    normalized = True

    def __init__(self, base: Encoder, compressor: CompressionAdapter, *, weights_hash: str,
                 name: Optional[str] = None) -> None:
        if base.dim != compressor.input_dim:
            raise ModelLoadError(f"the encoder gives {base.dim}-d vectors but the compressor expects "
                                 f"{compressor.input_dim}-d", hint="pair the compressor with the encoder it was trained on")
        self.base = base
        self.compressor = compressor.eval()
        self.weights_hash = weights_hash
        self.name = name or f"{base.name}+{compressor.method}-{compressor.output_dim}d"
        self.dim = compressor.output_dim
        self._fingerprint = compressed_fingerprint(base.fingerprint, weights_hash)

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def encode(self, texts: Sequence[str], *, kind: TextKind = "document", batch_size: int | None = None,
               show_progress: bool = False) -> np.ndarray:
        vectors = self.base.encode(texts, kind=kind, batch_size=batch_size, show_progress=show_progress)
        if len(vectors) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.compressor.map_numpy(vectors)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "base": self.base.info(), "compressor_sha256": self.weights_hash,
                "method": self.compressor.method}


def load_compressed_encoder(directory: str | Path, spec: Optional[EncoderSpec] = None) -> CompressedEncoder:
    """Factory for ``ENCODER_TYPES['compressed']``: ``tava_encoder.json`` names the base encoder's spec
    (a relative path is taken relative to the compressor directory). Device, dtype and batch size
    of ``spec`` apply to the base encoder too."""
    directory = Path(directory)
    marker = read_json(directory / ENCODER_MARKER)
    base_data = dict(marker.get("base") or {})
    if not base_data.get("model"):
        raise ModelLoadError("tava_encoder.json names no base encoder", path=directory / ENCODER_MARKER,
                             hint="re-run `tava compress --encoder MODEL` so the compressor knows its encoder")
    model = str(base_data["model"])
    if not Path(model).is_absolute() and (directory / model).exists():
        base_data["model"] = str((directory / model).resolve())
    if spec is not None:
        base_data.update(device=spec.device, dtype=spec.dtype, batch_size=spec.batch_size)
    from ..encoders import load_encoder  # the registry's lock is re-entrant

    base = load_encoder(EncoderSpec.model_validate(base_data))
    return CompressedEncoder(base, load_compressor(directory), weights_hash=compressor_weights_hash(directory),
                             name=directory.name)


def compress_vector_dir(compressor_dir: str | Path, vector_dir: str | Path, out_dir: str | Path) -> Path:
    """Compress every shard of ``vector_dir`` into ``out_dir`` (shards 1:1, manifest last).

    Raises before writing when the vectors are not the compressor's input (another encoder)."""
    compressor_dir, vector_dir, out_dir = Path(compressor_dir), Path(vector_dir), Path(out_dir)
    manifest = load_vector_manifest(vector_dir)
    config = read_compressor_config(compressor_dir)
    expected = (config.get("lineage") or {}).get("encoder", {}).get("fingerprint")
    if expected and manifest.fingerprint != expected:
        raise ConfigError(f"these vectors come from encoder {manifest.encoder.get('name')!r} "
                          f"({manifest.fingerprint[:12]}), the compressor was trained on {expected[:12]}",
                          path=vector_dir, hint="compress vectors of the encoder the compressor was trained on")
    compressor = load_compressor(compressor_dir)
    if manifest.dim != compressor.input_dim:
        raise ConfigError(f"vectors are {manifest.dim}-d, the compressor expects {compressor.input_dim}-d",
                          path=vector_dir, hint="compress vectors of the encoder the compressor was trained on")
    weights_hash = compressor_weights_hash(compressor_dir)
    fingerprint = compressed_fingerprint(manifest.fingerprint, weights_hash)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for record in manifest.shards:
        ids, vectors = read_vector_shard(vector_dir / record.path)
        target = out_dir / record.path
        write_vector_shard(target, ids, compressor.map_numpy(vectors), metadata={
            "fingerprint": fingerprint, "source_sha256": record.sha256, "dim": compressor.output_dim,
            "normalized": True, "encoder": f"{manifest.encoder.get('name')}+{compressor_dir.name}"})
        records.append(ShardRecord(path=record.path, rows=len(ids), sha256=sha256_file(target),
                                   source_sha256=record.sha256))
    encoder_info = {"name": f"{manifest.encoder.get('name')}+{compressor_dir.name}", "fingerprint": fingerprint,
                    "dim": compressor.output_dim, "normalized": True, "type": "CompressedEncoder",
                    "base": manifest.encoder, "compressor_sha256": weights_hash, "method": compressor.method}
    save_manifest(out_dir, VectorManifest(dataset=manifest.dataset, collection=manifest.collection,
                                          encoder=encoder_info, dim=compressor.output_dim, normalized=True,
                                          shards=records))
    return out_dir
