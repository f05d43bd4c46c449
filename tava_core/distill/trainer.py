"""The training loop: AdamW, warm-up + decay, clipping, held-out validation, early stopping,
atomic checkpoints, resume after a crash, and a hard stop on NaN/inf.

Reproducible: the split and the batch order are pure functions of (seed, step), and the torch RNG
state (dropout) travels in the checkpoint, so a resumed run walks the same batches.
"""
from __future__ import annotations

import contextlib
import logging
import math
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from ..errors import ConfigError, TrainingError
from ..io import atomic_directory, read_json, stable_hash, write_json
from .config import DistillConfig
from .losses import DistillationLoss
from .students import Student

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
MAX_VALIDATION = 2000
MIN_VALIDATION = 8


@dataclass
class Split:
    train: np.ndarray
    validation: np.ndarray


def split_indices(n: int, fraction: float, seed: int) -> Split:
    """A seeded held-out slice (``fraction`` of ``n``, at least 8, at most 2000)."""
    n_val = min(MAX_VALIDATION, max(MIN_VALIDATION, int(round(n * fraction))))
    order = np.random.default_rng(seed).permutation(n)
    return Split(train=np.sort(order[n_val:]), validation=np.sort(order[:n_val]))


def check_corpus_size(n_texts: int, config: DistillConfig, *, source: str = "") -> Split:
    """Refuse, before any training, a corpus too small for the batch size or the requested steps."""
    n_val = min(MAX_VALIDATION, max(MIN_VALIDATION, int(round(n_texts * config.validation_fraction))))
    n_train = n_texts - n_val
    if n_train < config.batch_size:
        raise ConfigError(f"the corpus has {n_texts} texts: after {n_val} held out for validation, fewer than "
                          f"one batch of {config.batch_size} remains", path=source or None,
                          hint="add text (ingest a larger corpus) or lower --batch-size")
    epochs = config.steps * config.batch_size / n_train
    if epochs > config.max_epochs:
        raise ConfigError(f"{config.steps} steps x {config.batch_size} texts would pass over the {n_train} "
                          f"training texts {epochs:.1f} times (max_epochs={config.max_epochs:g}); the student "
                          "would memorise them", path=source or None,
                          hint=f"give more text, or at most --steps {int(config.max_epochs * n_train // config.batch_size)}, "
                               "or raise --max-epochs")
    return split_indices(n_texts, config.validation_fraction, config.seed)


LENGTH_GROUP_BATCHES = 32


class BatchPlan:
    """Which texts each step trains on: a seeded permutation per epoch (last partial batch
    dropped), a pure function of (seed, step) so a resumed run walks the same batches.

    With ``lengths``, texts of similar length share a batch (sorted within windows of 32
    batches, then the batches shuffled): padding to the longest text in a batch otherwise costs
    a batch of short spans the price of a batch of passages."""

    def __init__(self, train: np.ndarray, batch_size: int, seed: int, lengths: Optional[np.ndarray] = None) -> None:
        self.train, self.batch_size, self.seed = train, batch_size, seed
        self.lengths = None if lengths is None else np.asarray(lengths)[train]
        self.per_epoch = len(train) // batch_size
        self._epoch, self._batches = -1, np.zeros((0, batch_size), np.int64)

    def _plan(self, epoch: int) -> np.ndarray:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.train))
        order = order[:self.per_epoch * self.batch_size]
        if self.lengths is not None:
            window = self.batch_size * LENGTH_GROUP_BATCHES
            order = np.concatenate([chunk[np.argsort(self.lengths[chunk], kind="stable")]
                                    for chunk in np.split(order, range(window, len(order), window))])
            batches = order.reshape(self.per_epoch, self.batch_size)
            return batches[np.random.default_rng([self.seed, epoch, 1]).permutation(self.per_epoch)]
        return order.reshape(self.per_epoch, self.batch_size)

    def __call__(self, step: int) -> np.ndarray:
        epoch, position = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self._epoch, self._batches = epoch, self._plan(epoch)
        return self.train[self._batches[position]]


def lr_factor(config: DistillConfig, progress_steps: float) -> float:
    """Learning-rate multiplier after ``progress_steps``: linear warm-up, then linear/cosine decay."""
    warmup, total = config.warmup_steps, config.steps
    if warmup and progress_steps < warmup:
        return (progress_steps + 1) / warmup
    if config.schedule == "constant":
        return 1.0
    progress = min(max((progress_steps - warmup) / max(1, total - warmup), 0.0), 1.0)
    if config.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0 - progress


@dataclass
class TrainResult:
    """What a run did: steps, why it stopped, curves and the best held-out cosine."""

    steps_done: int
    stopped: str  # "completed" | "early_stopping" | "time_budget"
    best_step: int
    best_validation_cosine: float
    initial_validation_cosine: float
    history: list[dict[str, float]] = field(default_factory=list)
    validation: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    texts_per_second: float = 0.0
    resumed_from: Optional[int] = None

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("history", "validation")}


@torch.no_grad()
def validation_cosine(student: Student, texts: Sequence[str], teacher: np.ndarray, batch_size: int = 256) -> float:
    """Mean cosine between the student's and the teacher's vectors of held-out texts."""
    was_training = student.training
    student.eval()
    total = 0.0
    for start in range(0, len(texts), batch_size):
        out = student(student.prepare(texts[start:start + batch_size]))
        target = torch.from_numpy(teacher[start:start + batch_size])
        total += float(torch.nn.functional.cosine_similarity(out, target, dim=-1).sum())
    student.train(was_training)
    return total / max(1, len(texts))


class _StopRequest:
    """Turns SIGTERM into a flag the loop checks between steps (main thread only)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> "_StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame) -> None:  # noqa: ANN001
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


class Optimization:
    """AdamW (+ SparseAdam for a static student's token table, whose gradient touches only the
    tokens of the batch) with one warm-up/decay schedule; gradient clipping on the dense part."""

    def __init__(self, student: Student, config: DistillConfig) -> None:
        sparse = [p for p in getattr(student, "sparse_parameters", lambda: [])() if p.requires_grad]
        sparse_ids = {id(p) for p in sparse}
        self.dense = [p for p in student.parameters() if p.requires_grad and id(p) not in sparse_ids]
        lr = config.resolved_lr()
        self.optimizers = [torch.optim.AdamW(self.dense, lr=lr, weight_decay=config.weight_decay)]
        if sparse:
            self.optimizers.append(torch.optim.SparseAdam(sparse, lr=lr))
        self.config = config
        self.grad_clip = config.grad_clip
        self.set_progress(0, 0.0)

    def set_progress(self, step: int, time_fraction: float = 0.0) -> None:
        """Set the learning rate for ``step``. Under a time budget, progress is the larger of
        steps done and time used (as a share of the steps), so a run that the budget will cut
        short still anneals instead of stopping at its peak learning rate."""
        progress = float(step)
        if time_fraction > 0 and step >= self.config.warmup_steps:
            progress = max(progress, time_fraction * self.config.steps)
        factor = lr_factor(self.config, progress)
        for optimizer in self.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = self.config.resolved_lr() * factor

    def zero_grad(self) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)

    def clip(self) -> torch.Tensor:
        return torch.nn.utils.clip_grad_norm_(self.dense, self.grad_clip)

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()

    @property
    def lr(self) -> float:
        return self.optimizers[0].param_groups[0]["lr"]

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for optimizer, saved in zip(self.optimizers, state["optimizers"]):
            optimizer.load_state_dict(saved)


class Trainer:
    """Trains ``student`` towards ``teacher_vectors`` of ``texts``; checkpoints into ``work_dir``."""

    def __init__(self, student: Student, texts: Sequence[str], teacher_vectors: np.ndarray, config: DistillConfig,
                 work_dir: str | Path, *, split: Split | None = None, data_key: str = "",
                 progress: bool = True) -> None:
        if len(texts) != len(teacher_vectors):
            raise ValueError(f"{len(texts)} texts but {len(teacher_vectors)} teacher vectors")
        self.student = student
        self.texts = list(texts)
        self.teacher = np.ascontiguousarray(teacher_vectors, dtype=np.float32)
        self.config = config
        self.work_dir = Path(work_dir)
        self.split = split or check_corpus_size(len(self.texts), config)
        self.run_key = stable_hash({"config": config.training_key(), "data": data_key, "kind": student.kind}, 24)
        self.progress = progress
        self.loss_fn = DistillationLoss(config.alpha_cos, config.alpha_mse, config.temperature, config.alpha_sim)
        self.val_texts = [self.texts[i] for i in self.split.validation]
        self.val_teacher = self.teacher[self.split.validation]

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_dir(self) -> Path:
        return self.work_dir / CHECKPOINT_DIR

    def _save_checkpoint(self, step: int, optimization: Optimization, state: dict[str, Any],
                         best_state: Optional[dict[str, torch.Tensor]]) -> None:
        from safetensors.torch import save_file

        with atomic_directory(self.checkpoint_dir) as tmp:
            save_file(_contiguous(self.student.state_dict()), str(tmp / "student.safetensors"))
            if best_state is not None:
                save_file(_contiguous(best_state), str(tmp / "best.safetensors"))
            # Optimizer moments and RNG state: plain tensors, read back with weights_only=True.
            torch.save({"optimization": optimization.state_dict(), "torch_rng": torch.get_rng_state()},
                       tmp / "optimizer.pt")
            write_json(tmp / "training_state.json", {**state, "step": step, "run_key": self.run_key})

    def _load_checkpoint(self, optimization: Optimization) -> Optional[tuple[dict[str, Any], Optional[dict]]]:
        from safetensors.torch import load_file

        state_file = self.checkpoint_dir / "training_state.json"
        if not state_file.is_file():
            return None
        state = read_json(state_file)
        if state.get("run_key") != self.run_key:
            if not self.config.resume:
                return None
            raise ConfigError("a checkpoint of a different run (other config or data) is in the way",
                              path=self.checkpoint_dir,
                              hint="use --no-resume to discard it, or give this run another --name")
        self.student.load_state_dict(load_file(str(self.checkpoint_dir / "student.safetensors")))
        extra = torch.load(self.checkpoint_dir / "optimizer.pt", weights_only=True)
        optimization.load_state_dict(extra["optimization"])
        torch.set_rng_state(extra["torch_rng"])
        best_file = self.checkpoint_dir / "best.safetensors"
        best = load_file(str(best_file)) if best_file.is_file() else None
        return state, best

    def clear_checkpoints(self) -> None:
        shutil.rmtree(self.work_dir, ignore_errors=True)

    # ------------------------------------------------------------------ loop
    def train(self) -> TrainResult:
        config = self.config
        torch.manual_seed(config.seed)
        if not config.resume:
            self.clear_checkpoints()
        student = self.student
        optimization = Optimization(student, config)

        step = 0
        history: list[dict[str, float]] = []
        validation: list[dict[str, float]] = []
        best_val, best_step, best_state, bad_evals = -2.0, 0, None, 0
        elapsed_before = 0.0
        resumed_from = None
        loaded = self._load_checkpoint(optimization) if config.resume else None
        if loaded is not None:
            state, best_state = loaded
            step = resumed_from = int(state["step"])
            history, validation = state["history"], state["validation"]
            best_val, best_step, bad_evals = state["best_val"], state["best_step"], state["bad_evals"]
            elapsed_before = state.get("train_seconds", 0.0)
            log.info("resuming from the checkpoint at step %d", step)
        if not validation:
            initial = validation_cosine(student, self.val_texts, self.val_teacher)
            validation.append({"step": 0, "cosine": initial})
            best_val, best_state = initial, _clone_state(student)
        initial_val = validation[0]["cosine"]

        def snapshot() -> dict[str, Any]:
            return {"history": history, "validation": validation, "best_val": best_val, "best_step": best_step,
                    "bad_evals": bad_evals, "train_seconds": elapsed_before + time.monotonic() - started}

        started = time.monotonic()
        stopped = "completed"
        last_checkpoint = step
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=config.steps, initial=step, desc=f"distill {student.kind}", unit="step")
        lengths = np.fromiter((len(t) for t in self.texts), dtype=np.int64, count=len(self.texts))
        batches = BatchPlan(self.split.train, config.batch_size, config.seed, lengths)
        student.train()
        try:
            with _StopRequest() as stop:
                while step < config.steps:
                    idx = batches(step)
                    features = student.prepare([self.texts[i] for i in idx])
                    target = torch.from_numpy(self.teacher[idx])
                    out = student(features)
                    loss, parts = self.loss_fn(out, target)
                    if not torch.isfinite(loss):
                        raise TrainingError(
                            f"loss became {float(loss.detach())} at step {step + 1} (parts: {parts}); training stopped and "
                            "nothing was saved", path=self.work_dir,
                            hint="lower --lr, raise --warmup-steps, or check the teacher vectors for NaN/inf")
                    optimization.zero_grad()
                    loss.backward()
                    grad_norm = optimization.clip()
                    if not torch.isfinite(grad_norm):
                        raise TrainingError(f"gradient norm became {float(grad_norm)} at step {step + 1}; training "
                                            "stopped and nothing was saved", path=self.work_dir,
                                            hint="lower --lr or raise --warmup-steps")
                    budget = config.time_budget_minutes
                    used = (elapsed_before + time.monotonic() - started) / (budget * 60) if budget else 0.0
                    optimization.set_progress(step, used)
                    optimization.step()
                    step += 1
                    history.append({"step": step, "loss": float(loss.detach()), "lr": optimization.lr, **parts})
                    if bar is not None:
                        bar.update(1)
                        if step % 10 == 0:
                            bar.set_postfix(loss=f"{float(loss.detach()):.4f}", val=f"{best_val:.4f}")
                    if step % config.eval_every == 0 or step == config.steps:
                        val = validation_cosine(student, self.val_texts, self.val_teacher)
                        validation.append({"step": step, "cosine": val})
                        if not math.isfinite(val):
                            raise TrainingError(f"validation cosine became {val} at step {step}; nothing was saved",
                                                path=self.work_dir, hint="lower --lr")
                        if val > best_val + 1e-5:
                            best_val, best_step, best_state, bad_evals = val, step, _clone_state(student), 0
                        else:
                            bad_evals += 1
                        if config.patience and bad_evals >= config.patience:
                            stopped = "early_stopping"
                    budget = config.time_budget_minutes
                    if budget and elapsed_before + time.monotonic() - started > budget * 60:
                        stopped = "time_budget"
                    if stop.requested:
                        self._save_checkpoint(step, optimization, snapshot(), best_state)
                        last_checkpoint = step
                        raise KeyboardInterrupt("SIGTERM")
                    if step % config.checkpoint_every == 0 and step < config.steps:
                        self._save_checkpoint(step, optimization, snapshot(), best_state)
                        last_checkpoint = step
                    if stopped != "completed":
                        break
        except KeyboardInterrupt:
            # Keep the work done so far: a re-run resumes here.
            if step != last_checkpoint:
                with contextlib.suppress(Exception):
                    self._save_checkpoint(step, optimization, snapshot(), best_state)
            raise
        finally:
            if bar is not None:
                bar.close()
        train_seconds = elapsed_before + time.monotonic() - started
        if best_state is not None:
            student.load_state_dict(best_state)  # the best validated weights, not merely the last
        student.eval()
        done_here = step - (resumed_from or 0)
        return TrainResult(
            steps_done=step, stopped=stopped, best_step=best_step, best_validation_cosine=best_val,
            initial_validation_cosine=initial_val, history=history, validation=validation,
            train_seconds=train_seconds,
            texts_per_second=done_here * config.batch_size / max(1e-9, time.monotonic() - started),
            resumed_from=resumed_from)


def _clone_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous() for k, v in state.items()}

