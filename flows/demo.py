"""Flow: the whole pipeline on the built-in data — the README's main command.

    ingest the built-in docstring corpus  ->  embed corpus, queries and training text with the teacher
        ->  build a FAISS index of the corpus  ->  evaluate the teacher on the labeled split
        ->  a summary of what was made and where

Stages A and B (student, adapter) join this story as they land.
"""
from __future__ import annotations

import time
from typing import Optional

import click
from prefect import flow
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from tava_core.config import EncoderSpec, IngestConfig, TavaModel
from tava_core.embed import EmbedConfig
from tava_core.evaluate.config import EvalConfig
from tava_core.home import TavaHome
from tava_core.index import IndexConfig

from .cli import build_config, config_options
from .embed import EmbedResult, embed_dataset_flow
from .evaluate import evaluate_flow
from .index import rebuild_index
from .ingest import ingest_corpus


class DemoConfig(TavaModel):
    """What `tava demo` runs. The defaults need no data and no network."""

    source: str = Field("builtin", description="Corpus to run on ('builtin', or any source `tava ingest` reads).")
    name: Optional[str] = Field(None, description="Dataset name (default: from the source).")
    teacher: EncoderSpec = Field(default_factory=EncoderSpec, description="The teacher encoder.")
    shard_size: int = Field(2000, ge=1, description="Rows per text shard.")
    index_factory: str = Field("HNSW32,Flat", description="FAISS factory string of the corpus index.")


class DemoResult(BaseModel):
    dataset: str
    dataset_dir: str
    rows: dict[str, int]
    vectors: dict[str, str]
    teacher: dict
    index: dict
    evaluation: dict
    seconds: dict[str, float]


def summary_markdown(result: DemoResult) -> str:
    lines = ["# tava demo", "", f"Dataset `{result.dataset}` in `{result.dataset_dir}`",
             f"Teacher `{result.teacher['name']}` ({result.teacher['dim']}-d, fingerprint "
             f"`{result.teacher['fingerprint'][:12]}`)", "",
             "| collection | rows | teacher vectors |", "| --- | ---: | --- |"]
    lines += [f"| {name} | {rows:,} | `{result.vectors.get(name, '-')}` |" for name, rows in result.rows.items()]
    ev = result.evaluation
    lines += ["", f"Teacher on the labeled split: nDCG@10 **{ev['teacher_ndcg_at_10']:.4f}** "
              f"({ev['queries_per_second']:.0f} queries/s); report `{ev['directory']}`",
              f"Index `{result.index['factory']}` of {result.index['count']:,} vectors, recall@10 "
              f"{result.index['recall_at_10']} vs exact search: `{result.index['index_dir']}`"]
    lines += ["", "| step | seconds |", "| --- | ---: |"]
    lines += [f"| {step} | {seconds:.1f} |" for step, seconds in result.seconds.items()]
    return "\n".join(lines) + "\n"


@flow(name="tava-demo", log_prints=True)
def demo_pipeline(config: DemoConfig = DemoConfig(), home: Optional[str] = None) -> DemoResult:
    """Run the pipeline end to end on the built-in data."""
    tava_home = TavaHome(home)
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    ingested = ingest_corpus(IngestConfig(source=config.source, name=config.name, shard_size=config.shard_size),
                             home=str(tava_home.root))
    seconds["ingest"] = time.perf_counter() - start

    start = time.perf_counter()
    embedded: EmbedResult = embed_dataset_flow(EmbedConfig(dataset=ingested.name, encoder=config.teacher),
                                               home=str(tava_home.root))
    seconds["embed (teacher)"] = time.perf_counter() - start
    vectors = {c.collection: c.vectors_dir for c in embedded.collections}

    start = time.perf_counter()
    index = rebuild_index(IndexConfig(vectors=vectors["corpus"], factory=config.index_factory),
                          home=str(tava_home.root))
    seconds["index"] = time.perf_counter() - start

    start = time.perf_counter()
    evaluated = evaluate_flow(EvalConfig(dataset=ingested.name, teacher=config.teacher), home=str(tava_home.root))
    seconds["evaluate"] = time.perf_counter() - start

    result = DemoResult(
        dataset=ingested.name, dataset_dir=ingested.path, rows=ingested.collections, vectors=vectors,
        teacher=embedded.encoder, seconds=seconds,
        index={k: index.get(k) for k in ("index_dir", "factory", "count", "recall_at_10", "version")},
        evaluation={"teacher_ndcg_at_10": evaluated.teacher_ndcg_at_10, "directory": evaluated.directory,
                    "queries_per_second": next(iter(evaluated.throughput.values()), 0.0)})
    create_markdown_artifact(summary_markdown(result), key="tava-demo-summary", description="tava demo")
    return result


@click.command("demo")
@config_options(DemoConfig)
@click.pass_context
def cli(ctx: click.Context, **params) -> None:
    """Run the whole pipeline on the built-in data and print a summary."""
    config = build_config(DemoConfig, ctx, params)
    start = time.perf_counter()
    result = demo_pipeline(config, home=str(TavaHome().root))
    click.echo("")
    click.echo(summary_markdown(result))
    click.echo(f"done in {time.perf_counter() - start:.0f} s; everything is under {TavaHome().root}")


if __name__ == "__main__":
    demo_pipeline()
