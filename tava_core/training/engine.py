"""``TrainingEngine``: the one training loop every stage runs.

A stage (``TrainingStage``) supplies its modules, optimizers, a loss for each step and a validation;
the engine owns the rest: warm-up and decay (``Schedule``), gradient clipping, optional weight
averaging, validation every N steps with one selection rule (``Selection``), patience, best-state
restore, a time budget, atomic checkpoints and resume, a SIGTERM stop, one divergence policy
(``stop``: raise ``TrainingError``; ``rollback``: restore the last good state and lower the learning
rate), a progress bar and the loss/metric curves.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn, Optional

import torch

from ..errors import TrainingError
from .checkpoint import (
    STATE_FILE,
    Checkpoint,
    CheckpointConfig,
    clear_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from .schedule import Schedule
from .selection import Selection
from .stage import Diverged, TrainingStage

log = logging.getLogger(__name__)

DivergencePolicy = Literal["stop", "rollback"]
State = dict[str, dict[str, torch.Tensor]]


@dataclass(frozen=True)
class EngineConfig:
    """How the loop runs; each stage builds one from its own config."""

    max_steps: int
    eval_every: int
    selection: Selection
    patience: int = 0                      # validations without improvement before stopping; 0 = never
    schedule: Schedule = field(default_factory=Schedule)
    grad_clip: Optional[float] = 1.0
    on_divergence: DivergencePolicy = "stop"
    max_rollbacks: int = 3                 # rollback: failures allowed before the run raises
    rollback_lr_factor: float = 0.5        # rollback: the learning rate is multiplied by this each time
    time_budget_seconds: Optional[float] = None
    log_every: int = 1                     # per-step history every N steps (and step 1); 0 = none
    record_lr: bool = False                # history rows carry the learning rate
    checkpoint: Optional[CheckpointConfig] = None
    progress: Optional[str] = None         # progress-bar title; None = no bar
    progress_leave: bool = True
    error_path: Optional[Path] = None      # named in TrainingError


@dataclass
class EngineResult:
    steps: int                              # steps taken (rolled-back ones included)
    stopped: str                            # "completed" | "early_stopping" | "time_budget"
    best_step: int
    best_metrics: dict[str, float]
    initial_metrics: dict[str, float]
    history: list[dict[str, Any]]           # per logged step: losses (and lr)
    evaluations: list[dict[str, Any]]       # per validation: {"step", **metrics}
    rollbacks: int = 0
    seconds: float = 0.0                    # training time over every run of this job (resumes add up)
    run_seconds: float = 0.0                # this process only
    resumed_from: Optional[int] = None


class _StopRequest:
    """Turns SIGTERM into a flag the loop checks between steps (main thread only)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> "_StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def stop_now(self) -> NoReturn:
        """Called by the loop once the step is done (and saved): raise what the handler this one replaced
        would have raised -- Prefect's raises its TerminationSignal, which a flow cancelled from the UI must
        end with to be reported as cancelled -- else KeyboardInterrupt."""
        if callable(self._previous):
            self._previous(signal.SIGTERM, None)
        raise KeyboardInterrupt("SIGTERM")

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _clone(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


def apply_loss(stage: TrainingStage, loss: torch.Tensor, logs: dict[str, float], grad_clip: Optional[float],
               step: int = 0) -> dict[str, float]:
    """Backward, clipping, the optimizers' steps and the average's update for one ``loss`` of
    ``stage``; raises ``Diverged`` on a non-finite loss or gradient (nothing is stepped then)."""
    if not torch.isfinite(loss):
        raise Diverged(f"loss became {float(loss.detach())} at step {step + 1} "
                       f"({', '.join(f'{k}={v:.3g}' for k, v in logs.items())})")
    optimizers = stage.optimizers()
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        grad_norm = torch.nn.utils.clip_grad_norm_(stage.clip_parameters(), grad_clip)
        if not torch.isfinite(grad_norm):
            raise Diverged(f"gradient norm became {float(grad_norm)} at step {step + 1}")
    for optimizer in optimizers:
        optimizer.step()
    if stage.ema is not None:
        stage.ema.update()
    return logs


class TrainingEngine:
    """Runs ``stage`` under ``config``; ``run()`` leaves the stage's modules at their best validated state."""

    def __init__(self, stage: TrainingStage, config: EngineConfig) -> None:
        self.stage, self.config = stage, config
        self.lr_scale = 1.0
        self._all_optimizers = stage.optimizers() + stage.extra_optimizers()
        for optimizer in self._all_optimizers:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])

    # ------------------------------------------------------------------ state
    def weights(self) -> State:
        """The modules' weights (and the average under EMA), cloned: what selection keeps."""
        state = {name: _clone(module.state_dict()) for name, module in self.stage.modules().items()}
        if self.stage.ema is not None:
            state["ema"] = self.stage.ema.state_dict()
        return state

    def load_weights(self, state: State) -> None:
        for name, module in self.stage.modules().items():
            module.load_state_dict(state[name])
        if self.stage.ema is not None and "ema" in state:
            self.stage.ema.load_state_dict(state["ema"])

    def _snapshot(self) -> dict[str, Any]:
        """Weights and optimizer moments: what a rollback returns to."""
        return {"weights": self.weights(),
                "optimizers": [copy.deepcopy(o.state_dict()) for o in self._all_optimizers]}

    def _restore(self, snapshot: dict[str, Any]) -> None:
        self.load_weights(snapshot["weights"])
        for optimizer, saved in zip(self._all_optimizers, snapshot["optimizers"], strict=False):
            optimizer.load_state_dict(saved)

    # ------------------------------------------------------------------ pieces of a step
    def set_lr(self, step: int, time_fraction: float = 0.0) -> None:
        schedule = self.config.schedule
        factor = schedule.factor(schedule.progress(step, time_fraction)) * self.lr_scale
        for optimizer in self._all_optimizers:
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * factor

    @property
    def lr(self) -> float:
        return float(self._all_optimizers[0].param_groups[0]["lr"])

    def optimize(self, step: int) -> dict[str, float]:
        """One step: the stage's loss, then ``apply_loss``. Raises ``Diverged`` (nothing is stepped then)."""
        loss, logs = self.stage.loss(step)
        return apply_loss(self.stage, loss, logs, self.config.grad_clip, step)

    def validate(self, step: int) -> dict[str, float]:
        """The stage's validation (of the averaged weights under EMA); a non-finite primary metric diverges."""
        with self.stage.ema.averaged() if self.stage.ema is not None else contextlib.nullcontext():
            metrics = self.stage.validate()
        value = metrics.get(self.config.selection.metric)
        if value is not None and not math.isfinite(value):
            raise Diverged(f"validation {self.config.selection.metric} became {value} at step {step}")
        return metrics

    def _diverged(self, reason: str, step: int, good: Optional[dict[str, Any]]) -> None:
        """Apply the divergence policy: raise (stop), or restore ``good`` and lower the rate (rollback)."""
        config, label = self.config, self.stage.label
        if config.on_divergence == "stop" or good is None:
            raise TrainingError(f"{label}: {reason}; training stopped and nothing was saved",
                                path=config.error_path, hint=self.stage.divergence_hint)
        self.rollbacks += 1
        if self.rollbacks > config.max_rollbacks:
            raise TrainingError(f"{label}: training diverged at step {step} ({reason}) and {config.max_rollbacks} "
                                "rollbacks did not help; nothing was saved", path=config.error_path,
                                hint=self.stage.divergence_hint)
        log.warning("%s step %d: %s; rolling back to the last good state, learning rate x%g", label, step, reason,
                    config.rollback_lr_factor)
        self._restore(good)
        self.lr_scale *= config.rollback_lr_factor

    # ------------------------------------------------------------------ checkpoints
    def _save(self, loop: "_Loop") -> None:
        assert self.config.checkpoint is not None
        save_checkpoint(self.config.checkpoint, Checkpoint(
            weights={name: m.state_dict() for name, m in self.stage.modules().items()}, best=loop.best,
            optimizers=[o.state_dict() for o in self._all_optimizers], torch_rng=torch.get_rng_state(),
            state={**loop.to_json(), "lr_scale": self.lr_scale, "rollbacks": self.rollbacks},
            cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None))
        loop.last_checkpoint = loop.step

    def _resume(self) -> Optional["_Loop"]:
        """The loop state of this run's checkpoint (weights, optimizers and RNG restored), or None."""
        checkpoint_config = self.config.checkpoint
        if checkpoint_config is None:
            return None
        if not checkpoint_config.resume:
            clear_checkpoint(checkpoint_config)
            return None
        saved = load_checkpoint(checkpoint_config, list(self.stage.modules()))
        if saved is None:
            return None
        for name, module in self.stage.modules().items():
            module.load_state_dict(saved.weights[name])
        for optimizer, state in zip(self._all_optimizers, saved.optimizers, strict=False):
            optimizer.load_state_dict(state)
        torch.set_rng_state(saved.torch_rng)
        if saved.cuda_rng is not None and torch.cuda.is_available() and len(saved.cuda_rng) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(saved.cuda_rng)
        self.lr_scale = float(saved.state.get("lr_scale", 1.0))
        self.rollbacks = int(saved.state.get("rollbacks", 0))
        state = saved.state
        step = int(state["step"])
        log.info("%s: resuming from step %d of %d (checkpoint %s)", self.stage.label, step, self.config.max_steps,
                 checkpoint_config.directory)
        return _Loop(step=step, history=state["history"], evaluations=state["evaluations"],
                     best_metrics=state["best_metrics"], best_step=state["best_step"], bad_evals=state["bad_evals"],
                     best=saved.best, elapsed_before=float(state.get("train_seconds", 0.0)), resumed_from=step,
                     last_checkpoint=step)

    def _tell_resumable(self, loop: "_Loop", bar: Any) -> None:
        """On an interrupt: say where the checkpoint is and the step a re-run resumes from (nothing when
        there is no checkpoint to resume). The progress bar is closed first, so the line is not torn."""
        checkpoint = self.config.checkpoint
        if checkpoint is None or not loop.last_checkpoint or not (checkpoint.directory / STATE_FILE).is_file():
            return
        if bar is not None:
            bar.close()
        rerun = "re-running the same command" if checkpoint.resume else "re-running without --no-resume"
        log.warning("%s interrupted at step %d of %d; checkpoint saved in %s: %s resumes from step %d",
                    self.stage.label, loop.step, self.config.max_steps, checkpoint.directory, rerun,
                    loop.last_checkpoint)

    # ------------------------------------------------------------------ the loop
    def _start(self) -> "_Loop":
        """Resume from a checkpoint, or validate the untrained model (the first best state)."""
        self.rollbacks = 0
        loop = self._resume() or _Loop()
        if not loop.evaluations:
            try:
                initial = self.validate(0)
            except Diverged as exc:
                raise TrainingError(f"{self.stage.label}: the model is broken before training starts ({exc})",
                                    path=self.config.error_path,
                                    hint="check the inputs, or warm-start from a healthy model") from None
            loop.evaluations.append({"step": 0, **initial})
            loop.best_metrics, loop.best = initial, self.weights()
        if self.config.on_divergence == "rollback":
            loop.good = self._snapshot()
        return loop

    def _step(self, loop: "_Loop") -> Optional[dict[str, float]]:
        """One training step; its logs, or None when it diverged and was rolled back."""
        budget = self.config.time_budget_seconds
        self.set_lr(loop.step, loop.elapsed() / budget if budget else 0.0)
        try:
            logs = self.optimize(loop.step)
        except Diverged as exc:
            loop.step += 1
            self._diverged(str(exc), loop.step, loop.good)
            return None
        loop.step += 1
        config = self.config
        if config.log_every and (loop.step % config.log_every == 0 or loop.step == 1):
            loop.history.append({"step": loop.step, **logs, **({"lr": self.lr} if config.record_lr else {})})
        return logs

    def _validate_and_select(self, loop: "_Loop") -> bool:
        """Validate; keep the state if it is the best so far, count patience. False when rolled back."""
        try:
            metrics = self.validate(loop.step)
        except Diverged as exc:
            self._diverged(str(exc), loop.step, loop.good)
            return False
        loop.evaluations.append({"step": loop.step, **metrics})
        if loop.good is not None:
            loop.good = self._snapshot()
        if self.config.selection.is_better(metrics, loop.best_metrics):
            loop.best_metrics, loop.best_step, loop.bad_evals = metrics, loop.step, 0
            loop.best = loop.good["weights"] if loop.good is not None else self.weights()
        else:
            loop.bad_evals += 1
            if self.config.patience and loop.bad_evals >= self.config.patience:
                loop.stopped = "early_stopping"
        return True

    def _progress_bar(self, loop: _Loop) -> Any:
        """A progress bar when the config asks for one, else None."""
        if self.config.progress is None:
            return None
        from ..progress import progress_bar

        return progress_bar(total=self.config.max_steps, initial=loop.step, desc=self.config.progress, unit="step",
                            leave=self.config.progress_leave)

    @staticmethod
    def _show_progress(bar: Any, loop: _Loop, logs: dict[str, float]) -> None:
        bar.update(1)
        if loop.step % 10 == 0 and logs:
            bar.set_postfix(loss=f"{next(iter(logs.values())):.4f}", refresh=False)   # drawn at the next frame

    def _check_budget_and_checkpoint(self, loop: _Loop, stop: _StopRequest) -> None:
        """After a step (and its validation): stop on the time budget; checkpoint on schedule, or save and
        stop at once when SIGTERM arrived."""
        config = self.config
        if config.time_budget_seconds and loop.elapsed() > config.time_budget_seconds:
            loop.stopped = "time_budget"
        if stop.requested:
            if config.checkpoint is not None:
                self._save(loop)
            # Without a checkpoint there is nothing to save, but the run must still end: the handler
            # replaced the caller's (Prefect's), so ignoring the flag would ignore the signal.
            stop.stop_now()
        if config.checkpoint is not None and loop.step % config.checkpoint.every == 0 and loop.step < config.max_steps:
            self._save(loop)

    def run(self) -> EngineResult:
        config, stage = self.config, self.stage
        loop = self._start()
        loop.started = time.monotonic()  # the clock (and the time budget) counts training, not the first validation
        initial_metrics = {k: v for k, v in loop.evaluations[0].items() if k != "step"}
        bar = self._progress_bar(loop)
        stage.start()
        try:
            with _StopRequest() as stop:
                while loop.step < config.max_steps:
                    logs = self._step(loop)
                    if logs is None:
                        continue
                    if bar is not None:
                        self._show_progress(bar, loop, logs)
                    if loop.step % config.eval_every == 0 or loop.step == config.max_steps:
                        if not self._validate_and_select(loop):
                            continue
                    self._check_budget_and_checkpoint(loop, stop)
                    if loop.stopped != "completed":
                        break
        except KeyboardInterrupt:
            # keep the work done so far: a re-run resumes here
            if config.checkpoint is not None and loop.step != loop.last_checkpoint:
                with contextlib.suppress(Exception):
                    self._save(loop)
            self._tell_resumable(loop, bar)
            raise
        except BaseException as exc:
            # the caller's own stop (Prefect's TerminationSignal after SIGTERM; saved above) is resumable;
            # an ordinary error is the caller's to report, with no resume hint
            if not isinstance(exc, Exception):
                self._tell_resumable(loop, bar)
            raise
        finally:
            if bar is not None:
                bar.close()
        if loop.best is not None:
            self.load_weights(loop.best)  # the best validated weights, not merely the last
        if stage.ema is not None:         # what was validated is what is kept
            stage.ema.copy_to_module()
        return EngineResult(steps=loop.step, stopped=loop.stopped, best_step=loop.best_step,
                            best_metrics=loop.best_metrics, initial_metrics=initial_metrics, history=loop.history,
                            evaluations=loop.evaluations, rollbacks=self.rollbacks, seconds=loop.elapsed(),
                            run_seconds=time.monotonic() - loop.started, resumed_from=loop.resumed_from)


@dataclass
class _Loop:
    """Where a run is: step, curves, the best state so far and patience; what a checkpoint stores."""

    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    best_metrics: dict[str, float] = field(default_factory=dict)
    best_step: int = 0
    bad_evals: int = 0
    best: Optional[State] = None                # the best validated weights
    good: Optional[dict[str, Any]] = None       # rollback: the last validated weights and optimizer moments
    elapsed_before: float = 0.0                 # training time of earlier (interrupted) runs
    resumed_from: Optional[int] = None
    stopped: str = "completed"
    last_checkpoint: int = 0
    started: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.started

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "history": self.history, "evaluations": self.evaluations,
                "best_metrics": self.best_metrics, "best_step": self.best_step, "bad_evals": self.bad_evals,
                "train_seconds": self.elapsed()}
