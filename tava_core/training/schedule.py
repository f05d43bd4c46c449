"""Learning-rate schedules: a multiplier of each parameter group's base learning rate per step."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Decay = Literal["constant", "linear", "cosine"]


@dataclass(frozen=True)
class Schedule:
    """Linear warm-up, then a decay to ``floor`` of the base rate at ``total_steps``.

    ``warmup_overlaps_decay``: False (distillation) decays only after the warm-up; True (the adapter)
    multiplies the warm-up ramp by a decay that runs from step 0. ``offset`` shifts the step the
    schedule sees: the adapter counts steps from 1, and a warm-started refresh continues its schedule.
    """

    total_steps: int = 1
    warmup_steps: int = 0
    decay: Decay = "constant"
    floor: float = 0.0
    warmup_overlaps_decay: bool = False
    offset: int = 0

    def _shape(self, progress: float) -> float:
        progress = min(max(progress, 0.0), 1.0)
        if self.decay == "cosine":
            shape = 0.5 * (1 + math.cos(math.pi * progress))
        elif self.decay == "linear":
            shape = 1.0 - progress
        else:
            return 1.0
        # written so a floor of 0 returns the shape itself, bit for bit
        return shape if self.floor == 0.0 else self.floor + (1.0 - self.floor) * shape

    def progress(self, step: int, time_fraction: float = 0.0) -> float:
        """The step the schedule is at. Under a time budget it is the larger of steps done and time
        used (as a share of the steps), so a run the budget will cut short still anneals instead of
        stopping at its peak rate; the warm-up is never skipped."""
        if time_fraction > 0 and step >= self.warmup_steps:
            return max(float(step), time_fraction * self.total_steps)
        return float(step)

    def factor(self, step: float) -> float:
        """The multiplier for the optimizer step taken after ``step`` steps (0-based, may be fractional
        under a time budget)."""
        position = step + self.offset
        warmup = self.warmup_steps
        if self.warmup_overlaps_decay:
            ramp = min(1.0, (position + 1) / warmup) if warmup else 1.0
            return ramp * self._shape(position / max(1, self.total_steps))
        if warmup and position < warmup:
            return (position + 1) / warmup
        if self.decay == "constant":
            return 1.0
        return self._shape((position - warmup) / max(1, self.total_steps - warmup))
