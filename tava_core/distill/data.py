"""Training pairs: texts of ingested collections joined by id with the teacher's cached vectors."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import InputError, IntegrityError
from ..home import TavaHome, find_dataset
from ..io import document_texts, read_text_shard, sha256_file
from ..manifest import load_dataset_manifest, read_vector_dir


@dataclass
class TrainingData:
    texts: list[str]
    vectors: np.ndarray
    sources: list[dict] = field(default_factory=list)  # one record per (dataset, collection)
    # what ``vectors`` hold when they are not the teacher's own (distill.residual): a small JSON-able record
    targets: Optional[dict] = None

    @property
    def key(self) -> str:
        """Identifies the data (for checkpoints): shard checksums and teacher fingerprints (and the
        targets' record, when they are not the teacher's vectors)."""
        from ..io import stable_hash

        parts: list = [(s["dataset"], s["collection"], s["text_sha256"], s["fingerprint"], s["rows"])
                       for s in self.sources]
        return stable_hash(parts if self.targets is None else [parts, self.targets], 24)

    @property
    def portable_key(self) -> str:
        """``key`` without the directory the targets' partner was named by (its fingerprint stays): the
        same data wherever the home is. ``key`` is what runs recorded before session 43 hold."""
        if self.targets is None or "partner" not in self.targets:
            return self.key
        return replace(self, targets={k: v for k, v in self.targets.items() if k != "partner"}).key


def training_collections(manifest_collections: Sequence[str], wanted: Sequence[str], dataset_dir: Path) -> list[str]:
    """The collections to train on: those asked for, else all but ``queries``."""
    if wanted:
        present = [c for c in wanted if c in manifest_collections]
        if not present:
            raise InputError(f"dataset has none of the collections {list(wanted)} (it has: "
                             f"{', '.join(manifest_collections)})", path=dataset_dir,
                             hint="choose --collections among those listed")
        return present
    chosen = [c for c in manifest_collections if c != "queries"]
    if not chosen:
        raise InputError("dataset has no collection to train on (only queries)", path=dataset_dir)
    return chosen


def read_collection_texts(dataset_dir: Path, shards) -> tuple[list[str], list[str], str]:  # noqa: ANN001
    """(ids, texts, combined sha256) of one collection; texts as the embedder saw them."""
    ids: list[str] = []
    texts: list[str] = []
    digests = []
    for shard in shards:
        table = read_text_shard(dataset_dir / shard.path)
        ids.extend(table.column("id").to_pylist())
        texts.extend(document_texts(table))
        digests.append(shard.sha256)
    from ..io import stable_hash

    return ids, texts, stable_hash(digests, 24)


def load_pair(dataset_dir: Path, collection: str, vector_dir: Path, teacher_fingerprint: Optional[str],
              teacher_dim: Optional[int]) -> tuple[list[str], np.ndarray, dict]:
    """Texts and teacher vectors of one collection, aligned by id, after checking the vectors."""
    manifest = load_dataset_manifest(dataset_dir)
    ids, texts, text_sha = read_collection_texts(dataset_dir, manifest.collections[collection].shards)
    vec_ids, vectors, vec_manifest = read_vector_dir(vector_dir)
    if teacher_fingerprint is not None and vec_manifest.fingerprint != teacher_fingerprint:
        raise IntegrityError(
            f"these vectors were made by encoder {vec_manifest.encoder.get('name')!r} (fingerprint "
            f"{vec_manifest.fingerprint[:12]}), not by the teacher named (fingerprint {teacher_fingerprint[:12]})",
            path=Path(vector_dir) / "manifest.json",
            hint="embed the corpus with the teacher (`tava embed --encoder TEACHER`) or name the teacher that made them")
    if teacher_dim is not None and vec_manifest.dim != teacher_dim:
        raise IntegrityError(f"vectors have {vec_manifest.dim} dimensions, the teacher has {teacher_dim}",
                             path=Path(vector_dir) / "manifest.json")
    position = {vid: i for i, vid in enumerate(vec_ids)}
    missing = [i for i in ids if i not in position]
    if missing:
        raise IntegrityError(f"{len(missing)} of {len(ids)} texts have no teacher vector (e.g. id {missing[0]!r})",
                             path=vector_dir, hint="re-run `tava embed` for this collection")
    aligned = vectors[np.fromiter((position[i] for i in ids), dtype=np.int64, count=len(ids))]
    bad = ~np.isfinite(aligned).all(axis=1)
    if bad.any():
        raise IntegrityError(f"{int(bad.sum())} teacher vectors contain NaN/inf (e.g. id {ids[int(np.argmax(bad))]!r})",
                             path=vector_dir, hint="delete the vector directory and re-run `tava embed`")
    record = {"dataset": manifest.name, "collection": collection, "dataset_dir": str(dataset_dir),
              "vector_dir": str(vector_dir), "rows": len(ids), "text_sha256": text_sha,
              "fingerprint": vec_manifest.fingerprint, "encoder": vec_manifest.encoder.get("name")}
    return texts, aligned.astype(np.float32, copy=False), record


def load_training_data(pairs: Sequence[tuple[Path, str, Path]], *, teacher_fingerprint: Optional[str],
                       teacher_dim: Optional[int], max_texts: Optional[int] = None) -> TrainingData:
    """Concatenate every (dataset dir, collection, vector dir) pair, in order; ``max_texts`` keeps
    the first N texts (so a smaller run trains on a prefix of a larger one)."""
    texts: list[str] = []
    blocks = []
    sources = []
    for dataset_dir, collection, vector_dir in pairs:
        t, v, record = load_pair(Path(dataset_dir), collection, Path(vector_dir), teacher_fingerprint, teacher_dim)
        texts.extend(t)
        blocks.append(v)
        sources.append(record)
    vectors = np.concatenate(blocks) if blocks else np.zeros((0, teacher_dim or 0), np.float32)
    if max_texts is not None and len(texts) > max_texts:
        texts, vectors = texts[:max_texts], vectors[:max_texts]
        sources.append({"dataset": "max_texts", "collection": "", "text_sha256": "", "fingerprint": "",
                        "rows": max_texts})
    return TrainingData(texts=texts, vectors=vectors, sources=sources)


def default_vector_dir(home: TavaHome, dataset_name: str, collection: str, teacher_name: str,
                       fingerprint: str) -> Path:
    return home.vector_dir(dataset_name, collection, teacher_name, fingerprint)


def resolve_pairs(home: TavaHome, datasets: Sequence[str], collections: Sequence[str],
                  teacher_vectors: Sequence[str], teacher_name: str, fingerprint: str) -> list[tuple[Path, str, Path]]:
    """(dataset dir, collection, vector dir) for every training collection.

    Explicit ``teacher_vectors`` are matched to collections by their manifests' dataset and
    collection; otherwise the embedding stage's cache location for this teacher is used.
    """
    from ..manifest import load_vector_manifest

    explicit: dict[tuple[str, str], Path] = {}
    for given_dir in teacher_vectors:
        vm = load_vector_manifest(given_dir)
        explicit[(vm.dataset, vm.collection)] = Path(given_dir)
    pairs = []
    for dataset in datasets:
        dataset_dir = find_dataset(home, dataset)
        manifest = load_dataset_manifest(dataset_dir)
        for collection in training_collections(list(manifest.collections), collections, dataset_dir):
            vdir = explicit.get((manifest.name, collection))
            if vdir is None:
                if teacher_vectors:
                    raise InputError(f"no teacher vectors given for {manifest.name}/{collection}",
                                     hint="pass one --teacher-vectors directory per training collection")
                vdir = default_vector_dir(home, manifest.name, collection, teacher_name, fingerprint)
                if not (vdir / "manifest.json").is_file():
                    raise InputError(f"the teacher's vectors of {manifest.name}/{collection} are not cached",
                                     path=vdir, hint=f"run `tava embed --dataset {manifest.name}` first "
                                                     "(the distill flow does this by itself)")
            pairs.append((dataset_dir, collection, vdir))
    return pairs


__all__ = ["TrainingData", "load_training_data", "resolve_pairs", "training_collections", "sha256_file"]
