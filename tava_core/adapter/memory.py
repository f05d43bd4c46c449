"""``ResidualMemory``: a per-text correction that Stage B keeps beside the adapter.

The adapter is one smooth map for the whole space; what it gets wrong is local. The memory stores,
for the corpus texts Stage B trained on, the student vector (the key) and what the adapter still
misses there (the residual: the teacher's vector minus the adapter's, both unit length). A query is
corrected by the residuals of its ``k`` nearest keys (cosine in the *student's* space), weighted by a
softmax over those cosines at ``temperature`` and scaled by ``weight``; the sum is renormalised:

    out = normalize(adapter(x) + weight * sum_i softmax(cos(x, key_i) / temperature) * residual_i)

It needs no labels: the teacher has embedded those texts anyway (their vectors are the store). Why it
is not pseudo-relevance feedback: adding the neighbours' *teacher* vectors instead of their residuals
gains nothing, and doing that to the teacher's own queries costs it 0.01-0.03 nDCG@10
(bench/adapter_memory.py, dev splits).

Compression does not keep the gain: 4,096 k-means centroids of the keys with their mean residuals keep
a fifth of it on SciFact dev; the correction is per text, so the memory holds texts (up to
``AdapterConfig.memory_max_rows``).
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class ResidualMemory(nn.Module):
    """``keys`` (rows x input_dim, unit length) and ``residuals`` (rows x output_dim) as buffers, so
    they are saved in the adapter's safetensors and covered by its weights hash."""

    keys: torch.Tensor
    residuals: torch.Tensor

    def __init__(self, rows: int, input_dim: int, output_dim: int, k: int = 10, temperature: float = 0.05,
                 weight: float = 0.75) -> None:
        super().__init__()
        if rows < 1:
            raise ValueError("a memory needs at least one row")
        self.k = int(min(k, rows))
        self.temperature = float(temperature)
        self.weight = float(weight)
        self.register_buffer("keys", torch.zeros(rows, input_dim))
        self.register_buffer("residuals", torch.zeros(rows, output_dim))

    @property
    def rows(self) -> int:
        return int(self.keys.shape[0])

    def settings(self) -> dict[str, Any]:
        return {"memory_rows": self.rows, "memory_k": self.k, "memory_temperature": self.temperature,
                "memory_weight": self.weight}

    def forward(self, inputs: torch.Tensor, mapped: torch.Tensor) -> torch.Tensor:
        """``inputs``: the student vectors (any norm); ``mapped``: the adapter's unit-length output for
        them. Returns the corrected, unit-length vectors."""
        sims = F.normalize(inputs, dim=-1) @ self.keys.T
        top, index = sims.topk(self.k, dim=-1)
        weights = torch.softmax(top / self.temperature, dim=-1)
        correction = (weights.unsqueeze(-1) * self.residuals[index]).sum(dim=1)
        return F.normalize(mapped + self.weight * correction, dim=-1)


def memory_rows(n: int, max_rows: int, seed: int) -> np.ndarray:
    """Which of ``n`` training rows the memory keeps: all when they fit, else a seeded random subset
    (sorted, so the memory's order follows the data's)."""
    if n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_rows, replace=False))


def build_memory(student: np.ndarray, teacher: np.ndarray, mapped: np.ndarray, *, k: int, temperature: float,
                 weight: float) -> ResidualMemory:
    """A memory of these rows: ``student`` the keys, ``teacher`` minus ``mapped`` (the adapter's output
    for ``student``, unit length) the residuals."""
    def unit(a: np.ndarray) -> torch.Tensor:
        return F.normalize(torch.as_tensor(np.asarray(a, dtype=np.float32)), dim=-1)

    memory = ResidualMemory(len(student), student.shape[1], teacher.shape[1], k, temperature, weight)
    memory.keys.copy_(unit(student))
    memory.residuals.copy_(unit(teacher) - unit(mapped))
    return memory


def map_alone(mapper: Any) -> Callable[[np.ndarray], np.ndarray]:
    """``mapper.map_numpy`` leaving out a residual memory it holds. For the texts the memory was built from
    (Stage B's own pairs) it returns nearly the teacher's vectors, which is not what an unseen query gets:
    whatever stands in for queries there (a blend partner's targets, a router's reference pairs) takes
    the map alone."""
    if getattr(mapper, "memory", None) is not None:
        return partial(mapper.map_numpy, memory=False)
    return mapper.map_numpy
