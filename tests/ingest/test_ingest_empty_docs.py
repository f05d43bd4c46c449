"""A BEIR corpus with empty documents loads: they are kept for the qrels (judged, never retrieved)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tava_core.config import IngestConfig
from tava_core.errors import InputError
from tava_core.evaluate.data import load_retrieval_data
from tava_core.evaluate.metrics import retrieval_metrics
from tava_core.home import TavaHome
from tava_core.ingest import ingest
from tava_core.io import read_text_shard
from tava_core.manifest import load_dataset_manifest


def _beir_with_empty_docs(root: Path) -> Path:
    """Four documents: one title-only, one with neither text nor title; a query judges the empty one."""
    root.mkdir(parents=True)
    corpus = [{"_id": "d1", "title": "Cats", "text": "Cats purr when content."},
              {"_id": "d2", "title": "", "text": "   "},                       # empty: judged by q2
              {"_id": "d3", "title": "Fish school behaviour", "text": ""},    # title only
              {"_id": "d4", "title": "", "text": "Dogs bark at strangers."}]
    (root / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    queries = [{"_id": "q1", "text": "why do cats purr"}, {"_id": "q2", "text": "empty"}]
    (root / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries))
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\nq2\td4\t1\n")
    return root


def test_empty_documents_are_kept_for_the_qrels_and_counted(tmp_path):
    home = TavaHome(tmp_path / "home")
    report = ingest(IngestConfig(source=str(_beir_with_empty_docs(tmp_path / "beir")), name="withempty"), home)
    assert report.qrels == {"test": 3}                         # the pair naming d2 is not refused
    assert report.empty_documents == {"corpus": 1}
    assert report.collections["corpus"] == 3                   # d2 has no row: there is nothing to embed
    manifest = load_dataset_manifest(home.dataset_dir("withempty"))
    assert manifest.empty_documents == {"corpus": ["d2"]}
    written = (home.dataset_dir("withempty") / "manifest.json").stat().st_mtime_ns
    again = ingest(IngestConfig(source=str(tmp_path / "beir"), name="withempty"), home)   # served from the manifest
    assert (home.dataset_dir("withempty") / "manifest.json").stat().st_mtime_ns == written
    assert again.empty_documents == {"corpus": 1}, again   # a re-run once reported {}
    rows = read_text_shard(home.dataset_dir("withempty") / manifest.collections["corpus"].shards[0].path).to_pylist()
    by_id = {row["id"]: row for row in rows}
    assert by_id["d3"]["text"] == "Fish school behaviour"      # a title-only document is its title, as in BEIR
    assert "empty text" not in manifest.skipped.by_reason

    data = load_retrieval_data(home.dataset_dir("withempty"), "test", home)
    assert data.corpus_ids == ["d1", "d3", "d4"] and data.info["empty_documents"] == 1
    # q2's two relevant documents: d4 retrieved first, d2 never -> nDCG = 1 / (1 + 1/log2(3))
    scores = np.array([[0.9, 0.1, 0.2], [0.1, 0.2, 0.9]], dtype=np.float32)
    per_query = retrieval_metrics(scores, data.query_ids, data.corpus_ids, data.qrels, per_query=True)
    assert per_query["ndcg_at_10_per_query"][0] == pytest.approx(1.0)
    assert per_query["ndcg_at_10_per_query"][1] == pytest.approx(1.0 / (1.0 + 1.0 / np.log2(3)))


def test_qrels_naming_a_document_that_does_not_exist_are_still_refused(tmp_path):
    root = _beir_with_empty_docs(tmp_path / "beir")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\tnope\t1\n")
    with pytest.raises(InputError, match="unknown corpus id 'nope'"):
        ingest(IngestConfig(source=str(root), name="bad"), TavaHome(tmp_path / "home"))


def test_null_text_or_title_reads_as_empty(tmp_path):
    """BEIR-style files written by other tools may hold JSON nulls: a null text with a title is a
    title-only document, a null text and title an empty document, a null title no title."""
    root = tmp_path / "beir"
    root.mkdir()
    corpus = [{"_id": 1, "title": "Birds", "text": None}, {"_id": 2, "title": None, "text": None},
              {"_id": 3, "title": None, "text": "Dogs bark."}]
    (root / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    (root / "queries.jsonl").write_text(json.dumps({"_id": 9, "text": "birds"}) + "\n")
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n9\t1\t1\n9\t2\t1\n")
    home = TavaHome(tmp_path / "home")
    report = ingest(IngestConfig(source=str(root), name="nulls"), home)
    assert report.collections["corpus"] == 2 and report.empty_documents == {"corpus": 1}
    manifest = load_dataset_manifest(home.dataset_dir("nulls"))
    rows = read_text_shard(home.dataset_dir("nulls") / manifest.collections["corpus"].shards[0].path).to_pylist()
    assert {row["id"]: (row["title"], row["text"]) for row in rows} == {"1": ("", "Birds"), "3": ("", "Dogs bark.")}
    assert manifest.empty_documents == {"corpus": ["2"]}
