"""Flow: the whole pipeline — `tava demo` on the built-in data, `tava run --config FILE` on yours.

    ingest  ->  embed every collection with the teacher  ->  FAISS index of the corpus
        ->  Stage A: distil a student on the label-free collections (+ short span views)
        ->  embed the same texts with the student  ->  Stage B: adapter student -> teacher space
        ->  evaluate teacher, student alone, student queries vs teacher documents (with and
            without the adapter)  ->  publish student and adapter as the registry's current
            versions (what the nightly refresh continues)  ->  one table: quality, speed-ups, paths
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

import click
from prefect import flow
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field, model_validator

from tava_core.adapter.config import AdapterConfig
from tava_core.config import EncoderSpec, IngestConfig, TavaModel
from tava_core.distill import DistillConfig
from tava_core.embed import EmbedConfig
from tava_core.evaluate.config import EvalConfig
from tava_core.home import TavaHome
from tava_core.index import IndexConfig
from tava_core.io import sha256_file

from tasks.registry import publish_current_task

from .adapt import train_adapter
from .cli import build_config, config_options
from .distill import distill_student
from .embed import EmbedResult, embed_dataset_flow
from .evaluate import evaluate_flow
from .index import rebuild_index
from .ingest import ingest_corpus

# Filled in by the pipeline from what the earlier stages made (hidden from the CLI).
FILLED_IN = ("distill.teacher", "distill.datasets", "distill.teacher_vectors", "distill.output",
             "adapter.student_vectors", "adapter.teacher_vectors", "adapter.student", "adapter.warm_start")


def demo_distill() -> DistillConfig:
    # Sized for the built-in data on 2 CPU cores: ~3 minutes of training.
    return DistillConfig(name="demo-student", steps=300, batch_size=32, lr=5e-4, warmup_steps=20,
                         eval_every=50, checkpoint_every=100, patience=3)


def demo_adapter() -> AdapterConfig:
    return AdapterConfig(name="demo-adapter", max_steps=600, eval_every=50)


class PipelineConfig(TavaModel):
    """The whole pipeline. The defaults run on the built-in data and need no network."""

    source: str = Field("builtin", description="Corpus to run on ('builtin', or any source `tava ingest` reads).")
    name: Optional[str] = Field(None, description="Dataset name (default: from the source).")
    unlabeled: list[str] = Field(default_factory=list, description=(
        "Extra unlabeled text sources (anything `tava ingest` reads), ingested, embedded by the teacher and "
        "trained on by Stage A beside the corpus's own documents (never evaluated on): generic text "
        "makes a student that holds up on queries unlike the corpus (see bench/transfer.py)."))
    teacher: EncoderSpec = Field(default_factory=EncoderSpec, description="The teacher encoder.")
    shard_size: int = Field(2000, ge=1, description="Rows per text shard.")
    index_factory: str = Field("HNSW32,Flat", description="FAISS factory string of the corpus index.")
    distill: DistillConfig = Field(default_factory=demo_distill, description=(
        "Stage A (student). Its teacher and training datasets are filled in by the pipeline."))
    adapter: AdapterConfig = Field(default_factory=demo_adapter, description=(
        "Stage B (adapter). Its vector directories and student are filled in by the pipeline."))
    split: str = Field("test", description="Qrels split the evaluation scores.")
    registry_student: str = Field("student", description=(
        "Registry name the student is published under as the current version (the nightly "
        "refresh's default student_name)."))
    registry_adapter: str = Field("nightly", description=(
        "Registry name the adapter is published under as the current version (the nightly "
        "refresh's default name, so it continues from this adapter)."))

    @model_validator(mode="before")
    @classmethod
    def _stage_defaults(cls, data: Any) -> Any:
        # A partial `distill:` / `adapter:` section (or `--distill-steps 100`) changes those keys
        # only: the pipeline's own stage defaults stay underneath, not the bare stage defaults.
        if isinstance(data, dict):
            for key, defaults in (("distill", demo_distill), ("adapter", demo_adapter)):
                if isinstance(data.get(key), dict):
                    data = {**data, key: {**defaults().model_dump(exclude_unset=True), **data[key]}}
        return data


class PipelineResult(BaseModel):
    dataset: str
    dataset_dir: str
    rows: dict[str, int]
    teacher: dict
    index: dict
    student_dir: str
    adapter_dir: str
    registry: list[dict]       # what was published (or was already current)
    quality: list[dict]        # one row per way of answering queries
    report_dirs: list[str]
    seconds: dict[str, float]


def quality_rows(full: dict, asymmetric: dict) -> list[dict]:
    """Teacher, student alone, student queries vs teacher docs, and with the adapter."""
    def ndcg(result: dict, mode: str) -> float:
        return next(r["ndcg_at_10"] for r in result["rows"] if r["mode"] == mode and r["variant"] == "full")

    qps = {**asymmetric["throughput"], **full["throughput"]}
    asym_qps = asymmetric["throughput"]["adapted"]
    rows = [("teacher", "teacher / teacher", ndcg(full, "teacher/teacher"), qps["teacher"]),
            ("student alone", "student / student", ndcg(full, "student/student"), qps["student"]),
            ("student, no adapter", "student / teacher", ndcg(asymmetric, "adapted/teacher"), asym_qps),
            ("student + adapter", "student+adapter / teacher", ndcg(full, "adapted/teacher"), qps["adapted"])]
    teacher_ndcg = rows[0][2]
    return [{"system": system, "queries / documents": modes, "ndcg_at_10": round(score, 4),
             "retention": round(score / teacher_ndcg, 4) if teacher_ndcg else None,
             "queries_per_second": round(speed, 1), "speedup": round(speed / qps["teacher"], 2)}
            for system, modes, score, speed in rows]


def summary_markdown(result: PipelineResult) -> str:
    lines = ["# tava pipeline", "", f"Dataset `{result.dataset}` ({', '.join(f'{k} {v:,}' for k, v in result.rows.items())})"
             f" in `{result.dataset_dir}`; teacher `{result.teacher['name']}` ({result.teacher['dim']}-d).", "",
             "| system | queries / documents | nDCG@10 | of teacher | queries/s | speed-up |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for row in result.quality:
        lines.append(f"| {row['system']} | {row['queries / documents']} | {row['ndcg_at_10']:.4f} | "
                     f"{row['retention']:.1%} | {row['queries_per_second']:.0f} | {row['speedup']:.1f}x |")
    lines += ["", "| artifact | where |", "| --- | --- |",
              f"| student (Stage A) | `{result.student_dir}` |", f"| adapter (Stage B) | `{result.adapter_dir}` |",
              f"| FAISS index ({result.index['factory']}, recall@10 {result.index['recall_at_10']}) | "
              f"`{result.index['index_dir']}` |"]
    lines += [f"| evaluation report | `{d}` |" for d in result.report_dirs]
    lines += [f"| registry {r['kind']}/{r['name']} v{r['version']}{' (new)' if r['published'] else ''} | "
              f"`{r['path']}` |" for r in result.registry]
    lines += ["", "| step | seconds |", "| --- | ---: |"]
    lines += [f"| {step} | {seconds:.1f} |" for step, seconds in result.seconds.items()]
    return "\n".join(lines) + "\n"


@flow(name="tava-pipeline", log_prints=True)
def demo_pipeline(config: PipelineConfig = PipelineConfig(), home: Optional[str] = None) -> PipelineResult:
    """Run the pipeline end to end: ingest, teacher vectors, index, Stage A, Stage B, evaluation.

    Args:
        config: Corpus, teacher, index type, and the Stage A / Stage B settings.
        home: tava home directory (data, vectors, artifacts, reports); empty = $TAVA_HOME, else ./.tava.
    """
    root = str(TavaHome(home).root)
    seconds: dict[str, float] = {}

    def timed(step: str, start: float) -> None:
        seconds[step] = round(time.perf_counter() - start, 1)

    start = time.perf_counter()
    ingested = ingest_corpus(IngestConfig(source=config.source, name=config.name, shard_size=config.shard_size),
                             home=root)
    timed("ingest", start)

    start = time.perf_counter()
    embedded: EmbedResult = embed_dataset_flow(EmbedConfig(dataset=ingested.path, encoder=config.teacher), home=root)
    teacher_vectors = {c.collection: c.vectors_dir for c in embedded.collections}
    timed("embed (teacher)", start)

    # Extra unlabeled sources: ingested and embedded like the corpus, trained on by Stage A only.
    start = time.perf_counter()
    extra_datasets = []
    for source in config.unlabeled:
        extra = ingest_corpus(IngestConfig(source=source, shard_size=config.shard_size), home=root)
        embed_dataset_flow(EmbedConfig(dataset=extra.path, encoder=config.teacher), home=root)
        extra_datasets.append(extra.path)
    if config.unlabeled:
        timed("ingest + embed (unlabeled)", start)

    start = time.perf_counter()
    index = rebuild_index(IndexConfig(vectors=teacher_vectors["corpus"], factory=config.index_factory), home=root)
    timed("index", start)

    start = time.perf_counter()
    distill = config.distill.model_copy(update={"teacher": config.teacher.model,
                                                "datasets": [ingested.path, *extra_datasets],
                                                "teacher_vectors": [], "output": None})
    student = distill_student(distill, home=root)
    timed("Stage A (student)", start)

    # Stage B pairs: the texts the student trained on (never the queries), embedded by both.
    start = time.perf_counter()
    trained_on = [c for c in ingested.collections if c != "queries"]
    student_spec = EncoderSpec(model=student["output"])
    student_dirs = [c.vectors_dir for c in embed_dataset_flow(
        EmbedConfig(dataset=ingested.path, collections=trained_on, encoder=student_spec), home=root).collections]
    teacher_dirs = [teacher_vectors[c] for c in trained_on]
    for span_dataset in student["span_datasets"]:
        student_dirs += [c.vectors_dir for c in embed_dataset_flow(
            EmbedConfig(dataset=span_dataset, encoder=student_spec), home=root).collections]
        teacher_dirs += [d for key, d in student["teacher_vectors"].items() if key.startswith(span_dataset + "/")]
    timed("embed (student)", start)

    start = time.perf_counter()
    adapter = train_adapter(config.adapter.model_copy(update={
        "student_vectors": student_dirs, "teacher_vectors": teacher_dirs, "student": student["output"],
        "warm_start": None}), home=root)
    timed("Stage B (adapter)", start)

    start = time.perf_counter()
    adapted = EncoderSpec(model=adapter["adapter_dir"])
    full = evaluate_flow(EvalConfig(dataset=ingested.path, split=config.split, teacher=config.teacher,
                                    student=student_spec, adapted=adapted,
                                    modes=["teacher/teacher", "student/student", "adapted/teacher"]), home=root)
    # The student's own queries against teacher documents: possible because its projection
    # already aims at the teacher's space; the adapter's gain is the difference.
    asymmetric = evaluate_flow(EvalConfig(dataset=ingested.path, split=config.split, teacher=config.teacher,
                                          adapted=student_spec, modes=["adapted/teacher"], matryoshka_dims=[],
                                          quantization=[], run_mteb=False), home=root)
    timed("evaluate", start)

    # The registry's current student and adapter: what the nightly refresh continues from.
    quality = quality_rows(full.model_dump(), asymmetric.model_dump())
    lineage = {"dataset": ingested.name, "dataset_dir": ingested.path, "teacher": embedded.encoder}
    card = json.loads((Path(student["output"]) / "model_card.json").read_text())
    registry = [
        publish_current_task("students", config.registry_student, student["output"], card["run_key"], root,
                             lineage={**lineage, "source": student["output"]},
                             metrics={r["system"]: r["ndcg_at_10"] for r in quality[1:3]}),
        publish_current_task("adapters", config.registry_adapter, adapter["adapter_dir"],
                             sha256_file(Path(adapter["adapter_dir"]) / "model.safetensors"), root,
                             lineage={**lineage, "source": adapter["adapter_dir"], "student": student["output"]},
                             metrics={"nDCG@10 " + config.split: quality[3]["ndcg_at_10"]})]

    result = PipelineResult(
        dataset=ingested.name, dataset_dir=ingested.path, rows=ingested.collections, teacher=embedded.encoder,
        index={k: index.get(k) for k in ("index_dir", "factory", "count", "recall_at_10", "version")},
        student_dir=student["output"], adapter_dir=adapter["adapter_dir"], registry=registry, quality=quality,
        report_dirs=[full.directory, asymmetric.directory], seconds=seconds)
    create_markdown_artifact(summary_markdown(result), key="tava-pipeline-summary",
                             description="tava pipeline: quality, speed-ups, artifacts")
    return result


def _run(config: PipelineConfig) -> None:
    start = time.perf_counter()
    result = demo_pipeline(config, home=str(TavaHome().root))
    click.echo("")
    click.echo(summary_markdown(result))
    click.echo(f"done in {time.perf_counter() - start:.0f} s; everything is under {TavaHome().root}")


@click.command("demo")
@config_options(PipelineConfig, exclude=FILLED_IN)
@click.pass_context
def cli(ctx: click.Context, **params) -> None:
    """Run the whole pipeline on the built-in data and print the results table."""
    _run(build_config(PipelineConfig, ctx, params))


@click.command("run")
@config_options(PipelineConfig, exclude=FILLED_IN)
@click.pass_context
def run_cli(ctx: click.Context, **params) -> None:
    """Run the whole pipeline with your config: `tava run --config pipeline.yaml` (YAML or TOML with
    the keys of `tava demo --help`; nested stages as `distill:` and `adapter:` sections)."""
    if not params.get("config_file"):
        raise click.UsageError("tava run needs --config FILE (YAML or TOML); `tava demo` runs the defaults")
    _run(build_config(PipelineConfig, ctx, params))


if __name__ == "__main__":
    demo_pipeline()
