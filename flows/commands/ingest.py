"""`tava ingest SOURCE` (flow `ingest-corpus`) and `tava data download|builtin|spans` (no flow)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from tava_core.config import IngestConfig
from tava_core.home import TavaHome

from .._server import run_flow
from ..cli import ConfigCommand, build_config, config_options, echo_record
from . import checks


@click.command("ingest", cls=ConfigCommand)
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


@data_cli.command("spans")
@click.argument("dataset")
@click.option("--views", type=click.IntRange(1, 16), default=2, show_default=True,
              help="Span views per text (a sentence of 4-32 words or a 4-24-word window; de-duplicated per text).")
@click.option("--collections", "collections", multiple=True, help=(
    "Collections to cut spans from (repeatable); default every collection but 'queries'."))
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the span maker.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Only the first N texts.")
@click.option("--titles/--no-titles", default=False, show_default=True, help=(
    "Each titled text's title alone as one more view, as Stage A takes them (`--title-views`, on there); "
    "the dataset is then NAME.spans<V>-s<SEED>-titles. Off here: as domain rows of the unpaired translation "
    "recipe, titles tied (docs/translation.md)."))
def spans_cmd(dataset: str, views: int, collections: tuple[str, ...], seed: int, limit: Optional[int],
              titles: bool) -> None:
    """Write short label-free span views of an ingested DATASET as a dataset of their own.

    The same spans Stage A trains on (`--span-views`; with `--titles`, its title views too): query-like text cut
    from the documents. Embed
    them with `tava embed --dataset <printed name>`; the vectors serve, e.g., as domain vectors of
    `tava adapt --mode unpaired` (docs/translation.md). Written once (atomically) and reused.
    """
    from tava_core.distill.data import training_collections
    from tava_core.distill.spans import SPAN_COLLECTION, write_span_dataset
    from tava_core.manifest import load_dataset_manifest

    home = TavaHome()
    dataset_dir = checks.ingested_dataset(home, dataset, "DATASET", collections=collections)
    chosen = training_collections(list(load_dataset_manifest(dataset_dir).collections), list(collections),
                                  dataset_dir)
    out = write_span_dataset(home, dataset_dir, chosen, views, seed, limit=limit, titles=titles)
    manifest = load_dataset_manifest(out)
    echo_record({"dataset": manifest.name, "path": str(out), "collections": chosen,
                 "texts": manifest.info.get("texts"), "spans": manifest.collections[SPAN_COLLECTION].rows,
                 "next": f"tava embed --dataset {manifest.name} --encoder ENCODER"})
