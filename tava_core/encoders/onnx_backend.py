"""ONNX Runtime backend for transformer encoders: which backend a spec gets, and a thin session.

``resolve_backend`` turns the spec's ``torch|onnx|auto`` into the runtime actually used;
``OnnxSession`` runs an exported encoder graph (``tava_core.export.graph``) on tokenised
batches. The export cache (once per fingerprint, verified, rebuilt when stale or corrupt) is
``tava_core.export.cache``. Nothing here imports onnxruntime until a session is made, so the
torch backend works where it is not installed.
"""
from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Literal, Optional

import numpy as np

from ..errors import ConfigError, ModelLoadError

log = logging.getLogger(__name__)

Backend = Literal["torch", "onnx"]
INSTALL_HINT = "pip install 'tava[onnx]' (onnx, onnxruntime), or use --encoder-backend torch"


def onnxruntime_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


def resolve_backend(requested: str, device_type: str, *, available: Optional[bool] = None) -> Backend:
    """The runtime a transformer encoder uses.

    'auto' is onnx on CPU where onnxruntime is installed (else torch, with a warning when it is
    missing) and torch on an accelerator, where torch runs in float16/bfloat16. An explicit
    'onnx' without onnxruntime is an error naming the fix; on an accelerator it warns and uses
    torch (tava's ONNX sessions are CPU-only).
    """
    if requested == "torch":
        return "torch"
    if requested not in ("onnx", "auto"):
        raise ConfigError(f"unknown encoder backend {requested!r}", hint="use torch, onnx or auto")
    if device_type != "cpu":
        if requested == "onnx":
            log.warning("encoder backend 'onnx' runs on CPU only; device %s uses torch", device_type)
        return "torch"
    if available is None:
        available = onnxruntime_available()
    if not available:
        if requested == "onnx":
            raise ConfigError("encoder backend 'onnx' needs onnx and onnxruntime, which are not installed",
                              hint=INSTALL_HINT)
        log.warning("encoder backend 'auto': onnxruntime is not installed, so encoding runs on torch (%s)",
                    INSTALL_HINT)
        return "torch"
    return "onnx"


def default_threads() -> int:
    """Threads per session: as many as torch uses, so a side-by-side comparison is fair and a
    thread pool of shard tasks does not oversubscribe the cores."""
    try:
        import torch

        return max(1, torch.get_num_threads())
    except ImportError:  # the exported-model path may run without torch
        return max(1, os.cpu_count() or 1)


class OnnxSession:
    """An ONNX Runtime CPU session over an encoder graph: int64 ``input_ids``/``attention_mask``
    in, float32 ``(batch, dim)`` out."""

    def __init__(self, path: str | Path, *, threads: Optional[int] = None) -> None:
        import onnxruntime as ort

        from ..export.standalone import SESSION_SETTINGS, session_options

        self.path = Path(path)
        # The session `tava export`'s cards prescribe (no busy-waiting threads: beside a pool of shard
        # threads or other processes, spinning steals the cores the work needs; subnormals flushed; no
        # SkipLayerNormFusion): same vectors, less CPU per batch (bench/teacher_onnx_graphs.py).
        options, disabled = session_options({"session": SESSION_SETTINGS}, threads or default_threads())
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # warnings about unused initialisers are noise to a user
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options,
                                                providers=["CPUExecutionProvider"],
                                                disabled_optimizers=disabled)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f"onnxruntime cannot load the graph: {first}", path=self.path,
                                 hint="delete the file; it is rebuilt from the encoder on next use") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_name = self.session.get_outputs()[0].name

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": np.ascontiguousarray(input_ids, dtype=np.int64),
                 "attention_mask": np.ascontiguousarray(attention_mask, dtype=np.int64)}
        (vectors,) = self.session.run([self.output_name], {k: feeds[k] for k in self.input_names})
        return np.asarray(vectors, dtype=np.float32)
