"""`tava adapt` (flow `train-adapter`)."""
from __future__ import annotations

import click

from tava_core.adapter.config import AdapterConfig
from tava_core.home import TavaHome

from .._server import run_flow
from ..cli import ConfigCommand, build_config, config_options, echo_record
from . import checks


@click.command("adapt", cls=ConfigCommand)
@config_options(AdapterConfig)
@click.pass_context
def cli(ctx: click.Context, **params) -> None:
    """Train an adapter from student vectors into teacher space (`--student-vectors DIR
    --teacher-vectors DIR`, each repeatable; `--student MODEL` makes the result a loadable encoder)."""
    config = build_config(AdapterConfig, ctx, params)
    checks.vector_dirs(config.student_vectors, "--student-vectors")
    checks.vector_dirs(config.teacher_vectors, "--teacher-vectors")
    checks.vector_dirs(config.domain_student_vectors, "--domain-student-vectors")
    checks.vector_dirs(config.domain_teacher_vectors, "--domain-teacher-vectors")
    checks.vector_dirs(config.selection_student_vectors, "--selection-student-vectors")
    checks.vector_dirs(config.selection_teacher_vectors, "--selection-teacher-vectors")
    checks.encoder(config.student, "--student")
    checks.existing_dir(config.warm_start, "--warm-start")
    echo_record(run_flow("flows.adapt:train_adapter", config, home=str(TavaHome().root)))
