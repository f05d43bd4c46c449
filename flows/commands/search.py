"""`tava search`: query a published index with texts (no flow: a read-only look, seconds)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from tava_core.home import TavaHome

from ..cli import echo_record
from . import checks
from .index import resolve_index_dir


def read_queries(path: str) -> list[str]:
    """One query a line (blank lines skipped)."""
    return [line.strip() for line in Path(path).expanduser().read_text(encoding="utf-8").splitlines() if line.strip()]


@click.command("search")
@click.argument("queries", nargs=-1)
@click.option("--index-dir", default=None, help="A published index (what `tava index` printed as index_dir).")
@click.option("--vectors", default=None, help="Or the vector directory the index was built from (its default index).")
@click.option("--queries", "queries_file", default=None, type=click.Path(dir_okay=False),
              help="A file of query texts, one a line (beside or instead of the QUERIES arguments).")
@click.option("--encoder", default=None, help=(
    "Query encoder; empty = the model whose space the index is in (a translated store's target model, else "
    "the encoder that embedded the vectors). A student + adapter, blend or router of that teacher works too."))
@click.option("-k", "--k", "k", default=10, show_default=True, help="Documents per query.")
@click.option("--no-text", is_flag=True, help="Ids and scores only (else the hits' texts, when the dataset is here).")
def cli(queries: tuple[str, ...], index_dir: Optional[str], vectors: Optional[str], queries_file: Optional[str],
        encoder: Optional[str], k: int, no_text: bool) -> None:
    """Search an index with query texts: `tava search --vectors DIR "what causes floods"`. Prints JSON:
    per query, the top k ids, scores and texts."""
    home = TavaHome()
    texts = list(queries)
    if queries_file:
        checks.existing_file(queries_file, "--queries")
        texts += read_queries(queries_file)
    checks.encoder(encoder, "--encoder")
    from tava_core.search import search_index

    echo_record(search_index(resolve_index_dir(vectors, index_dir, home, command="tava search"), texts, encoder=encoder, k=k, home=home,
                             with_text=not no_text))
