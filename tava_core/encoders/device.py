"""Device and precision choice, kept apart so it can be unit-tested without a GPU."""
from __future__ import annotations

from typing import Sequence, TypeVar

import torch

T = TypeVar("T")


def resolve_device(requested: str = "auto") -> torch.device:
    """'auto' picks cuda, then mps, then cpu; anything else is passed to ``torch.device``."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        from ..errors import ConfigError

        raise ConfigError(f"device '{requested}' was asked for but CUDA is not available here",
                          hint="use device 'auto' or 'cpu'")
    return device


def device_name(requested: str = "auto") -> str:
    """The device ``requested`` resolves to, named as a concurrency limit names it: 'auto' -> 'cuda:0' on
    a GPU host (else 'mps' or 'cpu'), 'cuda' -> 'cuda:<current device>'."""
    device = resolve_device(requested)
    if device.type == "cuda" and device.index is None:
        return f"cuda:{torch.cuda.current_device()}"
    return str(device)


def resolve_dtype(requested: str, device: torch.device, *, bf16_supported: bool | None = None) -> torch.dtype:
    """float32 on CPU/MPS; on CUDA 'auto' means bfloat16 where supported, else float16."""
    if requested == "float32":
        return torch.float32
    if requested == "float16":
        return torch.float16
    if requested == "bfloat16":
        return torch.bfloat16
    if device.type != "cuda":
        return torch.float32
    if bf16_supported is None:
        bf16_supported = native_bf16(device)
    return torch.bfloat16 if bf16_supported else torch.float16


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 in hardware (compute capability 8.0+: Ampere and later).
    ``torch.cuda.is_bf16_supported()`` also says yes on older cards (T4, V100), where bfloat16 is
    emulated and slower than float16, and it asks about the current device, not ``device``."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    return torch.cuda.get_device_capability(index)[0] >= 8


def available_devices() -> list[str]:
    """Every device shards can be spread over: each CUDA GPU, else the one CPU."""
    if torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"]


def device_for_shard(index: int, devices: Sequence[T]) -> T:
    """Round-robin: shard ``index`` goes to ``devices[index % len(devices)]`` (device names, or
    encoder specs that each name one device)."""
    if not devices:
        raise ValueError("no devices to place shards on")
    return devices[index % len(devices)]


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA/MPS out-of-memory errors (whatever class the backend raises)."""
    oom_type = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
