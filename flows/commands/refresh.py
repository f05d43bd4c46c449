"""`tava refresh` (flow `nightly-adapter-refresh`)."""
from __future__ import annotations

import click

from tava_core import refresh as core
from tava_core.errors import InputError
from tava_core.home import TavaHome

from .._server import run_flow
from ..cli import ConfigCommand, build_config, config_options, echo_record
from . import checks


@click.command("refresh", cls=ConfigCommand)
@config_options(core.RefreshConfig, exclude=("adapter_options",))
@click.pass_context
def cli(ctx: click.Context, **params) -> None:
    """Nightly adapter refresh: train the current adapter further on new texts in the drop zone and
    promote it only if it is not worse (prints the run's record)."""
    config = build_config(core.RefreshConfig, ctx, params)
    home = TavaHome()
    checks.encoder(config.student, "--student")
    checks.encoder(config.teacher, "--teacher")
    for dataset in config.evaluation:
        checks.retrieval_dataset(home, dataset, option="--evaluation")
    zone = core.drop_zone(config, home)
    if not zone.is_dir():     # the flow's scan says the same, but only after the server started
        raise InputError("--drop-zone: drop zone folder does not exist", path=zone,
                         hint="create it and put .jsonl/.parquet/.txt files there, or set --drop-zone")
    try:
        record = run_flow("flows.refresh:nightly_adapter_refresh", config, home=str(home.root))
    except Exception as exc:
        from flows.refresh import StageFailed  # imported by run_flow already: costs nothing here

        if not isinstance(exc, StageFailed):
            raise
        raise click.ClickException(str(exc)) from None
    record.pop("config", None)
    echo_record(record)
