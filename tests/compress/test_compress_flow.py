"""`tava compress` end to end (BEIR directory in, compressors + report out, through Prefect and the
CLI), and DIVE on the real SciFact teacher vectors when they are cached."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture()
def tiny_beir(tmp_path) -> Path:
    """A small BEIR directory: 60 documents on 6 topics, 30 train and 12 test queries."""
    rng = np.random.default_rng(0)
    topics = ["protein folding", "vaccine trials", "star formation", "river erosion", "bird migration",
              "battery chemistry"]
    words = ["study", "effect", "model", "data", "rate", "cells", "energy", "growth", "signal", "risk"]
    root = tmp_path / "tiny-beir"
    (root / "qrels").mkdir(parents=True)
    docs = []
    for i in range(60):
        topic = topics[i % 6]
        docs.append({"_id": f"d{i}", "title": topic, "text": f"{topic} " + " ".join(rng.choice(words, 6))})
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    queries, lines = [], {"train": [], "test": []}
    for i in range(42):
        split = "train" if i < 30 else "test"
        doc = docs[int(rng.integers(0, 60))]
        queries.append({"_id": f"q{i}", "text": f"what about {doc['title']} {rng.choice(words)}"})
        lines[split].append(f"q{i}\t{doc['_id']}\t1")
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    for split, rows in lines.items():
        (root / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(rows) + "\n")
    return root


@pytest.mark.slow
def test_compress_cli_trains_reports_and_saves_loadable_compressors(prefect_harness, tava_home, tiny_beir,
                                                                   tiny_model_dir, capsys):
    from flows.cli import main
    from tava_core.encoders import load_encoder

    argv = ["--home", str(tava_home), "compress", "--dataset", str(tiny_beir), "--encoder", str(tiny_model_dir),
            "--encoder-device", "cpu", "--dims", "8", "--dims", "4", "--baselines", "pca", "--baselines", "truncate",
            "--hidden-dim", "16", "--max-steps", "20", "--eval-every", "10", "--batch-size", "16",
            "--negative-depth", "5", "--name", "tiny"]
    main(argv)
    record = json.loads(capsys.readouterr().out)
    out = tava_home / "artifacts" / "compressors" / "tiny"
    assert record["directory"] == str(out) and record["scored_on"] == "test" and record["loadable_encoder"]
    assert set(record["ndcg_at_10"]) == {"dive", "pca", "truncate"}
    for name in ("report.json", "report.md", "ndcg.png", "dive-8d/model.safetensors", "pca-4d/config.json",
                 "truncate-8d/tava_encoder.json"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    assert {(r["method"], r["dim"]) for r in report["results"]} == {(m, d) for m in ("dive", "pca", "truncate")
                                                                    for d in (8, 4)}
    assert report["data"]["test_queries"] == 12 and report["data"]["train_queries"] + \
        report["data"]["validation_queries"] == 30
    text = (out / "report.md").read_text()
    assert "| dive |" in text
    for row in report["results"]:   # each row says whether training beat its untrained start (best step 0: no)
        kept = "untrained start" if row["best_step"] == 0 and row["steps"] > 0 else "trained"
        assert f"| {row['best_step']} | {row['steps']} | {kept} |" in text, (row, text)
    encoder = load_encoder(str(out / "dive-8d"))        # the tiny model, then the compressor
    assert encoder.encode(["protein folding rate"], kind="query").shape == (1, 8)
    assert record["reused"] is False
    # The same command again: served from the saved run, nothing retrained or rewritten.
    written = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    main(argv)
    again = json.loads(capsys.readouterr().out)
    assert again["reused"] is True and again["run_key"] == record["run_key"]
    assert again["ndcg_at_10"] == record["ndcg_at_10"]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == written


@pytest.mark.slow
def test_compress_cli_rejects_dims_not_below_the_input_without_traceback(prefect_harness, tava_home, tiny_beir,
                                                                         tiny_model_dir, capsys):
    from flows.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--home", str(tava_home), "compress", "--dataset", str(tiny_beir), "--encoder", str(tiny_model_dir),
              "--encoder-device", "cpu", "--dims", "32"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "not below" in err and "Traceback" not in err


CACHED = Path("/tmp/tava-bench-home/vectors/scifact")
VECTORS = "all-MiniLM-L6-v2-da3890c09da6"


@pytest.mark.slow
def test_dive_beats_pca_on_scifact_teacher_vectors(scifact_dir):
    """Real data (skips unless the teacher's SciFact vectors are cached, as bench/compress.py leaves them)."""
    import torch

    from tava_core.compress import CompressConfig, train_method
    from tava_core.compress.run import load_compression_data
    from tava_core.compress.trainer import evaluate_model

    corpus_dir, query_dir = CACHED / "corpus" / VECTORS, CACHED / "queries" / VECTORS
    if not (corpus_dir / "manifest.json").is_file() or not (query_dir / "manifest.json").is_file():
        pytest.skip(f"teacher vectors of SciFact not cached under {CACHED}")
    torch.set_num_threads(1)
    config = CompressConfig(dataset=str(scifact_dir), corpus_vectors=str(corpus_dir), query_vectors=str(query_dir),
                            dims=[128], max_steps=150, eval_every=50)
    data = load_compression_data(config, str(corpus_dir), str(query_dir))
    assert len(data.corpus) == 5183 and len(data.test) == 300 and len(data.train) + len(data.validation) == 809
    full = evaluate_model(None, data.test, data.corpus_ids, data.corpus)["ndcg_at_10"]
    assert full == pytest.approx(0.6451, abs=2e-3)
    pca = train_method("pca", 128, data, config)
    dive = train_method("dive", 128, data, config)     # the bench's setting, cut to 150 steps
    test = {r.method: evaluate_model(r.model, data.test, data.corpus_ids, data.corpus)["ndcg_at_10"] for r in (pca, dive)}
    assert dive.validation_ndcg > pca.validation_ndcg and test["dive"] > test["pca"]
