"""Calibrate a router from datasets (what flow ``calibrate-router`` runs) and evaluate one on a
retrieval split (what ``tava evaluate --router`` adds). Pure core: no Prefect."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..config import EncoderSpec
from ..distill.spans import make_spans, seeded_sample
from ..encoders import load_encoder
from ..encoders.base import Encoder
from ..errors import ConfigError
from ..evaluate.data import RetrievalData, load_retrieval_data
from ..evaluate.vectors import embed_corpus, load_corpus_vectors, stored_query_vectors
from ..home import TavaHome
from ..ingest.readers import open_text
from .build import TextVectors, fit_router
from .config import RouterConfig, reference_location
from .curves import SHARES, curves_from_vectors
from .report import write_route_report
from .router import RoutedEncoder, check_teacher_space, load_router, save_router, threshold_from
from .stored import calibration_views
from .threshold import simulate_stream

log = logging.getLogger(__name__)


def read_texts(source: str, home: TavaHome) -> list[str]:
    """Texts of a BEIR directory's corpus, an ingested dataset (every collection but queries), or a
    .jsonl(.gz) file of objects with 'text' (``reference_location`` says which)."""
    kind, path = reference_location(source, home)
    if kind == "jsonl":
        with open_text(path) as handle:
            return [row["text"] for row in map(json.loads, handle) if row.get("text")]
    if kind == "beir":
        with open_text(path) as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
        return [f"{r.get('title', '')} {r['text']}".strip() for r in rows]
    from ..distill.data import read_collection_texts
    from ..manifest import load_dataset_manifest

    manifest = load_dataset_manifest(path)
    texts: list[str] = []
    for name, collection in manifest.collections.items():
        if name != "queries":
            texts.extend(read_collection_texts(path, collection.shards)[1])
    return texts


def calibrate_router(config: RouterConfig, home: TavaHome, *, split: str = "test",
                     show_progress: bool = False) -> dict[str, Any]:
    """Fit and save a router; returns its record (directory, threshold, calibration summary)."""
    started = time.time()
    student = load_encoder(config.student, cache=False)
    teacher = load_encoder(config.teacher)
    check_teacher_space(student, teacher)   # before any encoding
    threshold_from_check = (config.teacher_budget, config.target_agreement)
    # its documents alone: a corpus without qrels serves (the labels are never used here)
    data = load_retrieval_data(config.dataset, split, home, documents_only=True)
    log.info("teacher vectors of the %d documents of %s (encoded once, then reused)", len(data.corpus_ids), data.name)
    documents = load_corpus_vectors(data, embed_corpus(data, teacher, home, show_progress=show_progress))
    sources = config.reference or [config.dataset]
    reference_texts = [t for s in sources for t in read_texts(s, home)]
    base = seeded_sample(reference_texts, config.max_reference_texts // 2, config.settings.seed)
    _, spans = make_spans([str(i) for i in range(len(base))], base, 1, config.settings.seed)
    reference = base + spans     # texts and short views of them, as Stage A trains on
    calib = calibration_views(data.corpus_ids, data.document_texts, config.calibration_texts)
    # the encodings below are most of the run's time (each text by the student and by the teacher)
    log.info("encoding %d reference texts (%d training texts of %s and %d span views of them) with the student "
             "%s and the teacher %s", len(reference), len(base), ", ".join(sources), len(spans), student.name,
             teacher.name)
    ref = TextVectors(reference, student.encode(reference, kind="document", show_progress=show_progress),
                      teacher.encode(reference, kind="document", show_progress=show_progress))
    log.info("encoding %d calibration span views of %s's corpus with the student and the teacher", len(calib),
             data.name)
    cal = TextVectors(calib, student.encode(calib, kind="query", show_progress=show_progress),
                      teacher.encode(calib, kind="query", show_progress=show_progress))
    log.info("fitting the signal model (%s) on %d reference texts; calibrating it on %d span views against the "
             "student's agreement with the teacher (%s, top-10 of %d documents)", ", ".join(config.settings.signals),
             len(reference), len(calib), config.settings.target, len(documents))
    model, calibration = fit_router(ref, cal, documents, config.settings)
    budget, target = threshold_from_check
    threshold = threshold_from(calibration, teacher_budget=None if target is not None else budget,
                               target_agreement=target)
    # a target agreement is a fixed threshold (only a budget adapts to the traffic): saved as what it does
    routing = config.routing if target is None else config.routing.model_copy(update={"mode": "fixed"})
    out = Path(config.output) if config.output else home.artifacts / "routers" / config.name
    report = {"dataset": data.summary(), "reference": sources, "reference_texts": len(reference),
              "calibration_texts": len(calib), "settings": config.settings.model_dump(mode="json"),
              "seconds": time.time() - started}
    save_router(out, student=EncoderSpec(model=str(Path(config.student).resolve()) if Path(config.student).exists()
                                         else config.student),
                student_fingerprint=student.fingerprint, teacher=config.teacher,
                teacher_fingerprint=teacher.fingerprint, signal_model=model, calibration=calibration,
                threshold=threshold, routing=routing, report=report)
    return {"directory": str(out), "threshold": threshold.__dict__, "routing": routing.model_dump(mode="json"),
            "calibration": calibration.info, **report}


def per_query_seconds(fn, texts: Sequence[str], repeats: int = 3) -> float:
    """Best-of-``repeats`` seconds per query of ``fn(texts)`` (best = least disturbed on a shared CPU)."""
    fn(list(texts[:16]))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(list(texts))
        best = min(best, time.perf_counter() - start)
    return best / max(len(texts), 1)


LIVE_BATCH_SIZES = (1, 32)
# Queries the cost per query is timed on: a seeded sample (``seeded_sample``, in the split's order), since
# each cost is best of 3 passes and the teacher's pass is the slow one (mpnet over 384 SciFact abstracts as
# queries: ~80 s a pass here). A per-query mean over 256 random queries is as good a ratio as over all; a
# large query set no longer costs 3 more teacher passes over all of it.
COST_QUERIES = 256


def live_shares(router: RoutedEncoder, scores: np.ndarray,
                batch_sizes: Sequence[int] = LIVE_BATCH_SIZES) -> dict[str, float]:
    """Share of the queries the router sends to the teacher when they arrive in order, in batches
    of each size, from a fresh start (its policy's decisions replayed on their confidence scores)."""
    if router.threshold.mode != "budget":
        return {str(b): float((scores < router.threshold.threshold).mean()) for b in batch_sizes}
    return {str(b): float(simulate_stream(router.routing, router.threshold.value, router.calibration.quantiles,
                                          scores, b, router.threshold.threshold).mean()) for b in batch_sizes}


def query_vectors(encoder: Encoder, data: RetrievalData, home: TavaHome) -> tuple[np.ndarray, str]:
    """``encoder``'s vectors of the split's queries: an evaluation's when it kept them (the same texts, the same
    encoder fingerprint), else encoded now; and which ("reused" / "encoded")."""
    stored = stored_query_vectors(data, encoder, home)
    if stored is not None:
        return stored, "reused"
    return encoder.encode(data.query_texts, kind="query"), "encoded"


def served_elsewhere(router: RoutedEncoder, data: RetrievalData) -> Optional[str]:
    """Why this router's confidences do not belong to ``data`` (its retrieval signals read a bank of another
    corpus's documents), or None. A warning, not a refusal: a promotion gate may score a router on a corpus
    beside the one it serves, and the curves are still the router's, only not this corpus's router's."""
    served = router.served_corpus
    if not served.get("corpus_checksum") or served["corpus_checksum"] == data.corpus_checksum:
        return None
    # the checksum is of the file read (an ingested dataset's and its raw BEIR folder's differ): the same
    # name and document count is the same corpus
    if served.get("name") == data.name and served.get("documents") == len(data.corpus_ids):
        return None
    return (f"router {router.name} was calibrated on {served.get('name')!r} ({served.get('documents')} documents) and "
            f"its confidence reads a bank of those documents; {data.name!r} ({len(data.corpus_ids)} documents) is "
            f"another corpus, so its confidences and routed shares here are not what a router of this corpus would "
            f"give (fix: `tava calibrate-router --dataset {data.name} ...` to route this corpus)")


def evaluate_router(router: RoutedEncoder | str | Path, data: RetrievalData, home: TavaHome, out_dir: Path, *,
                    shares: Sequence[float] = SHARES, documents: Optional[np.ndarray] = None,
                    measure_costs: bool = True, student_speedup: Optional[float] = None,
                    run_key: Optional[str] = None) -> dict[str, Any]:
    """The routed mode's curves on one split (router vs random, longest-first and both oracles),
    the cost per query (unless ``measure_costs`` is off: a promotion gate needs quality only), and
    the share the router's own threshold actually routes; files in out_dir (``run_key`` recorded
    in route.json, for callers that reuse identical evaluations).

    The query vectors of the student and the teacher are an evaluation's when it kept them (their timing
    is not needed here). The costs are seconds per query, timed side by side: the student and the
    confidence always; the teacher too, unless ``student_speedup`` -- the student's query speed over the
    teacher's, measured side by side in the student's own evaluation -- is given: then the teacher's cost is
    the student's times it, and the teacher is not run at all. On long queries and a large teacher those
    passes were most of a pipeline's router step (mpnet, 283 abstracts as queries: ~10 of its 13 minutes)."""
    if student_speedup is not None and not student_speedup > 0:
        raise ConfigError(f"student_speedup must be a positive ratio, got {student_speedup}",
                          hint="pass the student's query speed over the teacher's from its evaluation")
    if not isinstance(router, RoutedEncoder):
        router = load_router(router)
    other_corpus = served_elsewhere(router, data)
    if other_corpus:
        log.warning("%s", other_corpus)
    if documents is None:
        documents = load_corpus_vectors(data, embed_corpus(data, router.teacher, home, show_progress=False))
    texts = data.query_texts
    student_q, student_source = query_vectors(router.student, data, home)
    teacher_q, teacher_source = query_vectors(router.teacher, data, home)
    scores = router.confidence(texts, student_q)
    costs = None
    if measure_costs:
        timed = seeded_sample(range(len(texts)), COST_QUERIES, seed=0)
        timed_texts, timed_q = [texts[i] for i in timed], student_q[timed]
        student_seconds = per_query_seconds(lambda t: router.student.encode(t, kind="query"), timed_texts)
        costs = {"student": student_seconds,
                 "confidence": per_query_seconds(lambda t: router.confidence(t, timed_q[:len(t)]), timed_texts),
                 "teacher": (student_seconds * student_speedup if student_speedup is not None else
                             per_query_seconds(lambda t: router.teacher.encode(t, kind="query"), timed_texts)),
                 "queries_timed": len(timed)}
    curves = curves_from_vectors(student_queries=student_q, teacher_queries=teacher_q, documents=documents,
                                 query_ids=data.query_ids, query_texts=texts, doc_ids=data.corpus_ids,
                                 qrels=data.qrels, confidence=scores, shares=shares, costs=costs)
    curves["threshold"] = router.threshold.__dict__
    curves["routed_share_at_threshold"] = float((scores < router.threshold.threshold).mean())
    curves["routing"] = router.routing.model_dump(mode="json")
    curves["routed_share_live"] = live_shares(router, scores)
    curves["dataset"] = data.summary()
    curves["router"] = {"name": router.name, "fingerprint": router.fingerprint,
                        "served_corpus": router.served_corpus.get("name")}
    if other_corpus:
        curves["warnings"] = [other_corpus]
    curves["query_vectors"] = {"student": student_source, "teacher": teacher_source}
    if costs is not None:
        curves["teacher_cost"] = ("timed" if student_speedup is None else
                                  f"the student's x {student_speedup:.4g} (its speed-up in its own evaluation)")
    if run_key is not None:
        curves["run_key"] = run_key
    curves["files"] = write_route_report(curves, out_dir)
    return curves
