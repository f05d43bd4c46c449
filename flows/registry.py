"""`tava registry list|show` and `tava rollback`: the artifact registry from the command line.

Plain file operations (no Prefect run): listing, reading lineage, and moving a `current` pointer
under the slot's lock.
"""
from __future__ import annotations

from typing import Optional

import click

from tava_core.home import TavaHome
from tava_core.registry import KINDS, Registry

from .cli import echo_record


@click.group("registry")
def registry_cli() -> None:
    """Versioned artifacts (students, adapters, indexes) with a `current` pointer."""


def _flat(metrics: dict, prefix: str = "") -> dict:
    """Numbers of a (nested) metrics record, one level of nesting spelled out: heldout.mean_cosine."""
    from pathlib import Path

    out = {}
    for key, value in metrics.items():
        if isinstance(value, dict) and not prefix:
            out.update(_flat(value, f"{key}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[prefix + (Path(key).name if "/" in str(key) else str(key))] = value
    return out


def _short(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


@registry_cli.command("list")
@click.argument("kind", required=False, type=click.Choice(KINDS))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_cmd(kind: Optional[str], as_json: bool) -> None:
    """Every artifact name with its current version and the versions kept."""
    rows = Registry(TavaHome()).listing(kind)
    if as_json:
        echo_record(rows)
        return
    if not rows:
        click.echo("the registry is empty")
    for row in rows:
        metrics = ", ".join(f"{k}={_short(v)}" for k, v in _flat(row["metrics"]).items())
        click.echo(f"{row['kind']:<9} {row['name']:<40} current {row['current'] or '-':<6} "
                   f"versions {','.join(row['versions'])}  {metrics}")


@registry_cli.command("show")
@click.argument("kind", type=click.Choice(KINDS))
@click.argument("name")
@click.option("--version", default=None, help="A version number (default: current).")
def show_cmd(kind: str, name: str, version: Optional[str]) -> None:
    """One version's record: lineage (data, teacher, student, parent) and metrics; plus the pointer history."""
    registry = Registry(TavaHome())
    echo_record({"record": registry.record(kind, name, version).model_dump(mode="json"),
                 "history": registry.history(kind, name)})


@click.command("rollback")
@click.argument("kind", type=click.Choice(KINDS))
@click.argument("name")
@click.option("--to", "to", default=None, help="Version to point `current` at (default: the previous one).")
@click.option("--reason", default="manual rollback", help="Recorded in the slot's history.")
def rollback_cli(kind: str, name: str, to: Optional[str], reason: str) -> None:
    """Point an artifact's `current` back at an earlier version (checked to load first)."""
    echo_record(Registry(TavaHome()).rollback(kind, name, to=to, reason=reason))


@registry_cli.command("publish")
@click.argument("kind", type=click.Choice(KINDS))
@click.argument("name")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--promote/--no-promote", default=True, show_default=True, help="Also make it the current version.")
@click.option("--note", default="", help="Why this version exists (kept in its record).")
def publish_cmd(kind: str, name: str, directory: str, promote: bool, note: str) -> None:
    """Copy an artifact directory (say, a student from `tava distill`) in as a new version."""
    from pathlib import Path

    from tava_core.io import read_json

    lineage = {"source_dir": str(Path(directory).resolve())}
    for meta in ("model_card.json", "report.json"):  # whatever lineage the artifact carries
        if (Path(directory) / meta).is_file():
            lineage["artifact_metadata"] = {"file": meta, "content": read_json(Path(directory) / meta)}
            break
    record = Registry(TavaHome()).publish(kind, name, directory, lineage=lineage, note=note, promote=promote)
    echo_record(record)
