"""FAISS indexes built from vector shards, published as versions that cannot half-happen.

Layout of an index directory (one "slot"; each build adds a version)::

    <index_dir>/versions/00001/index.faiss   the FAISS index (faiss ids 0..n-1, in shard order)
                              /ids.parquet   string id of faiss id i at row i
                              /manifest.json source shards + sha256, encoder, factory, counts,
                                             timings, recall@10 against exact search
    <index_dir>/current                      name of the version readers load

A version directory is assembled in a temporary sibling and renamed into place only when all of
it (manifest last) is on disk; then ``current`` is replaced atomically. A reader therefore sees
the old version or the new one, never a part. ``rollback_index`` points ``current`` back at the
previous complete version. The versioning itself (numbering under a lock, the ``current``
pointer, history, rollback, pruning) is the generic artifact store's (``tava_core.store``); this
module registers the ``indexes`` kind there, so an index under ``<home>/registry/indexes/`` is also
the registry artifact ``indexes/<its path>``.

A build holds the index slot's lock from start to publish (``lock_timeout_seconds``: a second
build of the same slot waits or stops naming the first); searches never take it: they resolve
``current`` once and read an immutable version directory.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from .config import TavaModel
from .errors import ConfigError, InputError, IntegrityError
from .home import TavaHome, slug
from .io import atomic_path, read_json, read_vector_shard, sha256_file, write_json
from .manifest import VectorManifest, load_vector_manifest, now_iso
from .registry import Registry
from .store import (  # noqa: F401
    CURRENT_FILE,
    VERSIONS_DIR,
    ArtifactKind,
    current_version,
    new_version,
    prune_slot,
    register_kind,
    rollback_slot,
    set_current,
    slot_lock,
)

log = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
IDS_FILE = "ids.parquet"
MANIFEST_FILE = "manifest.json"


class IndexConfig(TavaModel):
    """What `tava index` builds: which vectors, which FAISS index, where it is published."""

    vectors: str = Field(..., description=(
        "Vector directory to index (holds manifest.json and vector shards, as `tava embed` writes "
        "under <home>/vectors/<dataset>/<collection>/<encoder>-<fingerprint>)."))
    factory: str = Field("Flat", description=(
        "FAISS index factory string: 'Flat' (exact), 'HNSW32,Flat', 'IVF1024,PQ48', "
        "'IVF256,PQ48x4fs,RFlat' (PQ with exact re-ranking), ..."))
    metric: Literal["cosine", "ip", "l2"] = Field("cosine", description=(
        "Similarity: 'cosine' (vectors L2-normalised, inner product), 'ip' (raw inner product), 'l2'."))
    index_dir: Optional[str] = Field(None, description=(
        "Where versions are published; empty = the registry slot "
        "<home>/registry/indexes/<dataset>/<collection>/<encoder>-<fp>."))
    train_size: int = Field(50_000, ge=1, description=(
        "Vectors sampled (seeded) to train IVF / PQ indexes; FAISS wants at least ~39 per IVF list."))
    nprobe: int = Field(16, ge=1, description="IVF lists searched per query (saved with the index).")
    ef_search: int = Field(64, ge=1, description="HNSW candidate list size at search time (saved with the index).")
    refine_k_factor: int = Field(4, ge=1, description=(
        "For factories ending in ',RFlat': candidates re-ranked exactly = k x this (saved with the index)."))
    use_gpu: Literal["auto", "yes", "no"] = Field("auto", description=(
        "Build on all GPUs (faiss-gpu): 'auto' when any is visible, 'yes' requires one, 'no' never."))
    recall_queries: int = Field(200, ge=0, description=(
        "Queries used to measure recall@10 against exact search (0 = skip the check)."))
    query_vectors: Optional[str] = Field(None, description=(
        "Vector directory of queries for the recall check; empty = a seeded sample of the indexed vectors."))
    seed: int = Field(0, description="Seed of the training and query samples.")
    keep_versions: int = Field(3, ge=2, description="Published versions kept on disk (older ones are pruned).")
    force: bool = Field(False, description="Build even when the current version already indexes these exact shards.")
    lock_timeout_seconds: float = Field(0.0, description=(
        "When another build or rollback of the same index runs: 0 = stop at once naming it, N = wait up to "
        "N seconds, -1 = wait for ever. Searches never wait."))


@dataclass
class LoadedIndex:
    """A published index version in memory."""

    index: Any  # faiss.Index
    ids: list[str]
    manifest: dict[str, Any]
    path: Path

    @property
    def metric(self) -> str:
        return self.manifest["metric"]


# ----------------------------------------------------------------------------- GPU decision

def gpu_count() -> int:
    import faiss

    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def should_use_gpu(setting: str) -> bool:
    """Whether to build on GPUs: 'auto' = when faiss sees any, 'yes' = must, 'no' = never."""
    if setting == "no":
        return False
    count = gpu_count()
    if setting == "yes" and count == 0:
        raise ConfigError("use_gpu='yes' but FAISS sees no GPU",
                          hint="install the faiss-gpu extra (pip install 'tava[gpu]') on a CUDA machine, "
                               "or pass --use-gpu auto")
    return count > 0


def _to_gpus(index: Any, setting: str) -> tuple[Any, bool]:
    """Move ``index`` to all GPUs when allowed; 'auto' falls back to CPU for types GPUs lack (HNSW)."""
    import faiss

    if not should_use_gpu(setting):
        return index, False
    try:
        return faiss.index_cpu_to_all_gpus(index), True
    except Exception as exc:  # noqa: BLE001 - faiss raises RuntimeError for unsupported index types
        if setting == "yes":
            raise ConfigError(f"this index type cannot run on GPU ({exc})",
                              hint="use an IVF / Flat factory string, or --use-gpu no") from None
        log.warning("index type has no GPU implementation, building on CPU (%s)", exc)
        return index, False


def _to_cpu(index: Any, on_gpu: bool) -> Any:
    # A GPU index cannot be serialised: always copy back before writing.
    import faiss

    return faiss.index_gpu_to_cpu(index) if on_gpu else index


# ----------------------------------------------------------------------------- helpers

def _faiss_metric(metric: str) -> int:
    import faiss

    return faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT


def _prepare(vectors: np.ndarray, metric: str) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if metric == "cosine":
        import faiss

        vectors = vectors.copy() if not vectors.flags.writeable else vectors
        faiss.normalize_L2(vectors)
    return vectors


def _make_index(dim: int, factory: str, metric: str) -> Any:
    import faiss

    try:
        index = faiss.index_factory(dim, factory, _faiss_metric(metric))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else str(exc)
        raise ConfigError(f"FAISS cannot build factory string {factory!r} for dim {dim}: {first}",
                          hint="examples: 'Flat', 'HNSW32,Flat', 'IVF1024,PQ48' (PQ's M must divide the dim)") from None
    _skip_polysemous_training(index)
    return index


def _index_layers(index: Any) -> Iterator[Any]:
    """``index`` and the indexes it wraps, outermost first (Refine / IDMap / PreTransform -> the inner index),
    each downcast to its own FAISS class."""
    import faiss

    node = faiss.downcast_index(index)
    for _ in range(4):
        yield node
        inner = getattr(node, "base_index", None) or getattr(node, "index", None)
        if inner is None:
            return
        node = faiss.downcast_index(inner)


def _skip_polysemous_training(index: Any) -> None:
    """The factory turns on polysemous training for PQ codes, which only Hamming-filtered search
    uses and which makes training ~10x slower; plain PQ search does not need it."""
    for node in _index_layers(index):
        if hasattr(node, "do_polysemous_training"):
            node.do_polysemous_training = False
            return


def apply_search_params(index: Any, nprobe: int, ef_search: int, refine_k_factor: int = 4) -> dict[str, int]:
    """Set nprobe / efSearch / the refine depth where the index type has them; returns what was set."""
    import faiss

    space = faiss.ParameterSpace()
    applied: dict[str, int] = {}
    for name, value in (("nprobe", nprobe), ("efSearch", ef_search), ("k_factor_rf", refine_k_factor)):
        try:
            space.set_index_parameter(index, name, value)
            applied[name] = value
        except RuntimeError:
            pass  # this index type has no such parameter
    return applied


def default_index_dir(home: TavaHome, manifest: VectorManifest) -> Path:
    """The registry slot ``indexes/<dataset>/<collection>/<encoder>-<fp>`` of these vectors."""
    encoder = manifest.encoder
    name = (f"{slug(manifest.dataset)}/{slug(manifest.collection)}/"
            f"{slug(str(encoder.get('name', 'encoder')))}-{manifest.fingerprint[:12]}")
    return Registry(home).slot("indexes", name)


def _sample_positions(total: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if size >= total:
        return np.arange(total)
    return np.sort(rng.choice(total, size=size, replace=False))


def _gather(shards: Sequence[Path], counts: Sequence[int], positions: np.ndarray) -> np.ndarray:
    """The vectors at global ``positions`` (sorted), reading one shard at a time."""
    blocks = []
    start = 0
    for path, count in zip(shards, counts, strict=False):
        local = positions[(positions >= start) & (positions < start + count)] - start
        if len(local):
            _, vectors = read_vector_shard(path)
            blocks.append(vectors[local])
        start += count
    return np.concatenate(blocks) if blocks else np.zeros((0, 0), np.float32)


def exact_top_k(shards: Sequence[Path], queries: np.ndarray, k: int, metric: str) -> np.ndarray:
    """Exact top-k global positions for ``queries``, streaming shard by shard (bounded memory)."""
    n_queries = len(queries)
    best_scores = np.full((n_queries, 0), -np.inf, np.float32)
    best_pos = np.zeros((n_queries, 0), np.int64)
    start = 0
    for path in shards:
        _, vectors = read_vector_shard(path)
        vectors = _prepare(vectors, metric)
        if metric == "l2":
            scores = -(np.sum(vectors ** 2, axis=1)[None, :] - 2.0 * queries @ vectors.T)
        else:
            scores = queries @ vectors.T
        pos = np.broadcast_to(np.arange(start, start + len(vectors)), scores.shape)
        scores = np.concatenate([best_scores, scores], axis=1)
        pos = np.concatenate([best_pos, pos], axis=1)
        keep = min(k, scores.shape[1])
        top = np.argpartition(-scores, keep - 1, axis=1)[:, :keep]
        best_scores = np.take_along_axis(scores, top, axis=1)
        best_pos = np.take_along_axis(pos, top, axis=1)
        start += len(vectors)
    order = np.argsort(-best_scores, axis=1)
    return np.take_along_axis(best_pos, order, axis=1)


def recall_at_k(found: np.ndarray, exact: np.ndarray, k: int = 10) -> float:
    """Mean fraction of each query's exact top-k that the index returned in its top-k."""
    if len(exact) == 0:
        return float("nan")
    hits = [len(set(f[:k].tolist()) & set(e[:k].tolist())) / min(k, len(e)) for f, e in zip(found, exact, strict=False)]
    return float(np.mean(hits))


# ----------------------------------------------------------------------------- build

def _source_records(vector_dir: Path, manifest: VectorManifest) -> list[dict[str, Any]]:
    """Every shard the manifest lists, checked against its sha256 before anything is built."""
    records = []
    for shard in manifest.shards:
        path = vector_dir / shard.path
        if not path.is_file():
            raise IntegrityError("vector shard listed in the manifest is missing", path=path,
                                 hint="re-run `tava embed` for this collection")
        digest = sha256_file(path)
        if digest != shard.sha256:
            raise IntegrityError("vector shard does not match its manifest (sha256)", path=path,
                                 hint="re-run `tava embed`; it rewrites shards that do not match")
        records.append({"path": shard.path, "rows": shard.rows, "sha256": digest})
    return records


def _query_sample(config: IndexConfig, shards: list[Path], counts: list[int], dim: int) -> np.ndarray:
    if config.recall_queries == 0:
        return np.zeros((0, dim), np.float32)
    if config.query_vectors:
        qdir = Path(config.query_vectors)
        qmanifest = load_vector_manifest(qdir)
        if qmanifest.dim != dim:
            raise ConfigError(f"query vectors have dim {qmanifest.dim}, the indexed vectors {dim}",
                              path=qdir, hint="give query vectors made by the same encoder")
        qshards = [qdir / s.path for s in qmanifest.shards]
        qcounts = [s.rows for s in qmanifest.shards]
        positions = _sample_positions(sum(qcounts), config.recall_queries, config.seed + 1)
        return _gather(qshards, qcounts, positions)
    positions = _sample_positions(sum(counts), config.recall_queries, config.seed + 1)
    return _gather(shards, counts, positions)


def _is_up_to_date(index_dir: Path, config: IndexConfig, sources: list[dict[str, Any]]) -> Optional[dict]:
    version = current_version(index_dir)
    if version is None:
        return None
    path = index_dir / VERSIONS_DIR / version / MANIFEST_FILE
    if not path.is_file():
        return None
    manifest = read_json(path)
    ignore = {"force", "keep_versions", "index_dir", "lock_timeout_seconds"}  # do not change what gets built

    def settings(data: dict) -> dict:
        return {k: v for k, v in data.items() if k not in ignore}

    same = (settings(manifest.get("config", {})) == settings(config.model_dump(mode="json"))
            and [s["sha256"] for s in manifest.get("source", {}).get("shards", [])] == [s["sha256"] for s in sources])
    return manifest if same else None


MIN_POINTS_PER_CENTROID = 39   # FAISS's k-means asks for at least this many training points per centroid


def training_need(index: Any) -> dict[str, int]:
    """Centroids the index's k-means trains, by part: ``{"ivf": lists, "pq": centroids per sub-vector}`` (absent
    parts left out; an index that needs no training gives {}), over every layer of a wrapped index."""
    need: dict[str, int] = {}
    for node in _index_layers(index):
        if hasattr(node, "nlist"):
            need["ivf"] = max(need.get("ivf", 0), int(node.nlist))
        pq = getattr(node, "pq", None)
        if pq is not None and hasattr(pq, "ksub"):
            need["pq"] = max(need.get("pq", 0), int(pq.ksub))
    return need


def check_training_size(index: Any, factory: str, rows: int, train_size: int, where: Path) -> None:
    """Refuse, before any work, an IVF factory with more lists than its training vectors can place
    (``MIN_POINTS_PER_CENTROID`` each): FAISS trained anyway, printed one warning per run, and published the index
    as `current` (IVF1024,PQ48,RFlat on 1,500 vectors: recall@10 0.90, where HNSW32,Flat had 0.999). PQ's
    256 centroids per sub-vector train tolerably on fewer (a few thousand vectors): that is a log line."""
    need = training_need(index)
    have = min(rows, train_size)
    sampled = f" (--train-size {train_size:,} of {rows:,})" if train_size < rows else ""
    lists = need.get("ivf", 0)
    if MIN_POINTS_PER_CENTROID * lists > have:
        most = max(1, have // MIN_POINTS_PER_CENTROID)
        raise ConfigError(
            f"factory {factory!r} has {lists:,} IVF lists: they need at least {MIN_POINTS_PER_CENTROID * lists:,} "
            f"training vectors ({MIN_POINTS_PER_CENTROID} a list), but it trains on {have:,}{sampled}",
            path=where,
            hint=(f"raise --train-size to {MIN_POINTS_PER_CENTROID * lists:,}" if rows >= MIN_POINTS_PER_CENTROID * lists
                  else f"for {rows:,} vectors use 'HNSW32,Flat' or 'Flat' (exact), or at most {most} lists "
                       f"(e.g. 'IVF{most},Flat')"))
    centroids = need.get("pq", 0)
    if MIN_POINTS_PER_CENTROID * centroids > have:
        log.warning("factory %r: PQ trains %d centroids per sub-vector on %d vectors (FAISS wants %d); its codes "
                    "will be coarser -- the recall@10 this build reports says by how much", factory, centroids,
                    have, MIN_POINTS_PER_CENTROID * centroids)


def planned_index(config: IndexConfig, vmanifest: VectorManifest, vector_dir: Path) -> Any:
    """The untrained index ``config.factory`` makes for these vectors; refused (ConfigError) when FAISS cannot
    build it for their dim or its IVF lists outnumber its training vectors. ``tava index`` calls it before a
    flow starts, the build again."""
    index = _make_index(vmanifest.dim, config.factory, config.metric)
    check_training_size(index, config.factory, vmanifest.rows, config.train_size, vector_dir)
    return index


def build_index(config: IndexConfig, home: TavaHome | None = None, *, show_progress: bool = False) -> dict[str, Any]:
    """Build an index from ``config.vectors`` and publish it as a new version; returns its manifest.

    Memory stays bounded by one shard plus the training sample: vectors are added shard by shard.
    """
    home = home or TavaHome()
    vector_dir = Path(config.vectors).expanduser().resolve()
    vmanifest = load_vector_manifest(vector_dir)
    sources = _source_records(vector_dir, vmanifest)
    if vmanifest.rows == 0:
        raise InputError("the vector directory holds no vectors", path=vector_dir,
                         hint="embed a non-empty collection first")
    index_dir = Path(config.index_dir).expanduser().resolve() if config.index_dir else default_index_dir(home, vmanifest)
    cpu_index = planned_index(config, vmanifest, vector_dir)   # a factory that cannot fit fails here, early
    # One build per slot at a time; taken before the up-to-date check, so a build that waited for
    # another one of the same shards finds it published and skips.
    with slot_lock(index_dir, timeout=config.lock_timeout_seconds):
        if not config.force and (existing := _is_up_to_date(index_dir, config, sources)):
            log.info("index %s already indexes these shards with %s; nothing to do", index_dir, config.factory)
            return {**existing, "index_dir": str(index_dir), "skipped": True}
        return _build_and_publish(config, cpu_index, vector_dir, vmanifest, sources, index_dir,
                                  show_progress=show_progress)


def _build_and_publish(config: IndexConfig, cpu_index: Any, vector_dir: Path, vmanifest: VectorManifest,
                       sources: list[dict[str, Any]], index_dir: Path, *, show_progress: bool) -> dict[str, Any]:
    """Train, add shard by shard, measure recall and publish (the caller holds the slot lock)."""
    import faiss

    from .progress import progress_bar

    dim = vmanifest.dim
    shards = [vector_dir / s["path"] for s in sources]
    counts = [s["rows"] for s in sources]
    total = sum(counts)

    started = time.perf_counter()
    index, on_gpu = _to_gpus(cpu_index, config.use_gpu)
    train_seconds = 0.0
    train_rows = 0
    if not index.is_trained:
        positions = _sample_positions(total, config.train_size, config.seed)
        sample = _prepare(_gather(shards, counts, positions), config.metric)
        train_rows = len(sample)
        t0 = time.perf_counter()
        index.train(sample)
        train_seconds = time.perf_counter() - t0
        del sample

    ids: list[str] = []
    t0 = time.perf_counter()
    for path, expected in progress_bar(list(zip(shards, counts, strict=False)), desc="index shards", disable=not show_progress):
        shard_ids, vectors = read_vector_shard(path)
        if len(shard_ids) != expected or vectors.shape[1] != dim:
            raise IntegrityError(f"shard has {len(shard_ids)} rows x {vectors.shape[1]} dims, manifest says "
                                 f"{expected} x {dim}", path=path, hint="re-run `tava embed`")
        index.add(_prepare(vectors, config.metric))  # faiss ids are positions: 0..n-1 in shard order
        ids.extend(shard_ids)
    add_seconds = time.perf_counter() - t0
    index = _to_cpu(index, on_gpu)
    build_seconds = time.perf_counter() - started
    if index.ntotal != total:
        raise IntegrityError(f"index holds {index.ntotal} vectors, expected {total}", path=vector_dir)
    if len(set(ids)) != len(ids):
        raise InputError("vector shards repeat ids; an index needs each id once", path=vector_dir,
                         hint="re-ingest the dataset (ingest deduplicates ids)")

    search_params = apply_search_params(index, config.nprobe, config.ef_search, config.refine_k_factor)
    recall = None
    queries = _query_sample(config, shards, counts, dim)
    if len(queries):
        queries = _prepare(queries, config.metric)
        k = min(10, total)
        exact = exact_top_k(shards, queries, k, config.metric)
        _, found = index.search(queries, k)
        recall = round(recall_at_k(found, exact, k), 6)   # a mean of tenths: no float noise (0.9990000000000001)

    manifest = {
        "kind": "faiss-index",
        "created": now_iso(),
        "factory": config.factory,
        "metric": config.metric,
        "dim": dim,
        "count": int(index.ntotal),
        "source": {"vector_dir": str(vector_dir), "dataset": vmanifest.dataset,
                   "collection": vmanifest.collection, "encoder": vmanifest.encoder,
                   "fingerprint": vmanifest.fingerprint, "shards": sources},
        "train_rows": train_rows,
        "train_seconds": round(train_seconds, 3),
        "add_seconds": round(add_seconds, 3),
        "build_seconds": round(build_seconds, 3),
        "search_params": search_params,
        "recall_at_10": recall,
        "recall_queries": int(len(queries)),
        "recall_query_source": config.query_vectors or "sample of the indexed vectors",
        "built_on_gpu": on_gpu,
        "faiss_version": faiss.__version__,
        "config": config.model_dump(mode="json"),
    }
    version = publish_index(index_dir, index, ids, manifest)
    prune_versions(index_dir, config.keep_versions)
    return {**manifest, "version": version, "index_dir": str(index_dir), "skipped": False}


def publish_index(index_dir: str | Path, index: Any, ids: Sequence[str], manifest: dict[str, Any]) -> str:
    """Write a new version (index, ids, manifest last) and point ``current`` at it, atomically."""
    import faiss

    index_dir = Path(index_dir)
    source = manifest.get("source", {})
    record = {"kind": "indexes", "name": index_dir.name, "note": f"FAISS {manifest.get('factory')}",
              "lineage": {"vector_dir": source.get("vector_dir"), "dataset": source.get("dataset"),
                          "collection": source.get("collection"), "encoder": source.get("encoder", {}).get("name"),
                          "fingerprint": source.get("fingerprint"),
                          "shards_sha256": [s.get("sha256") for s in source.get("shards", [])]},
              "metrics": {"recall_at_10": manifest.get("recall_at_10"), "count": manifest.get("count")}}
    with new_version(index_dir, record=record) as (version, tmp_dir):
        with atomic_path(tmp_dir / INDEX_FILE) as tmp:
            faiss.write_index(index, str(tmp))
        with atomic_path(tmp_dir / IDS_FILE) as tmp:
            pq.write_table(pa.table({"id": pa.array(list(ids), pa.string())}), tmp)
        files = {INDEX_FILE: sha256_file(tmp_dir / INDEX_FILE), IDS_FILE: sha256_file(tmp_dir / IDS_FILE)}
        write_json(tmp_dir / MANIFEST_FILE, {**manifest, "version": version, "files": files})
    set_current(index_dir, version, reason="index build")
    return version


def prune_versions(index_dir: str | Path, keep: int) -> list[str]:
    """Delete the oldest versions beyond ``keep`` (never the current one); returns what was removed."""
    return prune_slot(index_dir, keep, marker=MANIFEST_FILE)


def rollback_index(index_dir: str | Path, *, lock_timeout: float = 10.0) -> dict[str, Any]:
    """Point ``current`` at the newest complete version older than the current one (waits for, or
    refuses beside, a build of the same index as ``lock_timeout`` says)."""
    index_dir = Path(index_dir).expanduser().resolve()
    if current_version(index_dir) is None:
        raise InputError("no published index here (no 'current' file)", path=index_dir,
                         hint="build one with `tava index --vectors DIR`")
    # the target must load before readers are sent there
    moved = rollback_slot(index_dir, marker=MANIFEST_FILE, check=lambda v: load_index(index_dir, version=v),
                          lock_timeout=lock_timeout)
    return {"index_dir": str(index_dir), "from_version": moved["from_version"], "to_version": moved["to_version"]}


# ----------------------------------------------------------------------------- read and search

def load_index(index_dir: str | Path, *, version: Optional[str] = None, verify: bool = True) -> LoadedIndex:
    """Load the current (or a given) version; checks files against the manifest's sha256."""
    import faiss

    index_dir = Path(index_dir).expanduser()
    version = version or current_version(index_dir)
    if version is None:
        raise InputError("no published index here (no 'current' file)", path=index_dir,
                         hint="build one with `tava index --vectors DIR`")
    vdir = index_dir / VERSIONS_DIR / version
    if not (vdir / MANIFEST_FILE).is_file():
        raise IntegrityError(f"version {version} is missing or incomplete", path=vdir,
                             hint="roll back with `tava index --rollback` or rebuild")
    manifest = read_json(vdir / MANIFEST_FILE)
    if verify:
        for name, digest in manifest.get("files", {}).items():
            if sha256_file(vdir / name) != digest:
                raise IntegrityError("file does not match the index manifest (sha256)", path=vdir / name,
                                     hint="rebuild the index or roll back to the previous version")
    index = faiss.read_index(str(vdir / INDEX_FILE))
    params = manifest.get("search_params", {})
    apply_search_params(index, params.get("nprobe", 16), params.get("efSearch", 64), params.get("k_factor_rf", 4))
    ids = pq.read_table(vdir / IDS_FILE).column("id").to_pylist()
    if len(ids) != index.ntotal:
        raise IntegrityError(f"{len(ids)} ids for {index.ntotal} vectors", path=vdir / IDS_FILE)
    return LoadedIndex(index=index, ids=ids, manifest=manifest, path=vdir)


def search(loaded: LoadedIndex, query_vectors: np.ndarray, k: int = 10) -> tuple[list[list[str]], np.ndarray]:
    """Top-``k`` string ids and scores per query (cosine/ip: similarity; l2: squared distance).

    Queries are normalised the way the index was built. Fewer than ``k`` hits leave short rows.
    """
    queries = np.atleast_2d(np.asarray(query_vectors, dtype=np.float32))
    if queries.shape[1] != loaded.index.d:
        raise InputError(f"query vectors have dim {queries.shape[1]}, the index {loaded.index.d}",
                         path=loaded.path, hint="encode queries with the encoder the index was built from")
    queries = _prepare(queries.copy(), loaded.metric)
    scores, labels = loaded.index.search(queries, k)
    id_rows = [[loaded.ids[j] for j in row if j >= 0] for row in labels]
    return id_rows, scores


# ----------------------------------------------------------------------------- registry kind

def verify_index_version(version_dir: Path) -> None:
    """Raise unless the version loads and matches its manifest (before ``current`` moves there)."""
    load_index(version_dir.parent.parent, version=version_dir.name)


INDEXES = register_kind(ArtifactKind(
    name="indexes", verify=verify_index_version, marker=MANIFEST_FILE,
    load=lambda version_dir: load_index(version_dir.parent.parent, version=version_dir.name)))
