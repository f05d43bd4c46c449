"""The queries of the splits a run does not score, as a label-free query log (`query_log.py`): which
are taken, which are held out, and the file `tava run` ingests."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tava_core.config import IngestConfig
from tava_core.home import TavaHome
from tava_core.ingest import ingest
from tava_core.ingest.query_log import other_split_queries, write_query_log

QUERIES = {
    "tr1": "what do cells need to divide",
    "tr2": "How  do Rivers flood",            # a test query's text, up to case and spacing
    "tr3": "when do prices rise",
    "dv1": "which parser builds a tree",
    "te1": "how do rivers flood",
    "te2": "what does the optimizer update",
    "loose": "a query no qrels file names",
}
SPLITS = {"train": ["tr1", "tr2", "tr3"], "dev": ["dv1", "tr1"], "test": ["te1", "te2"]}


def beir_with_splits(root: Path, splits: dict[str, list[str]]) -> Path:
    root.mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "title": "", "text": f"document {i}"}) + "\n"
                                               for i in range(3)))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in QUERIES.items()))
    (root / "qrels").mkdir()
    for split, ids in splits.items():
        (root / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\td{i % 3}\t1\n" for i, q in enumerate(ids)))
    return root


@pytest.fixture()
def dataset(tmp_path) -> Path:
    report = ingest(IngestConfig(source=str(beir_with_splits(tmp_path / "beir", SPLITS)), name="three-splits"),
                    TavaHome(tmp_path / "home"))
    return Path(report.path)


@pytest.mark.parametrize("scored, ids, splits, held, same_text", [
    # a test run: train and dev queries, but not tr2 (te1's text) and never the unnamed one
    ("test", ["tr1", "tr3", "dv1"], ["dev", "train"], ["test"], 1),
    # a dev run: the train queries less tr1 (dev names it too) and tr2 (a test text): the test split
    # stays out although it is not scored
    ("dev", ["tr3"], ["train"], ["dev", "test"], 1),
    # a train run: dev's queries less tr1, which the scored split names too
    ("train", ["dv1"], ["dev"], ["test", "train"], 0),
])
def test_the_log_holds_other_splits_queries_and_never_a_held_out_one(dataset, scored, ids, splits, held, same_text):
    log = other_split_queries(dataset, scored)
    assert log.ids == ids                                     # in the queries file's order
    assert log.texts == [QUERIES[q] for q in ids]
    assert log.splits == splits and log.held_out_splits == held
    assert log.same_text_dropped == same_text


def test_a_dev_run_drops_a_train_query_with_a_dev_querys_text(tmp_path):
    # tr2's text is te1's; score dev with only train and dev present: te1 is nobody's, tr2 stays
    source = beir_with_splits(tmp_path / "beir", {"train": ["tr1", "tr2"], "dev": ["te1"]})
    report = ingest(IngestConfig(source=str(source), name="two-splits"), TavaHome(tmp_path / "home"))
    log = other_split_queries(report.path, "dev")
    assert log.ids == ["tr1"] and log.same_text_dropped == 1


def test_no_log_with_one_split_an_unscored_split_or_no_queries(tmp_path):
    home = TavaHome(tmp_path / "home")
    one = ingest(IngestConfig(source=str(beir_with_splits(tmp_path / "one", {"test": ["te1"]})), name="one"), home)
    assert len(other_split_queries(one.path, "test")) == 0
    # a split without qrels is scored label-free, on the file's queries: nothing is safe to train on
    three = ingest(IngestConfig(source=str(beir_with_splits(tmp_path / "three", SPLITS)), name="three"), home)
    assert len(other_split_queries(three.path, "validation")) == 0
    (tmp_path / "plain.jsonl").write_text(json.dumps({"_id": "a", "text": "just a text"}) + "\n")
    plain = ingest(IngestConfig(source=str(tmp_path / "plain.jsonl")), home)
    assert len(other_split_queries(plain.path, "test")) == 0


def test_the_written_log_ingests_as_the_same_texts_and_is_not_rewritten_when_unchanged(dataset, tmp_path):
    log = other_split_queries(dataset, "test")
    path = write_query_log(log, tmp_path / "sources" / "three-splits-query-log-test.jsonl")
    assert [json.loads(line) for line in path.read_text().splitlines()] == [
        {"_id": i, "text": t} for i, t in zip(log.ids, log.texts, strict=True)]
    os.utime(path, (1_000_000, 1_000_000))
    write_query_log(log, path)                    # same lines: left alone, so its ingested copy stays current
    assert path.stat().st_mtime == 1_000_000
    report = ingest(IngestConfig(source=str(path)), TavaHome(tmp_path / "home2"))
    assert report.collections == {"texts": 3}
    changed = other_split_queries(dataset, "dev")
    write_query_log(changed, path)
    assert path.stat().st_mtime != 1_000_000 and path.read_text().splitlines() == ['{"_id": "tr3", "text": "when do prices rise"}']
    assert not list(path.parent.glob(".*tmp*"))    # written through a temporary file, none left
