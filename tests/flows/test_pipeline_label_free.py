"""`tava run` on a corpus with no qrels (a user's own documents): the teacher judges them, its own top 10
for query-like texts standing in for relevance labels, and the whole pipeline runs and reports."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import synthetic_texts


@pytest.mark.slow
def test_pipeline_on_a_plain_corpus_is_scored_against_the_teacher(prefect_harness, tava_home, tiny_model_dir, tmp_path):
    from flows.pipeline import LABEL_FREE_NOTE, PipelineConfig, summary_markdown, tava_pipeline
    from tava_core.evaluate.judgements import JUDGED_SPLIT

    source = tmp_path / "my-docs.jsonl"
    source.write_text("".join(json.dumps({"id": f"doc{i}", "text": text}) + "\n"
                              for i, text in enumerate(synthetic_texts(150))))
    config = PipelineConfig.model_validate({
        "source": str(source), "teacher": {"model": str(tiny_model_dir)}, "label_free_queries": 40,
        "distill": {"layers": [1], "steps": 8, "batch_size": 16, "eval_every": 4, "checkpoint_every": 4,
                    "warmup_steps": 2, "max_length": 32, "span_views": 1},
        "adapter": {"hidden_dims": [32], "max_steps": 10, "eval_every": 5, "batch_size": 64}})
    result = tava_pipeline(config, home=str(tava_home))

    assert result.split == JUDGED_SPLIT and result.rows == {"texts": 150}
    qrels = (Path(result.judgements) / "qrels" / f"{JUDGED_SPLIT}.tsv").read_text().splitlines()[1:]
    assert len(qrels) == 40 * 10                                       # 40 span views x the teacher's top 10
    assert all(q.split("\t")[0] != q.split("\t")[1] for q in qrels)   # never a span's own document
    teacher = result.system("teacher")
    assert teacher.ndcg_at_10 == pytest.approx(1.0)                    # its own judgements, by construction
    for row in result.quality[1:]:
        assert 0.0 <= row.ndcg_at_10 <= 1.0 and row.system != "teacher"
    assert {r.system for r in result.quality} >= {"router, 10% to teacher", "router, 20% to teacher"}
    assert "judge (teacher)" in result.seconds
    assert LABEL_FREE_NOTE.split(":")[0] in summary_markdown(result)
    assert f"Scored: split `{JUDGED_SPLIT}`, 40 queries (judged by the teacher)." in summary_markdown(result)
