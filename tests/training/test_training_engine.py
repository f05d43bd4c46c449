"""The training engine on a toy regression stage: divergence policies, patience, best-state restore,
selection direction, checkpoint resume, time budget, weight averaging and the schedules."""
from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch

from tava_core.errors import ConfigError, TrainingError
from tava_core.training import (
    CheckpointConfig,
    Diverged,
    EngineConfig,
    Schedule,
    Selection,
    TrainingEngine,
    TrainingStage,
    WeightAverage,
)

torch.set_num_threads(1)


class Regression(TrainingStage):
    """Least squares towards a fixed linear map; batches are a pure function of the step."""

    label = "toy"
    divergence_hint = "lower the toy learning rate"

    def __init__(self, lr: float = 0.1, *, nan_at: tuple[int, ...] = (), broken_validation_at: tuple[int, ...] = (),
                 interrupt_at: Optional[int] = None, sigterm_at: Optional[int] = None, sleep: float = 0.0,
                 ema_decay: float = 0.0,
                 scores: Optional[list[float]] = None) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Linear(4, 1, bias=False)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr)
        rng = np.random.default_rng(0)
        self.x = torch.as_tensor(rng.standard_normal((256, 4)), dtype=torch.float32)
        self.y = self.x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
        self.nan_at, self.broken_validation_at = nan_at, broken_validation_at
        self.interrupt_at, self.sigterm_at, self.sleep = interrupt_at, sigterm_at, sleep
        self.calls = 0
        self.validations = 0
        self.scores = scores            # scripted validation scores, one per validation
        self.weights_at: dict[int, torch.Tensor] = {}
        self.ema = WeightAverage(self.model, ema_decay) if ema_decay else None
        self.steps_seen: list[int] = []

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model}

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.optimizer]

    def loss(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        self.calls += 1
        self.steps_seen.append(step)
        if self.interrupt_at is not None and step == self.interrupt_at:
            raise KeyboardInterrupt
        if self.sigterm_at is not None and step == self.sigterm_at:
            os.kill(os.getpid(), signal.SIGTERM)   # as `kill PID` sends it: the engine turns it into a flag
        if self.sleep:
            time.sleep(self.sleep)
        rows = torch.as_tensor(np.random.default_rng(step).integers(0, 200, 16))
        loss = ((self.model(self.x[rows]) - self.y[rows]) ** 2).mean()
        if self.calls in self.nan_at:
            loss = loss * float("nan")
        return loss, {"mse": float(loss.detach())}

    def validate(self) -> dict[str, float]:
        self.validations += 1
        if self.validations in self.broken_validation_at:
            raise Diverged("outputs collapsed")
        mse = float(((self.model(self.x[200:]) - self.y[200:]) ** 2).mean().detach())
        self.weights_at[self.validations] = self.model.weight.detach().clone()
        if self.scores is not None:
            return {"score": self.scores[self.validations - 1], "mse": mse}
        return {"mse": mse, "neg_mse": -mse}


def config(**overrides) -> EngineConfig:
    base = dict(max_steps=40, eval_every=10, selection=Selection("mse", greater_is_better=False), log_every=1)
    base.update(overrides)
    return EngineConfig(**base)


def test_training_lowers_the_loss_and_records_curves():
    stage = Regression()
    run = TrainingEngine(stage, config(record_lr=True)).run()
    assert run.stopped == "completed" and run.steps == 40
    assert [row["step"] for row in run.evaluations] == [0, 10, 20, 30, 40]
    assert run.best_metrics["mse"] < 0.05 * run.initial_metrics["mse"]
    assert len(run.history) == 40 and run.history[0]["lr"] == pytest.approx(0.1)


@pytest.mark.parametrize("policy", ["stop", "rollback"])
def test_a_nan_loss_stops_or_rolls_back_by_policy(policy):
    stage = Regression(nan_at=(13,))
    engine = TrainingEngine(stage, config(on_divergence=policy, max_rollbacks=2))
    if policy == "stop":
        with pytest.raises(TrainingError, match="toy: loss became nan at step 13") as caught:
            engine.run()
        assert caught.value.hint == "lower the toy learning rate"
        return
    clean = TrainingEngine(Regression(), config()).run()
    run = engine.run()
    assert run.rollbacks == 1 and engine.lr_scale == 0.5
    # the rollback returned to the state validated at step 10 and went on at half the rate
    assert run.steps == 40 and math.isfinite(run.best_metrics["mse"])
    assert stage.optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    assert run.best_metrics["mse"] != clean.best_metrics["mse"]
    assert 13 not in [row["step"] for row in run.history]  # the failed step is not logged


def test_rollback_gives_up_after_max_rollbacks():
    stage = Regression(nan_at=(3, 5, 7))
    with pytest.raises(TrainingError, match=r"diverged at step 7 .* 2 rollbacks did not help"):
        TrainingEngine(stage, config(on_divergence="rollback", max_rollbacks=2)).run()


def test_a_broken_validation_rolls_back_and_a_broken_start_refuses_to_train():
    stage = Regression(broken_validation_at=(3,))  # the validation at step 20
    run = TrainingEngine(stage, config(on_divergence="rollback")).run()
    assert run.rollbacks == 1 and [row["step"] for row in run.evaluations] == [0, 10, 30, 40]
    with pytest.raises(TrainingError, match="broken before training starts"):
        TrainingEngine(Regression(broken_validation_at=(1,)), config(on_divergence="rollback")).run()


def test_patience_stops_after_that_many_validations_without_improvement():
    scores = [0.5, 0.6, 0.6, 0.59, 0.6, 0.9]
    run = TrainingEngine(Regression(scores=scores),
                         config(max_steps=60, selection=Selection("score"), patience=3)).run()
    assert run.stopped == "early_stopping" and run.steps == 40 and run.best_step == 10
    never = TrainingEngine(Regression(scores=scores), config(max_steps=40, selection=Selection("score"))).run()
    assert never.stopped == "completed" and never.best_step == 10  # patience 0: never stops early


@pytest.mark.parametrize("greater", [True, False])
def test_the_best_validated_weights_are_restored(greater):
    scores = [0.3, 0.5, 0.4, 0.1, 0.2]  # validations at steps 0, 10, 20, 30, 40
    stage = Regression(scores=scores)
    run = TrainingEngine(stage, config(selection=Selection("score", greater_is_better=greater))).run()
    expected = 2 if greater else 4  # the 2nd validation (0.5) or the 4th (0.1)
    assert run.best_step == (expected - 1) * 10
    assert torch.equal(stage.model.weight, stage.weights_at[expected])


def test_the_tolerance_and_the_tie_break_decide_near_equal_validations():
    rule = Selection("rank", greater_is_better=False, decimals=2, tie_break="cos")
    assert rule.is_better({"rank": 1.5, "cos": 0.1}, {"rank": 1.6, "cos": 0.9})
    assert rule.is_better({"rank": 1.601, "cos": 0.8}, {"rank": 1.6, "cos": 0.7})       # a tie: cos decides
    assert not rule.is_better({"rank": 1.601, "cos": 0.6}, {"rank": 1.6, "cos": 0.7})
    tolerant = Selection("cos", tolerance=1e-3)
    assert not tolerant.is_better({"cos": 0.5009}, {"cos": 0.5})
    assert tolerant.is_better({"cos": 0.502}, {"cos": 0.5})
    assert Selection("cos").is_better({"spread": 0.3}, {"cos": 0.9})  # nothing to select on: the latest
    assert Selection("cos").best_index([{"cos": 0.4}, {"cos": 0.6}, {"cos": 0.6}]) == 1


def _interrupted_then_resumed(tmp_path: Path, interrupt_at: int) -> tuple[TrainingEngine, Regression, object]:
    checkpoint = CheckpointConfig(tmp_path / "ck", every=7, run_key="toy")
    cfg = config(checkpoint=checkpoint)
    with pytest.raises(KeyboardInterrupt):
        TrainingEngine(Regression(interrupt_at=interrupt_at), cfg).run()
    stage = Regression()
    engine = TrainingEngine(stage, cfg)
    return engine, stage, engine.run()


@pytest.mark.parametrize("interrupt_at", [14, 23])  # at a checkpoint step, and between two
def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path, interrupt_at):
    straight_stage = Regression()
    straight = TrainingEngine(straight_stage, config()).run()
    engine, stage, resumed = _interrupted_then_resumed(tmp_path, interrupt_at)
    assert resumed.resumed_from == interrupt_at
    assert stage.steps_seen[0] == interrupt_at
    assert torch.equal(stage.model.weight, straight_stage.model.weight)
    assert resumed.history == straight.history and resumed.evaluations == straight.evaluations
    assert resumed.best_step == straight.best_step


def test_an_interrupted_run_says_where_its_checkpoint_is_and_a_rerun_says_it_resumes(tmp_path, caplog):
    """Interrupted, a run with a checkpoint names it and the step a re-run resumes from (a user saw only
    `aborted`); the re-run says it resumes, from which step of how many and which checkpoint."""
    checkpoint = CheckpointConfig(tmp_path / "ck", every=7, run_key="toy")
    with caplog.at_level("INFO", logger="tava_core.training"), pytest.raises(KeyboardInterrupt):
        TrainingEngine(Regression(interrupt_at=23), config(checkpoint=checkpoint)).run()
    told = [r for r in caplog.records if r.levelname == "WARNING" and " interrupted at step" in r.getMessage()]
    assert len(told) == 1, caplog.text
    assert (f"toy interrupted at step 23 of 40; checkpoint saved in {tmp_path / 'ck'}: re-running the same command "
            "resumes from step 23") == told[0].getMessage()
    caplog.clear()
    with caplog.at_level("INFO", logger="tava_core.training"):
        resumed = TrainingEngine(Regression(), config(checkpoint=checkpoint)).run()
    assert resumed.resumed_from == 23
    assert f"toy: resuming from step 23 of 40 (checkpoint {tmp_path / 'ck'})" in caplog.messages, caplog.text
    assert not any(" interrupted at step" in m for m in caplog.messages), caplog.messages


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason="SIGTERM is turned into a flag in the main thread only; elsewhere it would end the runner")
def test_a_sigterm_stop_says_where_its_checkpoint_is(tmp_path, caplog):
    """Stopped by SIGTERM (through the caller's handler, as in a flow), the saved checkpoint is named too."""
    checkpoint = CheckpointConfig(tmp_path / "ck", every=100, run_key="a")
    before = signal.signal(signal.SIGTERM, _caller_handler)
    try:
        with caplog.at_level("INFO", logger="tava_core.training"), pytest.raises(CallerStop):
            TrainingEngine(Regression(sigterm_at=12), config(checkpoint=checkpoint)).run()
    finally:
        signal.signal(signal.SIGTERM, before)
    assert [m for m in caplog.messages if " interrupted at step" in m] == [
        f"toy interrupted at step 13 of 40; checkpoint saved in {tmp_path / 'ck'}: re-running the same command "
        "resumes from step 13"], caplog.text


def test_an_error_in_a_step_is_not_told_as_resumable(tmp_path, caplog):
    """An ordinary error is the caller's to report: the run does not claim a re-run resumes (it would fail
    the same way), and it is raised as it is."""
    class Broken(Regression):
        def loss(self, step: int):
            if step == 15:
                raise ValueError("a bad batch")
            return super().loss(step)

    with caplog.at_level("INFO", logger="tava_core.training"), pytest.raises(ValueError, match="a bad batch"):
        TrainingEngine(Broken(), config(checkpoint=CheckpointConfig(tmp_path / "ck", every=7, run_key="a"))).run()
    assert not any(" interrupted at step" in m for m in caplog.messages), caplog.text


def test_an_interrupt_before_any_checkpoint_claims_none(tmp_path, caplog):
    with caplog.at_level("INFO", logger="tava_core.training"), pytest.raises(KeyboardInterrupt):
        TrainingEngine(Regression(interrupt_at=0), config(checkpoint=CheckpointConfig(tmp_path / "ck", every=7,
                                                                                      run_key="a"))).run()
    assert not any(" interrupted at step" in m for m in caplog.messages), caplog.text


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason="SIGTERM is turned into a flag in the main thread only; elsewhere it would end the runner")
@pytest.mark.parametrize("checkpointed", [True, False])
def test_sigterm_ends_the_run_after_the_step_and_saves_what_it_can(tmp_path, checkpointed):
    checkpoint = CheckpointConfig(tmp_path / "ck", every=100, run_key="a") if checkpointed else None
    stage, before = Regression(sigterm_at=12), signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        TrainingEngine(stage, config(checkpoint=checkpoint)).run()
    assert stage.steps_seen[-1] == 12          # the step in progress finished; no later one started
    assert signal.getsignal(signal.SIGTERM) is before   # the caller's handler (Prefect's, in a flow) is back
    if checkpointed:                           # saved at the signal, not at the (far) schedule: resumes there
        resumed_stage = Regression()
        resumed = TrainingEngine(resumed_stage, config(checkpoint=checkpoint)).run()
        assert resumed.resumed_from == 13 and resumed_stage.steps_seen[0] == 13 and resumed.steps == 40


class CallerStop(BaseException):
    """What the caller's SIGTERM handler raises (Prefect's raises its TerminationSignal)."""


def _caller_handler(signum, frame):
    raise CallerStop(signum)


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason="SIGTERM is turned into a flag in the main thread only; elsewhere it would end the runner")
def test_sigterm_ends_the_run_with_the_callers_own_exception():
    """In a flow, Prefect's handler is the caller's: the run must end with its TerminationSignal (a run
    cancelled from the UI is then reported as cancelled), raised only after the step in progress."""
    before = signal.signal(signal.SIGTERM, _caller_handler)
    try:
        stage = Regression(sigterm_at=7)
        with pytest.raises(CallerStop):
            TrainingEngine(stage, config()).run()
        assert stage.steps_seen[-1] == 7 and signal.getsignal(signal.SIGTERM) is _caller_handler
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        TrainingEngine(Regression(interrupt_at=9),
                       config(checkpoint=CheckpointConfig(tmp_path / "ck", every=7, run_key="a"))).run()
    with pytest.raises(ConfigError, match="different run"):
        TrainingEngine(Regression(), config(checkpoint=CheckpointConfig(tmp_path / "ck", every=7, run_key="b"))).run()
    fresh = TrainingEngine(Regression(), config(checkpoint=CheckpointConfig(tmp_path / "ck", every=7, run_key="b",
                                                                            resume=False))).run()
    assert fresh.resumed_from is None and fresh.steps == 40
    # a checkpoint of the pre-engine format (no "format" field) is refused, not misread
    state_file = tmp_path / "ck" / "training_state.json"
    state = json.loads(state_file.read_text())
    del state["format"]
    state_file.write_text(json.dumps(state))
    with pytest.raises(ConfigError, match="older tava"):
        TrainingEngine(Regression(), config(checkpoint=CheckpointConfig(tmp_path / "ck", every=7, run_key="b"))).run()


def test_the_time_budget_stops_the_run_and_anneals_the_rate():
    stage = Regression(sleep=0.02)
    run = TrainingEngine(stage, config(max_steps=10_000, time_budget_seconds=0.3, record_lr=True,
                                       schedule=Schedule(total_steps=10_000, decay="linear"))).run()
    assert run.stopped == "time_budget" and 3 <= run.steps < 100
    # by steps the rate would still be ~1.0x; by the clock it is near the end of its decay
    assert run.history[-1]["lr"] < 0.3 * 0.1


def test_weight_averaging_is_validated_and_kept():
    stage = Regression(ema_decay=0.8)
    expected = stage.model.weight.detach().clone()
    raw: list[torch.Tensor] = []
    original = stage.optimizer.step

    def step_and_track(*args, **kwargs):
        out = original(*args, **kwargs)
        raw.append(stage.model.weight.detach().clone())
        return out

    stage.optimizer.step = step_and_track  # type: ignore[method-assign]
    run = TrainingEngine(stage, config(max_steps=20)).run()
    for weight in raw:
        expected = 0.8 * expected + 0.2 * weight
    assert torch.allclose(stage.ema.shadow["weight"], expected, atol=1e-6)
    assert not torch.allclose(raw[-1], expected)           # the average lags the raw weights
    assert torch.equal(stage.model.weight, stage.ema.shadow["weight"])  # and is what training keeps
    assert torch.equal(stage.weights_at[3], stage.ema.shadow["weight"])  # validated: the averaged weights
    assert run.best_step == 20


@pytest.mark.parametrize("step,expected", [(0, 0.1), (4, 0.5), (9, 1.0), (10, 1.0), (55, 0.5), (100, 0.0)])
def test_warmup_then_linear_decay(step, expected):
    assert Schedule(total_steps=100, warmup_steps=10, decay="linear").factor(step) == pytest.approx(expected)


def test_warmup_times_cosine_decay_with_a_floor():
    schedule = Schedule(total_steps=100, warmup_steps=10, decay="cosine", floor=0.1, warmup_overlaps_decay=True,
                        offset=1)
    # step s (0-based) is the adapter's step s + 1
    assert schedule.factor(0) == pytest.approx(0.2 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.01))))
    assert schedule.factor(49) == pytest.approx(0.1 + 0.9 * 0.5)
    assert schedule.factor(99) == pytest.approx(0.1) and schedule.factor(500) == pytest.approx(0.1)
    capped = Schedule(total_steps=100, warmup_steps=10, decay="linear")
    assert capped.progress(20, time_fraction=0.55) == pytest.approx(55.0)
    assert capped.progress(4, time_fraction=0.9) == 4.0  # the warm-up is never skipped


def test_a_progress_bar_in_a_log_file_is_not_redrawn_for_its_loss(capsys, monkeypatch):
    """The loss shown every 10 steps forced a frame each time, whatever the bar's interval: a `tava demo`
    log held a frame every 10 steps of Stage A."""
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    TrainingEngine(Regression(), config(progress="toy", max_steps=40)).run()   # stderr: captured, no terminal
    frames = capsys.readouterr().err.count("\r")
    assert frames <= 3, frames    # the first frame and the last (close), nothing between
