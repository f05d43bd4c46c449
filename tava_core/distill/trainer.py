"""Stage A's part of training: the held-out split, the batch plan, the optimizers and the
distillation step; ``tava_core.training.TrainingEngine`` runs the loop (warm-up + decay, clipping,
validation, early stopping, atomic checkpoints, resume after a crash, a hard stop on NaN/inf).

Reproducible: the split and the batch order are pure functions of (seed, step), and the torch RNG
state (dropout) travels in the checkpoint, so a resumed run walks the same batches.
"""
from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from ..encoders.device import resolve_device
from ..errors import ConfigError
from ..io import stable_hash
from ..training import CheckpointConfig, EngineConfig, Schedule, Selection, TrainingEngine, TrainingStage
from .config import DistillConfig
from .losses import DistillationLoss
from .students import Student

CHECKPOINT_DIR = "checkpoint"
MAX_VALIDATION = 2000
MIN_VALIDATION = 8
SELECTION_TOLERANCE = 1e-5  # held-out cosine gain that counts as better


@dataclass
class Split:
    train: np.ndarray
    validation: np.ndarray
    # times each text is drawn per pass (DistillConfig.dataset_weights), indexed by text; None = once each
    draws: Optional[np.ndarray] = None

    def drawn(self) -> np.ndarray:
        """The training rows one pass draws: each training row ``draws[row]`` times."""
        return self.train if self.draws is None else np.repeat(self.train, self.draws[self.train])


def split_indices(n: int, fraction: float, seed: int) -> Split:
    """A seeded held-out slice (``fraction`` of ``n``, at least 8, at most 2000)."""
    n_val = validation_size(n, fraction)
    order = np.random.default_rng(seed).permutation(n)
    return Split(train=np.sort(order[n_val:]), validation=np.sort(order[:n_val]))


def validation_size(n_texts: int, fraction: float) -> int:
    return min(MAX_VALIDATION, max(MIN_VALIDATION, int(round(n_texts * fraction))))


def training_size(n_texts: int, config: DistillConfig) -> int:
    """How many of ``n_texts`` texts Stage A trains on: the rest is the held-out slice."""
    return n_texts - validation_size(n_texts, config.validation_fraction)


def passes(n_texts: int, config: DistillConfig) -> float:
    """How many times ``config.steps`` batches pass over the training part of ``n_texts`` texts."""
    return config.steps * config.batch_size / training_size(n_texts, config)


def most_steps(n_texts: int, config: DistillConfig) -> int:
    """The most steps of ``config.batch_size`` texts that stay within ``max_epochs`` passes over the
    training part of ``n_texts`` texts."""
    return int(config.max_epochs * training_size(n_texts, config) // config.batch_size)


def fitted_to_corpus(n_texts: int, config: DistillConfig) -> DistillConfig:
    """``config`` with its steps fitted to ``n_texts`` when ``fit_steps`` is on: cut to what
    ``max_epochs`` allows on a small corpus, grown to ``min_epochs`` passes (at most
    ``max_fitted_steps_factor`` x ``steps``) on a big one. The warm-up scales by the same factor, and
    the validation / checkpoint intervals when cut, so the schedule keeps its shape. Otherwise (or
    when the steps fit) ``config`` itself. A corpus too small for even one batch is left to
    :func:`check_corpus_size` to refuse."""
    if not config.fit_steps:
        return config
    most = most_steps(n_texts, config)
    if config.steps > most >= 1:
        scale = most / config.steps
        return config.model_copy(update={
            "steps": most, "warmup_steps": int(config.warmup_steps * scale),
            "eval_every": max(1, min(config.eval_every, round(config.eval_every * scale))),
            "checkpoint_every": max(1, min(config.checkpoint_every, round(config.checkpoint_every * scale)))})
    wanted = min(math.ceil(config.min_epochs * training_size(n_texts, config) / config.batch_size),
                 int(config.steps * config.max_fitted_steps_factor))
    if wanted <= config.steps:
        return config
    return config.model_copy(update={"steps": wanted,
                                     "warmup_steps": round(config.warmup_steps * wanted / config.steps)})


def check_corpus_size(n_texts: int, config: DistillConfig, *, source: str = "") -> Split:
    """Refuse, before any training, a corpus too small for the batch size or the requested steps."""
    n_train = training_size(n_texts, config)
    n_val = n_texts - n_train
    if n_train < config.batch_size:
        raise ConfigError(f"the corpus has {n_texts} texts: after {n_val} held out for validation, fewer than "
                          f"one batch of {config.batch_size} remains", path=source or None,
                          hint="add text (ingest a larger corpus) or lower --batch-size")
    epochs = passes(n_texts, config)
    if epochs > config.max_epochs:
        raise ConfigError(f"{config.steps} steps x {config.batch_size} texts would pass over the {n_train} "
                          f"training texts {epochs:.1f} times (max_epochs={config.max_epochs:g}); the student "
                          "would memorise them", path=source or None,
                          hint=f"give more text, or at most --steps {most_steps(n_texts, config)}, "
                               "or --fit-steps (train that many), or raise --max-epochs")
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


def lr_schedule(config: DistillConfig) -> Schedule:
    """Linear warm-up, then linear or cosine decay to 0 (or constant) over ``config.steps``."""
    return Schedule(total_steps=config.steps, warmup_steps=config.warmup_steps, decay=config.schedule)


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


def training_device(requested: str) -> torch.device:
    """The device Stage A trains on: ``requested`` resolved, except that 'auto' never picks Apple's MPS,
    which has no sparse gradients (a static student's token table) -- a GPU when there is one, else the CPU."""
    device = resolve_device(requested)
    return torch.device("cpu") if requested == "auto" and device.type == "mps" else device


def student_device(student: Student) -> torch.device:
    """Where the student's weights are (the device its inputs and targets must be moved to)."""
    return next(student.parameters()).device


def on_device(features: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """A batch from ``Student.prepare`` (always built on the CPU) moved to ``device``."""
    return {name: tensor.to(device, non_blocking=True) for name, tensor in features.items()}


def target_tensor(vectors: np.ndarray, device: torch.device) -> torch.Tensor:
    """Teacher vectors (numpy, float32) as a tensor on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(vectors)).to(device, non_blocking=True)


@torch.no_grad()
def validation_cosine(student: Student, texts: Sequence[str], teacher: np.ndarray, batch_size: int = 256) -> float:
    """Mean cosine between the student's and the teacher's vectors of held-out texts."""
    was_training = student.training
    student.eval()
    device = student_device(student)
    total = 0.0
    for start in range(0, len(texts), batch_size):
        out = student(on_device(student.prepare(texts[start:start + batch_size]), device))
        target = target_tensor(teacher[start:start + batch_size], device)
        total += float(torch.nn.functional.cosine_similarity(out, target, dim=-1).sum())
    student.train(was_training)
    return total / max(1, len(texts))


@torch.no_grad()
def teacher_neighbours(teacher: np.ndarray, bank_rows: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """(n, k) row indices: for every row of ``teacher``, its ``k`` most cosine-similar rows among
    ``bank_rows`` (itself excluded), most similar first. Validation rows get candidates too (unused)
    but are never candidates: the held-out texts stay out of training."""
    bank_rows = np.asarray(bank_rows, dtype=np.int64)
    if len(bank_rows) <= k:
        raise ConfigError(f"the neighbour-ranking term needs more than rank_candidates={k} training texts, "
                          f"got {len(bank_rows)}", hint="lower --rank-candidates or add text")
    unit = torch.nn.functional.normalize(torch.from_numpy(np.asarray(teacher, dtype=np.float32)), dim=-1)
    bank = unit[torch.from_numpy(bank_rows)]
    position = np.full(len(unit), -1, dtype=np.int64)          # row -> its column in the bank (-1: not in it)
    position[bank_rows] = np.arange(len(bank_rows))
    out = np.empty((len(unit), k), dtype=np.int64)
    for start in range(0, len(unit), chunk):
        sims = unit[start:start + chunk] @ bank.T
        own = position[start:start + chunk]
        inside = np.flatnonzero(own >= 0)
        sims[inside, own[inside]] = -float("inf")                 # a text is never its own candidate
        out[start:start + chunk] = bank_rows[sims.topk(k, dim=1).indices.numpy()]
    return out


class Optimization:
    """AdamW (+ SparseAdam for a static student's token table, whose gradient touches only the
    tokens of the batch); clipping covers the dense part only."""

    def __init__(self, student: Student, config: DistillConfig) -> None:
        sparse = [p for p in getattr(student, "sparse_parameters", lambda: [])() if p.requires_grad]
        sparse_ids = {id(p) for p in sparse}
        self.dense = [p for p in student.parameters() if p.requires_grad and id(p) not in sparse_ids]
        lr = config.resolved_lr()
        self.optimizers: list[torch.optim.Optimizer] = [
            torch.optim.AdamW(self.dense, lr=lr, weight_decay=config.weight_decay)]
        if sparse:
            self.optimizers.append(torch.optim.SparseAdam(sparse, lr=lr))
        self.schedule, self.base_lr = lr_schedule(config), lr

    def set_progress(self, step: int, time_fraction: float = 0.0) -> None:
        """Set the learning rate for ``step`` as the engine does (``Schedule.progress``)."""
        factor = self.schedule.factor(self.schedule.progress(step, time_fraction))
        for optimizer in self.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = self.base_lr * factor

    @property
    def lr(self) -> float:
        return float(self.optimizers[0].param_groups[0]["lr"])


class DistillStage(TrainingStage):
    """The distillation step: a batch of texts (length-grouped, a pure function of the step), the
    student's vectors against the teacher's under ``DistillationLoss``; validation = held-out cosine."""

    label = "distill"
    divergence_hint = "lower --lr, raise --warmup-steps, or check the teacher vectors for NaN/inf"

    def __init__(self, trainer: "Trainer") -> None:
        self.trainer = trainer
        self.optimization = Optimization(trainer.student, trainer.config)
        lengths = np.fromiter((len(t) for t in trainer.texts), dtype=np.int64, count=len(trainer.texts))
        self.batches = BatchPlan(trainer.split.drawn(), trainer.config.batch_size, trainer.config.seed, lengths)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"student": self.trainer.student}

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return self.optimization.optimizers

    def clip_parameters(self) -> list[torch.Tensor]:
        return [*self.optimization.dense]

    def start(self) -> None:
        self.trainer.student.train()

    def batch(self, step: int) -> tuple[dict[str, torch.Tensor], torch.Tensor, Optional[torch.Tensor]]:
        """Step ``step``'s inputs, teacher vectors and (with the ranking term) candidates, on the student's
        device."""
        trainer, idx = self.trainer, self.batches(step)
        device = student_device(trainer.student)
        features = on_device(trainer.student.prepare([trainer.texts[i] for i in idx]), device)
        candidates = (None if trainer.neighbours is None
                      else target_tensor(trainer.teacher[trainer.neighbours[idx]], device))
        return features, target_tensor(trainer.teacher[idx], device), candidates

    def loss(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        features, targets, candidates = self.batch(step)
        loss, parts = self.trainer.loss_fn(self.trainer.student(features), targets, candidates)
        return loss, {"loss": float(loss.detach()), **parts}

    def validate(self) -> dict[str, float]:
        return {"cosine": validation_cosine(self.trainer.student, self.trainer.val_texts, self.trainer.val_teacher)}


class Trainer:
    """Trains ``student`` towards ``teacher_vectors`` of ``texts``; checkpoints into ``work_dir``."""

    def __init__(self, student: Student, texts: Sequence[str], teacher_vectors: np.ndarray, config: DistillConfig,
                 work_dir: str | Path, *, split: Split | None = None, data_key: str = "",
                 progress: bool = True) -> None:
        if len(texts) != len(teacher_vectors):
            raise ValueError(f"{len(texts)} texts but {len(teacher_vectors)} teacher vectors")
        # the student trains where config.device says ('auto': a GPU when there is one) and is handed back
        # on the CPU, where saving, the speed check and every later step expect it
        self.device = training_device(config.device)
        self.student = student
        self.texts = list(texts)
        self.teacher = np.ascontiguousarray(teacher_vectors, dtype=np.float32)
        self.config = config
        self.work_dir = Path(work_dir)
        self.split = split or check_corpus_size(len(self.texts), config)
        self.run_key = stable_hash({"config": config.training_key(), "data": data_key, "kind": student.kind}, 24)
        self.progress = progress
        self.loss_fn = DistillationLoss(config.alpha_cos, config.alpha_mse, config.temperature, config.alpha_sim,
                                        config.alpha_cross, config.alpha_rank)
        # the neighbour-ranking term's hard candidates: found once, from the teacher's vectors alone
        self.neighbours = (teacher_neighbours(self.teacher, self.split.train, config.rank_candidates)
                           if config.alpha_rank else None)
        self.val_texts = [self.texts[i] for i in self.split.validation]
        self.val_teacher = self.teacher[self.split.validation]

    @property
    def checkpoint_dir(self) -> Path:
        return self.work_dir / CHECKPOINT_DIR

    def clear_checkpoints(self) -> None:
        shutil.rmtree(self.work_dir, ignore_errors=True)

    def engine_config(self) -> EngineConfig:
        config = self.config
        return EngineConfig(
            max_steps=config.steps, eval_every=config.eval_every,
            selection=Selection("cosine", greater_is_better=True, tolerance=SELECTION_TOLERANCE),
            patience=config.patience, schedule=lr_schedule(config), grad_clip=config.grad_clip,
            on_divergence="stop", log_every=1, record_lr=True,
            time_budget_seconds=config.time_budget_minutes * 60 if config.time_budget_minutes else None,
            checkpoint=CheckpointConfig(self.checkpoint_dir, config.checkpoint_every, self.run_key, config.resume),
            progress=f"distill {self.student.kind}" if self.progress else None, error_path=self.work_dir)

    def train(self) -> TrainResult:
        config = self.config
        torch.manual_seed(config.seed)
        if not config.resume:
            self.clear_checkpoints()
        self.student.to(self.device)  # before the optimizers are made: they hold the parameters
        try:
            stage = DistillStage(self)
            run = TrainingEngine(stage, self.engine_config()).run()
        finally:
            self.student.to("cpu")
        self.student.eval()
        validation = [{"step": row["step"], "cosine": row["cosine"]} for row in run.evaluations]
        return TrainResult(
            steps_done=run.steps, stopped=run.stopped, best_step=run.best_step,
            best_validation_cosine=run.best_metrics["cosine"], initial_validation_cosine=run.initial_metrics["cosine"],
            history=run.history, validation=validation, train_seconds=run.seconds,
            texts_per_second=(run.steps - (run.resumed_from or 0)) * config.batch_size / max(1e-9, run.run_seconds),
            resumed_from=run.resumed_from)
