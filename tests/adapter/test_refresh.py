"""Nightly adapter refresh end to end on tiny models and tiny data, through Prefect."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import synthetic_texts


@pytest.fixture(scope="module")
def tiny_teacher_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """A second tiny random BERT (48-d, other seed): a teacher whose space differs from the student's."""
    import shutil

    import torch
    from transformers import BertConfig, BertModel

    out = tmp_path_factory.mktemp("tiny-teacher")
    torch.manual_seed(1)
    BertModel(BertConfig(vocab_size=30522, hidden_size=48, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(out)
    for path in tiny_model_dir.iterdir():
        if path.name not in ("config.json", "model.safetensors", "1_Pooling"):
            if path.is_file():
                shutil.copy(path, out / path.name)
    (out / "1_Pooling").mkdir()
    (out / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 48, "pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}))
    return out


@pytest.fixture()
def eval_dataset(tmp_path, tava_home) -> str:
    """A tiny BEIR set, ingested: 40 documents, 8 queries, one relevant document each."""
    from tava_core.config import IngestConfig
    from tava_core.ingest.pipeline import ingest

    beir = tmp_path / "tinybeir"
    (beir / "qrels").mkdir(parents=True)
    docs = synthetic_texts(40, seed=7)
    with open(beir / "corpus.jsonl", "w") as f:
        for i, text in enumerate(docs):
            f.write(json.dumps({"_id": f"d{i}", "title": "", "text": text}) + "\n")
    with open(beir / "queries.jsonl", "w") as f:
        for i in range(8):
            f.write(json.dumps({"_id": f"q{i}", "text": " ".join(docs[i * 5].split()[:4])}) + "\n")
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                             + "".join(f"q{i}\td{i * 5}\t1\n" for i in range(8)))
    return ingest(IngestConfig(source=str(beir), name="tinybeir"), tava_home).path


def drop(zone: Path, name: str, texts: list[str]) -> None:
    zone.mkdir(parents=True, exist_ok=True)
    with open(zone / name, "w") as f:
        for text in texts:
            f.write(json.dumps({"text": text}) + "\n")


def make_config(zone: Path, student: Path, teacher: Path, **overrides):
    from tava_core.config import EncoderSpec
    from tava_core.refresh import RefreshConfig

    settings = dict(name="nightly", drop_zone=str(zone), student=EncoderSpec(model=str(student), device="cpu"),
                    teacher=EncoderSpec(model=str(teacher), device="cpu"), max_steps=20, batch_size=16,
                    eval_every=10, warmup_steps=2, hidden_dims=[32], replay_pairs=50)
    settings.update(overrides)
    return RefreshConfig(**settings)


@pytest.mark.slow
@pytest.mark.timeout(1500)  # four flow runs: ~2 min alone, but far longer on a starved shared CPU
def test_refresh_trains_promotes_skips_keeps_and_fails_cleanly(prefect_harness, tava_home, tmp_path, tiny_model_dir,
                                                               tiny_teacher_dir, eval_dataset):
    from flows.refresh import StageFailed, nightly_adapter_refresh
    from tava_core.home import TavaHome
    from tava_core.refresh import load_state
    from tava_core.registry import Registry

    zone = tmp_path / "dropzone"
    registry = Registry(tava_home)
    drop(zone, "monday.jsonl", synthetic_texts(120, seed=1))
    config = make_config(zone, tiny_model_dir, tiny_teacher_dir, evaluation=[eval_dataset])

    # 1. first run: trains a first adapter, evaluates it asymmetrically, promotes it
    first = nightly_adapter_refresh(config, home=str(tava_home))
    assert first["status"] == "promoted", first["message"]
    assert first["promoted_version"] == "00001" and first["training"]["warm_start"] is None
    assert first["batch"]["rows"] == 120
    record = registry.record("adapters", "nightly")
    assert record.current and record.version == "00001"
    lineage = record.lineage
    assert lineage["teacher"]["name"] == tiny_teacher_dir.name and len(lineage["teacher"]["fingerprint"]) >= 12
    assert lineage["student"]["source"] == "configured"
    assert lineage["data"]["files"][0]["relative"] == "monday.jsonl"
    assert lineage["data"]["batch"]["manifest_sha256"]
    # the recorded score is the published version's real score: re-evaluated here from the registry copy
    from flows.evaluate import evaluate_flow
    from tava_core.refresh import EVAL_MODE, evaluation_configs

    recheck = evaluation_configs(str(record.path), config, "recheck")[eval_dataset]
    rescored = evaluate_flow(recheck, home=str(tava_home)).ndcg(EVAL_MODE)
    assert record.metrics["evaluation"][eval_dataset] == pytest.approx(rescored, abs=1e-6) and rescored > 0.0
    assert (Path(record.path) / "tava_encoder.json").is_file()  # the version is a loadable encoder
    report = Path(first["report"])
    assert report.is_file() and "promoted" in report.with_suffix(".md").read_text()

    # 2. nothing new: says so, trains nothing, registry untouched
    second = nightly_adapter_refresh(config, home=str(tava_home))
    assert second["status"] == "nothing-new" and "nothing was trained" in second["message"]
    assert "training" not in second
    assert [v.version for v in registry.versions("adapters", "nightly")] == ["00001"]

    # 3. new texts, but an impossible threshold (must gain 1.0 nDCG): trains from v1, keeps v1
    drop(zone, "tuesday.jsonl", synthetic_texts(60, seed=2))
    third = nightly_adapter_refresh(config.model_copy(update={"threshold": -1.0}), home=str(tava_home))
    assert third["status"] == "kept", third["message"]
    assert third["training"]["warm_start"] == record.path
    assert third["training"]["pairs_replayed"] == 50  # replay sample from Monday's batch
    assert "the candidate is worse (tinybeir: candidate" in third["decision"]["why"]
    assert registry.current_version("adapters", "nightly") == "00001"
    assert len(registry.versions("adapters", "nightly")) == 1
    state = load_state(TavaHome(tava_home), "nightly")
    assert len(state["consumed"]) == 2  # Tuesday's file was trained on and judged: consumed

    # 4. a stage that fails for good (a malformed file in the drop zone): report says why, nothing changes
    (zone / "broken.jsonl").write_text('{"text": "fine"}\n{"text": \n')
    with pytest.raises(StageFailed, match="stage 'ingest' failed"):
        nightly_adapter_refresh(config, home=str(tava_home))
    failed = json.loads(sorted((tava_home / "reports" / "refresh" / "nightly").glob("*.json"))[-1].read_text())
    assert failed["status"] == "failed" and failed["failed_stage"] == "ingest"
    assert "broken.jsonl:2" in failed["message"]
    assert registry.current_version("adapters", "nightly") == "00001"
    assert len(registry.versions("adapters", "nightly")) == 1
    assert load_state(TavaHome(tava_home), "nightly")["consumed"] == state["consumed"]  # broken file stays pending


@pytest.mark.slow
def test_second_refresh_while_one_runs_does_nothing(prefect_harness, tava_home, tmp_path, tiny_model_dir,
                                                    tiny_teacher_dir):
    from flows.refresh import nightly_adapter_refresh
    from tava_core.home import TavaHome
    from tava_core.refresh import run_lock_path
    from tava_core.registry import Registry

    zone = tmp_path / "dropzone"
    drop(zone, "a.jsonl", synthetic_texts(80, seed=3))
    config = make_config(zone, tiny_model_dir, tiny_teacher_dir)
    # "another refresh" (another process: the lock is re-entrant for its own holder) holds the run lock
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom tava_core.locks import file_lock\n"
                               "with file_lock(sys.argv[1]):\n    print('HELD', flush=True)\n    time.sleep(600)\n",
                               str(run_lock_path(TavaHome(tava_home), "nightly"))],
                              cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "HELD"
        record = nightly_adapter_refresh(config, home=str(tava_home))
    finally:
        holder.kill()
        holder.wait(30)
    assert record["status"] == "locked" and "another refresh is running" in record["message"]
    assert f"locked by pid {holder.pid}" in record["message"]
    assert Registry(tava_home).names("adapters") == []
    # lock released: the same files are still new, and without evaluation sets the held-out pairs decide
    record = nightly_adapter_refresh(config, home=str(tava_home))
    assert record["status"] == "promoted" and record["decision"]["metric"] == "held-out mean cosine"


def test_refresh_without_student_names_the_fix(tava_home, tmp_path):
    from tava_core.errors import ConfigError
    from tava_core.refresh import RefreshConfig, resolve_student
    from tava_core.registry import Registry

    with pytest.raises(ConfigError, match="no current student 'student'") as info:
        resolve_student(RefreshConfig(drop_zone=str(tmp_path)), Registry(tava_home))
    assert "--student" in info.value.hint


def test_compare_threshold_semantics(tmp_path):
    from tava_core.refresh import RefreshConfig, compare

    config = RefreshConfig(evaluation=["a", "b"], threshold=0.01)
    ok = compare(config, {"a": 0.50, "b": 0.495}, {"a": 0.50, "b": 0.50}, {})
    assert ok["promote"]
    worse = compare(config, {"a": 0.50, "b": 0.48}, {"a": 0.50, "b": 0.50}, {})
    assert not worse["promote"] and "b: candidate 0.4800 < current 0.5000 - threshold 0.01" in worse["why"]
    first = compare(config, {"a": 0.1, "b": 0.1}, None, {})
    assert first["promote"] and "first current version" in first["why"]


def test_compare_judges_the_published_blend_beside_the_adapter():
    from tava_core.refresh import RefreshConfig, blended_set, compare

    config = RefreshConfig(evaluation=["sets/a"], threshold=0.01)
    # the adapter alone got better, but the blend users are served got worse: kept, and the reason says so
    worse = compare(config, {"sets/a": 0.52}, {"sets/a": 0.50}, {},
                    blended={"candidate": {"sets/a": 0.55}, "current": {"sets/a": 0.58}})
    assert not worse["promote"] and "a (blend): candidate 0.5500 < current 0.5800" in worse["why"]
    assert "published blend" in worse["metric"]
    assert [r["set"] for r in worse["rows"]] == ["sets/a", blended_set("sets/a")]
    better = compare(config, {"sets/a": 0.495}, {"sets/a": 0.50}, {},
                     blended={"candidate": {"sets/a": 0.60}, "current": {"sets/a": 0.58}})
    assert better["promote"]


def test_cli_help_lists_refresh_options():
    from click.testing import CliRunner

    from flows.cli import group

    result = CliRunner().invoke(group, ["refresh", "--help"])
    assert result.exit_code == 0, result.output
    assert "--drop-zone" in result.output and "--threshold" in result.output and "--adapter-options" not in result.output


def test_student_comes_from_the_registry(tava_home, tmp_path, tiny_model_dir):
    from tava_core.encoders import load_encoder
    from tava_core.refresh import RefreshConfig, resolve_student
    from tava_core.registry import Registry

    registry = Registry(tava_home)
    registry.publish("students", "tiny", tiny_model_dir, lineage={"teacher": {"name": "t"}}, promote=True)
    registry.publish("students", "tiny", tiny_model_dir, promote=True)
    spec, source = resolve_student(RefreshConfig(drop_zone=str(tmp_path), student_name="tiny"), registry)
    assert source["version"] == "00002" and spec.model.endswith("students/tiny/versions/00002")
    assert load_encoder(spec).dim == 32
    assert registry.rollback("students", "tiny")["to_version"] == "00001"  # checked to load first
    spec, source = resolve_student(RefreshConfig(drop_zone=str(tmp_path), student_name="tiny"), registry)
    assert source["version"] == "00001"


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_refresh_rebuilds_the_published_blend_around_the_new_adapter(prefect_harness, tava_home, tmp_path,
                                                                     tiny_model_dir, tiny_teacher_dir, eval_dataset):
    """A blend published with the current adapter (as `tava run --blend-static` publishes it) is carried
    into the promoted version: same static student and weights, the new adapter as its member."""
    import shutil

    from helpers import write_static_model

    from flows.refresh import nightly_adapter_refresh
    from tava_core.config import EncoderSpec
    from tava_core.encoders import load_encoder
    from tava_core.encoders.blend import attach_blend, attached_blend, save_blend
    from tava_core.registry import Registry

    zone = tmp_path / "dropzone"
    registry = Registry(tava_home)
    drop(zone, "monday.jsonl", synthetic_texts(80, seed=1))
    config = make_config(zone, tiny_model_dir, tiny_teacher_dir, threshold=1.0,   # every candidate is promoted
                         evaluation=[eval_dataset])
    assert nightly_adapter_refresh(config, home=str(tava_home))["promoted_version"] == "00001"
    first = registry.record("adapters", "nightly")
    static_dir = write_static_model(tmp_path / "static", tiny_model_dir, 48, seed=5)   # in the teacher's space
    save_blend(tmp_path / "blend", [EncoderSpec(model=str(first.path)), EncoderSpec(model=str(static_dir))], [0.6, 0.4])

    def with_blend(staging: Path) -> None:     # what the pipeline's publish does with --blend-static
        shutil.copytree(first.path, staging, dirs_exist_ok=True)
        attach_blend(tmp_path / "blend", first.path, staging)

    registry.publish("adapters", "nightly", with_blend, lineage=first.lineage, promote=True)
    second = registry.record("adapters", "nightly")
    assert attached_blend(second.path) is not None

    drop(zone, "tuesday.jsonl", synthetic_texts(60, seed=2))
    run = nightly_adapter_refresh(config, home=str(tava_home))
    assert run["status"] == "promoted" and run["promoted_version"] == "00003", run["message"]
    third = registry.record("adapters", "nightly")
    blend = load_encoder(str(attached_blend(third.path)), cache=False)
    adapter, static = blend.members
    # the member is the promoted version's own adapter (the directory: a candidate whose learned part is
    # not kept has its start's weights, so the fingerprint alone cannot tell)
    assert adapter.name == third.version == "00003"
    assert adapter.fingerprint == load_encoder(str(third.path), cache=False).fingerprint
    assert static.fingerprint == load_encoder(str(static_dir), cache=False).fingerprint
    assert blend.weights == pytest.approx([0.6, 0.4])
    assert third.lineage["blend"]["weights"] == pytest.approx([0.6, 0.4])
    report = Path(run["report"]).with_suffix(".md").read_text()
    assert "blend: rebuilt around the candidate" in report
    # scored for the report: the blend's own nDCG@10, the same as evaluating the published blend now
    from flows.evaluate import evaluate_flow
    from tava_core.refresh import EVAL_MODE, blended_set, evaluation_configs

    scored = run["blend"]["evaluation"][eval_dataset]
    recheck = evaluation_configs(str(attached_blend(third.path)), config, "recheck-blend")[eval_dataset]
    assert evaluate_flow(recheck, home=str(tava_home)).ndcg(EVAL_MODE) == pytest.approx(scored, abs=1e-6)
    assert f"blend nDCG@10, tinybeir: {scored:.4f}" in report
    # the gate judged the blend too: the candidate's against the version before's own blend, scored now
    row = next(r for r in run["decision"]["rows"] if r["set"] == blended_set(eval_dataset))
    before = evaluation_configs(str(attached_blend(second.path)), config, "recheck-before")[eval_dataset]
    assert row["candidate"] == pytest.approx(scored, abs=1e-9)
    assert row["current"] == pytest.approx(evaluate_flow(before, home=str(tava_home)).ndcg(EVAL_MODE), abs=1e-6)
    assert third.metrics["blend"][eval_dataset] == pytest.approx(scored, abs=1e-9)
    # the version before keeps its own blend, around its own adapter (a rollback restores both)
    assert load_encoder(str(attached_blend(second.path)), cache=False).members[0].name == "00002"
    # the candidate's router was calibrated over its blend (what users are served) and names it ../blend
    from tava_core.route.publish import attached_router

    router_dir = attached_router(third.path)
    assert router_dir is not None
    assert json.loads((router_dir / "router.json").read_text())["student"]["spec"]["model"] == "../blend"
    assert load_encoder(str(router_dir), cache=False).student.fingerprint == blend.fingerprint


def test_refresh_continues_from_the_adapter_a_pipeline_published(tava_home, tmp_path, tiny_model_dir,
                                                                  tiny_teacher_dir):
    """`tava run` / `tava demo` train the adapter on their student artifact, then publish the student as
    a registry version of its own and the adapter with a copy of it inside, its lineage naming the
    student's path and the teacher's name (no fingerprints). The refresh must see that the current adapter
    was trained for the registry's current student and teacher, and continue from it: it crashed on the
    string lineage, and the registry's copy of the student has another fingerprint (its registry.json)."""
    import shutil

    from tava_core.adapter import Vec2VecAdapter, save_adapter
    from tava_core.encoders import load_encoder
    from tava_core.refresh import RefreshConfig, resolve_current_adapter
    from tava_core.registry import Registry

    registry = Registry(tava_home)
    student = registry.publish("students", "student", tiny_model_dir, lineage={"teacher": "t"}, promote=True)
    trained_for = load_encoder(str(tiny_model_dir)).fingerprint
    served = load_encoder(student.path).fingerprint
    assert served != trained_for                 # the record file is hashed with the registry's copy
    teacher = "e" * 24
    adapter = save_adapter(tmp_path / "adapter", Vec2VecAdapter(32, 32, [16]),
                           metadata={"lineage": {"student": {"name": "s", "fingerprint": trained_for},
                                                 "teacher": {"name": "t", "fingerprint": teacher}}})
    shutil.copytree(tiny_model_dir, adapter / "student")                 # the version's own copy
    registry.publish("adapters", "nightly", adapter, lineage={"student": str(tiny_model_dir), "teacher": "t"},
                     promote=True)
    config = RefreshConfig(drop_zone=str(tmp_path), name="nightly")
    current = resolve_current_adapter(config, registry, served, teacher, student_dir=student.path)
    assert current["version"] == "00001" and current["warm_start"], current
    assert resolve_current_adapter(config, registry, trained_for, teacher)["warm_start"]    # by fingerprint
    # another teacher, or another student's files: a new adapter
    assert not resolve_current_adapter(config, registry, served, "f" * 24, student_dir=student.path)["warm_start"]
    other = load_encoder(str(tiny_teacher_dir)).fingerprint
    assert not resolve_current_adapter(config, registry, other, teacher, student_dir=tiny_teacher_dir)["warm_start"]
