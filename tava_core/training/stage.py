"""What a stage supplies to the engine: its modules, optimizers, loss step and validation."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Optional

import torch

from .ema import WeightAverage


class Diverged(RuntimeError):
    """A step or a validation produced NaN/inf or broken outputs (the engine's divergence policy decides)."""


class TrainingStage(ABC):
    """One stage's part of a training run; ``TrainingEngine.run`` owns the loop around it.

    Subclasses set ``label`` (for messages and the progress bar) and ``divergence_hint`` (what the
    user should change when training diverges), and may set ``ema`` to average a module's weights."""

    label: str = "training"
    divergence_hint: str = "lower the learning rate"
    ema: Optional[WeightAverage] = None

    @abstractmethod
    def modules(self) -> dict[str, torch.nn.Module]:
        """The modules whose weights are selected, restored, rolled back and checkpointed."""

    @abstractmethod
    def optimizers(self) -> list[torch.optim.Optimizer]:
        """Optimizers stepped after every loss (their groups' learning rates follow the schedule)."""

    def clip_parameters(self) -> list[torch.Tensor]:
        """The parameters whose gradient norm is clipped (default: every optimizer's)."""
        return [p for optimizer in self.optimizers() for group in optimizer.param_groups for p in group["params"]]

    def extra_optimizers(self) -> list[torch.optim.Optimizer]:
        """Optimizers the stage steps itself inside ``loss`` (a discriminator's): they follow the
        schedule and are rolled back, but the engine neither clips nor steps them."""
        return []

    def start(self) -> None:  # noqa: B027 - an optional hook whose default is to do nothing
        """Called once before the first step (e.g. put the model in training mode)."""

    @abstractmethod
    def loss(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Forward pass on the batch of ``step`` (0-based): the loss to minimise and the values to log.
        May raise ``Diverged``."""

    @abstractmethod
    def validate(self) -> dict[str, float]:
        """Held-out metrics of the current weights (the averaged ones under EMA). May raise ``Diverged``."""
