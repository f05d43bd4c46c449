"""`tava data spans`: short span views of an ingested dataset, written as a dataset `tava embed` reads."""
from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from helpers import synthetic_texts, write_dataset

from tava_core.distill.spans import MAX_WORDS, MIN_WORDS
from tava_core.io import read_text_shard
from tava_core.manifest import load_dataset_manifest


def _spans(out: Path) -> tuple[list[str], list[str], list[Path]]:
    manifest = load_dataset_manifest(out)
    paths = [out / shard.path for shard in manifest.collections["spans"].shards]
    tables = [read_text_shard(path) for path in paths]
    return ([i for t in tables for i in t.column("id").to_pylist()],
            [x for t in tables for x in t.column("text").to_pylist()], paths)


def test_data_spans_cuts_every_document_and_no_query(tmp_path):
    from flows.cli import group
    from flows.commands.checks import ingested_dataset
    from tava_core.home import TavaHome

    home = tmp_path / "home"
    corpus = synthetic_texts(30, seed=1)
    write_dataset(home, "small", {"corpus": corpus, "queries": synthetic_texts(5, seed=2)}, shard_size=10)
    result = CliRunner().invoke(group, ["--home", str(home), "data", "spans", "small", "--views", "3"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["dataset"] == "small.spans3-s0" and record["collections"] == ["corpus"] and record["texts"] == 30
    ids, texts, paths = _spans(Path(record["path"]))
    assert len(ids) == record["spans"] and 30 <= len(ids) <= 90
    # every document gives spans (ids "<document id>#span<view>"), queries give none
    assert {i.split("#")[0] for i in ids} == {f"c{k}" for k in range(30)}
    by_id = dict(zip([f"c{k}" for k in range(30)], corpus, strict=True))
    for span_id, span in zip(ids, texts, strict=True):
        source = by_id[span_id.split("#")[0]]
        assert span in source and len(span.split()) <= MAX_WORDS
        assert len(span.split()) >= MIN_WORDS or span == source  # only a text too short to cut is kept whole
    # found by name, as `tava embed --dataset small.spans3-s0` looks it up
    assert ingested_dataset(TavaHome(home), record["dataset"]) == Path(record["path"])

    # a second call reuses the dataset; another seed writes another one
    stamps = [p.stat().st_mtime_ns for p in paths]
    again = CliRunner().invoke(group, ["--home", str(home), "data", "spans", "small", "--views", "3"])
    assert again.exit_code == 0 and json.loads(again.output)["path"] == record["path"]
    assert [p.stat().st_mtime_ns for p in paths] == stamps
    other = CliRunner().invoke(group, ["--home", str(home), "data", "spans", "small", "--views", "3", "--seed", "1"])
    assert other.exit_code == 0 and _spans(Path(json.loads(other.output)["path"]))[1] != texts
    # --titles on documents without titles: nothing to take, the same dataset (reused as it is)
    titled = CliRunner().invoke(group, ["--home", str(home), "data", "spans", "small", "--views", "3", "--titles"])
    assert titled.exit_code == 0 and json.loads(titled.output)["path"] == record["path"]
    assert [p.stat().st_mtime_ns for p in paths] == stamps
    assert not list(home.rglob("*.tmp*"))
