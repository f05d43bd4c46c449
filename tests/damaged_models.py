"""Model directories whose weights are damaged so that they load but give NaN vectors (as a weights file
overwritten in place does: safetensors still parses it). Shared by the embed, evaluate and export tests."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

DAMAGED_KINDS = ("static", "transformer", "adapter")


def overwrite_middle_with_nan(weights: Path) -> Path:
    """Overwrite the middle half of a safetensors file's data, in place and at the same size, with float32
    NaNs; the header is kept, so the file still loads."""
    raw = bytearray(weights.read_bytes())
    start = 8 + int.from_bytes(raw[:8], "little")          # data begins after the header (float32 aligned)
    length = len(raw) - start
    begin, count = start + length // 16 * 4, length // 8
    raw[begin:begin + 4 * count] = np.full(count, np.nan, dtype="<f4").tobytes()
    weights.write_bytes(bytes(raw))
    return weights


def set_tensor_nan(weights: Path, name: str) -> Path:
    """Set one tensor of a safetensors file to NaN (the file keeps its other tensors and its size)."""
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(weights))
    tensors[name] = np.full_like(tensors[name], np.nan)
    save_file(tensors, str(weights))
    return weights


def damaged_model(kind: str, root: Path, tiny_model_dir: Path) -> Path:
    """A model directory of ``kind`` (``DAMAGED_KINDS``) under ``root`` that loads and gives NaN vectors:
    a static student with a NaN table, the tiny BERT with a NaN embedding LayerNorm, or a Stage B adapter
    over the (sound) tiny BERT whose weights file is overwritten with NaN in the middle."""
    if kind == "static":
        from helpers import write_static_model

        directory = write_static_model(root / "bad-static", tiny_model_dir, 16, seed=0)
        return set_tensor_nan(directory / "model.safetensors", "embeddings").parent
    if kind == "transformer":
        directory = root / "bad-transformer"
        shutil.copytree(tiny_model_dir, directory)
        return set_tensor_nan(directory / "model.safetensors", "embeddings.LayerNorm.weight").parent
    if kind == "adapter":
        import torch

        from tava_core.adapter import Vec2VecAdapter, save_adapter
        from tava_core.config import EncoderSpec

        torch.manual_seed(0)
        directory = save_adapter(root / "bad-adapter", Vec2VecAdapter(32, 32, [32]).eval(),
                                 student=EncoderSpec(model=str(tiny_model_dir)).model_dump(mode="json"))
        return overwrite_middle_with_nan(directory / "model.safetensors").parent
    raise ValueError(f"unknown kind {kind!r}")
