"""The pipeline's config (`tava demo`, `tava run`, the demo deployment's form), apart from the
flow so the CLI can validate it without importing Prefect."""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field, field_validator, model_validator

from tava_core.adapter.config import AdapterConfig
from tava_core.config import EncoderSpec, TavaModel
from tava_core.distill.config import DistillConfig
from tava_core.route.config import RouterSettings, ThresholdPolicy

# Filled in by the pipeline from what the earlier stages made (hidden from the CLI).
FILLED_IN = ("distill.teacher", "distill.datasets", "distill.teacher_vectors", "distill.output", "distill.blend_partner",
             "distill.dataset_weights",
             "adapter.student_vectors", "adapter.teacher_vectors", "adapter.student", "adapter.warm_start")


def demo_distill() -> DistillConfig:
    # Sized for the built-in data on 2 CPU cores: the pipeline fits the 300 steps to one pass over its
    # 11,191 training texts (350 steps, ~5 minutes of training; the run logs the fitted count).
    return DistillConfig(name="demo-student", steps=300, batch_size=32, lr=5e-4, warmup_steps=20,
                         eval_every=50, checkpoint_every=100, patience=3)


# No residual memory in the pipeline: its Stage B pairs are the texts its own Stage A just trained on, and
# there the memory did not gain on test (bench/adapter_memory.py, four students trained on SciFact: within
# +-0.005 of the map on SciFact test) and cost mpnet's transformer student 0.023 through `tava run` on the
# built-in data (bench/results/cli_run_blend.json, dev/builtin/mpnet-tf-memory). It is for a student meeting
# new text: `tava adapt`, `tava refresh` (docs/stage-b.md). --adapter-memory turns it on.
def demo_adapter() -> AdapterConfig:
    return AdapterConfig(name="demo-adapter", max_steps=600, eval_every=50, memory=False)


def standard_distill() -> DistillConfig:
    # The recipe measured through the CLI on corpora it was not chosen on (bench/cli_run.py): layers by
    # the teacher's depth (0 2 5 of MiniLM's six, 0 1 of mpnet's twelve: students.depth_layers), 1,000
    # steps. ~8 minutes of training on 2 quiet CPU cores for MiniLM.
    return DistillConfig(name="student", layers=None, warmup_steps=100, eval_every=200,
                         checkpoint_every=200, patience=3)


def standard_adapter() -> AdapterConfig:
    return AdapterConfig(memory=False)


def blend_static_distill(distill: DistillConfig, partner: str) -> DistillConfig:
    """The static student `blend_static` trains beside a transformer student: the same teacher, texts,
    span views and seed, trained as `tava run --distill-student static` trains it (the standard preset),
    but towards what ``partner`` (the transformer student + adapter it is blended with) misses
    (DistillConfig.blend_partner: docs/mpnet.md)."""
    return standard_distill().model_copy(update={
        "name": f"{distill.name}-static", "teacher": distill.teacher, "datasets": distill.datasets,
        "collections": distill.collections, "span_views": distill.span_views, "seed": distill.seed,
        "dataset_weights": distill.dataset_weights, "title_views": distill.title_views,
        "max_length": distill.max_length, "max_texts": distill.max_texts, "threads": distill.threads,
        "device": distill.device, "blend_partner": partner, "blend_partner_weight": distill.blend_partner_weight,
        "student": "static", "fit_steps": True, **STANDARD_BY_STUDENT["static"]})


# The standard recipe's keys per student kind (bench/transfer.py's rows, chosen on the dev split): a
# transformer student 1,000 steps of 32 texts at peak lr 2e-4; a static one keeps Stage A's own defaults
# (2,000 steps of 64 texts, lr 1e-3), so it has no entry. Neither sets the neighbour-ranking term
# (alpha_rank): trained as `tava run` trains (corpus only, two span views) it moved SciFact dev by
# +0.008 / +0.001 (MiniLM / mpnet static) and cost the built-in data 0.006 / 0.046; through `tava run`
# the transformer gained on SciFact dev (0.961 -> 0.969) but not on the built-in data (1.002 -> 0.998).
# A static student starts from the teacher's token vectors in context (static_init "context"): trained on a
# corpus's own text it kept more of the teacher on SciFact's dev queries (MiniLM 0.922 -> 0.939, mpnet 0.920 ->
# 0.944) and on the built-in data (MiniLM 1.006 -> 1.011); see docs/stage-a.md for where it does not help.
STANDARD_BY_STUDENT: dict[str, dict[str, Any]] = {"transformer": {"steps": 1000, "batch_size": 32, "lr": 2e-4},
                                                  "static": {"static_init": "context"}}
STAGE_DEFAULTS = {"demo": (demo_distill, demo_adapter), "standard": (standard_distill, standard_adapter)}
Preset = Literal["demo", "standard"]


class PipelineRouter(TavaModel):
    """The confidence router the pipeline calibrates for its best query encoder: the blend when it makes one,
    else student + adapter (the table's router rows)."""

    enabled: bool = Field(True, description=(
        "Calibrate a router for the new blend (or student + adapter without one) and add its rows to the table "
        "(off: --no-router-enabled)."))
    budgets: list[float] = Field(default_factory=lambda: [0.1, 0.2], description=(
        "Shares of queries (0-1) the teacher takes in the router rows; the first is the threshold the "
        "router is saved and published with."))
    calibration_texts: int = Field(300, ge=32, description=(
        "Span views of the corpus encoded by the routed query encoder and teacher to calibrate (the router's only "
        "encoding: its training pairs are the stored Stage B vectors)."))
    max_reference_texts: int = Field(2000, ge=16, description="Stored Stage B pairs sampled for the signals.")
    settings: RouterSettings = Field(default_factory=RouterSettings, description="Confidence score settings.")
    routing: ThresholdPolicy = Field(default_factory=ThresholdPolicy, description=(
        "How the saved budget becomes a threshold on live queries (saved with the router)."))

    @field_validator("budgets")
    @classmethod
    def _shares(cls, budgets: list[float]) -> list[float]:
        if not budgets or any(not 0.0 <= b <= 1.0 for b in budgets):
            raise ValueError(f"router budgets must be shares of queries in [0, 1], got {budgets}")
        return budgets


class PipelineConfig(TavaModel):
    """The whole pipeline. The defaults run on the built-in data and need no network."""

    source: str = Field("builtin", description="Corpus to run on ('builtin', or any source `tava ingest` reads).")
    preset: Preset = Field("demo", description=(
        "Stage A and B settings under your own options: 'demo' is sized for the built-in data (a 2-layer "
        "student, 300 steps, grown to one pass over a bigger corpus (350 on the built-in data): ~5 minutes of "
        "training on 2 cores; `tava demo`), 'standard' is the recipe measured on "
        "corpora it was not chosen on (a student of 3 of a 6-layer teacher's layers or 2 of a deeper one, 1,000 steps; `tava run`'s default)."))
    name: Optional[str] = Field(None, description="Dataset name (default: from the source).")
    unlabeled: list[str] = Field(default_factory=list, description=(
        "Extra unlabeled text sources (anything `tava ingest` reads), ingested, embedded by the teacher and "
        "trained on by Stage A beside the corpus's own documents (never evaluated on): generic text "
        "makes a student that holds up on queries unlike the corpus (see bench/transfer.py)."))
    unlabeled_sample: Optional[int] = Field(20000, ge=1, description=(
        "Records sampled (uniformly, seeded) from each unlabeled source: bounds the teacher's encoding "
        "cost of a big generic source; empty = all of it."))
    unlabeled_weight: int = Field(1, ge=1, le=64, description=(
        "How many times Stage A draws each text of the unlabeled sources (and their span views) per pass, "
        "against once for the corpus's: a query log of a few hundred queries beside thousands of documents "
        "weighs ~6% of the training text at 1 (docs/stage-a.md)."))
    other_split_queries: bool = Field(True, description=(
        "Train Stage A on the texts of the queries the source's other qrels splits name, as a query log beside "
        "the unlabeled sources: label-free (no qrels read), and never a scored split's, a 'test' split's or a "
        "text equal to one of theirs (docs/stage-a.md)."))
    teacher: EncoderSpec = Field(default_factory=EncoderSpec, description="The teacher encoder.")
    teacher_document_vectors: Optional[str] = Field(None, description=(
        "The teacher's vectors of the corpus's documents, as your vector store holds them (a Parquet file or "
        "folder of id + vector rows, or a LanceDB table directory <database>/<table>.lance): imported instead of encoding the corpus again, after the teacher "
        "agrees with a sample of them (`tava embed --import-vectors`)."))
    shard_size: int = Field(2000, ge=1, description="Rows per text shard.")
    index_factory: str = Field("HNSW32,Flat", description="FAISS factory string of the corpus index.")
    distill: DistillConfig = Field(default_factory=demo_distill, description=(
        "Stage A (student). Its teacher and training datasets are filled in by the pipeline."))
    adapter: AdapterConfig = Field(default_factory=demo_adapter, description=(
        "Stage B (adapter). Its vector directories and student are filled in by the pipeline."))
    split: str = Field("test", description=(
        "Qrels split the evaluation scores. A source with no qrels for it (your own corpus) is scored "
        "label-free: against the teacher's own top 10 for query-like texts."))
    label_free_queries: int = Field(300, ge=10, description=(
        "Without qrels: how many query-like texts the teacher judges (a sample of the source's queries, "
        "else one span view each of as many documents)."))
    registry_student: str = Field("student", description=(
        "Registry name the student is published under as the current version (the nightly "
        "refresh's default student_name)."))
    registry_adapter: str = Field("nightly", description=(
        "Registry name the adapter is published under as the current version (the nightly "
        "refresh's default name, so it continues from this adapter)."))
    blend_static: Optional[bool] = Field(None, description=(
        "Also distil a static student from the same texts (the standard static recipe: the teacher's token "
        "vectors in context, 2,000 steps, trained towards what student + adapter misses: "
        "--distill-blend-partner-weight) and blend it with the student + adapter (--blend-weight) into one query "
        "encoder (`tava blend`), scored as its own row and published with the adapter (blend/). Costs the "
        "static student's training (minutes) and next to nothing per query. With mpnet on SciFact test such a "
        "blend kept 0.970 of the teacher at 5.2x (docs/mpnet.md). Empty = on for the standard preset's transformer student "
        "(`tava run`), off for the demo preset (`tava demo`, sized for minutes)."))
    blend_weight: Optional[float] = Field(None, gt=0.0, lt=1.0, description=(
        "Weight of student + adapter in the blend (the static student gets 1 - it). Empty = chosen for the "
        "corpus without labels: of 0.1 ... 0.9, the one whose blended vectors of 600 span views of the documents "
        "lie closest to the teacher's (mean cosine); on both dev corpora that was the weight labelled nDCG@10 "
        "prefers (0.6 and 0.7; the fixed 0.5 of before read 0.006 lower on each: docs/mpnet.md)."))
    router: PipelineRouter = Field(default_factory=PipelineRouter, description=(
        "Confidence router: calibrated on the stored Stage B pairs and span views of the corpus, scored at "
        "the budgets, published inside the adapter's registry version (router/)."))

    @model_validator(mode="after")
    def _blend_needs_a_transformer_student(self) -> "PipelineConfig":
        if self.blend_static and self.distill.student != "transformer":
            raise ValueError("--blend-static blends a static student with the transformer student + adapter: "
                             "drop it, or train a transformer student (--distill-student transformer)")
        return self

    @model_validator(mode="before")
    @classmethod
    def _stage_defaults(cls, data: Any) -> Any:
        # A partial `distill:` / `adapter:` section (or `--distill-steps 100`) changes those keys
        # only: the pipeline's own stage defaults stay underneath, not the bare stage defaults.
        # The preset decides which defaults those are.
        if isinstance(data, dict):
            preset = data.get("preset", "demo")
            if preset not in STAGE_DEFAULTS:
                return data         # the field's own validation names the choices
            if data.get("blend_static") is None:
                # on where it was measured to help (every case: docs/mpnet.md) and the run is not a demo
                distill = data.get("distill") or {}
                student = distill.get("student", "transformer") if isinstance(distill, dict) else distill.student
                data = {**data, "blend_static": preset == "standard" and student == "transformer"}
            for key, defaults in zip(("distill", "adapter"), STAGE_DEFAULTS[preset], strict=True):
                given = data.get(key, {})
                if isinstance(given, dict):
                    base = defaults().model_dump(exclude_unset=True)
                    if preset == "standard" and key == "distill":
                        base.update(STANDARD_BY_STUDENT.get(given.get("student", "transformer"), {}))
                    if key == "distill" and "steps" not in given:
                        # the preset's step count is a default, not a request: on a corpus too small
                        # for it within max_epochs, Stage A trains the most steps that fit
                        base.setdefault("fit_steps", True)
                    elif key == "distill" and "warmup_steps" not in given and base.get("warmup_steps", 0) > 0:
                        # `--distill-steps 20` under a preset's 100-step warm-up: the warm-up is the preset's
                        # too, so it keeps its share of the steps (as fit_steps scales it) instead of refusing
                        preset_steps = base.get("steps", DistillConfig().steps)
                        if base["warmup_steps"] >= int(given["steps"]) and preset_steps:
                            base["warmup_steps"] = int(base["warmup_steps"] * int(given["steps"]) / preset_steps)
                    data = {**data, key: {**base, **given}}
        return data


def stage_a_config(config: PipelineConfig, corpus: str, unlabeled: list[str]) -> DistillConfig:
    """Stage A as the pipeline runs it: on the corpus and the ingested unlabeled sources (each weighed
    ``config.unlabeled_weight``), towards the pipeline's teacher, into the default output."""
    weights = [1] + [config.unlabeled_weight] * len(unlabeled) if unlabeled and config.unlabeled_weight != 1 else []
    return config.distill.model_copy(update={"teacher": config.teacher, "datasets": [corpus, *unlabeled],
                                             "dataset_weights": weights, "teacher_vectors": [], "output": None})
