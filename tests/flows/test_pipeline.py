"""The whole pipeline (`tava demo` / `tava run --config`) end to end on the built-in data, with the
tiny random teacher so it takes seconds: every stage runs, the table has every system, and a
second run with nothing changed trains nothing."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner


def _tiny_pipeline_config(teacher: Path) -> dict:
    return {"teacher": {"model": str(teacher)},
            "distill": {"layers": [1], "steps": 12, "batch_size": 16, "eval_every": 6, "checkpoint_every": 6,
                        "warmup_steps": 2, "max_length": 32, "span_views": 1, "max_texts": 600},
            "adapter": {"hidden_dims": [64], "max_steps": 30, "eval_every": 10, "batch_size": 64}}


def test_partial_stage_sections_keep_the_pipeline_defaults():
    from flows.demo import PipelineConfig

    config = PipelineConfig.model_validate({"distill": {"steps": 7}})
    assert config.distill.steps == 7 and config.distill.name == "demo-student" and config.distill.batch_size == 32
    assert config.adapter.name == "demo-adapter"
    with pytest.raises(Exception, match="stepz"):
        PipelineConfig.model_validate({"distill": {"stepz": 7}})


def test_run_command_needs_some_settings():
    from flows.commands.demo import run_cli

    result = CliRunner().invoke(run_cli, [])
    assert result.exit_code != 0 and "--config" in result.output and "options" in result.output


@pytest.mark.slow
def test_pipeline_runs_every_stage_then_serves_a_rerun_from_cache(prefect_harness, tava_home, tiny_model_dir,
                                                                  tmp_path):
    import yaml

    from flows.commands.demo import run_cli
    from flows.demo import PipelineConfig, demo_pipeline
    from tava_core.home import TavaHome

    config = PipelineConfig.model_validate(_tiny_pipeline_config(tiny_model_dir))
    first = demo_pipeline(config, home=str(tava_home))
    systems = [row.system for row in first.quality]
    assert systems == ["teacher", "student alone", "student, no adapter", "student + adapter"]
    for row in first.quality:
        assert 0.0 <= row.ndcg_at_10 <= 1.0 and row.queries_per_second > 0
    assert first.system("teacher").retention == 1.0 and first.system("teacher").speedup == 1.0
    student, adapter = Path(first.student_dir), Path(first.adapter_dir)
    assert (student / "modules.json").is_file() and (adapter / "tava_encoder.json").is_file()
    card = json.loads((student / "model_card.json").read_text())
    assert any(s["collection"] == "spans" for s in card["corpus"]["sources"])          # Stage A saw span views
    assert "queries" not in {s["collection"] for s in card["corpus"]["sources"]}       # never the queries
    assert Path(first.index["index_dir"]).is_dir() and len(first.report_dirs) == 2
    # The registry's current student and adapter are these (what the nightly refresh continues).
    from tava_core.registry import Registry

    registry = Registry(tava_home)
    assert [(r["kind"], r["name"], r["published"]) for r in first.registry] == [
        ("students", "student", True), ("adapters", "nightly", True)]
    assert (registry.current_path("adapters", "nightly") / "model.safetensors").read_bytes() == \
        (adapter / "model.safetensors").read_bytes()

    # Nothing changed: same numbers, and the student is not retrained (its files are untouched).
    weights, adapter_weights = student / "model.safetensors", adapter / "model.safetensors"
    before, adapter_before = weights.stat().st_mtime_ns, adapter_weights.stat().st_mtime_ns
    config_file = tmp_path / "pipeline.yaml"
    config_file.write_text(yaml.safe_dump(_tiny_pipeline_config(tiny_model_dir)))
    result = CliRunner().invoke(run_cli, ["--config", str(config_file)], env={"TAVA_HOME": str(tava_home)},
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert weights.stat().st_mtime_ns == before and adapter_weights.stat().st_mtime_ns == adapter_before
    assert "student + adapter" in result.output and f"{first.system('student + adapter').ndcg_at_10:.4f}" in result.output
    # The summary tells cached work from computed work: the first run computed every shard, the
    # re-run none, and the re-run reused the index version and both evaluation reports.
    assert first.work["embed (teacher)"].endswith(", 0 reused") and not first.work["embed (teacher)"].startswith("0 ")
    assert re.search(r"\| embed \(teacher\) \| [0-9.]+ \| 0 shards computed, [1-9]\d* reused \|", result.output)
    assert re.search(r"\| embed \(student\) \| [0-9.]+ \| 0 shards computed, [1-9]\d* reused \|", result.output)
    assert f"| reused version {first.index['version']} |" in result.output
    assert "| 0 evaluations computed, 2 reused |" in result.output
    assert [v.version for v in registry.versions("adapters", "nightly")] == [first.registry[1]["version"]]
    assert TavaHome(tava_home).root == tava_home.resolve()
