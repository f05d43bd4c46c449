"""`tava distill` (flow `distill-student`)."""
from __future__ import annotations

import click

from tava_core.distill.config import DistillConfig
from tava_core.home import TavaHome

from .._server import run_flow
from ..cli import ConfigCommand, build_config, config_options, echo_record
from . import checks


@click.command("distill", cls=ConfigCommand)
@config_options(DistillConfig)
@click.pass_context
def cli(ctx: click.Context, **params) -> None:
    """Distil the teacher into a student (`--student transformer|static`, `--datasets NAME`)."""
    config = build_config(DistillConfig, ctx, params)
    home = TavaHome()
    checks.encoder(config.teacher, "--teacher")
    checks.encoder(config.student_base, "--student-base")
    for dataset in config.datasets:
        if dataset != "builtin" or (home.dataset_dir(dataset) / checks.MANIFEST).is_file():
            checks.ingested_dataset(home, dataset, option="--datasets")
    checks.vector_dirs(config.teacher_vectors, "--teacher-vectors")
    echo_record(run_flow("flows.distill:distill_student", config, home=str(home.root)))
