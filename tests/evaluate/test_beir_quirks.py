"""Two quirks of real BEIR sets that tava scores as BEIR, trec_eval and mteb do.

- Identical ids (ArguAna, Quora): every query is also in the corpus under its own id. That
  document is left out of the query's ranking; kept, it ranks first for any encoder.
- Judged documents the corpus lacks (ArguAna judges one): kept as relevant and never retrieved
  when they are a few; many mean the qrels belong to another corpus, an error.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tava_core.config import IngestConfig
from tava_core.errors import InputError
from tava_core.evaluate import load_retrieval_data
from tava_core.evaluate import metrics as M
from tava_core.home import TavaHome
from tava_core.ingest import ingest
from tava_core.manifest import load_dataset_manifest

# ArguAna's shape: an argument is the query; the corpus holds it (same id, same text) and its counter
ARGUMENTS = [
    ("a1", "Zoos protect endangered animals from extinction through breeding programmes."),
    ("a1c", "Breeding in captivity rarely returns animals to the wild, so zoos mostly entertain."),
    ("a2", "Homework builds discipline and lets pupils practise what they learned at school."),
    ("a2c", "Long homework hours crowd out play and sleep, which children need to learn well."),
    ("a3", "Nuclear power is a low carbon source of steady electricity for a growing grid."),
    ("a3c", "Nuclear plants take decades to build and leave waste that stays dangerous for ages."),
]


def write_beir(root: Path, docs, queries, qrels) -> Path:
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "title": "", "text": x}) + "\n" for i, x in docs))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": i, "text": x}) + "\n" for i, x in queries))
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels))
    return root


@pytest.fixture()
def arguana_like(tmp_path) -> Path:
    queries = [(i, x) for i, x in ARGUMENTS if not i.endswith("c")]
    return write_beir(tmp_path / "arguana-like", ARGUMENTS, queries, [(q, f"{q}c", 1) for q, _ in queries])


# ------------------------------------------------------------------------------ identical ids

@pytest.mark.parametrize("recall_k", [2, 100])      # 100: the whole corpus is ranked, the left-out row last
def test_a_query_is_never_its_own_result(recall_k):
    doc_ids = ["q1", "a", "b", "c"]
    # q1's own document scores highest; its answer "a" is second. q2 has no document of its own.
    scores = np.array([[0.99, 0.8, 0.1, 0.3], [0.0, 0.2, 0.1, 0.7]], dtype=np.float32)
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    got = M.retrieval_metrics(scores, ["q1", "q2"], doc_ids, qrels, recall_k=recall_k, per_query=True)
    without = M.retrieval_metrics(scores[:, 1:], ["q1", "q2"], doc_ids[1:], qrels, recall_k=recall_k, per_query=True)
    assert got["ndcg_at_10_per_query"].tolist() == [1.0, 1 / np.log2(4)]     # q2: b third, as before
    for key in ("ndcg_at_10", f"recall_at_{recall_k}", "mrr_at_10"):
        assert got[key] == pytest.approx(without[key], abs=1e-12)
    kept = M.retrieval_metrics(scores, ["q1", "q2"], doc_ids, qrels, recall_k=recall_k, ignore_identical_ids=False)
    assert kept["ndcg_at_10"] < got["ndcg_at_10"] and kept["mrr_at_10"] == pytest.approx((1 / 2 + 1 / 3) / 2)


def test_a_same_id_document_judged_relevant_stays_in_the_ranking(tmp_path, tiny_model_dir):
    """A set numbered 1..n on both sides whose query i is answered by document i keeps its answers."""
    from tava_core.encoders import load_encoder
    from tava_core.evaluate.mteb_adapter import make_routing_encoder, make_task, run_mteb

    scores = np.array([[0.9, 0.5, 0.1], [0.2, 0.9, 0.1]], dtype=np.float32)
    qrels = {"1": {"1": 1}, "2": {"1": 1}}          # query 1's own document is its answer; query 2's is not
    got = M.retrieval_metrics(scores, ["1", "2"], ["1", "2", "3"], qrels, per_query=True)
    assert got["ndcg_at_10_per_query"].tolist() == [1.0, 1.0]     # query 2's own document "2" left out
    assert M.identical_id_rows(["1", "2"], ["1", "2", "3"], qrels).tolist() == [-1, 1]

    docs = [(str(i), f"answer {i}: {text}") for i, (_, text) in enumerate(ARGUMENTS, 1)]
    queries = [(str(i), text) for i, (_, text) in enumerate(ARGUMENTS, 1)]
    root = write_beir(tmp_path / "numbered", docs, queries, [(str(i), str(i), 1) for i in range(1, 7)])
    data = load_retrieval_data(root, "test")
    assert data.summary()["queries_with_same_id_document"] == 0
    encoder = load_encoder(str(tiny_model_dir))
    expected = M.retrieval_metrics(M.cosine_scores(encoder.encode(data.query_texts, kind="query"),
                                                   encoder.encode(data.document_texts)),
                                   data.query_ids, data.corpus_ids, data.qrels)
    assert expected["recall_at_100"] == 1.0
    got_mteb = run_mteb(make_task(data), make_routing_encoder(encoder, encoder, name="tiny", batch_size=4),
                        tmp_path / "mteb", batch_size=4)
    for key in ("ndcg_at_10", "recall_at_100", "mrr_at_10"):
        assert got_mteb[key] == pytest.approx(expected[key], abs=1e-5)


def test_mteb_leaves_out_identical_ids_as_tava_does(arguana_like, tiny_model_dir, tmp_path, capfd):
    from tava_core.encoders import load_encoder
    from tava_core.evaluate.mteb_adapter import make_routing_encoder, make_task, run_mteb

    data = load_retrieval_data(arguana_like, "test")
    assert data.summary()["queries_with_same_id_document"] == 3
    from tava_core.evaluate.report import markdown_table
    text = markdown_table({"dataset": data.summary(), "rows": [], "throughput": {}})
    assert "3 queries have a document with their own id: left out of their rankings" in text
    encoder = load_encoder(str(tiny_model_dir))
    scores = M.cosine_scores(encoder.encode(data.query_texts, kind="query"), encoder.encode(data.document_texts))
    own = M.identical_id_rows(data.query_ids, data.corpus_ids, data.qrels)
    assert np.allclose(scores[np.arange(3), own], 1.0, atol=1e-5)          # each query finds itself first
    expected = M.retrieval_metrics(scores, data.query_ids, data.corpus_ids, data.qrels)
    kept = M.retrieval_metrics(scores, data.query_ids, data.corpus_ids, data.qrels, ignore_identical_ids=False)
    assert kept["mrr_at_10"] <= 0.5 < expected["mrr_at_10"]                 # self-hits would cost every query
    model = make_routing_encoder(encoder, encoder, name="tiny", batch_size=4)
    from datasets.utils.logging import is_progress_bar_enabled

    capfd.readouterr()
    got = run_mteb(make_task(data), model, tmp_path / "mteb", batch_size=4)
    for key in ("ndcg_at_10", "recall_at_100", "mrr_at_10"):
        assert got[key] == pytest.approx(expected[key], abs=1e-5)          # mteb rounds to 5 decimals
    # mteb's pass over vectors tava computed draws no bars of its own (they printed over tava's), and the
    # datasets library's bars are on again for whoever else uses it
    printed = capfd.readouterr().err
    assert "Searching corpus chunks" not in printed and "Standardizing text corpus" not in printed, printed
    assert is_progress_bar_enabled()


def test_routing_overlap_leaves_out_identical_ids():
    from tava_core.route.calibrate import true_agreement
    from tava_core.route.curves import curves_from_vectors

    rng = np.random.default_rng(0)
    documents = rng.normal(size=(60, 8)).astype(np.float32)
    # student and teacher both land near the query's own document, and differ elsewhere
    student = documents[:5] + 0.4 * rng.normal(size=(5, 8)).astype(np.float32)
    teacher = documents[:5] + 0.4 * rng.normal(size=(5, 8)).astype(np.float32)
    doc_ids = [f"q{i}" for i in range(5)] + [f"d{i}" for i in range(55)]
    query_ids = doc_ids[:5]
    out = curves_from_vectors(student_queries=student, teacher_queries=teacher, documents=documents,
                              query_ids=query_ids, query_texts=["x"] * 5, doc_ids=doc_ids,
                              qrels={q: {"d0": 1} for q in query_ids}, confidence=np.zeros(5))
    left_out = true_agreement(student, teacher, documents, exclude=np.arange(5))["overlap"].mean()
    kept = true_agreement(student, teacher, documents)["overlap"].mean()
    assert out["rows"][0]["router"]["top10_overlap_with_teacher"] == pytest.approx(float(left_out))
    assert kept > left_out                       # the shared self-hit would have inflated the agreement


# ----------------------------------------------------- judged documents the corpus lacks

def many_pairs(tmp_path: Path, absent: int) -> Path:
    """120 queries, each judging its own answer; the first ``absent`` also judge a document not in the corpus."""
    docs = [(f"d{i}", f"answer number {i}") for i in range(120)]
    queries = [(f"q{i}", f"question number {i}") for i in range(120)]
    qrels = [(f"q{i}", f"d{i}", 1) for i in range(120)] + [(f"q{i}", f"gone{i}", 1) for i in range(absent)]
    return write_beir(tmp_path / f"absent{absent}", docs, queries, qrels)


def test_a_few_absent_judged_documents_are_relevant_and_never_retrieved(tmp_path, caplog):
    root = many_pairs(tmp_path, absent=1)                       # 1 of 121 pairs: under 1%
    with caplog.at_level("WARNING"):
        raw = load_retrieval_data(root, "test")
    assert raw.info == {"absent_documents": 1} and raw.qrels["q0"] == {"d0": 1, "gone0": 1}
    assert raw.summary()["judged_documents_not_in_corpus"] == 1
    assert "'gone0' (line 122)" in caplog.text
    per_query = M.retrieval_metrics(np.eye(120, dtype=np.float32), raw.query_ids, raw.corpus_ids, raw.qrels,
                                    per_query=True)["ndcg_at_10_per_query"]
    assert per_query[0] == pytest.approx(1 / (1 + 1 / np.log2(3))) and np.all(per_query[1:] == 1.0)

    home = TavaHome(tmp_path / "home")
    ingest(IngestConfig(source=str(root), name="absent"), home)
    assert load_dataset_manifest(home.dataset_dir("absent")).qrels["test"].absent_documents == ["gone0"]
    ingested = load_retrieval_data("absent", "test", home)
    assert ingested.qrels == raw.qrels and ingested.info == {"absent_documents": 1}


def test_many_absent_judged_documents_are_an_error_naming_the_first_line(tmp_path):
    root = many_pairs(tmp_path, absent=2)                       # 2 of 122 pairs: over 1%
    with pytest.raises(InputError) as info:
        load_retrieval_data(root, "test")
    assert info.value.line == 122 and "'gone0'" in info.value.message and "2 of 122 pairs" in info.value.message
    with pytest.raises(InputError) as info:
        ingest(IngestConfig(source=str(root), name="absent"), TavaHome(tmp_path / "home"))
    assert info.value.line == 122 and "2 of 122 pairs" in info.value.message
    assert not (tmp_path / "home" / "data" / "absent").exists()
