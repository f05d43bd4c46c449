"""A confidence router saved as a directory, and the query encoder ``load_encoder`` makes of it.

Directory layout (written atomically, ``router.json`` describes ``router.safetensors``):
- ``router.safetensors``: the signal model (heads, maps, PCA bank, word counts) and the combiner;
- ``router.json``: student and teacher specs with their fingerprints, signal settings, the
  calibration record, the threshold (from a budget or a target agreement) and the routing policy
  (``routing``: adaptive or fixed, see threshold.py; a router saved without one is fixed);
- ``tava_encoder.json``: ``{"type": "router", "student": {...}, "teacher": {...}}``.

Queries: the student (+ adapter) encodes the batch, the router scores confidence, and only the
queries under the threshold are re-encoded by the teacher (with a budget and the adaptive policy,
the threshold follows the confidence of recent live queries). Documents are always the teacher's.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..config import EncoderSpec
from ..encoders.base import Encoder, TextKind, combine_fingerprint
from ..errors import ConfigError, ModelLoadError, TavaError
from ..io import atomic_directory, read_json, sha256_file, write_json
from ..modeldir import ENCODER_MARKER
from .calibrate import Calibration, confidence
from .config import ROUTER_JSON, ROUTER_WEIGHTS, ThresholdPolicy
from .fast import CompiledConfidence
from .signals import SignalModel
from .threshold import LiveThreshold

FORMAT = "tava-router-1"
# What a router.json without a "routing" entry (saved before the adaptive policy) routes with.
SAVED_BEFORE_POLICIES = ThresholdPolicy(mode="fixed")


def check_budget(budget: float, *, where: str = "teacher_budget") -> float:
    if not 0.0 <= float(budget) <= 1.0:
        raise ConfigError(f"{where} must be a share of queries in [0, 1], got {budget}",
                          hint="e.g. --teacher-budget 0.1 sends the least confident 10% of queries to the teacher")
    return float(budget)


@dataclass
class Threshold:
    """Confidence threshold: queries whose confidence is below it go to the teacher."""

    mode: str                 # "budget" | "agreement"
    value: float              # the budget share, or the target agreement
    threshold: float          # on the confidence scale
    expected_share: float     # share of the calibration texts under it


def threshold_from(calibration: Calibration, *, teacher_budget: Optional[float] = None,
                   target_agreement: Optional[float] = None) -> Threshold:
    """A budget (share of queries the teacher may take) or a target agreement (the confidence is
    predicted agreement in the calibration target's units), exactly one of them."""
    if (teacher_budget is None) == (target_agreement is None):
        raise ConfigError("give exactly one of teacher_budget and target_agreement",
                          hint="--teacher-budget 0.1, or --target-agreement 0.7")
    if teacher_budget is not None:
        budget = check_budget(teacher_budget)
        threshold = -np.inf if budget == 0 else np.inf if budget == 1 else calibration.threshold_for_budget(budget)
        return Threshold("budget", budget, float(threshold), budget)
    assert target_agreement is not None  # exactly one of the two was given (checked above)
    if not 0.0 <= float(target_agreement) <= 1.0:
        raise ConfigError(f"target_agreement must be in [0, 1], got {target_agreement}",
                          hint=f"it is the predicted {calibration.target} agreement with the teacher, e.g. 0.7")
    return Threshold("agreement", float(target_agreement), float(target_agreement),
                     calibration.share_below(float(target_agreement)))


def save_router(directory: str | Path, *, student: EncoderSpec, student_fingerprint: str, teacher: EncoderSpec,
                teacher_fingerprint: str, signal_model: SignalModel, calibration: Calibration,
                threshold: Threshold, routing: Optional[ThresholdPolicy] = None, report: Optional[dict[str, Any]] = None,
                run_key: Optional[str] = None) -> Path:
    """Write a router directory atomically (weights, then the JSON files that describe them);
    ``routing``: the live threshold policy (default: adaptive); ``run_key`` (tava_core.reuse)
    lets an identical calibration be served from it."""
    from safetensors.numpy import save_file

    arrays = {**signal_model.arrays(), **calibration.arrays()}
    with atomic_directory(directory) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp / ROUTER_WEIGHTS),
                  metadata={"format": FORMAT})
        write_json(tmp / ROUTER_JSON, {
            "format": FORMAT,
            "student": {"spec": student.model_dump(mode="json"), "fingerprint": student_fingerprint},
            "teacher": {"spec": teacher.model_dump(mode="json"), "fingerprint": teacher_fingerprint},
            "signals": {"knn": signal_model.knn, "rare_below": signal_model.rare_below, "info": signal_model.info},
            "calibration": calibration.header(),
            "threshold": threshold.__dict__,
            "routing": (routing or ThresholdPolicy()).model_dump(mode="json"),
            "weights_sha256": sha256_file(tmp / ROUTER_WEIGHTS),
            "report": report or {},
            **({"run_key": run_key} if run_key else {}),
        })
        write_json(tmp / ENCODER_MARKER, {"type": "router", "student": student.model_dump(mode="json"),
                                          "teacher": teacher.model_dump(mode="json")})
    return Path(directory)


def check_teacher_space(student: Encoder, teacher: Encoder, *, error: type[TavaError] = ConfigError) -> None:
    """A router's student answers in the teacher's space: its queries are searched among the teacher's vectors."""
    if student.dim != teacher.dim:
        raise error(f"--student: {student.name} makes {student.dim}-d vectors, the teacher {teacher.name} "
                    f"{teacher.dim}-d ones; a router's student answers in the teacher's space",
                    hint="give the student + adapter (`tava adapt --student STUDENT` makes one that loads as an "
                         "encoder), or the teacher the student was distilled from")


class RoutedEncoder(Encoder):
    """Student (+ adapter) for confident queries, teacher for the rest; teacher for documents.

    ``threshold.threshold`` stays the calibrated one (what drift is measured against); with a
    budget and an adaptive ``routing`` policy, ``live`` decides instead (``live.threshold`` is the
    threshold it used last). ``fast_path`` (default) scores confidence with the compiled form
    (fast.py: the same numbers up to float rounding) and, for a static student, computes its
    vectors and the confidence in one token pass (fused.py; ``fuse_static=False`` keeps the
    student's own encode); False keeps ``calibrate.confidence``."""

    normalized = True

    def __init__(self, student: Encoder, teacher: Encoder, signal_model: SignalModel, calibration: Calibration,
                 threshold: Threshold, *, weights_sha256: str, name: str,
                 routing: Optional[ThresholdPolicy] = None, fast_path: bool = True,
                 fuse_static: bool = True, served_corpus: Optional[dict[str, Any]] = None) -> None:
        check_teacher_space(student, teacher, error=ModelLoadError)
        # the corpus whose documents the retrieval signals read (calibration's data.summary(); {} if unknown)
        self.served_corpus = dict(served_corpus or {})
        self.student, self.teacher = student, teacher
        self.signal_model, self.calibration, self.threshold = signal_model, calibration, threshold
        self.routing = routing or ThresholdPolicy()
        # a target agreement is a level of predicted agreement, not a share: it stays fixed
        adaptive = self.routing.mode == "adaptive" and threshold.mode == "budget"
        self.live = LiveThreshold(self.routing, threshold.value, calibration.quantiles) if adaptive else None
        self.weights_sha256 = weights_sha256
        self.fast_path, self.fuse_static = fast_path, fuse_static
        # (compiled confidence, fused static path or None): built at the first query, shared by with_budget
        self._fast_parts: Optional[tuple[CompiledConfidence, Any]] = None
        self._fast_lock = threading.Lock()
        self.name = name
        self.dim = teacher.dim
        self.queries_seen = 0
        self.queries_routed = 0
        self.last_routed_share = 0.0

    @property
    def fingerprint(self) -> str:
        # an adaptive router's outputs depend on its policy too (a fixed one keeps its earlier fingerprint)
        policy = [] if self.live is None else [self.routing.model_dump_json()]
        return combine_fingerprint(self.student.fingerprint, self.teacher.fingerprint, self.weights_sha256,
                                   self.threshold.threshold, *policy)

    def with_budget(self, teacher_budget: float, routing: Optional[ThresholdPolicy] = None) -> "RoutedEncoder":
        """The same router with its threshold set by another budget (and optionally another routing
        policy); statistics and the live window start at zero."""
        other = RoutedEncoder(self.student, self.teacher, self.signal_model, self.calibration,
                              threshold_from(self.calibration, teacher_budget=teacher_budget),
                              weights_sha256=self.weights_sha256, name=self.name, routing=routing or self.routing,
                              fast_path=self.fast_path, fuse_static=self.fuse_static)
        other._fast_parts = self._fast_parts      # they depend on the signals and combiner only
        return other

    @property
    def compiled(self) -> CompiledConfidence:
        """The router's confidence score compiled for live queries (fast.py; built once, shared by
        with_budget and by `tava export`, which turns it into graph operations)."""
        return self._fast()[0]

    def _fast(self) -> tuple[CompiledConfidence, Any]:
        if self._fast_parts is None:
            with self._fast_lock:
                if self._fast_parts is None:
                    compiled = CompiledConfidence(self.signal_model, self.calibration)
                    fused = _fused_static(self.student, compiled) if self.fuse_static else None
                    self._fast_parts = (compiled, fused)
        return self._fast_parts

    def confidence(self, texts: Sequence[str], student_vectors: np.ndarray) -> np.ndarray:
        if self.fast_path:
            return self.compiled(texts, student_vectors)
        return confidence(self.signal_model, self.calibration, texts, student_vectors)

    def route(self, texts: Sequence[str], *, batch_size: int | None = None) -> dict[str, np.ndarray]:
        """Vectors plus what happened: ``routed`` (bool per query) and ``confidence``."""
        texts = list(texts)
        fused = self._fast()[1] if self.fast_path else None
        if fused is not None and texts:
            vectors, scores = fused(texts)
        else:
            vectors = self.student.encode(texts, kind="query", batch_size=batch_size)
            scores = self.confidence(texts, vectors) if texts else np.zeros(0, np.float32)
        return self._answer(texts, vectors, scores, batch_size)

    def route_searched(self, texts: Sequence[str], student_vectors: np.ndarray, result_scores: np.ndarray,
                       result_vectors: np.ndarray, *, batch_size: int | None = None) -> dict[str, np.ndarray]:
        """``route`` for a serving stack that searches its own index: ``student_vectors`` are
        ``self.student.encode(texts, kind="query")``, ``result_scores`` (n, k) the cosines of each
        query's k best documents in that search and ``result_vectors`` (n, k, dim) their teacher
        vectors, k >= ``self.compiled.results_needed()`` (11 for the default score). The confidence
        reads that list instead of the router's own pass over its document bank, which was most of a
        routed static query's cost. Returns what ``route`` returns; search again only for the
        ``routed`` queries, with their new vectors. Calibrate over the same documents the index holds
        (a corpus over ``doc_bank_size`` documents is sampled for the router's bank)."""
        texts = list(texts)
        vectors = np.asarray(student_vectors, dtype=np.float32)
        if len(vectors) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(vectors)} student vectors")
        scores = self.compiled.from_results(texts, vectors, result_scores, result_vectors) if texts \
            else np.zeros(0, np.float32)
        return self._answer(texts, vectors, scores, batch_size)

    def _answer(self, texts: list[str], vectors: np.ndarray, scores: np.ndarray,
                batch_size: int | None) -> dict[str, np.ndarray]:
        """Decide from the confidence, re-encode the routed queries with the teacher, count."""
        routed = self.live.decide(scores) if self.live is not None else scores < self.threshold.threshold
        sent = int(np.count_nonzero(routed))
        if sent:
            picked = [texts[i] for i in np.flatnonzero(routed)]
            vectors = vectors.copy()
            vectors[routed] = self.teacher.encode(picked, kind="query", batch_size=batch_size)
        self.queries_seen += len(texts)
        self.queries_routed += sent
        self.last_routed_share = sent / len(texts) if texts else 0.0
        return {"vectors": vectors, "routed": routed, "confidence": scores}

    def encode(self, texts: Sequence[str], *, kind: TextKind = "document", batch_size: int | None = None,
               show_progress: bool = False) -> np.ndarray:
        if kind == "document":
            return self.teacher.encode(texts, kind="document", batch_size=batch_size, show_progress=show_progress)
        return self.route(texts, batch_size=batch_size)["vectors"]

    @property
    def routed_share(self) -> float:
        """Share of all queries seen so far that went to the teacher."""
        return self.queries_routed / self.queries_seen if self.queries_seen else 0.0

    def info(self) -> dict[str, Any]:
        return {**super().info(), "student": self.student.info(), "teacher": self.teacher.info(),
                "threshold": self.threshold.__dict__, "routing": self.routing.model_dump(mode="json"),
                "live": self.live.state() if self.live is not None else None, "routed_share": self.routed_share}


def _fused_static(student: Encoder, compiled: CompiledConfidence) -> Any:
    """A static student's one-pass vectors + confidence (fused.py) when its widened table fits
    ``fused.MAX_TABLE_BYTES``; None for any other student (an adapted or transformer student pays
    for its own encoding many times over, and its confidence goes through ``compiled``), and for a
    score that applies no linear map to the vector (e.g. one full-dimension retrieval signal)."""
    from ..encoders.static import StaticEncoder

    if type(student) is not StaticEncoder or not compiled.matrix.shape[1]:
        return None         # (a score with no linear map of the vector has nothing to fuse)
    from .fused import MAX_TABLE_BYTES, FusedStatic, fused_table_bytes

    return FusedStatic(student, compiled) if fused_table_bytes(student, compiled) <= MAX_TABLE_BYTES else None


def _load_part(directory: Path, record: dict, role: str, outer: Optional[EncoderSpec]) -> Encoder:
    from ..encoders import load_encoder

    data = dict(record["spec"])
    model = str(data["model"])
    if not Path(model).is_absolute() and (directory / model).exists():
        data["model"] = str((directory / model).resolve())
    if outer is not None:
        data.update(device=outer.device, dtype=outer.dtype, batch_size=outer.batch_size)
    try:
        encoder = load_encoder(EncoderSpec.model_validate(data))
    except ModelLoadError as exc:
        raise ModelLoadError(f"the router's {role} {model!r} cannot be loaded: {exc.message}",
                             path=directory / ROUTER_JSON,
                             hint=f"put the {role} back at that path, or recalibrate: "
                                  f"tava calibrate-router --{role} MODEL ...") from None
    if encoder.fingerprint != record["fingerprint"]:
        raise ModelLoadError(f"the router was calibrated for {role} fingerprint {record['fingerprint'][:12]} but "
                             f"{model!r} now has {encoder.fingerprint[:12]} (retrained or different options)",
                             path=directory / ROUTER_JSON,
                             hint=f"recalibrate the router with this {role}: tava calibrate-router --{role} {model}")
    return encoder


def load_router(directory: str | Path, spec: Optional[EncoderSpec] = None, *,
                teacher_budget: Optional[float] = None, routing: Optional[ThresholdPolicy] = None) -> RoutedEncoder:
    """Factory for ``ENCODER_TYPES['router']``; ``teacher_budget`` overrides the saved threshold,
    ``routing`` the saved policy."""
    from safetensors.numpy import load_file

    directory = Path(directory)
    meta_path = directory / ROUTER_JSON
    if not meta_path.is_file() or not (directory / ROUTER_WEIGHTS).is_file():
        raise ModelLoadError(f"not a router directory (needs {ROUTER_JSON} and {ROUTER_WEIGHTS})", path=directory,
                             hint="make one with `tava calibrate-router`")
    meta = read_json(meta_path)
    if meta.get("format") != FORMAT:
        raise ModelLoadError(f"unknown router format {meta.get('format')!r}", path=meta_path,
                             hint=f"this tava reads {FORMAT}; recalibrate with `tava calibrate-router`")
    if sha256_file(directory / ROUTER_WEIGHTS) != meta["weights_sha256"]:
        raise ModelLoadError(f"{ROUTER_WEIGHTS} does not match the checksum in {ROUTER_JSON} (changed or truncated)",
                             path=directory / ROUTER_WEIGHTS, hint="recalibrate with `tava calibrate-router`")
    arrays = load_file(str(directory / ROUTER_WEIGHTS))
    signals = meta["signals"]
    signal_model = SignalModel.from_arrays(arrays, knn=int(signals["knn"]), rare_below=int(signals["rare_below"]),
                                           info=signals.get("info", {}))
    calibration = Calibration.from_parts(meta["calibration"], arrays)
    student = _load_part(directory, meta["student"], "student", spec)
    teacher = _load_part(directory, meta["teacher"], "teacher", spec)
    threshold = (threshold_from(calibration, teacher_budget=teacher_budget) if teacher_budget is not None
                 else Threshold(**meta["threshold"]))
    if routing is None:
        try:
            routing = ThresholdPolicy.model_validate(meta["routing"]) if "routing" in meta else SAVED_BEFORE_POLICIES
        except ValueError as exc:   # pydantic's ValidationError is a ValueError
            raise ModelLoadError(f"its 'routing' entry is not a routing policy: {exc}", path=meta_path,
                                 hint="fix or delete the 'routing' entry (without one the saved threshold is used), "
                                      "or recalibrate with `tava calibrate-router`") from None
    return RoutedEncoder(student, teacher, signal_model, calibration, threshold,
                         weights_sha256=meta["weights_sha256"], name=directory.name, routing=routing,
                         served_corpus=(meta.get("report") or {}).get("dataset"))
