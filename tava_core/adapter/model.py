"""``Vec2VecAdapter``: a residual MLP from one embedding space into another, L2-normalised output.

Two shapes:
- direct: ``input -> [residual blocks] -> output`` plus a linear skip path input -> output, so the
  adapter is "a linear map plus a learned non-linear correction" (and can start at ridge);
- shared latent (vec2vec): ``input adapter -> shared backbone -> output adapter``. The reverse adapter
  (teacher -> student, for cycle and reconstruction losses) shares the backbone object.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .memory import ResidualMemory

ACTIVATIONS = {"silu": nn.SiLU, "gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh}


class ResidualBlock(nn.Module):
    """linear -> norm -> activation -> dropout, plus the input when widths match."""

    def __init__(self, in_dim: int, out_dim: int, activation: str = "silu", norm: str = "layer",
                 dropout: float = 0.0, residual: bool = True) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        self.norm = nn.LayerNorm(out_dim) if norm == "layer" else nn.Identity()
        self.activation = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)
        self.residual = residual and in_dim == out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(self.activation(self.norm(self.linear(x))))
        return x + out if self.residual else out


class ResidualMLP(nn.Module):
    """Blocks of ``hidden_dims`` then a linear head; with ``residual``, a linear skip in -> out."""

    def __init__(self, input_dim: int, output_dim: int, hidden_dims: Sequence[int], activation: str = "silu",
                 norm: str = "layer", dropout: float = 0.0, residual: bool = True) -> None:
        super().__init__()
        widths = [input_dim, *hidden_dims]
        self.blocks = nn.Sequential(*[ResidualBlock(a, b, activation, norm, dropout, residual)
                                      for a, b in zip(widths[:-1], widths[1:], strict=False)])
        self.head = nn.Linear(widths[-1], output_dim)
        self.skip = nn.Linear(input_dim, output_dim, bias=False) if residual else None
        if self.skip is not None:
            # The correction starts at zero, so the adapter starts as exactly its skip path (e.g. ridge);
            # the head's gradient is non-zero, so the blocks start learning after the first step.
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.blocks(x))
        return out + self.skip(x) if self.skip is not None else out


class Vec2VecAdapter(nn.Module):
    """Maps ``input_dim`` vectors to L2-normalised ``output_dim`` vectors."""

    def __init__(self, input_dim: int, output_dim: int, hidden_dims: Sequence[int] = (1024,),
                 activation: str = "silu", norm: str = "layer", dropout: float = 0.0, residual: bool = True,
                 latent_dim: Optional[int] = None, backbone: Optional[nn.Module] = None, memory_rows: int = 0,
                 memory_k: int = 10, memory_temperature: float = 0.05, memory_weight: float = 0.75) -> None:
        super().__init__()
        self.config: dict[str, Any] = dict(input_dim=int(input_dim), output_dim=int(output_dim),
                                           hidden_dims=[int(h) for h in hidden_dims], activation=activation,
                                           norm=norm, dropout=float(dropout), residual=bool(residual),
                                           latent_dim=None if latent_dim is None else int(latent_dim))
        # Stage B's per-text correction (memory.py); built after training, so a training adapter has none
        self.memory: Optional[ResidualMemory] = None
        if memory_rows > 0:
            self.attach_memory(ResidualMemory(memory_rows, input_dim, output_dim, memory_k, memory_temperature,
                                              memory_weight))
        # direct (net) or through a latent space (in_adapter -> backbone -> out_adapter): the other is None
        self.net: Optional[ResidualMLP]
        self.in_adapter: Optional[ResidualMLP]
        self.backbone: Optional[nn.Module]
        self.out_adapter: Optional[ResidualMLP]
        if latent_dim is None:
            self.net = ResidualMLP(input_dim, output_dim, hidden_dims, activation, norm, dropout, residual)
            self.in_adapter = self.backbone = self.out_adapter = None
        else:
            self.net = None
            self.in_adapter = ResidualMLP(input_dim, latent_dim, hidden_dims[:1], activation, norm, dropout, residual)
            self.backbone = backbone if backbone is not None else ResidualMLP(
                latent_dim, latent_dim, hidden_dims, activation, norm, dropout, residual)
            self.out_adapter = ResidualMLP(latent_dim, output_dim, hidden_dims[:1], activation, norm, dropout,
                                           residual)

    @property
    def input_dim(self) -> int:
        return self.config["input_dim"]

    @property
    def output_dim(self) -> int:
        return self.config["output_dim"]

    def to_latent(self, x: torch.Tensor) -> torch.Tensor:
        """The shared latent code (the identity path of a direct adapter has none)."""
        if self.in_adapter is None or self.backbone is None:
            raise ValueError("a direct adapter has no latent space (set latent_dim)")
        return self.backbone(self.in_adapter(x))

    def from_latent(self, z: torch.Tensor) -> torch.Tensor:
        if self.out_adapter is None:
            raise ValueError("a direct adapter has no latent space (set latent_dim)")
        return F.normalize(self.out_adapter(z), dim=-1)

    def attach_memory(self, memory: Optional[ResidualMemory]) -> None:
        """Add (or with None, remove) the per-text correction; the config records it, so a saved adapter
        loads with its memory."""
        for key in ("memory_rows", "memory_k", "memory_temperature", "memory_weight"):
            self.config.pop(key, None)
        if memory is not None:
            # the memory is built on the CPU from numpy; a map trained on a GPU reads it there
            parameter = next(self.parameters(), None)
            if parameter is not None:
                memory = memory.to(parameter.device)
            self.config.update(memory.settings())
        self.memory = memory

    def map_alone(self, x: torch.Tensor) -> torch.Tensor:
        """The map without the memory (unit length)."""
        return F.normalize(self.net(x), dim=-1) if self.net is not None else self.from_latent(self.to_latent(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mapped = self.map_alone(x)
        return mapped if self.memory is None else self.memory(x, mapped)

    def make_reverse(self) -> "Vec2VecAdapter":
        """A teacher -> student adapter; with a latent space it shares this adapter's backbone (never a memory)."""
        cfg = {k: v for k, v in self.config.items() if not k.startswith("memory_")}
        cfg["input_dim"], cfg["output_dim"] = cfg["output_dim"], cfg["input_dim"]
        return Vec2VecAdapter(**cfg, backbone=self.backbone)

    def linear_skip(self) -> Optional[nn.Linear]:
        """The direct adapter's input -> output linear path (where a ridge start goes)."""
        return self.net.skip if self.net is not None else None

    @torch.no_grad()
    def inference_path(self) -> str:
        """What the adapter computes, read off its weights: ``identity`` (a direct adapter whose
        correction head is exactly zero and whose skip is the identity: Stage B kept its identity
        start), ``linear`` (zero head, any skip: a kept closed-form start) or ``full``. The first two
        give the same numbers as the full pass without running the blocks (0 * h + 0 is exactly 0),
        which for a static student costs more than the student itself."""
        net = self.net
        if net is None or net.skip is None or net.head.weight.count_nonzero() or net.head.bias.count_nonzero():
            return "full"
        weight = net.skip.weight
        if weight.shape[0] == weight.shape[1] and torch.equal(weight, torch.eye(weight.shape[0], dtype=weight.dtype,
                                                                                  device=weight.device)):
            return "identity"
        return "linear"

    def _cached_inference_path(self) -> str:
        # read again whenever the weights it depends on were changed in place (an optimizer step,
        # load_state_dict, EMA swaps all bump a tensor's version counter)
        net = self.net
        versions = None if net is None or net.skip is None else \
            (net.head.weight._version, net.head.bias._version, net.skip.weight._version)
        cached = getattr(self, "_path_cache", None)
        if versions is None or cached is None or cached[0] != versions:
            self._path_cache = (versions, self.inference_path())
        return self._path_cache[1]

    @torch.no_grad()
    def map_numpy(self, vectors, batch_size: int = 8192, *, memory: bool = True):
        """Map a float32 numpy array (inference mode, batched); returns float32 numpy. ``memory=False``: the
        map alone, for texts the residual memory holds (on them it returns nearly the teacher's vector)."""
        import numpy as np

        path = self._cached_inference_path()
        was_training = self.training
        bare: Callable[[torch.Tensor], torch.Tensor] = self.map_alone
        if path == "full":
            self.eval()
        else:                       # no dropout or norm layer on these paths: no mode switch needed
            assert self.net is not None and self.net.skip is not None
            skip = self.net.skip.weight
            bare = (lambda x: F.normalize(x, dim=-1)) if path == "identity" else \
                (lambda x: F.normalize(F.linear(x, skip), dim=-1))
        held = self.memory if memory else None
        run = bare if held is None else (lambda x: held(x, bare(x)))
        device = next(self.parameters()).device
        out = np.zeros((len(vectors), self.output_dim), dtype=np.float32)
        for start in range(0, len(vectors), batch_size):
            chunk = torch.as_tensor(np.asarray(vectors[start:start + batch_size], dtype=np.float32), device=device)
            out[start:start + len(chunk)] = run(chunk).cpu().numpy()
        if path == "full":
            self.train(was_training)
        return out
