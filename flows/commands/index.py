"""`tava index` (flow `rebuild-index`; `--rollback`: flow `rollback-index`)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from tava_core.errors import ConfigError
from tava_core.home import TavaHome
from tava_core.index import IndexConfig, default_index_dir
from tava_core.manifest import load_vector_manifest

from .._server import run_flow
from ..cli import ConfigCommand, build_config, config_options, echo_record
from . import checks


def resolve_index_dir(vectors: Optional[str], index_dir: Optional[str], home: TavaHome, *,
                      command: str = "--rollback") -> str:
    """The index directory a rollback (or a search) acts on: --index-dir, else the default for --vectors."""
    if index_dir:
        checks.existing_dir(index_dir, "--index-dir")
        return str(Path(index_dir).expanduser().resolve())
    if vectors:
        checks.vector_dirs([vectors], "--vectors")
        return str(default_index_dir(home, load_vector_manifest(Path(vectors).expanduser().resolve())))
    raise ConfigError(f"{command} needs --index-dir (or the --vectors the index was built from)")


@click.command("index", cls=ConfigCommand)
@config_options(IndexConfig)
@click.option("--rollback", is_flag=True, help="Point the index back at its previous version (no build).")
@click.pass_context
def cli(ctx: click.Context, rollback: bool, **params) -> None:
    """Build a FAISS index from vector shards (any factory string) and publish it atomically."""
    home = TavaHome()
    if rollback:
        index_dir = resolve_index_dir(params.get("opt__vectors"), params.get("opt__index_dir"), home)
        echo_record(run_flow("flows.index:rollback_index_flow", index_dir))
        return
    config = build_config(IndexConfig, ctx, params)
    checks.vector_dirs([config.vectors], "--vectors")
    checks.vector_dirs([config.query_vectors], "--query-vectors")
    checks.index_factory(config)
    record = run_flow("flows.index:rebuild_index", config, home=str(home.root))
    if record.skipped:
        click.echo(f"reused version {record.version}: it already indexes these shards (nothing built)", err=True)
    else:
        click.echo(f"built version {record.version}: {record.count} vectors indexed", err=True)
    echo_record(record.model_dump(mode="json", exclude={"source"}))  # shard list: in the manifest, too long here
