"""Adapter training data: student and teacher vector directories, checked and joined by id, then split.

Every problem a user can cause (wrong directories, mixed encoders, mismatched dimensions, empty
or NaN vectors, too few pairs) is raised here, before any training starts. ``split_paired`` and
``split_unpaired`` then make the ``AdapterData`` a training run gets: training rows and held-out pairs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from ..errors import ConfigError, InputError, IntegrityError
from ..io import vector_shard_metadata
from ..manifest import VectorManifest, read_vector_dir
from .config import AdapterConfig

if TYPE_CHECKING:
    from .selection import SelectionSet


@dataclass
class VectorSide:
    """All vectors of one side (student or teacher), keyed ``dataset/collection/id``."""

    keys: list[str]
    vectors: np.ndarray
    encoder: dict
    dirs: list[str] = field(default_factory=list)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def fingerprint(self) -> str:
        return str(self.encoder.get("fingerprint", ""))


def check_vectors(vectors: np.ndarray, where: str | Path) -> None:
    """Raise InputError for empty, non-finite or all-zero vectors."""
    if vectors.ndim != 2 or vectors.shape[0] == 0:
        raise InputError("no vectors", path=where, hint="embed a non-empty collection first (`tava embed`)")
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        bad = int((~finite).sum())
        raise InputError(f"{bad} of {len(vectors)} vectors contain NaN or inf (first at row {int(np.argmin(finite))})",
                         path=where, hint="re-embed these shards; the encoder produced non-finite outputs")
    zero = np.linalg.norm(vectors, axis=1) == 0
    if zero.any():
        raise InputError(f"{int(zero.sum())} vectors are all zeros (first at row {int(np.argmax(zero))})", path=where,
                         hint="re-embed these shards; empty texts give zero vectors")


def read_side(dirs: Sequence[str | Path], role: str) -> VectorSide:
    """Read one side's vector directories; they must share one encoder (fingerprint and dim)."""
    if not dirs:
        raise ConfigError(f"no {role} vector directories given",
                          hint=f"pass --{role}-vectors DIR (a directory made by `tava embed`)")
    keys: list[str] = []
    blocks: list[np.ndarray] = []
    first: VectorManifest | None = None
    for directory in dirs:
        ids, vectors, manifest = read_vector_dir(directory)
        for record in manifest.shards:
            meta = vector_shard_metadata(Path(directory) / record.path)
            if meta.get("fingerprint") not in (None, manifest.fingerprint):
                raise IntegrityError(f"shard was made by encoder {meta['fingerprint'][:12]}, the manifest says "
                                     f"{manifest.fingerprint[:12]}", path=Path(directory) / record.path,
                                     hint="re-run `tava embed` for this collection")
        if first is None:
            first = manifest
        elif manifest.fingerprint != first.fingerprint or manifest.dim != first.dim:
            raise IntegrityError(
                f"{role} vectors come from different encoders: {manifest.encoder.get('name')} "
                f"({manifest.fingerprint[:12]}, {manifest.dim}-d) here, {first.encoder.get('name')} "
                f"({first.fingerprint[:12]}, {first.dim}-d) in {dirs[0]}", path=directory,
                hint=f"give {role} vector directories embedded by one and the same encoder")
        check_vectors(vectors, directory)
        keys.extend(f"{manifest.dataset}/{manifest.collection}/{i}" for i in ids)
        blocks.append(vectors)
    assert first is not None
    return VectorSide(keys=keys, vectors=np.concatenate(blocks).astype(np.float32), encoder=dict(first.encoder),
                      dirs=[str(d) for d in dirs])


def join_pairs(student: VectorSide, teacher: VectorSide) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Rows present on both sides, in the student's order: ``(keys, student_vectors, teacher_vectors)``."""
    index = {key: row for row, key in enumerate(teacher.keys)}
    rows_s, rows_t, keys = [], [], []
    seen: set[str] = set()
    for row, key in enumerate(student.keys):
        if key in index and key not in seen:
            seen.add(key)
            keys.append(key)
            rows_s.append(row)
            rows_t.append(index[key])
    return keys, student.vectors[rows_s], teacher.vectors[rows_t]


def unpaired_rows(student: VectorSide, teacher: VectorSide, paired_keys: Sequence[str]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Each side's vectors of texts the other side does not have (``paired_keys`` from ``join_pairs`` left
    out): what unpaired mode trains on beside the halves of the pairs. Disjoint text sets give every row."""
    paired = set(paired_keys)
    return (student.vectors[[row for row, key in enumerate(student.keys) if key not in paired]],
            teacher.vectors[[row for row, key in enumerate(teacher.keys) if key not in paired]])


def query_like_rows(keys: Sequence[str]) -> np.ndarray:
    """True for pairs of query-like texts: rows of a span-view collection (``<dataset>/spans/<id>``, as
    `tava distill` writes a corpus's span views), which stand in for the queries an adapter maps."""
    from ..distill.spans import SPAN_COLLECTION

    return np.array([key.split("/", 2)[1:2] == [SPAN_COLLECTION] for key in keys], dtype=bool)


def check_training_inputs(student: VectorSide, teacher: VectorSide, pairs: int, batch_size: int, mode: str) -> None:
    """Raise before training when the inputs cannot work."""
    if student.fingerprint and student.fingerprint == teacher.fingerprint:
        raise ConfigError("student and teacher vectors come from the same encoder "
                          f"({student.fingerprint[:12]}): there is nothing to adapt",
                          path=student.dirs[0], hint="give the student's vectors and the teacher's vectors")
    if mode == "paired":
        if pairs == 0:
            raise InputError("student and teacher vectors share no ids (no pairs to train on)", path=student.dirs[0],
                             hint="embed the same dataset collection with both encoders, or use --mode unpaired")
        if pairs < 2 * batch_size:
            raise ConfigError(f"only {pairs} pairs: fewer than two batches of {batch_size} "
                              "(one to train on and a held-out share)", path=student.dirs[0],
                              hint=f"embed more texts or lower --batch-size (below {max(2, pairs // 2)})")
    else:
        if min(len(student.keys), len(teacher.keys)) < 2 * batch_size:
            raise ConfigError(f"unpaired mode needs at least {2 * batch_size} vectors per side",
                              path=student.dirs[0], hint="embed more texts or lower --batch-size")


@dataclass
class AdapterData:
    """Training vectors and held-out pairs. Paired: ``student[i]`` and ``teacher[i]`` are one text;
    unpaired: the two sides are different texts. Held-out rows are always pairs (may be empty)."""

    student: np.ndarray
    teacher: np.ndarray
    heldout_student: np.ndarray
    heldout_teacher: np.ndarray
    paired: bool
    # Query-like rows (span views): the adapter maps queries, so maps are compared on these when there
    # are enough (config.selection_rows). Per training row (paired only) and per held-out row; None = unknown.
    query_like: Optional[np.ndarray] = None
    heldout_query_like: Optional[np.ndarray] = None
    selection: Optional[SelectionSet] = None  # in-domain rows that choose maps (never trained on)

    @property
    def has_heldout(self) -> bool:
        return len(self.heldout_student) > 1

    def heldout_query_rows(self) -> Optional[np.ndarray]:
        """Indices of the query-like held-out rows, or None when there are fewer than ``MIN_QUERY_LIKE``."""
        if self.heldout_query_like is None:
            return None
        rows = np.flatnonzero(self.heldout_query_like)
        return rows if len(rows) >= MIN_QUERY_LIKE else None


# Fewest query-like held-out rows (or start-check rows) that maps are compared on; fewer -> all rows.
MIN_QUERY_LIKE = 50


def split_paired(x: np.ndarray, y: np.ndarray, config: AdapterConfig, seed: int = 0,
                 query_like: Optional[np.ndarray] = None) -> AdapterData:
    """Hold out a share of the pairs (the same split for every seed of a best-of-N run); ``query_like``
    (a bool per row: span views) follows its rows."""
    n = len(x)
    order = np.random.default_rng(seed).permutation(n)
    n_hold = int(min(config.holdout_max, max(2, round(n * config.holdout_fraction))))
    hold, train = order[:n_hold], order[n_hold:]
    mask = None if query_like is None else np.asarray(query_like, dtype=bool)
    return AdapterData(x[train], y[train], x[hold], y[hold], paired=True,
                       query_like=None if mask is None else mask[train],
                       heldout_query_like=None if mask is None else mask[hold])


# Fewest held-out pairs unpaired mode measures (and early-stops) on; fewer shared texts are trained on instead.
MIN_UNPAIRED_HELDOUT = 10


def split_unpaired(x: np.ndarray, y: np.ndarray, config: AdapterConfig, seed: int = 0,
                   extra_student: Optional[np.ndarray] = None,
                   extra_teacher: Optional[np.ndarray] = None,
                   query_like: Optional[np.ndarray] = None) -> AdapterData:
    """Held-out pairs, then the remaining texts split in two disjoint halves: the student side
    sees one half, the teacher side the other, so no text is seen by both (pure vec2vec)."""
    base = split_paired(x, y, config, seed, query_like)
    if len(base.heldout_student) < MIN_UNPAIRED_HELDOUT:
        # a handful of shared texts would steer early stopping by noise: they train instead, nothing is held out
        base = AdapterData(x, y, x[:0], y[:0], paired=True)
    order = np.random.default_rng(seed + 1).permutation(len(base.student))
    half = len(order) // 2
    student = base.student[order[:half]]
    teacher = base.teacher[order[half:]]
    if extra_student is not None and len(extra_student):
        student = np.concatenate([student, extra_student])
    if extra_teacher is not None and len(extra_teacher):
        teacher = np.concatenate([teacher, extra_teacher])
    return AdapterData(student, teacher, base.heldout_student, base.heldout_teacher, paired=False,
                       heldout_query_like=base.heldout_query_like)
