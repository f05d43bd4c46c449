"""Flow: the whole pipeline on the built-in data — the README's main command.

    ingest the built-in docstring corpus  ->  embed corpus, queries and training text with the teacher
                                          ->  a summary of what was made and where

Later stages (distillation, adapter, index, evaluation) join this story as they land.
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
from tava_core.home import TavaHome

from .cli import build_config, config_options
from .embed import EmbedResult, embed_dataset_flow
from .ingest import ingest_corpus


class DemoConfig(TavaModel):
    """What `tava demo` runs. The defaults need no data and no network."""

    source: str = Field("builtin", description="Corpus to run on ('builtin', or any source `tava ingest` reads).")
    name: Optional[str] = Field(None, description="Dataset name (default: from the source).")
    teacher: EncoderSpec = Field(default_factory=EncoderSpec, description="The teacher encoder.")
    shard_size: int = Field(2000, ge=1, description="Rows per text shard.")


class DemoResult(BaseModel):
    dataset: str
    dataset_dir: str
    rows: dict[str, int]
    vectors: dict[str, str]
    teacher: dict
    seconds: dict[str, float]


def summary_markdown(result: DemoResult) -> str:
    lines = ["# tava demo", "", f"Dataset `{result.dataset}` in `{result.dataset_dir}`",
             f"Teacher `{result.teacher['name']}` ({result.teacher['dim']}-d, fingerprint "
             f"`{result.teacher['fingerprint'][:12]}`)", "",
             "| collection | rows | teacher vectors |", "| --- | ---: | --- |"]
    lines += [f"| {name} | {rows:,} | `{result.vectors.get(name, '-')}` |" for name, rows in result.rows.items()]
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

    result = DemoResult(dataset=ingested.name, dataset_dir=ingested.path, rows=ingested.collections,
                        vectors={c.collection: c.vectors_dir for c in embedded.collections},
                        teacher=embedded.encoder, seconds=seconds)
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
