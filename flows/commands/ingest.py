"""`tava ingest SOURCE` (flow `ingest-corpus`) and `tava data download|builtin` (no flow)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from tava_core.config import IngestConfig
from tava_core.home import TavaHome

from .._server import run_flow
from ..cli import build_config, config_options, echo_record
from . import checks


@click.command("ingest")
@click.argument("opt__source", metavar="SOURCE", required=False)
@config_options(IngestConfig, exclude=("source",))
@click.pass_context
def cli(ctx: click.Context, **params) -> None:
    """Read SOURCE into Parquet text shards under <home>/data/<name>/.

    SOURCE is a BEIR directory (corpus.jsonl, queries.jsonl, qrels/*.tsv), a .jsonl/.jsonl.gz,
    .parquet, .csv or .tsv file, a folder of .txt files, or 'builtin' (the default corpus made
    from installed packages' docstrings).
    """
    config = build_config(IngestConfig, ctx, params)
    home = TavaHome()
    checks.ingest_source(config, home)
    echo_record(run_flow("flows.ingest:ingest_corpus", config, home=str(home.root)))


@click.group("data")
def data_cli() -> None:
    """Built-in and downloadable datasets."""


@data_cli.command("download")
@click.argument("name")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Directory to unpack into (NAME/ goes inside) [default: <home>/downloads].")
@click.option("--base-url", default=None, help="Archive location; {base-url}/{NAME}.zip is fetched "
              "[default: the public BEIR archive].")
@click.option("--md5", default=None, help="Expected md5 of the zip (needed for names not in the known table).")
@click.option("--sha256", default=None, help="Expected sha256 of the zip (checked instead of the md5).")
@click.option("--force", is_flag=True, help="Replace an existing download.")
def download_cmd(name: str, out_dir: Optional[str], base_url: Optional[str], md5: Optional[str],
                 sha256: Optional[str], force: bool) -> None:
    """Download the BEIR dataset NAME (scifact, nfcorpus, fiqa, arguana, scidocs, trec-covid, quora, ...),
    verify its checksum and unpack it; then `tava ingest <printed path>`."""
    from tava_core.datasets.download import BEIR_BASE_URL, download_beir

    out = Path(out_dir) if out_dir else TavaHome().root / "downloads"
    path = download_beir(name, out, base_url=base_url or BEIR_BASE_URL, md5=md5, sha256=sha256, force=force)
    echo_record({"dataset": name, "path": str(path), "next": f"tava ingest {path}"})


@data_cli.command("builtin")
@click.option("--force", is_flag=True, help="Rebuild even when the installed package versions are unchanged.")
def builtin_cmd(force: bool) -> None:
    """Build the built-in docstring corpus (BEIR layout) and print where it is."""
    from tava_core.datasets.builtin import ensure_builtin_source

    path, info = ensure_builtin_source(TavaHome(), force=force)
    echo_record({"path": str(path), "counts": info["counts"], "packages": info["packages"],
                 "next": "tava ingest builtin"})
