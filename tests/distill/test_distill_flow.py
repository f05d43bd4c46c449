"""The distill flow end to end on a toy dataset: teacher vectors through the embedding flow, a short
training run, the student directory and its Prefect artifacts; and the CLI's options."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from distill_helpers import make_toy_dataset


def test_cli_options_come_from_the_config():
    from flows.commands.distill import cli

    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    for option in ("--student", "--layers", "--projection", "--alpha-cos", "--alpha-mse", "--alpha-sim", "--alpha-cross",
                   "--projection-fit-texts",
                   "--temperature", "--checkpoint-every", "--patience", "--static-dim"):
        assert option in result.output


@pytest.mark.slow
def test_distill_flow_trains_a_student_and_publishes_artifacts(prefect_harness, tava_home, tiny_model_dir,
                                                               monkeypatch):
    from prefect.client.orchestration import get_client

    from flows.distill import distill_student
    from tava_core.distill import DistillConfig, run

    joined = []   # the training data (texts + teacher vectors) is read and checked once per run
    real_prepare = run.prepare_training
    monkeypatch.setattr(run, "prepare_training", lambda *a, **k: joined.append(1) or real_prepare(*a, **k))

    from tava_core.config import EncoderSpec
    from tava_core.encoders import load_encoder

    make_toy_dataset(tava_home, "toy", n=300)
    # the teacher as `tava run --teacher-max-length 24` passes it: its vectors, and no others, train the student
    teacher = EncoderSpec(model=str(tiny_model_dir), max_length=24, device="cpu")
    config = DistillConfig(name="flowtest", teacher=teacher, datasets=["toy"], layers=[1], steps=20,
                           batch_size=16, warmup_steps=2, eval_every=10, checkpoint_every=10, max_length=32,
                           validation_fraction=0.05, device="cpu")
    record = distill_student(config, home=str(tava_home))
    out = Path(record.output)
    assert len(joined) == 1 and record.reused is False and record.steps == 20
    assert out == tava_home / "artifacts" / "students" / "flowtest"
    assert (out / "curves.png").is_file() and (out / "modules.json").is_file()
    card = json.loads((out / "model_card.json").read_text())
    assert card["teacher"]["model"] == str(tiny_model_dir) and card["training"]["steps_done"] == 20
    fingerprint = load_encoder(teacher).fingerprint
    assert card["teacher"]["fingerprint"] == fingerprint != load_encoder(str(tiny_model_dir)).fingerprint
    # The teacher's vectors were made by the embedding flow, in the home's vector cache: once, with that spec.
    made = [json.loads(p.read_text()) for p in (tava_home / "vectors" / "toy" / "texts").glob("**/manifest.json")]
    assert [m["encoder"]["fingerprint"] for m in made] == [fingerprint]

    import anyio

    async def artifact_keys():
        async with get_client() as client:
            return {a.key for a in await client.read_artifacts()}

    keys = anyio.run(artifact_keys)
    assert {"student-flowtest-card", "student-flowtest-metrics"} <= keys
