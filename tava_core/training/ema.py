"""Weight averaging (Polyak / EMA) of one module's state, updated in place after each step."""
from __future__ import annotations

import contextlib
import copy
from typing import Iterator

import torch


class WeightAverage:
    """An exponential moving average of ``module``'s state.

    ``module.state_dict()`` tensors share storage with the weights, which optimizer steps and
    ``load_state_dict`` update in place: the references taken here stay live, so an update costs one
    ``lerp_`` per tensor and no state_dict rebuild."""

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), not {decay}")
        self.module, self.decay = module, decay
        self._sources = module.state_dict()
        self.shadow: dict[str, torch.Tensor] = {k: v.detach().clone() for k, v in self._sources.items()}

    @torch.no_grad()
    def update(self) -> None:
        for key, value in self._sources.items():
            if value.is_floating_point():
                self.shadow[key].lerp_(value, 1.0 - self.decay)
            else:
                self.shadow[key].copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return copy.deepcopy(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        # in place: callers (and tests) may hold the shadow dict
        with torch.no_grad():
            for key, value in state.items():
                self.shadow[key].copy_(value)

    def copy_to_module(self) -> None:
        """Make the averaged weights the module's own (what training keeps)."""
        self.module.load_state_dict(self.shadow)

    @contextlib.contextmanager
    def averaged(self) -> Iterator[None]:
        """Inside the block the module holds the averaged weights; its raw weights come back after."""
        raw = copy.deepcopy(self.module.state_dict())
        self.module.load_state_dict(self.shadow)
        try:
            yield
        finally:
            self.module.load_state_dict(raw)
