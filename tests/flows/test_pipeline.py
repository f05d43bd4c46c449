"""The whole pipeline (`tava demo` / `tava run --config`) end to end on the built-in data, with the
tiny random teacher so it takes seconds: every stage runs, the table has every system, and a
second run with nothing changed trains nothing."""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner


def _tiny_pipeline_config(teacher: Path) -> dict:
    return {"teacher": {"model": str(teacher)},
            "distill": {"layers": [1], "steps": 12, "batch_size": 16, "eval_every": 6, "checkpoint_every": 6,
                        "warmup_steps": 2, "max_length": 32, "span_views": 1, "max_texts": 600},
            "adapter": {"hidden_dims": [64], "max_steps": 30, "eval_every": 10, "batch_size": 64}}


def test_partial_stage_sections_keep_the_pipeline_defaults():
    from flows.pipeline import PipelineConfig

    config = PipelineConfig.model_validate({"distill": {"steps": 7}})
    assert config.distill.steps == 7 and config.distill.name == "demo-student" and config.distill.batch_size == 32
    # a step count you give is kept (refused if the corpus is too small); the preset's own is fitted to it
    assert not config.distill.fit_steps
    assert PipelineConfig().distill.fit_steps and PipelineConfig(preset="standard").distill.fit_steps
    assert config.adapter.name == "demo-adapter"
    # steps you give under the preset's warm-up: the warm-up keeps its share (standard: 100 of 1,000) ...
    assert PipelineConfig(preset="standard", distill={"steps": 20}).distill.warmup_steps == 2
    assert PipelineConfig(preset="standard", distill={"steps": 500}).distill.warmup_steps == 100   # fits as it is
    # ... and a warm-up you give is yours (`tava run` refuses one as long as the steps before its first stage)
    assert PipelineConfig(preset="standard", distill={"steps": 20, "warmup_steps": 30}).distill.warmup_steps == 30
    with pytest.raises(Exception, match="stepz"):
        PipelineConfig.model_validate({"distill": {"stepz": 7}})


@pytest.mark.parametrize("given, expected", [
    ({"preset": "standard"}, True),                                              # `tava run`: blended by default
    ({"preset": "standard", "distill": {"student": "static"}}, False),          # nothing to blend a static with
    ({"preset": "demo"}, False),                                                 # `tava demo`: sized for minutes
    ({"preset": "standard", "blend_static": False}, False),                      # what you say wins
    ({"preset": "demo", "blend_static": True}, True),
])
def test_blend_static_is_on_for_the_standard_transformer_recipe(given, expected):
    from flows.pipeline import PipelineConfig

    assert PipelineConfig.model_validate(given).blend_static is expected


@pytest.mark.parametrize("student, steps, lr", [("transformer", 1000, 2e-4), ("static", 2000, None)])
def test_standard_preset_is_the_measured_recipe_under_your_keys(student, steps, lr):
    from flows.pipeline import PipelineConfig

    config = PipelineConfig.model_validate({"preset": "standard", "distill": {"student": student, "batch_size": 48}})
    assert config.distill.layers is None and config.distill.steps == steps and config.distill.batch_size == 48
    assert config.distill.lr == lr            # a static student keeps its own default (1e-3), not the transformer's
    # a static student starts from the teacher's token vectors in context; `tava distill`'s default stays model2vec
    assert config.distill.static_init == ("context" if student == "static" else "model2vec")
    assert PipelineConfig.model_validate({"preset": "demo", "distill": {"student": student}}).distill.static_init == \
        "model2vec"
    # no neighbour-ranking term in either preset (measured not to carry to the built-in data)
    assert config.distill.alpha_rank == 0.0
    assert PipelineConfig.model_validate({"preset": "demo", "distill": {"student": student}}).distill.alpha_rank == 0
    assert config.adapter.max_steps == 3000 and config.adapter.name is None
    assert PipelineConfig.model_validate({"preset": "standard", "distill": {"lr": 1e-5}}).distill.lr == 1e-5
    with pytest.raises(Exception, match="'demo' or 'standard'"):
        PipelineConfig.model_validate({"preset": "quick"})


@pytest.mark.parametrize("weight, unlabeled, expected", [(1, ["log"], []), (4, [], []), (4, ["log"], [1, 4]),
                                                       (2, ["log", "generic"], [1, 2, 2])])
def test_stage_a_weighs_the_unlabeled_sources_and_so_does_the_blends_static_member(weight, unlabeled, expected):
    from flows.pipeline_config import PipelineConfig, blend_static_distill, stage_a_config

    config = PipelineConfig.model_validate({"preset": "standard", "unlabeled_weight": weight})
    distill = stage_a_config(config, "/home/data/corpus", [f"/home/data/{u}" for u in unlabeled])
    assert distill.datasets == ["/home/data/corpus", *[f"/home/data/{u}" for u in unlabeled]]
    assert distill.dataset_weights == expected
    # the static member trains on what Stage A trained on, weighed alike
    assert blend_static_distill(distill, "/partner").dataset_weights == expected
    with pytest.raises(Exception, match="unlabeled_weight"):
        PipelineConfig.model_validate({"unlabeled_weight": 0})


@pytest.mark.parametrize("preset", ["demo", "standard"])
def test_the_pipeline_leaves_the_residual_memory_off_unless_asked(preset):
    from flows.pipeline import PipelineConfig
    from tava_core.adapter.config import AdapterConfig

    # its Stage B pairs are the texts its Stage A trained on (docs/stage-b.md); `tava adapt` keeps it on
    assert AdapterConfig().memory is True
    assert PipelineConfig.model_validate({"preset": preset}).adapter.memory is False
    asked = PipelineConfig.model_validate({"preset": preset, "adapter": {"memory": True, "max_steps": 50}})
    assert asked.adapter.memory is True and asked.adapter.max_steps == 50


def test_run_command_needs_some_settings():
    from flows.commands.pipeline import run_cli

    result = CliRunner().invoke(run_cli, [])
    assert result.exit_code != 0 and "--config" in result.output and "options" in result.output


@pytest.mark.slow
def test_pipeline_runs_every_stage_then_serves_a_rerun_from_cache(prefect_harness, tava_home, tiny_model_dir,
                                                                  tmp_path, caplog):
    import yaml

    from flows.commands.pipeline import run_cli
    from flows.pipeline import PipelineConfig, tava_pipeline
    from tava_core.home import TavaHome

    config = PipelineConfig.model_validate(_tiny_pipeline_config(tiny_model_dir))
    with caplog.at_level("INFO", logger="tava_core.route.stored"):
        # Prefect gives the library's loggers its own handlers (PREFECT_LOGGING_EXTRA_LOGGERS): listen on this one
        stored_log = logging.getLogger("tava_core.route.stored")
        stored_log.addHandler(caplog.handler)
        try:
            first = tava_pipeline(config, home=str(tava_home))
        finally:
            stored_log.removeHandler(caplog.handler)
    # the router's calibration says what it encodes and fits (it once ran without a line)
    # (once through that handler, and again through the root logger's where the logger propagates)
    said = list(dict.fromkeys(m for m in caplog.messages if m.startswith("router for ")))
    assert len(said) == 2 and "calibration span views of the served corpus" in said[0], said
    assert "fitting the signal model" in said[1] and "teacher budget of 10%" in said[1], said
    systems = [row.system for row in first.quality]
    assert systems == ["teacher", "student alone", "student, no adapter", "student + adapter",
                       "router, 10% to teacher", "router, 20% to teacher"]
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
    _check_router_rows(first, tava_home)

    # Nothing changed: same numbers, and the student is not retrained (its files are untouched).
    weights, adapter_weights = student / "model.safetensors", adapter / "model.safetensors"
    before, adapter_before = weights.stat().st_mtime_ns, adapter_weights.stat().st_mtime_ns
    config_file = tmp_path / "pipeline.yaml"
    # `tava run` defaults to the standard preset; the file names the one the first run had
    config_file.write_text(yaml.safe_dump({**_tiny_pipeline_config(tiny_model_dir), "preset": "demo"}))
    result = CliRunner().invoke(run_cli, ["--config", str(config_file)], env={"TAVA_HOME": str(tava_home)},
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert weights.stat().st_mtime_ns == before and adapter_weights.stat().st_mtime_ns == adapter_before
    assert "student + adapter" in result.output and f"{first.system('student + adapter').ndcg_at_10:.4f}" in result.output
    # the table says what it scored (a user could not tell the split or how many queries), and which
    # evaluation each report holds
    assert first.scored_queries == json.loads((Path(first.report_dirs[0]) / "report.json").read_text())[
        "dataset"]["queries"] > 0
    assert f"Scored: split `test`, {first.scored_queries:,} queries (the queries its qrels judge)." in result.output
    assert "| evaluation report (teacher, student alone, student + adapter) |" in result.output
    assert "| evaluation report (student, no adapter) |" in result.output
    # The summary tells cached work from computed work: the first run computed every shard, the
    # re-run none, and the re-run reused the index version and both evaluation reports.
    assert first.work["embed (teacher)"].endswith(", 0 reused") and not first.work["embed (teacher)"].startswith("0 ")
    assert re.search(r"\| embed \(teacher\) \| [0-9.]+ \| 0 shards computed, [1-9]\d* reused \|", result.output)
    assert re.search(r"\| embed \(student\) \| [0-9.]+ \| 0 shards computed, [1-9]\d* reused \|", result.output)
    assert f"| reused version {first.index['version']} |" in result.output
    assert "| 0 evaluations computed, 2 reused |" in result.output
    # Stage A says what it trained on (the card's sources, span views among them) and how far it got;
    # Stage B whether its learned part beat the closed-form start. The re-run reused both.
    sources = card["corpus"]["sources"]
    assert first.work["Stage A (student)"].startswith(f"trained: {card['corpus']['texts']:,} texts (")
    assert all(f"{s['dataset']}/{s['collection']} {s['rows']:,}" in first.work["Stage A (student)"]
               for s in sources if s["collection"])
    assert re.search(r"held-out cosine -?[0-9.]+ -> -?[0-9.]+ at step [\d,]+ of [\d,]+$", first.work["Stage A (student)"])
    assert re.match(r"trained: (learned part (not )?kept \(.+\)|best step [\d,]+ of [\d,]+)$",
                    first.work["Stage B (adapter)"])
    assert re.search(r"\| Stage A \(student\) \| [0-9.]+ \| reused: ", result.output)
    assert re.search(r"\| Stage B \(adapter\) \| [0-9.]+ \| reused: ", result.output)
    assert re.search(r"\| router \| [0-9.]+ \| over the student \+ adapter, calibration reused \(\d+ span views\), "
                     r"scores reused \|", result.output)   # the demo preset makes no blend
    assert f"{first.system('router, 20% to teacher').ndcg_at_10:.4f}" in result.output
    assert [v.version for v in registry.versions("adapters", "nightly")] == [first.registry[1]["version"]]
    assert TavaHome(tava_home).root == tava_home.resolve()

    # Another router budget moves the router's threshold (router.json; its weights stay): the registry
    # publishes it as a new version, so the registry's router and the artifact's agree
    wider = tava_pipeline(config.model_copy(update={"router": config.router.model_copy(update={"budgets": [0.3]})}),
                          home=str(tava_home))
    assert [v.version for v in registry.versions("adapters", "nightly")] == ["00001", "00002"]
    assert wider.registry[1]["version"] == "00002"
    router_json = json.loads((registry.current_path("adapters", "nightly") / "router" / "router.json").read_text())
    assert router_json["threshold"]["value"] == 0.3
    assert router_json["threshold"] == json.loads((Path(wider.router_dir) / "router.json").read_text())["threshold"]

    # The published adapter keeps its own copy of the student: a later run that retrains the student in
    # place (same name) leaves the published version -- and a rollback to it -- intact, while the
    # artifact adapter, whose student changed under it, is refused instead of pairing silently.
    from safetensors.torch import load_file, save_file

    from tava_core.encoders import load_encoder
    from tava_core.errors import ModelLoadError

    version = registry.current_path("adapters", "nightly")
    assert json.loads((version / "tava_encoder.json").read_text())["student"]["model"] == "student"
    texts = ["a query about proteins", "another one"]
    published = load_encoder(str(version), cache=False).encode(texts, kind="query")
    save_file({k: v + 0.01 for k, v in load_file(weights).items()}, weights)      # "retrained"
    with pytest.raises(ModelLoadError, match="trained for student fingerprint"):
        load_encoder(str(adapter), cache=False)
    np.testing.assert_allclose(load_encoder(str(version), cache=False).encode(texts, kind="query"), published,
                               atol=1e-6)


def _check_router_rows(result, home: Path) -> None:
    """The router rows: scored at exactly their budgets, costlier as the teacher's share grows, and
    the router published inside the adapter's registry version, where it loads and routes."""
    import numpy as np

    from tava_core.encoders import load_encoder
    from tava_core.evaluate.data import load_retrieval_data
    from tava_core.home import TavaHome
    from tava_core.registry import Registry
    from tava_core.route.router import RoutedEncoder
    from tava_core.route.stored import calibration_views

    adapted, r10, r20 = (result.system(name) for name in ("student + adapter", "router, 10% to teacher",
                                                          "router, 20% to teacher"))
    assert adapted.speedup > r10.speedup > r20.speedup > 0          # each budget adds teacher calls
    assert r10.queries_documents == "routed / teacher" and 0.0 <= r10.ndcg_at_10 <= 1.0
    curves = json.loads((home / "reports" / "route" / "nightly" / "route.json").read_text())
    rows = {row["share"]: row for row in curves["rows"]}
    assert sorted(rows) == [0.0, 0.1, 0.2]
    assert rows[0.0]["router"]["ndcg10"] == pytest.approx(adapted.ndcg_at_10, abs=2e-3)   # nothing routed
    assert rows[0.2]["router"]["ndcg10"] == pytest.approx(r20.ndcg_at_10, abs=1e-4)
    # scored on the evaluation's query vectors; the teacher's cost from the routed row's speed-up, not re-timed
    assert curves["query_vectors"] == {"student": "reused", "teacher": "reused"}
    assert curves["costs"]["teacher"] == pytest.approx(curves["costs"]["student"] * adapted.speedup, rel=1e-3)
    version = Registry(home).current_path("adapters", "nightly")
    router = load_encoder(str(version / "router"), cache=False)
    assert isinstance(router, RoutedEncoder) and router.threshold.value == 0.1
    assert router.student.fingerprint == load_encoder(str(version), cache=False).fingerprint
    # its threshold sends exactly the budget of its own calibration texts (the span views) to the teacher
    data = load_retrieval_data(result.dataset_dir, "test", TavaHome(home))
    views = calibration_views(data.corpus_ids, data.document_texts, 300)
    routed = router.route(views)["routed"]
    assert abs(routed.mean() - 0.1) <= 1.5 / len(views)
    # queries under the threshold get the teacher's vectors, the others the student + adapter's
    wider, texts = router.with_budget(0.2), views[::5]
    out = wider.route(texts)
    picked, kept = np.flatnonzero(out["routed"]), np.flatnonzero(~out["routed"])
    assert len(picked) and len(kept)
    assert np.allclose(out["vectors"][picked], router.teacher.encode([texts[i] for i in picked], kind="query"),
                       atol=1e-5)
    assert np.allclose(out["vectors"][kept], router.student.encode([texts[i] for i in kept], kind="query"),
                       atol=1e-5)
    # the saved policy is the adaptive one: the batch is cut at the live threshold it computed
    assert wider.routing.mode == "adaptive" and wider.live is not None
    assert (out["routed"] == (out["confidence"] < wider.live.threshold)).all()


@pytest.mark.parametrize("routed_retention, noted", [(1.08, True), (0.97, False)])
def test_the_table_says_why_router_rows_fall_when_the_routed_encoder_beats_the_teacher(routed_retention, noted):
    from flows.pipeline import BLEND, PipelineResult, QualityRow, summary_markdown

    def row(system: str, retention: float) -> QualityRow:
        return QualityRow(system=system, queries_documents="x", ndcg_at_10=0.5 * retention, retention=retention,
                          queries_per_second=100.0, speedup=2.0)

    result = PipelineResult(dataset="d", dataset_dir="/d", rows={"corpus": 10}, teacher={"name": "t", "dim": 4},
                            index={"factory": "Flat", "index_dir": "/i", "recall_at_10": 1.0}, student_dir="/s",
                            adapter_dir="/a", registry=[], report_dirs=[], seconds={}, scored_queries=150,
                            quality=[row("teacher", 1.0), row("student + adapter", 0.95), row(BLEND, routed_retention),
                                     row("router, 10% to teacher", 1.0 + (routed_retention - 1.0) * 0.9)])
    text = summary_markdown(result)
    assert "Scored: split `test`, 150 queries" in text
    said = f"Here `{BLEND}` scores above the teacher ({routed_retention:.1%} of it)"
    assert (said in text) == noted, text
    assert "router rows: exactly that share of the queries" in text   # not what a served router routes


@pytest.mark.parametrize("over", ["student + adapter", "blend: student + adapter, static student"])
def test_router_rows_cost_in_ratios_measured_side_by_side(over):
    """A router row's speed-up comes from ratios each measured beside the teacher: the routed encoder's
    speed-up in its own evaluation, the confidence against the teacher when the router was scored. Here the
    blend's evaluation ran under load (teacher and blend both ~4x slower than in the first evaluation):
    mixing its absolute speed with the first evaluation's teacher would read 0.4x."""
    from flows.pipeline import TEACHER, QualityRow, router_rows

    def row(system: str, qps: float, speedup: float) -> QualityRow:
        return QualityRow(system=system, queries_documents="q / d", ndcg_at_10=0.6, retention=1.0,
                          queries_per_second=qps, speedup=speedup)

    quality = {TEACHER: row(TEACHER, 200.0, 1.0), "student + adapter": row("student + adapter", 380.0, 1.9),
               "blend: student + adapter, static student": row("blend", 80.0, 1.6)}
    curves = {"costs": {"student": 0.002, "confidence": 0.0001, "teacher": 0.004},
              "rows": [{"share": 0.1, "router": {"ndcg10": 0.61}}, {"share": 0.2, "router": {"ndcg10": 0.62}}]}
    ten, twenty = router_rows(curves, [0.1, 0.2], quality, over=over)
    base = quality[over].speedup
    assert ten.speedup == pytest.approx(1 / (1 / base + 0.025 + 0.1), abs=0.01)
    assert twenty.speedup == pytest.approx(1 / (1 / base + 0.025 + 0.2), abs=0.01)
    assert base > ten.speedup > twenty.speedup > 1.0
    assert ten.queries_per_second == pytest.approx(200.0 * ten.speedup, rel=0.01)
    assert (ten.ndcg_at_10, twenty.ndcg_at_10) == (0.61, 0.62)


def test_router_rows_can_be_turned_off_and_budgets_are_checked():
    from flows.commands.pipeline import cli
    from flows.pipeline import PipelineConfig

    assert PipelineConfig().router.enabled and PipelineConfig().router.budgets == [0.1, 0.2]
    assert not PipelineConfig.model_validate({"router": {"enabled": False}}).router.enabled
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        PipelineConfig.model_validate({"router": {"budgets": [0.1, 1.5]}})
    result = CliRunner().invoke(cli, ["--help"])
    assert "--no-router-enabled" in result.output and "--router-budgets" in result.output


def test_the_blend_row_keeps_its_side_by_side_speed_up_in_the_tables_units():
    """Audit 4: the blend's evaluation ran the teacher at 117 q/s and the blend at 229; the table's teacher row
    read 30 q/s (another evaluation, other load), so the blend's own 229 beside it looked 7.6x for a 2.0x."""
    from flows.pipeline import TEACHER, QualityRow, blend_row
    from tava_core.records import EvaluationReport, EvaluationRow

    def row(mode: str, ndcg: float) -> EvaluationRow:
        return EvaluationRow(mode=mode, variant="full", dim=4, ndcg_at_10=ndcg, recall_at_100=0.9, mrr_at_10=0.5,
                             retention=None)

    scored = EvaluationReport(run="r", directory="/r", files={}, teacher_ndcg_at_10=0.9793,
                              rows=[row("teacher/teacher", 0.9793), row("adapted/teacher", 0.9909)],
                              throughput={"teacher": 117.0, "adapted": 229.0}, mteb_agrees=None)
    teacher = QualityRow(system=TEACHER, queries_documents="teacher / teacher", ndcg_at_10=0.9793, retention=1.0,
                         queries_per_second=30.0, speedup=1.0)
    blend = blend_row(scored, teacher)
    assert blend.speedup == pytest.approx(229 / 117, abs=1e-4)
    assert blend.queries_per_second == pytest.approx(30.0 * 229 / 117, abs=0.1)
    assert blend.retention == pytest.approx(0.9909 / 0.9793, abs=1e-4)
