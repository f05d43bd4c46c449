"""Translate a stored vector collection into another model's space with a saved adapter.

A store embedded by one model moves into another model's space without its texts: every vector
goes through the adapter (``tava adapt``, paired or unpaired) -- or through its inverse, when the
adapter directory holds one (``reverse/``). Two kinds of store:

- **vector shards** (``tava embed``'s Parquet shards + manifest): one translated shard per source
  shard, each stamped with the source shard's sha256 and the translation's fingerprint
  (source encoder fingerprint + adapter weights + direction), so a re-run skips the shards already
  done and redoes only the rest; each shard is written to a temp file and renamed, and the
  manifest comes last. ``tava index --vectors OUT`` builds on the result.
- **a LanceDB table** (``tava backfill``'s ``id``/``text``/``vector``/``encoder`` rows): read in
  batches, translated and ``merge_insert``-ed on ``id`` into a new table; a state file records the
  batches done, so a crashed run resumes and re-running doubles nothing.

Refused before any work, with the fix: vectors whose dimension or encoder fingerprint does not
match the adapter's input side, vectors already in the adapter's output space, an empty
collection, NaN/inf vectors, an inverse the adapter does not have.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
from pydantic import Field, model_validator

from .adapter.io import ADAPTER_FORMAT, adapter_weights_hash, load_adapter, read_adapter_config
from .adapter.model import Vec2VecAdapter
from .config import TavaModel
from .embed import vector_shard_is_current
from .encoders.base import combine_fingerprint
from .errors import ConfigError, InputError, IntegrityError
from .home import TavaHome, slug
from .io import (
    config_format,
    read_json,
    read_vector_shard,
    sha256_file,
    vector_shard_metadata,
    write_json,
    write_vector_shard,
)
from .manifest import ShardRecord, VectorManifest, load_vector_manifest, save_manifest

log = logging.getLogger(__name__)

REVERSE_DIR = "reverse"  # an adapter directory's inverse map (teacher -> student), when it has one
_FINGERPRINT_HINT = ("translate vectors made by the adapter's input encoder, or pass --no-check-fingerprint "
                     "if you are sure they come from the same model")


class TranslateConfig(TavaModel):
    """What `tava translate` moves into another model's space, with which adapter, and where to."""

    adapter: str = Field(..., description=(
        "Adapter directory (written by `tava adapt`), or a compressor directory (`tava compress`: stored vectors "
        "to fewer dims, forward only)."))
    vectors: Optional[str] = Field(None, description=(
        "Vector directory to translate (manifest.json + shards, as `tava embed` writes). Give this or --table."))
    table: Optional[str] = Field(None, description="LanceDB table to translate (as `tava backfill` writes).")
    uri: Optional[str] = Field(None, description="LanceDB database directory; empty = <home>/lancedb.")
    direction: Literal["forward", "inverse"] = Field("forward", description=(
        "'forward': the adapter's input space -> its output space; 'inverse': back, through the "
        "adapter's reverse map (only adapters saved with one, e.g. unpaired or linear ones)."))
    out: Optional[str] = Field(None, description=(
        "Output vector directory; empty = <home>/vectors/<dataset>/<collection>/<encoder>-<adapter>[-inverse]-<fingerprint>."))
    out_table: Optional[str] = Field(None, description="Output LanceDB table; empty = <table>__<adapter name>.")
    check_fingerprint: bool = Field(True, description=(
        "Refuse vectors whose encoder fingerprint differs from the one the adapter was trained on "
        "(when both are known)."))
    batch_rows: int = Field(50_000, ge=1, description="LanceDB rows translated per batch (one commit each).")

    @model_validator(mode="after")
    def _one_source(self) -> "TranslateConfig":
        if bool(self.vectors) == bool(self.table):
            raise ConfigError("give exactly one of --vectors (a vector directory) and --table (a LanceDB table)")
        return self


@dataclass
class Translation:
    """A loaded map: the module, where it came from, and what it expects."""

    module: Any                 # a Vec2VecAdapter, or a CompressionAdapter (both map_numpy)
    adapter_dir: Path
    direction: str
    adapter_sha256: str
    input_dim: int
    output_dim: int
    expected_fingerprint: Optional[str]  # encoder fingerprint of the adapter's input side, if recorded
    output_fingerprint: Optional[str]    # ... of its output side (vectors already there are refused)
    output_encoder: Optional[str]
    compressor: bool = False    # a `tava compress` map: its vectors are what its compressed encoder makes

    def fingerprint(self, source_fingerprint: str) -> str:
        if self.compressor:   # the same fingerprint as the compressed encoder, so its queries search these vectors
            from .compress.encoder import compressed_fingerprint

            return compressed_fingerprint(source_fingerprint, self.adapter_sha256)
        return combine_fingerprint(source_fingerprint, self.adapter_sha256, self.direction)

    def info(self) -> dict[str, Any]:
        return {"path": str(self.adapter_dir), "sha256": self.adapter_sha256, "direction": self.direction,
                "name": self.adapter_dir.name, "input_dim": self.input_dim, "output_dim": self.output_dim}

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        # Parquet hands back read-only arrays, which torch warns about: give it a writable one
        return self.module.map_numpy(np.require(vectors, np.float32, ["C", "W"]))


def _side_fingerprint(side: Any) -> Optional[str]:
    return side.get("fingerprint") if isinstance(side, dict) else None


def load_translation(adapter_dir: str | Path, direction: str = "forward") -> Translation:
    """The adapter (or its inverse) in ``adapter_dir`` with the fingerprints its lineage records; or the compressor
    there (`tava compress`: stored vectors to fewer dims without re-encoding them)."""
    directory = Path(adapter_dir).expanduser().resolve()
    from .compress.config import COMPRESSOR_FORMAT

    if config_format(directory) == COMPRESSOR_FORMAT:
        return _compressor_translation(directory, direction)
    config = read_adapter_config(directory)
    lineage = config.get("lineage", {}) or {}
    student, teacher = lineage.get("student"), lineage.get("teacher")
    if direction == "forward":
        module_dir, expected, output = directory, student, teacher
    else:
        module_dir, expected, output = directory / REVERSE_DIR, teacher, student
        if not (module_dir / "config.json").is_file():
            raise ConfigError("this adapter has no inverse map (no reverse/ directory)", path=directory,
                              hint="translate forward, or train an adapter that saves one (`tava adapt --mode "
                                   "unpaired`, or a linear map saved with `save_linear_adapter`)")
    module = load_adapter(module_dir)
    return Translation(module=module, adapter_dir=directory, direction=direction,
                       adapter_sha256=adapter_weights_hash(module_dir), input_dim=module.input_dim,
                       output_dim=module.output_dim, expected_fingerprint=_side_fingerprint(expected),
                       output_fingerprint=_side_fingerprint(output),
                       output_encoder=output.get("name") if isinstance(output, dict) else None)


def _compressor_translation(directory: Path, direction: str) -> Translation:
    from .compress.io import compressor_weights_hash, load_compressor, read_compressor_config

    if direction != "forward":
        raise ConfigError("a compressor has no inverse map: it keeps fewer dimensions than it reads", path=directory,
                          hint="translate forward (the default)")
    lineage = read_compressor_config(directory).get("lineage") or {}
    module = load_compressor(directory)
    return Translation(module=module, adapter_dir=directory, direction="forward",
                       adapter_sha256=compressor_weights_hash(directory), input_dim=module.input_dim,
                       output_dim=module.output_dim, expected_fingerprint=_side_fingerprint(lineage.get("encoder")),
                       output_fingerprint=None, output_encoder=None, compressor=True)


def check_source(translation: Translation, *, dim: int, fingerprint: Optional[str], rows: int, where: Path,
                 check_fingerprint: bool = True) -> None:
    """Refuse a collection the translation cannot apply to (before any work)."""
    if rows == 0:
        raise InputError("the collection holds no vectors: nothing to translate", path=where,
                         hint="embed a non-empty collection first (`tava embed` / `tava backfill`)")
    if fingerprint and translation.output_fingerprint and fingerprint == translation.output_fingerprint:
        raise ConfigError(f"these vectors are already in the adapter's output space (encoder fingerprint "
                          f"{fingerprint[:12]}, the same as the adapter's target): there is nothing to translate",
                          path=where, hint="use them as they are, or translate with --direction "
                                           + ("forward" if translation.direction == "inverse" else "inverse"))
    if dim != translation.input_dim:
        raise ConfigError(f"the vectors are {dim}-d but the adapter ({translation.direction}) takes "
                          f"{translation.input_dim}-d vectors", path=where,
                          hint="use the adapter trained from this encoder's space"
                               + (", or --direction inverse" if dim == translation.output_dim else ""))
    if (check_fingerprint and fingerprint and translation.expected_fingerprint
            and fingerprint != translation.expected_fingerprint):
        raise ConfigError(f"the vectors were made by encoder fingerprint {fingerprint[:12]}, the adapter was "
                          f"trained on {translation.expected_fingerprint[:12]}", path=where, hint=_FINGERPRINT_HINT)


def check_finite(vectors: np.ndarray, ids: list[str], where: Path) -> None:
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        first = int(np.argmax(bad))
        raise InputError(f"{int(bad.sum())} vectors hold NaN or inf (first: row {first}, id {ids[first]!r})",
                         path=where, hint="re-embed this collection (`tava embed`); NaN vectors cannot be translated")


# ----------------------------------------------------------------------------- vector shards

def output_encoder_info(translation: Translation, source: VectorManifest) -> dict[str, Any]:
    """The translated collection's ``encoder`` record: a name, a fingerprint and its lineage."""
    name = f"{source.encoder.get('name', 'vectors')}+{translation.adapter_dir.name}"
    if translation.direction == "inverse":
        name += "-inverse"
    return {"name": name, "fingerprint": translation.fingerprint(source.fingerprint), "dim": translation.output_dim,
            "normalized": True, "type": "translated", "target_encoder": translation.output_encoder,
            "source_encoder": source.encoder, "adapter": translation.info()}


def translate_shard(translation: Translation, source_path: Path, source_sha256: str, out_path: Path,
                    fingerprint: str, encoder_name: str) -> tuple[ShardRecord, bool]:
    """Translate one shard (skipped when ``out_path`` already holds it); returns (record, translated?)."""
    # kind=None: a translated shard's fingerprint already names the translation
    if not vector_shard_is_current(out_path, fingerprint=fingerprint, source_sha256=source_sha256, kind=None):
        if sha256_file(source_path) != source_sha256:
            raise IntegrityError("vector shard changed since its manifest was written (sha256 mismatch)",
                                 path=source_path, hint="re-run the step that made it (`tava embed`)")
        ids, vectors = read_vector_shard(source_path)
        check_finite(vectors, ids, source_path)
        kind = vector_shard_metadata(source_path).get("kind", "document")
        written = write_vector_shard(out_path, ids, translation(vectors), metadata={
            "fingerprint": fingerprint, "source_sha256": source_sha256, "kind": kind,
            "dim": translation.output_dim, "normalized": True, "encoder": encoder_name,
            "adapter_sha256": translation.adapter_sha256, "direction": translation.direction})
        return ShardRecord(path=out_path.name, rows=len(ids), sha256=written["sha256"],
                           source_sha256=source_sha256), True
    rows = len(read_vector_shard(out_path)[0])
    return ShardRecord(path=out_path.name, rows=rows, sha256=sha256_file(out_path), source_sha256=source_sha256), False


@dataclass
class ShardPlan:
    """What translating one vector directory involves (the flow maps a task over ``jobs``)."""

    source_dir: Path
    out_dir: Path
    source: VectorManifest
    encoder: dict[str, Any]
    jobs: list[tuple[str, str, str]]  # (source shard path, its sha256, output shard path)


def plan_vector_dir(config: TranslateConfig, home: TavaHome, translation: Translation) -> ShardPlan:
    assert config.vectors is not None
    source_dir = Path(config.vectors).expanduser().resolve()
    source = load_vector_manifest(source_dir)
    check_source(translation, dim=source.dim, fingerprint=source.encoder.get("fingerprint"), rows=source.rows,
                 where=source_dir, check_fingerprint=config.check_fingerprint)
    encoder = output_encoder_info(translation, source)
    out_dir = (Path(config.out).expanduser().resolve() if config.out
               else home.vector_dir(source.dataset, source.collection, encoder["name"], encoder["fingerprint"]))
    if out_dir == source_dir:
        raise ConfigError("the output directory is the source directory", path=out_dir,
                          hint="give another --out (or leave it empty for the default)")
    jobs = [(str(source_dir / shard.path), shard.sha256, str(out_dir / Path(shard.path).name))
            for shard in source.shards]
    return ShardPlan(source_dir, out_dir, source, encoder, jobs)


def finish_vector_dir(plan: ShardPlan, records: list[ShardRecord]) -> VectorManifest:
    """Write the manifest last: only then do readers (``tava index``) see the translated collection."""
    manifest = VectorManifest(dataset=plan.source.dataset, collection=plan.source.collection, encoder=plan.encoder,
                              dim=plan.encoder["dim"], normalized=True, shards=records)
    save_manifest(plan.out_dir, manifest)
    return manifest


def translate_vector_dir(config: TranslateConfig, home: TavaHome | None = None) -> dict[str, Any]:
    """Translate every shard of ``config.vectors`` in this process; returns a summary record."""
    home = home or TavaHome()
    translation = load_translation(config.adapter, config.direction)
    plan = plan_vector_dir(config, home, translation)
    started = time.perf_counter()
    results = [translate_shard(translation, Path(src), sha, Path(out), plan.encoder["fingerprint"],
                               plan.encoder["name"]) for src, sha, out in plan.jobs]
    manifest = finish_vector_dir(plan, [record for record, _ in results])
    return summary(plan, manifest, translated=sum(done for _, done in results), seconds=time.perf_counter() - started)


def summary(plan: ShardPlan, manifest: VectorManifest, *, translated: int, seconds: float) -> dict[str, Any]:
    rows = sum(r.rows for r in manifest.shards)
    return {"out": str(plan.out_dir), "source": str(plan.source_dir), "rows": rows, "dim": manifest.dim,
            "shards": len(manifest.shards), "shards_translated": translated,
            "shards_skipped": len(manifest.shards) - translated, "fingerprint": manifest.fingerprint,
            "source_fingerprint": plan.source.fingerprint, "adapter": plan.encoder["adapter"],
            "seconds": round(seconds, 3)}


# ----------------------------------------------------------------------------- LanceDB

def _lance_state_path(uri: Path, table: str) -> Path:
    return uri / "_tava" / f"{slug(table)}.translate.json"


def translate_table(config: TranslateConfig, home: TavaHome | None = None) -> dict[str, Any]:
    """Translate a LanceDB table into a new table (resumable by batch, idempotent by id)."""
    import pyarrow as pa

    from .vectorstore import ENCODER_COLUMN, VECTOR_COLUMN, _connect, _open_table, default_uri, upsert

    assert config.table is not None
    home = home or TavaHome()
    uri = Path(config.uri).expanduser().resolve() if config.uri else default_uri(home)
    db = _connect(uri)
    where = uri / f"{config.table}.lance"
    source = _open_table(db, config.table)
    if source is None:
        raise InputError(f"no LanceDB table {config.table!r}", path=uri, hint="check --table and --uri")
    translation = load_translation(config.adapter, config.direction)
    data = source.to_arrow()
    if VECTOR_COLUMN not in data.column_names:
        raise InputError(f"table {config.table!r} has no {VECTOR_COLUMN!r} column", path=where)
    vtype = data.schema.field(VECTOR_COLUMN).type
    dim = vtype.list_size if pa.types.is_fixed_size_list(vtype) else -1
    encoders = (set(data.column(ENCODER_COLUMN).to_pylist()) - {None}) if ENCODER_COLUMN in data.column_names else set()
    if len(encoders) > 1:
        raise InputError(f"table {config.table!r} mixes vectors of {len(encoders)} encoders", path=where,
                         hint="backfill it with one encoder first")
    fingerprint = next(iter(encoders), None)
    check_source(translation, dim=dim, fingerprint=fingerprint, rows=data.num_rows, where=where,
                 check_fingerprint=config.check_fingerprint)
    out_fingerprint = translation.fingerprint(fingerprint or "unknown")
    out_name = config.out_table or f"{config.table}__{slug(translation.adapter_dir.name)}"
    if out_name == config.table:
        raise ConfigError("the output table is the source table", path=where, hint="give another --out-table")
    state_file = _lance_state_path(uri, out_name)
    key = {"source_table": config.table, "source_version": int(source.version), "source_fingerprint": fingerprint,
           "fingerprint": out_fingerprint, "adapter": translation.info(), "batch_rows": config.batch_rows}
    state = read_json(state_file) if state_file.is_file() else {}
    done: list[int] = state.get("done", []) if state.get("key") == key else []
    from .vectorstore import _ensure_table

    target = _ensure_table(db, out_name, translation.output_dim, VECTOR_COLUMN, ENCODER_COLUMN)
    started = time.perf_counter()
    translated = 0
    for batch_no, start in enumerate(range(0, data.num_rows, config.batch_rows)):
        if batch_no in done:
            continue
        part = data.slice(start, config.batch_rows)
        ids = part.column("id").to_pylist()
        vectors = np.asarray(part.column(VECTOR_COLUMN).combine_chunks().flatten().to_numpy(zero_copy_only=False),
                             dtype=np.float32).reshape(-1, dim)
        check_finite(vectors, ids, where)
        mapped = translation(vectors)
        texts = part.column("text") if "text" in part.column_names else pa.array([None] * len(ids), pa.string())
        upsert(target, pa.table({
            "id": pa.array(ids, pa.string()), "text": texts,
            VECTOR_COLUMN: pa.FixedSizeListArray.from_arrays(pa.array(mapped.reshape(-1), pa.float32()),
                                                             translation.output_dim),
            ENCODER_COLUMN: pa.array([out_fingerprint] * len(ids), pa.string())}))
        done.append(batch_no)
        translated += len(ids)
        write_json(state_file, {"key": key, "done": sorted(done), "lineage": key})  # atomic
    return {"uri": str(uri), "table": out_name, "source_table": config.table, "rows": data.num_rows,
            "rows_translated": translated, "dim": translation.output_dim, "fingerprint": out_fingerprint,
            "source_fingerprint": fingerprint, "adapter": translation.info(), "state": str(state_file),
            "seconds": round(time.perf_counter() - started, 3)}


def translate(config: TranslateConfig, home: TavaHome | None = None) -> dict[str, Any]:
    """Translate what ``config`` names (vector shards or a LanceDB table) in this process."""
    return translate_vector_dir(config, home) if config.vectors else translate_table(config, home)


# ----------------------------------------------------------------------------- linear maps as adapters

def save_linear_adapter(directory: str | Path, forward: "Any", *, inverse: Optional["Any"] = None,
                        metadata: Optional[dict[str, Any]] = None) -> Path:
    """Save a closed-form ``LinearMap`` (e.g. the unsupervised start) as an adapter directory that
    ``tava translate`` and ``load_encoder`` read: a direct adapter with no hidden blocks whose linear
    path is the map; ``inverse`` (a LinearMap the other way) goes into ``reverse/``."""
    import torch

    from .adapter.io import save_adapter, write_adapter_files

    def module_for(linear_map) -> Vec2VecAdapter:
        module = Vec2VecAdapter(linear_map.weight.shape[0], linear_map.weight.shape[1], hidden_dims=[])
        net = module.net
        assert net is not None and net.skip is not None  # a direct adapter with a linear skip path
        with torch.no_grad():
            net.skip.weight.copy_(torch.as_tensor(linear_map.weight.T))
            net.head.weight.zero_()
            net.head.bias.copy_(torch.as_tensor(linear_map.bias if linear_map.bias is not None
                                                       else np.zeros(linear_map.weight.shape[1], np.float32)))
        return module.eval()

    extra = {}
    if inverse is not None:
        reverse = module_for(inverse)
        extra[REVERSE_DIR] = lambda path: write_adapter_files(path, reverse, metadata={"direction": "inverse"})
    return save_adapter(directory, module_for(forward), metadata={**(metadata or {}), "kind": "linear",
                                                                  "format_note": ADAPTER_FORMAT},
                        extra_files=extra)
