"""Vectors a store already holds, taken as a collection's vector shards instead of encoding it again.

tava's premise is that the teacher has already embedded the documents: they sit in a vector store.
Encoding them again to train and evaluate a student costs what the store cost (all-mpnet-base-v2 takes hours
over SciFact's 5,183 abstracts on 2 CPU cores: bench/results/import_vectors.json). So `tava embed --import-vectors PATH` (and
`tava run --teacher-document-vectors PATH`) reads ``id`` + ``vector`` rows from Parquet or a LanceDB table and writes them
as the collection's shards, exactly as encoding would have: one shard per text shard, rows in the text
shard's order, the encoder's fingerprint and kind in the metadata, so every later step reuses them.

Vectors are trusted only after the encoder agrees with them: a seeded sample of the collection's
texts is encoded and each must reach cosine ``MIN_COSINE`` with its stored vector (float16 storage
reads ~0.9999). A store made by another model, prefix, pooling or max length fails here with the
measured cosines instead of training a student towards the wrong space.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import InputError, IntegrityError
from .io import vectors_from_column
from .manifest import ShardRecord

if TYPE_CHECKING:
    from .embed import ShardJob
    from .encoders import Encoder

MIN_COSINE = 0.99   # per sampled text; float16 storage of unit vectors reads ~0.9999
VERIFY_TEXTS = 16   # texts encoded to check the vectors are the encoder's


@dataclass(frozen=True)
class VectorSource:
    """The rows of a vector file (or folder of Parquet files): ids and float32 vectors, in file order,
    and each id's row."""

    path: Path
    ids: list[str]
    vectors: np.ndarray
    rows: dict[str, int]

    def of(self, ids: Sequence[str]) -> np.ndarray:
        """The vectors of ``ids``, in that order (every id must be in the file: `check_complete`)."""
        return self.vectors[[self.rows[i] for i in ids]]


LANCE_SUFFIX = ".lance"
SOURCE_HINT = ("give a Parquet file (or folder) of id + vector rows, or a LanceDB table directory "
               "(<database>/<table>.lance, as `tava backfill` writes it)")


def _is_lance_table(path: Path) -> bool:
    return path.is_dir() and (path.name.endswith(LANCE_SUFFIX) or (path / "_versions").is_dir())


def _source_tables(path: Path, columns: list[str]) -> list[tuple[Path, pa.Table]]:
    """(file, its rows of ``columns``) for every part of the source: the Parquet files of a file or folder, or
    the one table of a LanceDB table directory. A LanceDB database (a folder of tables) is refused naming
    its tables: which one holds the documents is the user's to say."""
    if _is_lance_table(path):
        import lancedb

        name = path.name[:-len(LANCE_SUFFIX)] if path.name.endswith(LANCE_SUFFIX) else path.name
        try:
            table = lancedb.connect(str(path.parent)).open_table(name)
            schema = table.schema
        except Exception as exc:  # noqa: BLE001 - lancedb raises several kinds for a damaged table
            raise InputError(f"not a readable LanceDB table ({exc})", path=path, hint=SOURCE_HINT) from None
        _check_columns(schema.names, columns, path)
        return [(path, table.to_arrow().select(columns))]
    if path.is_dir() and not any(path.rglob("*.parquet")):
        tables = sorted(p.name for p in path.glob(f"*{LANCE_SUFFIX}") if p.is_dir())
        if tables:
            raise InputError(f"a LanceDB database of {len(tables)} table(s) ({', '.join(tables[:5])})", path=path,
                             hint=f"give the table that holds the documents, e.g. {path / tables[0]}")
        raise InputError("folder holds no .parquet file", path=path, hint=SOURCE_HINT)
    parts = []
    for file in sorted(path.rglob("*.parquet")) if path.is_dir() else [path]:
        try:
            schema = pq.read_schema(file)
        except (OSError, pa.ArrowInvalid) as exc:
            raise InputError(f"not a readable Parquet file ({exc})", path=file, hint=SOURCE_HINT) from None
        _check_columns(schema.names, columns, file)
        parts.append((file, pq.read_table(file, columns=columns)))
    return parts


def _check_columns(names: Sequence[str], columns: Sequence[str], path: Path) -> None:
    missing = [c for c in columns if c not in names]
    if missing:
        raise InputError(f"no column {', '.join(map(repr, missing))} (columns: {', '.join(names)})",
                         path=path, hint="name the columns with --import-id-column / --import-vector-column")


def read_vector_source(path: str | Path, *, id_column: str = "id", vector_column: str = "vector") -> VectorSource:
    """``id`` + ``vector`` rows of a Parquet file, a folder of ``*.parquet`` files or a LanceDB table (a list
    column of floats, fixed-size or not, float16 or float32). Errors name the file and what to change."""
    path = Path(path)
    if not path.exists():
        raise InputError("no such file or folder", path=path, hint=SOURCE_HINT)
    ids: list[str] = []
    parts: list[np.ndarray] = []
    files: list[Path] = []
    for file, table in _source_tables(path, [id_column, vector_column]):
        column = table.column(vector_column)
        if pa.types.is_fixed_size_list(column.type):
            part = vectors_from_column(column, file)
        elif pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            rows = column.to_pylist()
            lengths = {len(r) for r in rows if r is not None}
            if len(lengths) > 1 or any(r is None for r in rows):
                raise InputError(f"column {vector_column!r} holds vectors of several lengths {sorted(lengths)[:4]} "
                                 "or empty rows", path=file)
            part = np.asarray(rows, dtype=np.float32).reshape(-1, lengths.pop() if lengths else 0)
        else:
            raise InputError(f"column {vector_column!r} has type {column.type}, not a list of floats", path=file)
        if parts and part.shape[1] != parts[0].shape[1]:
            raise InputError(f"{part.shape[1]}-d vectors where {files[0].name} holds {parts[0].shape[1]}-d", path=file)
        ids.extend(str(i) for i in table.column(id_column).to_pylist())
        parts.append(part)
        files.append(file)
    vectors = np.concatenate(parts)
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if len(bad):
        raise InputError(f"{len(bad)} vectors hold NaN or inf (first: id {ids[bad[0]]!r})", path=path)
    rows_of = {i: row for row, i in enumerate(ids)}
    if len(rows_of) != len(ids):
        repeat = next(i for row, i in enumerate(ids) if rows_of[i] != row)
        raise InputError(f"id {repeat!r} appears more than once", path=path, hint="one vector per document id")
    return VectorSource(path=path, ids=ids, vectors=vectors, rows=rows_of)


def source_dim(path: str | Path, *, vector_column: str = "vector") -> int | None:
    """The vectors' dim, read from the first Parquet file's schema or first row (or the LanceDB table's schema)
    without reading the rows: the CLI's up-front check. None when it cannot tell cheaply (the import says why)."""
    path = Path(path)
    try:
        if _is_lance_table(path):
            import lancedb

            name = path.name[:-len(LANCE_SUFFIX)] if path.name.endswith(LANCE_SUFFIX) else path.name
            field_type = lancedb.connect(str(path.parent)).open_table(name).schema.field(vector_column).type
            return field_type.list_size if pa.types.is_fixed_size_list(field_type) else None
        first = next(iter(sorted(path.rglob("*.parquet")) if path.is_dir() else [path]), None)
        if first is None:
            return None
        file = pq.ParquetFile(first)
        field_type = file.schema_arrow.field(vector_column).type
        if pa.types.is_fixed_size_list(field_type):
            return int(field_type.list_size)
        row = next(file.iter_batches(batch_size=1, columns=[vector_column])).column(0)[0].as_py()
        return len(row) if row is not None else None
    except Exception:  # noqa: BLE001 - any unreadable source is the import's to report, with its file
        return None


def check_complete(source: VectorSource, jobs: Sequence["ShardJob"]) -> None:
    """Every document of the collection has a vector (the store may hold more; they are left out)."""
    absent: list[tuple[str, str]] = []
    total = 0
    for job in jobs:
        ids = pq.read_table(job.text_shard, columns=["id"]).column("id").to_pylist()
        total += len(ids)
        absent += [(i, Path(job.text_shard).name) for i in ids if i not in source.rows]
    if absent:
        # none at all: most likely another collection's vectors (a user passed SciFact's queries.parquet)
        none = len(absent) == total
        raise InputError(
            (f"none of the collection's {total} documents has a vector there: the file's ids (e.g. "
             f"{', '.join(repr(i) for i in source.ids[:3])}) are not its document ids (e.g. "
             f"{', '.join(repr(i) for i, _ in absent[:3])}); another collection's vectors?") if none else
            (f"{len(absent)} of the collection's {total} documents have no vector (first: "
             f"{', '.join(repr(i) for i, _ in absent[:3])}, in {absent[0][1]})"), path=source.path,
            hint="import the vectors of every document of this collection, or leave the vectors option out "
                 "(`tava embed --import-vectors`, `tava run --teacher-document-vectors`) to embed it")


def verify_source(source: VectorSource, jobs: Sequence["ShardJob"], encoder: "Encoder", *,
                  texts: int = VERIFY_TEXTS, seed: int = 0) -> dict[str, float]:
    """Encode a seeded sample of the collection's texts and compare with their stored vectors (after
    `check_complete`). Returns the cosines' mean and min; raises when any is under ``MIN_COSINE``."""
    from .embed import job_texts

    if source.vectors.shape[1] != encoder.dim:
        raise InputError(f"{source.vectors.shape[1]}-d vectors, but {encoder.name} makes {encoder.dim}-d ones",
                         path=source.path, hint="import the vectors this encoder made, or pass the encoder that made them")
    pool = [(j, k) for j, job in enumerate(jobs) for k in range(job.rows)]
    picked = sorted(np.random.default_rng(seed).choice(len(pool), size=min(texts, len(pool)), replace=False).tolist())
    by_job: dict[int, list[int]] = {}
    for p in picked:
        j, k = pool[p]
        by_job.setdefault(j, []).append(k)
    stored, encoded = [], []
    for j, ks in by_job.items():
        ids, shard_texts = job_texts(jobs[j])
        stored.append(source.of([ids[k] for k in ks]))
        encoded.append(encoder.encode([shard_texts[k] for k in ks], kind=jobs[j].kind))
    if not stored:
        return {"texts": 0, "mean_cosine": 1.0, "min_cosine": 1.0}
    a, b = np.concatenate(stored), np.concatenate(encoded)
    cosines = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    result = {"texts": int(len(cosines)), "mean_cosine": float(cosines.mean()), "min_cosine": float(cosines.min())}
    if result["min_cosine"] < MIN_COSINE:
        raise IntegrityError(
            f"these vectors are not {encoder.name}'s: on {len(cosines)} sampled texts its vectors reach cosine "
            f"{result['mean_cosine']:.3f} on average, {result['min_cosine']:.3f} at worst (each must reach {MIN_COSINE})",
            path=source.path, hint="import the vectors this encoder made (same model, prefix, pooling, max length), "
                                   "or pass the encoder that made them")
    return result


def import_shards(source: VectorSource, jobs: Sequence["ShardJob"], encoder: "Encoder") -> list[ShardRecord]:
    """Write each job's vector shard from ``source`` (rows in the text shard's order), as ``embed_shard``
    writes it, recording the file. Call `check_complete` and `verify_source` first."""
    from .embed import job_texts, write_job_vectors

    records = []
    for job in jobs:
        ids, _ = job_texts(job)
        vectors = source.of(ids)
        if encoder.normalized:   # float16 storage leaves unit vectors a little off unit length
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        records.append(write_job_vectors(job, encoder, ids, vectors, imported_from=str(source.path)))
    return records
