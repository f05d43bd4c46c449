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
