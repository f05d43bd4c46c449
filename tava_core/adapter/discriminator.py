"""The discriminator: an MLP that tells real teacher vectors from mapped student vectors."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


class Discriminator(nn.Module):
    """``dim -> hidden x layers -> 1`` logits, LeakyReLU; spectral norm (switchable) bounds its
    Lipschitz constant, which keeps the adversarial game from exploding."""

    def __init__(self, dim: int, hidden_dim: int = 512, layers: int = 2, use_spectral_norm: bool = True) -> None:
        super().__init__()
        self.use_spectral_norm = use_spectral_norm
        widths = [dim] + [hidden_dim] * layers
        modules: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:], strict=False):
            modules += [self._linear(a, b), nn.LeakyReLU(0.2)]
        modules.append(self._linear(widths[-1], 1))
        self.net = nn.Sequential(*modules)

    def _linear(self, a: int, b: int) -> nn.Module:
        layer = nn.Linear(a, b)
        return spectral_norm(layer) if self.use_spectral_norm else layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)
