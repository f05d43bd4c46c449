"""tava evaluate: data checks, exact metrics, mteb task/encoder routing, variants and the report."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from damaged_models import DAMAGED_KINDS, damaged_model

from tava_core.config import EncoderSpec
from tava_core.errors import ConfigError, InputError
from tava_core.evaluate import EvalConfig, load_retrieval_data
from tava_core.evaluate import metrics as M
from tava_core.home import TavaHome

DOCS = [
    ("d1", "Cats", "Cats are small furry animals that purr."),
    ("d2", "Dogs", "Dogs bark loudly at strangers."),
    ("d3", "", "The sun is a star at the centre of the solar system."),
    ("d4", "Python", "Python is a programming language for writing code."),
    ("d5", "Coffee", "Coffee contains caffeine and keeps people awake."),
    ("d6", "Tea", "Green tea is a drink made from leaves."),
    ("d7", "Rust", "Rust is a systems programming language."),
    ("d8", "Moon", "The moon orbits the earth."),
]
QUERIES = [("q1", "which animals purr"), ("q2", "which drink wakes you up"), ("q3", "a language for code"),
           ("q4", "what orbits the earth"), ("q9", "a query without judgements")]
QRELS = [("q1", "d1", 1), ("q2", "d5", 1), ("q2", "d6", 1), ("q3", "d4", 2), ("q3", "d7", 1), ("q4", "d8", 1)]


def evaluate(config: EvalConfig, home: TavaHome) -> dict:
    """Run the `evaluate` flow (the one chain of the evaluation steps, as deployed); the report on disk
    with the record's ``files`` and ``reused``."""
    from flows.evaluate import evaluate_flow

    record = evaluate_flow(config, home=str(home.root))
    report = json.loads(Path(record.files["json"]).read_text())
    return {**report, "files": record.files, "reused": record.reused}


def write_beir(root: Path, qrels=QRELS, docs=DOCS, queries=QUERIES, split: str = "test") -> Path:
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n"
                                               for i, t, x in docs))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": i, "text": x}) + "\n" for i, x in queries))
    (root / "qrels" / f"{split}.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels))
    return root


@pytest.fixture()
def beir_dir(tmp_path) -> Path:
    return write_beir(tmp_path / "toy")


def _tiny_variant(base: Path, out: Path, hidden: int, seed: int) -> Path:
    """Another tiny random BERT (own weights and width) in the layout of the shared fixture."""
    import torch
    from transformers import BertConfig, BertModel

    shutil.copytree(base, out)
    torch.manual_seed(seed)
    BertModel(BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=2 * hidden, max_position_embeddings=128)).save_pretrained(out)
    (out / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": hidden, "pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}))
    return out


@pytest.fixture(scope="module")
def tiny_b(tiny_model_dir, tmp_path_factory) -> Path:
    return _tiny_variant(tiny_model_dir, tmp_path_factory.mktemp("m") / "tiny-b", 32, seed=1)


@pytest.fixture(scope="module")
def tiny_wide(tiny_model_dir, tmp_path_factory) -> Path:
    return _tiny_variant(tiny_model_dir, tmp_path_factory.mktemp("m") / "tiny-wide", 48, seed=2)


# ------------------------------------------------------------------------------------ metrics

def test_metrics_match_hand_computation():
    doc_ids = ["a", "b", "c", "d"]
    # q1: ranking b, a, d, c (a relevant at rank 2, grade 1); q2: c and d tie -> d first (doc id desc)
    scores = np.array([[0.8, 0.9, 0.1, 0.2], [0.0, 0.1, 0.5, 0.5]], dtype=np.float32)
    qrels = {"q1": {"a": 1}, "q2": {"c": 2, "b": 1}}
    got = M.retrieval_metrics(scores, ["q1", "q2"], doc_ids, qrels, ndcg_k=10, recall_k=2, mrr_k=10)
    ndcg_q1 = (1 / math.log2(3)) / 1.0
    # q2 ranking: d, c, b, a -> gains 0, 2, 1, 0; ideal 2, 1
    ndcg_q2 = (2 / math.log2(3) + 1 / math.log2(4)) / (2 + 1 / math.log2(3))
    assert got["ndcg_at_10"] == pytest.approx((ndcg_q1 + ndcg_q2) / 2, abs=1e-12)
    assert got["recall_at_2"] == pytest.approx((1.0 + 0.5) / 2)        # q2: only c in the top 2
    assert got["mrr_at_10"] == pytest.approx((1 / 2 + 1 / 2) / 2)


def test_top_k_breaks_ties_by_doc_id_descending():
    scores = np.array([[1.0, 1.0, 1.0, 0.5]], dtype=np.float32)
    assert M.top_k(scores, ["x1", "x3", "x2", "x9"], 3).tolist() == [[1, 2, 0]]


def test_matryoshka_and_quantisation_are_sane():
    rng = np.random.default_rng(0)
    docs = rng.normal(size=(50, 16)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    cut = M.truncate(docs, 8)
    assert cut.shape == (50, 8) and np.allclose(np.linalg.norm(cut, axis=1), 1, atol=1e-6)
    assert np.allclose(cut, docs[:, :8] / np.linalg.norm(docs[:, :8], axis=1, keepdims=True), atol=1e-6)
    start, step = M.int8_ranges(docs)
    codes = M.quantize_int8(docs, start, step)
    assert codes.dtype == np.int8 and codes.min() == -128 and codes.max() == 127
    assert np.abs(M.dequantize_int8(codes, start, step) - docs).max() <= step.max() / 2 + 1e-6
    ham = M.hamming_scores(docs[:3], docs)
    signs = np.where(docs > 0, 1, -1)
    assert np.array_equal(ham, (signs[:3] @ signs.T).astype(np.float32))
    assert np.all(ham[np.arange(3), np.arange(3)] == 16)        # a vector matches itself on every bit


# --------------------------------------------------------------------------------- bad input

def test_reads_beir_dir_and_keeps_only_judged_queries(beir_dir):
    data = load_retrieval_data(beir_dir, "test")
    assert data.query_ids == ["q1", "q2", "q3", "q4"]            # q9 has no judgements
    assert data.document_texts[0] == "Cats Cats are small furry animals that purr."
    assert data.document_texts[2] == "The sun is a star at the centre of the solar system."   # no title


def test_gzipped_beir_dir_reads_like_the_plain_one(beir_dir, tmp_path):
    import gzip

    packed = tmp_path / "packed"
    shutil.copytree(beir_dir, packed)
    for stem in ("corpus", "queries"):
        plain = packed / f"{stem}.jsonl"
        with gzip.open(plain.with_suffix(".jsonl.gz"), "wb") as out:
            out.write(plain.read_bytes())
        plain.unlink()
    a, b = load_retrieval_data(beir_dir, "test"), load_retrieval_data(packed, "test")
    assert (b.corpus_ids, b.document_texts, b.query_ids, b.query_texts, b.qrels) == \
        (a.corpus_ids, a.document_texts, a.query_ids, a.query_texts, a.qrels)


def test_a_repeated_document_id_is_dropped_or_refused(tmp_path):
    same = write_beir(tmp_path / "same", docs=DOCS + [DOCS[0]])
    data = load_retrieval_data(same, "test")
    assert data.corpus_ids == [d[0] for d in DOCS]                 # ranked once, counted once
    other = write_beir(tmp_path / "other", docs=DOCS + [(DOCS[0][0], "Dogs", "Dogs bark.")])
    with pytest.raises(InputError, match=f"id '{DOCS[0][0]}' was already used at line 1") as info:
        load_retrieval_data(other, "test")
    assert info.value.line == len(DOCS) + 1 and info.value.path == str(other / "corpus.jsonl")


def test_a_folder_of_beir_sets_names_them(beir_dir, tmp_path, tava_home):
    """CQADupStack unpacks as one BEIR set per forum: pointing at the parent names the sets."""
    from flows.commands.checks import retrieval_dataset
    from tava_core.home import TavaHome
    from tava_core.ingest.pipeline import detect_format

    parent = tmp_path / "cqadupstack"
    for forum in ("android", "english"):
        shutil.copytree(beir_dir, parent / forum)
    for check in (lambda: load_retrieval_data(parent, "test"), lambda: retrieval_dataset(TavaHome(tava_home), str(parent)),
                  lambda: detect_format(parent)):
        with pytest.raises(InputError) as info:
            check()
        assert "subfolders (android, english)" in str(info.value) and str(parent / "android") in str(info.value)
    (parent / "android" / "queries.jsonl").unlink()
    with pytest.raises(InputError, match="BEIR queries file not found") as info:
        load_retrieval_data(parent / "android", "test")
    assert info.value.path == str(parent / "android" / "queries.jsonl")


@pytest.mark.parametrize("bad_pair, what", [(("q7", "d1", 1), "query id 'q7'"),
                                             (("q1", "d99", 1), "document id 'd99'")])
def test_qrels_with_unknown_ids_name_file_and_line(tmp_path, bad_pair, what):
    root = write_beir(tmp_path / "bad", qrels=QRELS + [bad_pair])
    with pytest.raises(InputError) as info:
        load_retrieval_data(root, "test")
    assert what in str(info.value) and info.value.path == str(root / "qrels" / "test.tsv")
    assert info.value.line == len(QRELS) + 2                       # header + the pairs before it


def test_empty_or_missing_split_is_an_input_error(tmp_path):
    root = write_beir(tmp_path / "empty", qrels=[])
    with pytest.raises(InputError, match="split is empty") as info:
        load_retrieval_data(root, "test")
    assert info.value.path.endswith("test.tsv")
    with pytest.raises(InputError, match="qrels file for this split not found") as info:
        load_retrieval_data(root, "dev")
    assert "splits present: test" in str(info.value)


@pytest.mark.usefixtures("prefect_harness")
def test_asymmetric_pair_of_different_dims_is_a_config_error(beir_dir, tiny_model_dir, tiny_wide, tava_home):
    config = EvalConfig(dataset=str(beir_dir), teacher=EncoderSpec(model=str(tiny_model_dir)),
                        adapted=EncoderSpec(model=str(tiny_wide)))
    with pytest.raises(ConfigError, match="48-d vectors but the teacher encoder gives 32-d") as info:
        evaluate(config, TavaHome(tava_home))
    assert info.value.path == str(tiny_wide)
    assert not (tava_home / "vectors").exists()                    # failed before any encoding
    with pytest.raises(ConfigError, match="needs the student encoder"):
        EvalConfig(dataset="x", modes=["student/student"]).selected_modes()



def test_router_must_be_a_router_of_this_teacher_before_any_encoding(beir_dir, tiny_model_dir, tiny_wide, tava_home,
                                                                      tmp_path):
    """--router: a directory without router.json, or a router whose teacher is not the evaluation's
    teacher, is refused before anything is encoded (a router of another teacher was scored beside the
    teacher's rows as if one teacher had made both)."""
    from tava_core.encoders import load_encoder
    from tava_core.errors import ModelLoadError

    teacher = EncoderSpec(model=str(tiny_model_dir))
    with pytest.raises(ModelLoadError, match="not a router directory") as info:
        evaluate(EvalConfig(dataset=str(beir_dir), teacher=teacher, router=str(tmp_path)), TavaHome(tava_home))
    assert info.value.path == str(tmp_path)
    router = tmp_path / "router"
    router.mkdir()
    record = {"spec": {"model": str(tiny_wide)}, "fingerprint": load_encoder(str(tiny_wide)).fingerprint}
    (router / "router.json").write_text(json.dumps({"teacher": record}))
    # its weights missing: refused at once too (it used to fail only after the whole evaluation)
    with pytest.raises(ModelLoadError, match=r"not a router directory \(no router.safetensors\)"):
        evaluate(EvalConfig(dataset=str(beir_dir), teacher=teacher, router=str(router)), TavaHome(tava_home))
    (router / "router.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError, match=f"sends queries to teacher '{tiny_wide}'") as info:
        evaluate(EvalConfig(dataset=str(beir_dir), teacher=teacher, router=str(router)), TavaHome(tava_home))
    assert f"--teacher {tiny_wide}" in info.value.hint
    assert not (tava_home / "vectors").exists()                    # failed before any encoding


# ------------------------------------------------------------------------- mteb task + encoder

def test_routing_encoder_sends_queries_and_documents_to_their_encoders(beir_dir, tiny_model_dir, tiny_b, tmp_path):
    from tava_core.encoders import load_encoder
    from tava_core.evaluate.mteb_adapter import make_routing_encoder, make_task, run_mteb

    data = load_retrieval_data(beir_dir, "test")
    query_enc, doc_enc = load_encoder(str(tiny_b)), load_encoder(str(tiny_model_dir))
    model = make_routing_encoder(query_enc, doc_enc, name="b__a", batch_size=4)
    scores = run_mteb(make_task(data), model, tmp_path / "mteb", batch_size=4)
    kinds = {kind: name for kind, name, _, _ in model.calls}
    assert kinds == {"query": "tiny-b", "document": tiny_model_dir.name}
    assert sum(n for kind, _, n, _ in model.calls if kind == "document") == len(DOCS)
    # the same numbers from tava's metrics on vectors encoded by the same routing
    expected = M.retrieval_metrics(
        M.cosine_scores(query_enc.encode(data.query_texts, kind="query"), doc_enc.encode(data.document_texts)),
        data.query_ids, data.corpus_ids, data.qrels)
    for key in ("ndcg_at_10", "recall_at_100", "mrr_at_10"):
        assert scores[key] == pytest.approx(expected[key], abs=1e-5)      # mteb rounds to 5 decimals
    result_files = list((tmp_path / "mteb" / "results").rglob("tava-toy.json"))
    assert len(result_files) == 1 and json.loads(result_files[0].read_text())["task_name"] == "tava-toy"


# ------------------------------------------------------------------------------ whole evaluation

@pytest.mark.usefixtures("prefect_harness")
def test_evaluate_all_modes_report_and_cache(beir_dir, tiny_model_dir, tiny_b, tava_home):
    home = TavaHome(tava_home)
    config = EvalConfig(dataset=str(beir_dir), teacher=EncoderSpec(model=str(tiny_model_dir)),
                        student=EncoderSpec(model=str(tiny_b)), adapted=EncoderSpec(model=str(tiny_b)),
                        matryoshka_dims=[384, 16, 8], batch_size=4, run="toy")
    report = evaluate(config, home)
    modes = ["teacher/teacher", "student/student", "adapted/teacher", "adapted/adapted"]
    assert list(dict.fromkeys(r["mode"] for r in report["rows"])) == modes
    variants = [r["variant"] for r in report["rows"] if r["mode"] == "teacher/teacher"]
    assert variants == ["full", "mrl-16", "mrl-8", "int8", "binary"]      # 384 >= 32 dims: skipped
    for check in report["mteb_check"].values():
        assert check["agree"] and check["encoded_by_mteb"] == 0           # mteb answered from the cache
    full = {r["mode"]: r for r in report["rows"] if r["variant"] == "full"}
    assert full["teacher/teacher"]["retention"] == 1.0
    assert full["student/student"]["ndcg_at_10"] == pytest.approx(full["adapted/adapted"]["ndcg_at_10"])
    for row in report["rows"]:
        assert 0.0 <= row["ndcg_at_10"] <= 1.0 and 0.0 <= row["mrr_at_10"] <= 1.0
        assert row["retention"] == pytest.approx(row["ndcg_at_10"] / full["teacher/teacher"]["ndcg_at_10"])
    assert set(report["throughput"]) == {"teacher", "student", "adapted"}
    assert all(r["queries_per_second"] > 0 for r in report["throughput"].values())
    # files: JSON, markdown, PNG, mteb's own results, in the run directory
    run_dir = tava_home / "reports" / "evaluate" / "toy"
    assert json.loads((run_dir / "report.json").read_text())["rows"] == report["rows"]
    assert "| adapted/teacher | full | 32 |" in (run_dir / "report.md").read_text()
    assert (run_dir / "ndcg.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list((run_dir / "mteb" / "results").rglob("tava-toy.json"))) == 4
    # The identical evaluation again is served from its report; --no-reuse measures again.
    same = evaluate(config, home)
    assert same["reused"] is True and same["evaluation_key"] == report["evaluation_key"]
    assert same["rows"] == report["rows"] and same["throughput"] == report["throughput"]
    assert Path(same["files"]["json"]) == run_dir / "report.json"
    measured = evaluate(config.model_copy(update={"reuse": False}), home)
    assert measured["reused"] is False and measured["evaluation_key"] == report["evaluation_key"]
    assert [r["ndcg_at_10"] for r in measured["rows"]] == pytest.approx([r["ndcg_at_10"] for r in report["rows"]])
    # documents: one vector directory per distinct document encoder, reused by the next run
    corpus_dirs = sorted((tava_home / "vectors").glob("*/corpus/*"))
    assert len(corpus_dirs) == 2
    shards = {p: p.stat().st_mtime_ns for d in corpus_dirs for p in d.glob("*.parquet")}
    again = evaluate(config.model_copy(update={"modes": ["adapted/teacher"], "run_mteb": False}), home)
    assert {p: p.stat().st_mtime_ns for p in shards} == shards
    assert again["rows"][0]["ndcg_at_10"] == pytest.approx(full["adapted/teacher"]["ndcg_at_10"], abs=1e-5)


@pytest.mark.usefixtures("prefect_harness")
def test_ingested_dataset_gives_the_same_data(beir_dir, tava_home, tiny_model_dir):
    ingest = pytest.importorskip("tava_core.ingest")
    from tava_core.config import IngestConfig

    home = TavaHome(tava_home)
    ingest.ingest(IngestConfig(source=str(beir_dir), name="toyset"), home)
    raw, ingested = load_retrieval_data(beir_dir, "test", home), load_retrieval_data("toyset", "test", home)
    assert ingested.ingested and ingested.query_ids == raw.query_ids and ingested.qrels == raw.qrels
    assert dict(zip(ingested.corpus_ids, ingested.document_texts, strict=False)) == dict(zip(raw.corpus_ids, raw.document_texts, strict=False))
    # scored the same way; the ingested set's document vectors land where `tava embed` puts them
    config = EvalConfig(dataset="toyset", teacher=EncoderSpec(model=str(tiny_model_dir)), matryoshka_dims=[],
                        quantization=[], run_mteb=False)
    by_name = evaluate(config, home)["rows"][0]
    by_dir = evaluate(config.model_copy(update={"dataset": str(beir_dir)}), home)["rows"][0]
    assert by_name["ndcg_at_10"] == pytest.approx(by_dir["ndcg_at_10"], abs=1e-6)
    assert (tava_home / "vectors" / "toyset" / "corpus").is_dir()



@pytest.mark.parametrize("kind", DAMAGED_KINDS)
def test_nan_vectors_are_refused_before_they_are_cached(beir_dir, tiny_model_dir, tava_home, tmp_path, kind):
    """Query and document vectors holding NaN (damaged weights) are refused naming the encoder and its
    directory, before any is cached (they were scored into a broadcast error and kept as current)."""
    from tava_core.encoders import load_encoder
    from tava_core.errors import ModelLoadError
    from tava_core.evaluate.vectors import corpus_vector_dir, embed_corpus, encode_queries, query_vector_path

    bad = damaged_model(kind, tmp_path, tiny_model_dir)
    home, data = TavaHome(tava_home), load_retrieval_data(beir_dir, "test")
    encoder = load_encoder(str(bad))
    queries = query_vector_path(home, data, encoder)
    with pytest.raises(ModelLoadError, match="holding NaN for 4 of 4 toy test queries") as info:
        encode_queries(data, encoder, queries, batch_size=4)
    assert info.value.path == str(bad.resolve()) and f"encoder {bad.name!r}" in str(info.value)
    assert "damaged" in str(info.value) and not queries.exists()
    with pytest.raises(ModelLoadError, match=r"holding NaN for 8 of 8 documents of toy \(rows 0-7\)") as info:
        embed_corpus(data, encoder, home, show_progress=False)
    assert info.value.path == str(bad.resolve())
    assert not list(corpus_vector_dir(data, encoder, home).glob("*.parquet"))


@pytest.mark.usefixtures("prefect_harness")
def test_evaluate_with_a_damaged_adapter_names_it_and_caches_nothing_of_it(beir_dir, tiny_model_dir, tava_home,
                                                                           tmp_path):
    """`tava evaluate --adapted DIR` with an adapter whose weights file was overwritten in the middle: the
    named error (not a broadcast error from the metrics), and none of the adapter's vectors kept."""
    from tava_core.encoders import load_encoder
    from tava_core.errors import ModelLoadError

    bad = damaged_model("adapter", tmp_path, tiny_model_dir)
    config = EvalConfig(dataset=str(beir_dir), teacher=EncoderSpec(model=str(tiny_model_dir)),
                        adapted=EncoderSpec(model=str(bad)), matryoshka_dims=[], quantization=[], run_mteb=False)
    for modes in (["adapted/teacher"], []):     # queries alone; every mode (the adapter's corpus first)
        with pytest.raises(ModelLoadError, match="gave vectors holding NaN") as info:
            evaluate(config.model_copy(update={"modes": modes}), TavaHome(tava_home))
        assert info.value.path == str(bad.resolve()) and "damaged" in str(info.value)
        fingerprint = load_encoder(str(bad)).fingerprint[:12]
        assert not [p for p in (tava_home / "vectors").rglob("*.parquet") if fingerprint in p.parent.name]


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_teacher_numpy_metrics_equal_mteb(beir_dir, tava_home):
    report = evaluate(EvalConfig(dataset=str(beir_dir), matryoshka_dims=[128], batch_size=8),
                      TavaHome(tava_home))
    check = report["mteb_check"]["teacher/teacher"]
    assert check["agree"], check
    assert check["mteb"]["ndcg_at_10"] > 0.8                      # the real teacher gets this toy set right


@pytest.mark.slow
def test_cli_runs_the_flow(beir_dir, tiny_model_dir, tava_home, prefect_harness, capsys, monkeypatch):
    from flows.cli import main

    main(["--home", str(tava_home), "evaluate", "--dataset", str(beir_dir), "--teacher", str(tiny_model_dir),
          "--matryoshka-dims", "16", "--quantization", "int8", "--run", "cli"])
    out = capsys.readouterr().out
    result = json.loads(out[out.index("{"):])
    assert result["mteb_agrees"] is True and [r["variant"] for r in result["rows"]] == ["full", "mrl-16", "int8"]
    assert Path(result["files"]["chart"]).is_file()
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:                  # the UI's table + markdown artifacts
        artifacts = {a.key: a.type for a in client.read_artifacts()}
    assert artifacts.get("evaluate-report") == "markdown" and artifacts.get("evaluate-toy") == "table"
    with pytest.raises(SystemExit) as exit_info:                  # bad qrels: a clean error, exit 2
        bad = write_beir(tava_home / "bad", qrels=[("q1", "nope", 1)])
        main(["--home", str(tava_home), "evaluate", "--dataset", str(bad), "--teacher", str(tiny_model_dir)])
    assert exit_info.value.code == 2
    assert "document id 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["cosine", "int8", "hamming"])
def test_score_matrix_blocks_equal_the_dense_scores(kind, monkeypatch):
    rng = np.random.default_rng(1)
    queries, docs = rng.normal(size=(37, 24)), rng.normal(size=(301, 24))
    doc_ids = [f"d{i}" for i in range(301)]
    matrix = getattr(M.ScoreMatrix, kind)(queries, docs)
    dense = matrix.dense()
    assert dense.shape == (37, 301) and dense.dtype == np.float32
    # BLAS may round a 5-row product differently from a 37-row one in the last place
    assert np.allclose(np.concatenate([matrix[a:a + 5] for a in range(0, 37, 5)]), dense, rtol=0, atol=1e-5)
    exclude = np.where(np.arange(37) % 3 == 0, np.arange(37), -1)
    expected = M.top_k(dense, doc_ids, 12, exclude)
    monkeypatch.setattr(M, "SCORE_BLOCK_BYTES", 4 * 301 * 4)   # four query rows per block
    assert np.array_equal(M.top_k(matrix, doc_ids, 12, exclude), expected)


def test_scoring_memory_does_not_grow_with_queries_times_documents(monkeypatch):
    import tracemalloc
    rng = np.random.default_rng(2)
    n_queries, n_docs = 1000, 20000              # the dense product is 80 MB of float32
    queries, docs = rng.normal(size=(n_queries, 16)).astype(np.float32), rng.normal(size=(n_docs, 16)).astype(np.float32)
    doc_ids = [f"d{i}" for i in range(n_docs)]
    query_ids = [f"q{i}" for i in range(n_queries)]
    qrels = {q: {f"d{i}": 1} for i, q in enumerate(query_ids)}
    monkeypatch.setattr(M, "SCORE_BLOCK_BYTES", 4 * 2**20)
    tracemalloc.start()
    try:
        blocked = M.retrieval_metrics(M.ScoreMatrix.cosine(queries, docs), query_ids, doc_ids, qrels)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, f"peak {peak / 2**20:.1f} MB"
    assert blocked == M.retrieval_metrics(M.cosine_scores(queries, docs), query_ids, doc_ids, qrels)
