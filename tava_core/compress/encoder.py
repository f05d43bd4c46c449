"""Compressors compose with the rest of tava:

- ``CompressedEncoder``: any encoder (the teacher, or a student + adapter directory) followed by a
  compressor; registered as tava encoder type ``compressed``, so ``load_encoder(<compressor dir>)``,
  `tava embed --encoder <compressor dir>` and `tava evaluate` send documents and queries through it.
- ``compress_vector_dir``: compress vectors already on disk (a `tava embed` directory) into a new
  vector directory that `tava index` / `tava backfill` take as they are, without re-encoding.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from ..config import EncoderSpec
from ..encoders.base import Encoder, combine_fingerprint
from ..encoders.mapped import MappedEncoder, load_inner_encoder
from ..errors import ConfigError
from ..io import read_vector_shard, sha256_file, write_vector_shard
from ..manifest import ShardRecord, VectorManifest, load_vector_manifest, save_manifest
from .io import compressor_weights_hash, load_compressor, read_compressor_config
from .model import CompressionAdapter


def compressed_fingerprint(base_fingerprint: str, weights_hash: str) -> str:
    return combine_fingerprint(base_fingerprint, "compressor", weights_hash)


class CompressedEncoder(MappedEncoder):
    """Encode with ``base``, then compress (batched, no gradients); unit-length output."""

    def __init__(self, base: Encoder, compressor: CompressionAdapter, *, weights_hash: str,
                 name: Optional[str] = None) -> None:
        super().__init__(base, compressor.eval(), fingerprint=compressed_fingerprint(base.fingerprint, weights_hash),
                         name=name or f"{base.name}+{compressor.method}-{compressor.output_dim}d",
                         roles=("encoder", "compressor"))
        self.weights_hash = weights_hash
        self.method = compressor.method

    def info(self) -> dict[str, Any]:
        return {**super().info(), "base": self.inner.info(), "compressor_sha256": self.weights_hash,
                "method": self.method}


def load_compressed_encoder(directory: str | Path, spec: Optional[EncoderSpec] = None) -> CompressedEncoder:
    """Factory for ``ENCODER_TYPES['compressed']``: ``tava_encoder.json`` names the base encoder's spec."""
    base = load_inner_encoder(directory, "base", spec,
                              hint="re-run `tava compress --encoder MODEL` so the compressor knows its encoder")
    encoder = CompressedEncoder(base, load_compressor(directory), weights_hash=compressor_weights_hash(directory),
                                name=Path(directory).name)
    encoder.directory = Path(directory)
    return encoder


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
