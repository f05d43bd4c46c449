"""`tava adapt` end to end: vector directories in, adapter directory out, through Prefect and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
from adapter_helpers import synthetic, write_vector_dir


@pytest.fixture()
def vector_dirs(tmp_path):
    student, teacher = synthetic(700, 8)
    ids = [f"t{i}" for i in range(len(student))]
    return (write_vector_dir(tmp_path / "s", ids, student, fingerprint="s" * 24, name="student-enc"),
            write_vector_dir(tmp_path / "t", ids, teacher, fingerprint="t" * 24, name="teacher-enc"))


@pytest.mark.slow
def test_train_adapter_flow_writes_adapter_report_and_artifacts(prefect_harness, tava_home, vector_dirs,
                                                                monkeypatch):
    from flows.adapt import train_adapter
    from tava_core.adapter import AdapterConfig, load_adapter
    from tava_core.adapter import run as adapter_stage

    s_dir, t_dir = vector_dirs
    config = AdapterConfig(student_vectors=[str(s_dir)], teacher_vectors=[str(t_dir)], name="synthetic",
                           hidden_dims=[32], discriminator_hidden_dim=16, discriminator_layers=1, batch_size=64,
                           max_steps=20, eval_every=10, warmup_steps=5)
    record = train_adapter(config, home=str(tava_home))
    out = tava_home / "artifacts" / "adapters" / "synthetic"
    assert record.adapter_dir == str(out) and record.reused is False
    for name in ("model.safetensors", "config.json", "report.json", "report.md", "curves.png"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    assert {"adapter", "identity", "ridge", "procrustes"} <= set(report["metrics"])
    assert "| ridge |" in (out / "report.md").read_text()
    assert load_adapter(out).map_numpy(np.eye(8, dtype=np.float32)).shape == (8, 8)
    assert not record.loadable_encoder  # no --student given and the manifest names no model path

    # Same inputs, same config, adapter on disk: nothing is trained or written again.
    trainings = []
    real_train = adapter_stage.train_adapter_from_arrays
    monkeypatch.setattr(adapter_stage, "train_adapter_from_arrays",
                        lambda *a, **k: trainings.append(1) or real_train(*a, **k))
    written = {name: (out / name).stat().st_mtime_ns for name in ("model.safetensors", "report.json")}
    again = train_adapter(config, home=str(tava_home))
    assert trainings == [] and again.reused is True and again.run_key == record.run_key
    assert {name: (out / name).stat().st_mtime_ns for name in written} == written
    # A changed setting is a different run: it trains (the same check, not a stale cache, decides).
    changed = train_adapter(config.model_copy(update={"max_steps": 30}), home=str(tava_home))
    assert trainings == [1] and changed.reused is False and changed.run_key != record.run_key


@pytest.mark.slow
def test_cli_reports_bad_input_without_traceback(prefect_harness, tava_home, vector_dirs, capsys):
    from flows.cli import main

    s_dir, _ = vector_dirs
    with pytest.raises(SystemExit) as exit_info:
        main(["--home", str(tava_home), "adapt", "--student-vectors", str(s_dir), "--teacher-vectors", str(s_dir)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "same encoder" in err and "Traceback" not in err
