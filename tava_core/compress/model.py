"""``CompressionAdapter``: a projection to fewer dimensions plus a learned residual correction.

    z = normalize( W (x - mean) + g(x) )

``W`` (output_dim x input_dim) starts at a closed form (PCA axes, or the identity's first rows for
a Matryoshka prefix) and ``g`` is a small MLP whose last layer starts at zero, so every trained
compressor starts exactly at its frozen (untrained) baseline. PCA and truncation are the same
module with ``g`` absent, so every method saves, loads and composes the same way.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tava_core import linalg


class CompressionAdapter(nn.Module):
    """Maps ``input_dim`` vectors to L2-normalised ``output_dim`` vectors."""

    def __init__(self, input_dim: int, output_dim: int, hidden_dim: int = 0, method: str = "pca") -> None:
        super().__init__()
        if not 0 < output_dim <= input_dim:
            raise ValueError(f"output_dim must be in 1..{input_dim}, got {output_dim}")
        self.input_dim, self.output_dim, self.hidden_dim, self.method = input_dim, output_dim, hidden_dim, method
        self.mean: torch.Tensor
        self.register_buffer("mean", torch.zeros(input_dim))
        self.projection = nn.Linear(input_dim, output_dim, bias=False)
        self.residual: Optional[nn.Sequential] = None
        if hidden_dim > 0:
            hidden, out = nn.Linear(input_dim, hidden_dim), nn.Linear(hidden_dim, output_dim)
            # zero output layer: the compressor starts as its projection (the frozen baseline)
            nn.init.zeros_(out.weight)
            nn.init.zeros_(out.bias)
            self.residual = nn.Sequential(hidden, nn.SiLU(), out)

    @property
    def config(self) -> dict[str, Any]:
        return {"input_dim": self.input_dim, "output_dim": self.output_dim, "hidden_dim": self.hidden_dim,
                "method": self.method}

    def set_projection(self, weight: np.ndarray, mean: np.ndarray | None = None) -> "CompressionAdapter":
        """Set ``W`` (output_dim x input_dim) and the centering vector (zeros when ``None``)."""
        with torch.no_grad():
            self.projection.weight.copy_(torch.as_tensor(np.asarray(weight, dtype=np.float32)))
            self.mean.copy_(torch.as_tensor(np.zeros(self.input_dim, np.float32) if mean is None
                                            else np.asarray(mean, dtype=np.float32)))
        return self

    def unnormalized(self, x: torch.Tensor) -> torch.Tensor:
        z = self.projection(x - self.mean)
        if self.residual is not None:
            z = z + self.residual(x)
        return z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.unnormalized(x), dim=-1)

    def residual_norm(self, x: torch.Tensor) -> torch.Tensor:
        """Mean squared size of the learned correction (the adaptors' reconstruction regulariser)."""
        if self.residual is None:
            return x.new_zeros(())
        return self.residual(x).pow(2).sum(-1).mean()

    @torch.no_grad()
    def map_numpy(self, vectors: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """Compress float vectors (batched, no gradients) into float32 ``(n, output_dim)``."""
        was_training = self.training
        self.eval()
        device = self.mean.device
        out = np.empty((len(vectors), self.output_dim), dtype=np.float32)
        for start in range(0, len(vectors), batch_size):
            block = torch.from_numpy(np.array(vectors[start:start + batch_size], dtype=np.float32)).to(device)
            out[start:start + len(block)] = self(block).cpu().numpy()
        self.train(was_training)
        return out


class ProjectionHeads(nn.Module):
    """DIVE's views: ``n_heads`` learned projections of a compressed vector (training only)."""

    def __init__(self, dim: int, n_heads: int = 4, head_dim: int | None = None) -> None:
        super().__init__()
        head_dim = head_dim or dim
        self.heads = nn.ModuleList(nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, head_dim))
                                   for _ in range(n_heads))

    def forward(self, z: torch.Tensor) -> list[torch.Tensor]:
        return [F.normalize(head(z), dim=-1) for head in self.heads]


def pca_axes(vectors: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(top ``dim`` principal axes as rows, mean) of ``vectors``."""
    x = np.asarray(vectors, dtype=np.float64)
    mean = x.mean(axis=0)
    # eigen-decomposition of the covariance: d x d, cheaper than an SVD of n x d
    cov = (x - mean).T @ (x - mean) / max(len(x) - 1, 1)
    values, vecs = linalg.eigh(cov)
    order = np.argsort(values)[::-1][:dim]
    axes = vecs[:, order].T
    # a deterministic sign per axis (largest-magnitude coordinate positive)
    signs = np.sign(axes[np.arange(dim), np.abs(axes).argmax(axis=1)])
    return (axes * signs[:, None]).astype(np.float32), mean.astype(np.float32)


def prefix_weight(input_dim: int, dim: int) -> np.ndarray:
    """The first ``dim`` rows of the identity: a Matryoshka prefix (truncation)."""
    return np.eye(input_dim, dtype=np.float32)[:dim]


def build_pca(corpus: np.ndarray, dim: int, *, center: bool, hidden_dim: int = 0,
              method: str = "pca") -> CompressionAdapter:
    axes, mean = pca_axes(corpus, dim)
    model = CompressionAdapter(corpus.shape[1], dim, hidden_dim, method)
    return model.set_projection(axes, mean if center else None)


def build_prefix(input_dim: int, dim: int, *, hidden_dim: int = 0, method: str = "truncate") -> CompressionAdapter:
    return CompressionAdapter(input_dim, dim, hidden_dim, method).set_projection(prefix_weight(input_dim, dim))


def count_parameters(module: nn.Module, names: Sequence[str] | None = None) -> int:
    return sum(p.numel() for n, p in module.named_parameters() if names is None or n.split(".")[0] in names)
