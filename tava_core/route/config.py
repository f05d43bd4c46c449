"""``RouterConfig``: what `tava calibrate-router` / flow ``calibrate-router`` take (one definition
for the CLI, config files, flow parameters and the Prefect UI form)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal, Optional

from pydantic import Field, model_validator

from ..config import EncoderSpec, TavaModel, TeacherSpec
from .signals import ENTROPY_TOP, SIGNAL_NAMES
from .trust import TRUST_RIDGE

if TYPE_CHECKING:
    from ..home import TavaHome


class RouterSettings(TavaModel):
    """How the confidence score is built (chosen on SciFact's train queries in bench/route.py)."""

    # The cell margin alone (how deep the query sits in its best document's cell) is the default: on both
    # dev corpora, for the four benchmark students, at 10% and 20%, it recovered more of the gap than the
    # retrieval entropy (the default of sessions 14-20) in 12 of 16 cells, 0.05 more on average, and
    # bench/route.py chose it on dev for all four; the ridge combination of the two routed worse than either
    # (bench/route_default.py --compare cell_margin). The entropy had replaced manifold and word signals,
    # which routed about as well as random (SciFact dev, 10%: 0.10-0.14 of the gap, random 0.10).
    signals: list[str] = Field(default_factory=lambda: ["retrieval_cell_margin"], description=(
        f"Confidence signals to combine, from: {', '.join(SIGNAL_NAMES)}."))
    vector_components: int = Field(0, ge=0, le=256, description=(
        "Leading PCA components of the student's query vector given to the combiner as well (a learned "
        "confidence score: which regions of the space the student maps badly); 0 = signals only."))
    target: Literal["overlap", "cosine", "mean"] = Field("overlap", description=(
        "Agreement the combiner predicts: top-10 overlap of student and teacher results over the corpus, "
        "cosine of the two vectors, or their mean."))
    n_heads: int = Field(4, ge=2, le=16, description="Linear heads on bootstrap halves (head_disagreement).")
    bank_size: int = Field(4096, ge=16, description="Training texts kept (PCA-reduced) for knn_distance.")
    pca_dim: int = Field(64, ge=4, le=1024, description="PCA size of the bank (cost per query ~ bank_size x pca_dim).")
    knn: int = Field(10, ge=1, description="Neighbours averaged by knn_distance.")
    ridge_alpha: float = Field(10.0, gt=0, description="Ridge penalty of the combiner.")
    combiner: Literal["ridge", "rank", "pairwise", "low", "equal"] = Field("ridge", description=(
        "How the signals are combined (all linear, same query-time cost): ridge regression of the agreement, "
        "of its ranks, a pairwise logistic ranking, a logistic model of the least agreeing 20%, or the "
        "standardised signals' plain mean (equal weights, nothing fitted)."))
    doc_bank_size: int = Field(8192, ge=16, description=(
        "Corpus documents (teacher vectors, a random sample beyond this) kept for the retrieval_* signals."))
    doc_pca_dim: int = Field(0, ge=0, le=1024, description=(
        "PCA size of the document bank (cost per query ~ doc_bank_size x doc_pca_dim); 0 = full dimension."))
    doc_rescore: int = Field(0, ge=0, description=(
        "With a PCA document bank: rescore each query's this many best PCA candidates with their exact "
        "cosines (two-stage: the retrieval signals are then those of the full bank up to the candidates "
        f"missed, at about the PCA bank's cost); 0 = the PCA scores as they are. At least {ENTROPY_TOP}."))
    doc_clusters: int = Field(0, ge=0, le=4096, description=(
        "Spherical k-means clusters of a full-dimension document bank; with doc_probe, a query scores only the "
        "documents of its doc_probe nearest clusters (exactly): the retrieval signals then read a few hundred "
        "documents per query instead of the whole bank. 0 = every document."))
    doc_probe: int = Field(0, ge=0, description=(
        "Clusters whose documents each query scores (with doc_clusters); 0 = every document."))
    word_trust_ridge: float = Field(TRUST_RIDGE, gt=0, description=(
        "Ridge penalty of the word_trust table, in texts' worth of evidence: a word seen in fewer calibration "
        "texts than this is shrunk towards no trust information."))
    seed: int = Field(0, description="Seed for heads, bank and span sampling.")

    @model_validator(mode="after")
    def _known_signals(self) -> "RouterSettings":
        unknown = [s for s in self.signals if s not in SIGNAL_NAMES]
        if unknown:
            raise ValueError(f"unknown signals {unknown}; known: {', '.join(SIGNAL_NAMES)}")
        if self.doc_rescore and (self.doc_rescore < ENTROPY_TOP or not self.doc_pca_dim):
            raise ValueError(f"doc_rescore {self.doc_rescore} needs doc_pca_dim > 0 (the first stage) and at least "
                             f"{ENTROPY_TOP} candidates (the retrieval signals read the top {ENTROPY_TOP}); "
                             "e.g. doc_pca_dim 64, doc_rescore 200, or doc_rescore 0")
        if bool(self.doc_clusters) != bool(self.doc_probe) or self.doc_probe > self.doc_clusters:
            raise ValueError(f"doc_clusters {self.doc_clusters} and doc_probe {self.doc_probe} go together, with "
                             "doc_probe <= doc_clusters: e.g. doc_clusters 64, doc_probe 6, or both 0")
        if self.doc_probe and (self.doc_pca_dim or self.doc_rescore):
            raise ValueError("doc_probe scores a full-dimension bank: set doc_pca_dim 0 and doc_rescore 0 with it")
        return self


class ThresholdPolicy(TavaModel):
    """How a teacher budget becomes a routing decision on live traffic (tava_core/route/threshold.py;
    settings chosen on SciFact train queries and the built-in data in bench/route_budget.py)."""

    mode: Literal["adaptive", "fixed"] = Field("adaptive", description=(
        "adaptive: the threshold is the budget quantile of the confidence of recent live queries, so the share "
        "routed follows the budget on real traffic; fixed: the threshold set on the calibration texts (span views "
        "resemble queries only roughly). A target agreement is always fixed."))
    window: int = Field(100, ge=10, description="Recent live queries whose confidence sets the adaptive threshold.")
    prior: int = Field(200, ge=0, description=(
        "Weight, in queries, of the calibration texts' confidence distribution in the quantile at the start, "
        "fading by one per live query (the first queries are routed by the calibrated threshold)."))
    feedback: float = Field(1.0, ge=0.0, le=10.0, description=(
        "Correction of the quantile level by the recent decisions: routed beyond the budget in the window lowers "
        "it by feedback x excess / window (0 = none)."))


class RouterConfig(TavaModel):
    """Calibrate a confidence router: student (+ adapter) for confident queries, teacher for the rest."""

    name: str = Field("router", description="Router name: output <home>/artifacts/routers/<name>/.")
    student: str = Field(..., description=(
        "The query encoder the router serves: a student, a student + adapter directory, or a blend (`tava blend`; "
        "`tava run` routes over its blend); its vectors must be in the teacher's space."))
    teacher: TeacherSpec = Field(default_factory=EncoderSpec, description=(
        "Teacher encoder (alias or directory, with the settings it encodes with); it encodes the documents and "
        "the queries routed to it."))
    dataset: str = Field(..., description=(
        "Retrieval dataset the router will serve (BEIR directory or ingested dataset): its corpus gives "
        "the documents for top-10 agreement and the span views that stand in for queries. Labels unused."))
    reference: list[str] = Field(default_factory=list, description=(
        "Datasets (BEIR dirs, ingested datasets, or .jsonl(.gz) files with 'text') the student was trained on: "
        "the signals' 'seen' manifold. Empty = the dataset's own corpus."))
    max_reference_texts: int = Field(4000, ge=16, description="Training texts sampled for the signals.")
    calibration_texts: int = Field(2000, ge=32, description="Span views of the corpus used to calibrate.")
    teacher_budget: Optional[float] = Field(0.1, ge=0.0, le=1.0, description=(
        "Share of queries (0-1) the teacher may take; sets the threshold from the calibration texts."))
    target_agreement: Optional[float] = Field(None, ge=0.0, le=1.0, description=(
        "Instead of a budget: route queries whose predicted agreement is below this (0-1)."))
    settings: RouterSettings = Field(default_factory=RouterSettings, description="Confidence score settings.")
    routing: ThresholdPolicy = Field(default_factory=ThresholdPolicy, description=(
        "How the budget becomes a threshold on live queries (saved with the router)."))
    output: Optional[str] = Field(None, description="Output directory; empty = <home>/artifacts/routers/<name>.")


ROUTER_JSON = "router.json"
ROUTER_WEIGHTS = "router.safetensors"


def router_meta_path(directory: str | Path, option: str = "--router") -> Path:
    """``directory``'s router.json, or a ModelLoadError saying the folder is no router (light: the CLI checks
    it before Prefect starts, the evaluation before any encoding)."""
    from ..errors import ModelLoadError

    directory = Path(directory).expanduser()
    path = directory / ROUTER_JSON
    missing = [name for name in (ROUTER_JSON, ROUTER_WEIGHTS) if not (directory / name).is_file()]
    if missing:
        raise ModelLoadError(f"{option}: not a router directory (no {' or '.join(missing)})", path=directory,
                             hint="make one with `tava calibrate-router`; `tava run` saves one inside the adapter's "
                                  "registry version (<version>/router)")
    return path


def reference_location(source: str, home: "TavaHome") -> tuple[str, Path]:
    """Where a ``--reference`` source's texts are, and in which form: ("jsonl", file), ("beir", corpus file) or
    ("dataset", ingested dataset directory). Cheap (no text is read): `tava calibrate-router` checks its
    references with it before a flow starts, and the calibration reads them through it."""
    from ..errors import InputError
    from ..home import find_dataset
    from ..ingest.readers import beir_file

    path = Path(source).expanduser()
    if path.is_file() and path.name.endswith((".jsonl", ".jsonl.gz")):
        return "jsonl", path
    corpus = beir_file(path, "corpus")
    if corpus is not None:
        return "beir", corpus
    try:
        return "dataset", find_dataset(home, source)
    except InputError:
        pass   # named below as a reference, with what this home holds
    ingested = sorted(d.name for d in home.data.iterdir() if (d / "manifest.json").is_file()) if home.data.is_dir() else []
    raise InputError(
        f"--reference {source!r}: no texts there (not a .jsonl(.gz) file, a BEIR directory or an ingested dataset)",
        path=path,
        hint="give what the student was trained on: a file or folder path, or an ingested dataset's name"
             + (f" (this home has: {', '.join(ingested[:12])}{' ...' if len(ingested) > 12 else ''})" if ingested
                else "") + "; or leave --reference out to use the dataset's own corpus")
