"""Atomic training checkpoints: module weights, best weights, optimizer moments, RNG, loop state.

One directory, swapped into place whole (``atomic_directory``), so a kill at any moment leaves the
previous checkpoint or the new one, never half of one. Weights are safetensors; optimizer moments
and the RNG state are plain tensors read back with ``weights_only=True``; the loop's state is JSON.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from ..errors import ConfigError
from ..io import atomic_directory, read_json, write_json

STATE_FILE = "training_state.json"
OPTIMIZER_FILE = "optimizer.pt"
FORMAT = 2  # 1: the distillation trainer's own checkpoints, before the engine


@dataclass(frozen=True)
class CheckpointConfig:
    """Where and how often to checkpoint; ``run_key`` names the run a checkpoint may resume."""

    directory: Path
    every: int
    run_key: str
    resume: bool = True


@dataclass
class Checkpoint:
    """What a checkpoint holds, in memory."""

    weights: dict[str, dict[str, torch.Tensor]]          # per module
    best: Optional[dict[str, dict[str, torch.Tensor]]]   # per module ("ema" for the average)
    optimizers: list[dict[str, Any]]
    torch_rng: torch.Tensor
    state: dict[str, Any]                                # the loop's JSON state (step, curves, ...)
    cuda_rng: Optional[list[torch.Tensor]] = None        # per GPU (dropout on a GPU draws from these)


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def save_checkpoint(config: CheckpointConfig, checkpoint: Checkpoint) -> None:
    from safetensors.torch import save_file

    with atomic_directory(config.directory) as tmp:
        for name, weights in checkpoint.weights.items():
            save_file(_contiguous(weights), str(tmp / f"{name}.safetensors"))
        for name, weights in (checkpoint.best or {}).items():
            save_file(_contiguous(weights), str(tmp / f"best-{name}.safetensors"))
        torch.save({"optimizers": checkpoint.optimizers, "torch_rng": checkpoint.torch_rng,
                    "cuda_rng": checkpoint.cuda_rng}, tmp / OPTIMIZER_FILE)
        write_json(tmp / STATE_FILE, {**checkpoint.state, "run_key": config.run_key, "format": FORMAT})  # last


def load_checkpoint(config: CheckpointConfig, module_names: list[str]) -> Optional[Checkpoint]:
    """The checkpoint of this run, or None when there is none; refuses another run's checkpoint."""
    from safetensors.torch import load_file

    directory = config.directory
    state_file = directory / STATE_FILE
    if not state_file.is_file():
        return None
    state = read_json(state_file)
    if state.get("run_key") != config.run_key:
        raise ConfigError("a checkpoint of a different run (other config or data) is in the way",
                          path=directory, hint="use --no-resume to discard it, or give this run another --name")
    if state.get("format") != FORMAT:
        raise ConfigError("the checkpoint in the way was written by an older tava and cannot be resumed",
                          path=directory, hint="use --no-resume to discard it and start over")
    weights = {name: load_file(str(directory / f"{name}.safetensors")) for name in module_names}
    best = {path.name[len("best-"):-len(".safetensors")]: load_file(str(path))
            for path in sorted(directory.glob("best-*.safetensors"))}
    # on the CPU: a run checkpointed on a GPU resumes on a machine without one (load_state_dict moves the
    # optimizers' moments to their parameters' device)
    extra = torch.load(directory / OPTIMIZER_FILE, weights_only=True, map_location="cpu")
    return Checkpoint(weights=weights, best=best or None, optimizers=extra["optimizers"],
                      torch_rng=extra["torch_rng"], state=state, cuda_rng=extra.get("cuda_rng"))


def clear_checkpoint(config: CheckpointConfig) -> None:
    shutil.rmtree(config.directory, ignore_errors=True)
