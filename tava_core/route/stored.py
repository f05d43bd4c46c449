"""Routers from what a pipeline or a refresh already computed: the student's training pairs are
on disk as vector shards (bare student and teacher, keyed ``dataset/collection/id``), so the
router's "seen" manifold costs no encoding -- the bare student vectors go through the adapter's
map, and only a few hundred short span views of the served corpus are encoded (by student +
adapter and teacher) to calibrate against the true agreement.

Used by the ``tava-pipeline`` flow (router rows in the demo table) and the nightly refresh
(recalibration for each candidate adapter). Pure core: no Prefect.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..adapter.baselines import normalize_rows as _unit
from ..adapter.memory import map_alone
from ..config import EncoderSpec
from ..distill.spans import sample_span_views
from ..encoders import load_encoder
from ..encoders.base import Encoder
from ..encoders.mapped import MappedEncoder
from ..errors import ConfigError, InputError
from ..home import TavaHome
from ..io import read_json
from ..manifest import load_dataset_manifest, load_vector_manifest
from ..reuse import finished_record, run_key
from .build import TextVectors, fit_router
from .config import RouterSettings, ThresholdPolicy
from .router import ROUTER_JSON, ROUTER_WEIGHTS, save_router, threshold_from

log = logging.getLogger(__name__)

CALIBRATION_SEED = 1234   # span views for calibration differ from Stage A's training spans (seed 0)
NESTED_STUDENT = ".."     # a router saved inside its adapter's directory names the adapter so


@dataclass
class ServedCorpus:
    """The documents a router will serve: ids, texts and the teacher's vectors of them, plus a key
    naming their content (for the router's run key)."""

    ids: list[str]
    texts: list[str]
    teacher_vectors: np.ndarray
    key: str


def saved_student_path(student: str, router_dir: Path) -> str:
    """How a router saved at ``router_dir`` names its student: relative (``..``, ``../blend``) when the
    student lies in the directory the router sits in -- an adapter's version directory, which the registry
    moves as one -- else absolute (a local path) or as given (an alias)."""
    path = Path(student)
    if not path.exists():
        return student
    home = router_dir.parent.resolve()
    resolved = path.resolve()
    if resolved == home:
        return NESTED_STUDENT
    if home in resolved.parents:
        return str(Path(NESTED_STUDENT) / resolved.relative_to(home))
    return str(resolved)


def texts_by_key(keys: Sequence[str], home: TavaHome) -> dict[str, str]:
    """Text of every ``dataset/collection/id`` key whose dataset is ingested in ``home`` (each
    collection read once); keys of missing datasets or collections are left out."""
    from ..distill.data import read_collection_texts

    wanted: dict[tuple[str, str], set[str]] = {}
    for key in keys:
        dataset, collection, _ = key.split("/", 2)
        wanted.setdefault((dataset, collection), set()).add(key)
    found: dict[str, str] = {}
    for (dataset, collection), members in wanted.items():
        directory = home.dataset_dir(dataset)
        if not (directory / "manifest.json").is_file():
            continue
        manifest = load_dataset_manifest(directory)
        if collection not in manifest.collections:
            continue
        ids, texts, _ = read_collection_texts(directory, manifest.collections[collection].shards)
        for doc_id, text in zip(ids, texts, strict=True):
            key = f"{dataset}/{collection}/{doc_id}"
            if key in members:
                found[key] = text
    return found


def pairs_key(student_dirs: Sequence[str], teacher_dirs: Sequence[str]) -> list[Any]:
    """Content key of vector directories: their encoders' fingerprints and shard sha256s."""
    manifests = [load_vector_manifest(d) for d in [*student_dirs, *teacher_dirs]]
    return [[m.fingerprint, [s.sha256 for s in m.shards]] for m in manifests]


def _vector_map(adapted: Encoder, student_fingerprint: str) -> Callable[[np.ndarray, Sequence[str]], np.ndarray]:
    """How stored bare-student vectors (and their texts) become the router student's vectors: nothing
    when the router's student is the bare student itself, the adapter's map when it is student + adapter,
    and for a blend each member's vectors so made (a member the stored vectors cannot give, e.g. its
    static student, encodes the texts: a static student's cost is negligible), weighed as the blend
    weighs them."""
    from ..encoders.blend import BlendEncoder

    if adapted.fingerprint == student_fingerprint:
        return lambda x, texts: x
    if isinstance(adapted, MappedEncoder) and adapted.inner.fingerprint == student_fingerprint:
        mapped = map_alone(adapted.mapper)    # these are the adapter's own training texts
        return lambda x, texts: mapped(x)
    if isinstance(adapted, BlendEncoder):
        parts = [_member_map(member, student_fingerprint) for member in adapted.members]
        if any(part is not None for part in parts):    # at least one member is made from the stored vectors
            def blended(x: np.ndarray, texts: Sequence[str]) -> np.ndarray:
                total = np.zeros((len(x), adapted.dim), dtype=np.float32)
                for member, part, weight in zip(adapted.members, parts, adapted.weights, strict=True):
                    vectors = part(x, texts) if part is not None else member.encode(list(texts), kind="document")
                    total += weight * _unit(np.asarray(vectors, dtype=np.float32))
                return _unit(total)
            return blended
    raise ConfigError(f"the stored student vectors (encoder {student_fingerprint[:12]}) were not made by the "
                      f"router's student {adapted.name!r} nor by the student inside it",
                      hint="give the vectors of the student the adapter was trained on")


def _member_map(member: Encoder, student_fingerprint: str) -> Optional[Callable[[np.ndarray, Sequence[str]], np.ndarray]]:
    """``_vector_map`` for one blend member, or None when the stored vectors do not make it."""
    try:
        return _vector_map(member, student_fingerprint)
    except ConfigError:
        return None


def reference_pairs(adapted: Encoder, student_dirs: Sequence[str], teacher_dirs: Sequence[str], home: TavaHome, *,
                    max_texts: int, seed: int) -> TextVectors:
    """Up to ``max_texts`` stored training pairs (seeded sample) with their texts, the student side
    mapped into the router student's space."""
    from ..adapter.data import join_pairs, read_side

    student_side = read_side(list(student_dirs), "student")
    keys, student, teacher = join_pairs(student_side, read_side(list(teacher_dirs), "teacher"))
    pick = np.sort(np.random.default_rng(seed).permutation(len(keys))[:max_texts])
    texts = texts_by_key([keys[i] for i in pick], home)
    rows = [i for i in pick if keys[i] in texts]
    if len(rows) < 16:
        raise InputError(f"only {len(rows)} stored training pairs have their texts (need 16)", path=student_dirs[0],
                         hint="the datasets the vectors were embedded from must still be ingested in this home")
    mapped = _vector_map(adapted, student_side.fingerprint)(student[rows], [texts[keys[i]] for i in rows])
    return TextVectors([texts[keys[i]] for i in rows], mapped, teacher[rows])


def calibration_views(ids: Sequence[str], texts: Sequence[str], n: int, seed: int = CALIBRATION_SEED) -> list[str]:
    """``n`` short span views of the served documents: query stand-ins, no labels."""
    return sample_span_views(ids, texts, n, seed)


def calibrate_stored(*, adapted: EncoderSpec, teacher: EncoderSpec, student_dirs: Sequence[str],
                     teacher_dirs: Sequence[str], served: ServedCorpus, out: str | Path, home: TavaHome,
                     settings: RouterSettings, teacher_budget: float, calibration_texts: int = 300,
                     max_reference_texts: int = 2000, routing: Optional[ThresholdPolicy] = None) -> dict[str, Any]:
    """Fit and save a router for ``adapted`` (a student + adapter directory, or a student) from its
    stored training pairs; reused when an identical one is already at ``out``. Saved inside the
    adapter's own directory, the router names its student ``..`` so the two move together."""
    started = time.perf_counter()
    out = Path(out)
    routing = routing or ThresholdPolicy()
    student = load_encoder(adapted, cache=False)
    teacher_encoder = load_encoder(teacher)
    key = run_key({"student": student.fingerprint, "teacher": teacher_encoder.fingerprint,
                   "pairs": pairs_key(student_dirs, teacher_dirs), "served": served.key,
                   "settings": settings.model_dump(mode="json"), "budget": teacher_budget,
                   "routing": routing.model_dump(mode="json"),
                   "calibration_texts": calibration_texts, "max_reference_texts": max_reference_texts})
    earlier = finished_record(out / ROUTER_JSON, key, [ROUTER_WEIGHTS])
    if earlier is not None:
        log.info("router for %s: an identical one is already at %s (reused)", student.name, out)
        return {"directory": str(out), "threshold": earlier["threshold"], "routing": earlier.get("routing"),
                "calibration": earlier["calibration"]["info"], "reused": True, "seconds": round(time.perf_counter() - started, 2), **earlier["report"]}
    reference = reference_pairs(student, student_dirs, teacher_dirs, home, max_texts=max_reference_texts,
                                seed=settings.seed)
    views = calibration_views(served.ids, served.texts, calibration_texts)
    log.info("router for %s: %d stored Stage B pairs as reference texts; encoding %d calibration span views of the "
             "served corpus with the student and the teacher %s", student.name, len(reference.texts), len(views),
             teacher_encoder.name)
    calibration = TextVectors(views, student.encode(views, kind="query"), teacher_encoder.encode(views, kind="query"))
    log.info("router for %s: fitting the signal model (%s) and its threshold for a teacher budget of %.0f%%",
             student.name, ", ".join(settings.signals), 100 * teacher_budget)
    model, fitted = fit_router(reference, calibration, served.teacher_vectors, settings)
    threshold = threshold_from(fitted, teacher_budget=teacher_budget)
    saved_spec = adapted.model_copy(update={"model": saved_student_path(adapted.model, out)})
    report = {"served": served.key, "reference_texts": len(reference.texts), "calibration_texts": len(views),
              "settings": settings.model_dump(mode="json"), "calibration_seconds": round(time.perf_counter() - started, 2)}
    save_router(out, student=saved_spec, student_fingerprint=student.fingerprint, teacher=teacher,
                teacher_fingerprint=teacher_encoder.fingerprint, signal_model=model, calibration=fitted,
                threshold=threshold, routing=routing, report=report, run_key=key)
    return {"directory": str(out), "threshold": threshold.__dict__, "routing": routing.model_dump(mode="json"),
            "calibration": fitted.info, "reused": False,
            "seconds": round(time.perf_counter() - started, 2), **report}


def router_record(directory: str | Path) -> Optional[dict[str, Any]]:
    """``router.json`` of a router directory, or None when there is none."""
    path = Path(directory) / ROUTER_JSON
    return read_json(path) if path.is_file() else None


def evaluated_speedup(router_dir: str | Path, encoders: dict[str, dict[str, Any]],
                      throughput: dict[str, float]) -> Optional[float]:
    """The router's student's query speed over the teacher's as one evaluation timed them side by side (a query
    role whose encoder has the student's fingerprint, and the teacher role), or None when it did not time both
    (the router then times the teacher itself)."""
    meta = router_record(router_dir)
    if meta is None or not throughput.get("teacher"):
        return None
    if encoders.get("teacher", {}).get("fingerprint") != meta["teacher"]["fingerprint"]:
        return None
    for role, info in encoders.items():
        if role != "teacher" and info.get("fingerprint") == meta["student"]["fingerprint"] and throughput.get(role):
            return throughput[role] / throughput["teacher"]
    return None


def served_retrieval(dataset: str, split: str, teacher: EncoderSpec, home: TavaHome,
                     judgements: Optional[str] = None):
    """A retrieval dataset's corpus as a ``ServedCorpus`` (teacher vectors from the evaluation's
    corpus cache), and the dataset itself for scoring routed modes on its split (or ``judgements``')."""
    from ..evaluate.data import load_retrieval_data
    from ..evaluate.vectors import embed_corpus, load_corpus_vectors

    data = load_retrieval_data(dataset, split, home, judgements)
    encoder = load_encoder(teacher)
    documents = load_corpus_vectors(data, embed_corpus(data, encoder, home, show_progress=False))
    return ServedCorpus(ids=list(data.corpus_ids), texts=data.document_texts, teacher_vectors=documents,
                        key=run_key([data.corpus_checksum, encoder.fingerprint])), data


def evaluate_stored(router_dir: str | Path, data, home: TavaHome, out_dir: str | Path, *, shares: Sequence[float],
                    documents: Optional[np.ndarray] = None, measure_costs: bool = True,
                    student_speedup: Optional[float] = None) -> dict[str, Any]:
    """``run.evaluate_router`` at ``shares``, served from ``out_dir/route.json`` when the same router
    (weights, student, teacher, threshold) was scored on the same data at the same shares (and costs)."""
    from .run import evaluate_router

    meta = router_record(router_dir)
    if meta is None:
        raise InputError("not a router directory", path=router_dir, hint="make one with `tava calibrate-router`")
    key = run_key({"router": [meta["weights_sha256"], meta["student"]["fingerprint"], meta["teacher"]["fingerprint"],
                              meta["threshold"], meta.get("routing")], "data": data.summary(), "queries": list(data.query_ids),
                   "shares": [float(s) for s in shares], "costs": measure_costs,
                   **({"student_speedup": student_speedup} if student_speedup is not None else {})})
    earlier = finished_record(Path(out_dir) / "route.json", key)
    if earlier is not None:
        return {**earlier, "reused": True}
    curves = evaluate_router(router_dir, data, home, Path(out_dir), shares=shares, documents=documents,
                             measure_costs=measure_costs, student_speedup=student_speedup, run_key=key)
    return {**curves, "reused": False}


def curve_row(curves: dict[str, Any], share: float) -> dict[str, Any]:
    """The row of ``curves`` at ``share`` (KeyError naming the shares there are)."""
    for row in curves["rows"]:
        if abs(row["share"] - share) < 1e-9:
            return row
    raise KeyError(f"no routing row at share {share}; have {[r['share'] for r in curves['rows']]}")
