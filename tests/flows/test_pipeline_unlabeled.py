"""`tava run` with extra unlabeled sources: they are ingested, embedded by the teacher and trained
on by Stage A beside the corpus (never evaluated on)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_unlabeled_sources_are_a_list_in_the_config_and_on_the_command_line():
    from flows.pipeline import PipelineConfig

    assert PipelineConfig().unlabeled == []                 # default: the corpus alone, as before
    config = PipelineConfig.model_validate({"unlabeled": ["a.jsonl", "b/"]})
    assert config.unlabeled == ["a.jsonl", "b/"]


@pytest.mark.slow
def test_pipeline_trains_on_the_extra_unlabeled_source(prefect_harness, tava_home, tiny_model_dir, tmp_path):
    from flows.pipeline import PipelineConfig, tava_pipeline

    extra = tmp_path / "generic.jsonl"
    def line(key: str, i: int) -> str:
        return json.dumps({"id": key, "text": f"generic passage number {i} about topic {i % 7}"}) + "\n"

    # 30 texts written twice: 15 as the same record, 15 under new ids (a log repeated to weigh it)
    extra.write_text("".join([line(f"g{i}", i) for i in range(200)] + [line(f"g{i}", i) for i in range(15)]
                             + [line(f"copy{i}", i) for i in range(15, 30)]))
    config = PipelineConfig.model_validate({
        "teacher": {"model": str(tiny_model_dir)}, "unlabeled": [str(extra)], "unlabeled_weight": 3,
        "distill": {"layers": [1], "steps": 8, "batch_size": 16, "eval_every": 4, "checkpoint_every": 4,
                    "warmup_steps": 2, "max_length": 32, "span_views": 0},   # no max_texts: it would cut the extra (last) source
        "adapter": {"hidden_dims": [32], "max_steps": 10, "eval_every": 5, "batch_size": 64}})
    result = tava_pipeline(config, home=str(tava_home))
    card = json.loads((Path(result.student_dir) / "model_card.json").read_text())
    trained = {(s["dataset"], s["collection"]): s["rows"] for s in card["corpus"]["sources"]}
    assert trained[("generic", "texts")] == 200                    # the extra source, every row once
    assert card["training"]["config"]["dataset_weights"] == [1, 3]  # ... weighed by --unlabeled-weight
    # repeating lines does not weigh a source: the run's table says so
    assert result.work["ingest + embed (unlabeled)"] == ("generic: 30 repeated texts dropped "
                                                         "(--unlabeled-weight weighs a source)")
    assert ("max_texts", "") not in trained                        # ... and none of it cut
    assert ("builtin", "corpus") in trained and ("builtin", "queries") not in trained
    assert "ingest + embed (unlabeled)" in result.seconds


def test_other_split_queries_are_on_by_default_and_can_be_turned_off():
    from click.testing import CliRunner

    from flows.commands.pipeline import run_cli
    from flows.pipeline import PipelineConfig

    assert PipelineConfig().other_split_queries is True
    assert PipelineConfig.model_validate({"other_split_queries": False}).other_split_queries is False
    assert "--no-other-split-queries" in CliRunner().invoke(run_cli, ["--help"]).output


def test_the_query_logs_note_says_when_a_sample_of_it_is_trained_on(tmp_path):
    from flows.pipeline import other_split_query_log
    from tava_core.config import IngestConfig
    from tava_core.home import TavaHome
    from tava_core.ingest import ingest

    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text(json.dumps({"_id": "d", "text": "a document"}) + "\n")
    (beir / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": f"query {i}"}) + "\n"
                                                for i in range(6)))
    for split, ids in {"train": range(5), "test": [5]}.items():
        (beir / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td\t1\n" for i in ids))
    dataset = ingest(IngestConfig(source=str(beir), name="five"), TavaHome(tmp_path / "home"))
    path, name, note = other_split_query_log(dataset.path, "five", "test", str(tmp_path / "home"), 3)
    assert name == "five-query-log-test" and len(Path(path).read_text().splitlines()) == 5
    assert note.startswith("query log: 5 texts of the train queries, a seeded sample of 3 trained on (held out")
    unsampled = other_split_query_log(dataset.path, "five", "test", str(tmp_path / "home"), None)
    assert unsampled is not None and "sample" not in unsampled.note
    assert other_split_query_log(dataset.path, "five", "train", str(tmp_path / "home"), None) is None


@pytest.mark.slow
def test_pipeline_trains_on_the_queries_of_the_splits_it_does_not_score(prefect_harness, tava_home, tiny_model_dir,
                                                                        tmp_path):
    from helpers import tiny_topic_beir

    from flows.pipeline import PipelineConfig, tava_pipeline

    beir = tiny_topic_beir(tmp_path / "beir")
    # 5 train queries: one with a test query's text (held out), and one query no qrels file names
    train = {f"t{i}": f"which {topic} question number {i}" for i, topic in enumerate(["cell", "river", "market", "parser"])}
    train["t-same"] = "What happens to the cell now"          # q-cell0's text, another case
    with open(beir / "queries.jsonl", "a") as handle:
        for qid, text in [*train.items(), ("loose", "a query without qrels")]:
            handle.write(json.dumps({"_id": qid, "text": text}) + "\n")
    (beir / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                              + "".join(f"{qid}\tcell{i % 6}\t1\n" for i, qid in enumerate(train)))
    config = PipelineConfig.model_validate({
        "source": str(beir), "name": "topics", "teacher": {"model": str(tiny_model_dir)}, "blend_static": False,
        "router": {"enabled": False},
        "distill": {"layers": [1], "steps": 8, "batch_size": 16, "eval_every": 4, "checkpoint_every": 4,
                    "warmup_steps": 2, "max_length": 32, "span_views": 1},
        "adapter": {"hidden_dims": [32], "max_steps": 10, "eval_every": 5, "batch_size": 16}})
    result = tava_pipeline(config, home=str(tava_home))
    card = json.loads((Path(result.student_dir) / "model_card.json").read_text())
    trained = {(s["dataset"], s["collection"]): s["rows"] for s in card["corpus"]["sources"]}
    assert trained[("topics-query-log-test", "texts")] == 4       # the train queries but t-same
    assert ("topics", "queries") not in trained
    log = (tava_home / "sources" / "topics-query-log-test.jsonl").read_text()
    assert "t-same" not in log and "loose" not in log and "q-cell0" not in log
    # the run's table says what it took
    assert result.work["ingest + embed (unlabeled)"] == ("query log: 4 texts of the train queries (held out: the "
                                                         "test queries, and 1 of their text; --no-other-split-queries "
                                                         "leaves them out)")
