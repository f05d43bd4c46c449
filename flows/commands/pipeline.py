"""`tava demo` and `tava run` (flow `tava-pipeline`)."""
from __future__ import annotations

import time

import click

from tava_core.config import IngestConfig
from tava_core.home import TavaHome

from .._server import run_flow
from ..cli import ConfigCommand, build_config, config_options
from ..pipeline_config import FILLED_IN, PipelineConfig
from . import checks


def check_inputs(config: PipelineConfig, home: TavaHome) -> None:
    plan = checks.ingest_source(IngestConfig(source=config.source, name=config.name, shard_size=config.shard_size),
                                home)
    checks.encoder(config.teacher, "--teacher")
    checks.imported_vectors(config.teacher_document_vectors, config.teacher, "--teacher-document-vectors")
    from tava_core.distill.run import check_schedule

    check_schedule(config.distill, "--distill-")   # else found after ingest, the teacher's embedding and the index
    if plan is not None and config.split not in plan.qrels:
        # said before the run, not after it: no labels is a normal case, but the table will read differently
        have = f" (it has: {', '.join(sorted(plan.qrels))})" if plan.qrels else ""
        click.echo(f"tava: {config.source} has no qrels for split {config.split!r}{have}: quality will be measured "
                   "label-free, against the teacher's own top 10 for query-like texts", err=True)


def _report(result, start: float, home: TavaHome) -> None:
    from flows.pipeline import summary_markdown  # after the run: the flow module is imported by then

    click.echo("")
    click.echo(summary_markdown(result))
    click.echo(f"done in {time.perf_counter() - start:.0f} s; everything is under {home.root}")


def _run(config: PipelineConfig) -> None:
    home = TavaHome()
    check_inputs(config, home)
    start = time.perf_counter()
    result = run_flow("flows.pipeline:tava_pipeline", config, home=str(home.root))
    _report(result, start, home)


DEMO = {"preset": "demo"}
# your corpus gets the measured recipe, not the demo's three minutes (--preset demo for those)
RUN = {"preset": "standard"}


@click.command("demo", cls=ConfigCommand)
@config_options(PipelineConfig, exclude=FILLED_IN, defaults=DEMO)
@click.pass_context
def cli(ctx: click.Context, **params) -> None:
    """Run the whole pipeline on the built-in data and print the results table."""
    _run(build_config(PipelineConfig, ctx, params, defaults=DEMO))


@click.command("run", cls=ConfigCommand)
@config_options(PipelineConfig, exclude=FILLED_IN, defaults=RUN)
@click.pass_context
def run_cli(ctx: click.Context, **params) -> None:
    """Run the whole pipeline with your settings: options, a config file, or both (options win):
    `tava run --source DIR --distill-steps 1500`, `tava run --config pipeline.yaml` (YAML or TOML
    with the same keys; nested stages as `distill:` and `adapter:` sections)."""
    given = [key for key in params if ctx.get_parameter_source(key) not in (None, click.core.ParameterSource.DEFAULT)]
    if not given:
        raise click.UsageError("tava run needs your settings: options (see `tava run --help`) and/or "
                               "--config FILE; `tava demo` runs the defaults")
    _run(build_config(PipelineConfig, ctx, params, defaults=RUN))
