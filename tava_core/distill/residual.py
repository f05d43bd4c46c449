"""Targets for the second member of a blend: the teacher's vectors less what the first member already says.

A blend (``tava_core.encoders.blend``) searches with ``w * a(q) + (1 - w) * b(q)`` (unit vectors). Trained
on its own, the static member ``b`` learns the teacher as well as a bag of token vectors can, and so
repeats much of what the transformer member ``a`` gets right. Trained towards
``normalize(t - weight * a(x))`` instead, it learns the teacher's direction where ``a`` is right (the
target is then ``t`` again) and the correction where ``a`` is off, which is what the sum needs.
Measured on SciFact's dev queries and the built-in data: docs/mpnet.md (bench/blend.py --b-alt).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np

from ..adapter.baselines import normalize_rows as _unit
from ..adapter.memory import map_alone
from ..embed import current_jobs, plan_collection
from ..encoders.base import Encoder
from ..encoders.mapped import MappedEncoder
from ..errors import ConfigError
from ..io import read_vector_shard
from ..manifest import load_dataset_manifest
from .data import TrainingData

if TYPE_CHECKING:
    from ..home import TavaHome

log = logging.getLogger(__name__)


def residual_targets(teacher: np.ndarray, partner: np.ndarray, weight: float) -> np.ndarray:
    """``normalize(unit(teacher) - weight * unit(partner))`` row by row, float32. ``weight`` in [0, 1):
    0 gives the teacher's own vectors back."""
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"weight must be in [0, 1), got {weight}")
    if teacher.shape != partner.shape:
        raise ValueError(f"teacher vectors {teacher.shape} and partner vectors {partner.shape} differ in shape")
    return _unit(_unit(teacher.astype(np.float32)) - weight * _unit(partner.astype(np.float32))).astype(np.float32)


def residual_record(partner: Encoder, weight: float, *, spec: str, dim: int) -> dict:
    """What residual targets against ``partner`` are, as ``TrainingData.targets`` records it: the partner's
    fingerprint and the weight, which go into the data's key (a new partner trains again). Known before the
    partner encodes anything, so a finished run is found without encoding the texts again."""
    if partner.dim != dim:
        raise ConfigError(f"blend partner {spec!r} makes {partner.dim}-d vectors, the teacher {dim}-d",
                          hint="give the query encoder the student will be blended with: a student of the same "
                               "teacher, or its Stage B directory")
    return {"kind": "residual", "partner": spec, "partner_fingerprint": partner.fingerprint, "weight": weight}


def cached_vectors(data: TrainingData, encoder: Encoder, home: "TavaHome") -> Optional[np.ndarray]:
    """``encoder``'s vectors of ``data.texts`` from the home's vector cache, when every training collection's
    shards there are current (embedding's own rule: same text shard, encoder and kind; `tava run` embeds the
    student's for Stage B), else None. A vector shard holds its text shard's rows in order, as the training
    texts do. Only for an encoder whose queries and documents are encoded alike (no prompts): the cache holds
    document encodings."""
    spec = getattr(encoder, "spec", None)
    if spec is None or spec.query_prefix != spec.document_prefix:
        return None
    blocks: list[np.ndarray] = []
    for source in data.sources:
        if source.get("dataset") == "max_texts":   # the cut below keeps the same prefix
            continue
        if "dataset_dir" not in source:
            return None
        dataset_dir = Path(source["dataset_dir"])
        try:
            _, jobs = plan_collection(home, dataset_dir, load_dataset_manifest(dataset_dir), source["collection"],
                                      encoder)
            if len(current_jobs(jobs, encoder.fingerprint)) != len(jobs):
                return None
            blocks.extend(read_vector_shard(job.out_path)[1] for job in jobs)
        except Exception as exc:  # noqa: BLE001 - a damaged cache is encoded again, never trusted
            log.warning("the cached vectors of %s/%s are not usable (%s); encoding the texts instead",
                        source["dataset"], source["collection"], exc)
            return None
    if not blocks:
        return None
    cached = np.concatenate(blocks)[:len(data.texts)]
    return cached if len(cached) == len(data.texts) else None


def towards_residual(data: TrainingData, partner: Encoder, weight: float, *, spec: str,
                     progress: bool = False, home: Optional["TavaHome"] = None) -> TrainingData:
    """``data`` with its teacher vectors replaced by residual targets against ``partner``'s vectors of the
    same texts (encoded as queries: the blend encodes queries); ``targets`` is ``residual_record``. With
    ``home``, vectors the partner's encoder already wrote there (`cached_vectors`) are read, not computed."""
    targets = residual_record(partner, weight, spec=spec, dim=data.vectors.shape[1])
    inner = partner.inner if isinstance(partner, MappedEncoder) else partner
    own = cached_vectors(data, inner, home) if home is not None else None
    if own is None:
        own = inner.encode(data.texts, kind="query", batch_size=64, show_progress=progress)
    if isinstance(partner, MappedEncoder):  # its adapter's memory holds these very texts: the map alone
        own = map_alone(partner.mapper)(own)
    return TrainingData(texts=data.texts, vectors=residual_targets(data.vectors, own, weight),
                        sources=data.sources, targets=targets)
