"""Run an exported query encoder with onnxruntime, tokenizers and numpy only (no torch, no tava
model code): what a serving stack does, and what `tava export` measures its agreement with.
The README's snippet is this, inlined."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

CARD_NAME = "card.json"
TOKENIZER_NAME = "tokenizer.json"

# What a session should set to run the graph fast (written into the card; bench/int8_amx.py):
# - subnormal floats flushed to zero in ORT's threads: masked attention scores and GELU's tails
#   underflow into subnormals, and x86 arithmetic on them is ~10x slower (a masked Softmax took
#   8 ms instead of 0.65 ms); the values involved are below 1.2e-38, so outputs do not change.
# - no SkipLayerNormFusion: ORT's fused SkipLayerNormalization CPU kernel (per-element Welford
#   update) ran ~5x slower than the Add + LayerNormalization it replaces.
SESSION_SETTINGS: dict[str, Any] = {
    "config": {"session.set_denormal_as_zero": "1"},
    "disabled_optimizers": ["SkipLayerNormFusion"],
}


def session_options(card: dict[str, Any], threads: Optional[int] = None) -> tuple[Any, list[str]]:
    """(onnxruntime.SessionOptions, optimizers to disable) for an export's card: its ``session``
    settings (older cards carry none: ONNX Runtime's defaults), no busy-waiting threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    settings = card.get("session") or {}
    for key, value in (settings.get("config") or {}).items():
        options.add_session_config_entry(str(key), str(value))
    return options, [str(name) for name in settings.get("disabled_optimizers") or []]


# CPU flags (Linux /proc/cpuinfo) under which ONNX Runtime multiplies uint8 x int8 without an int16
# intermediate: a full-range int8 file (tava export --int8-range full) is exact only on these.
INT8_SAFE_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_flags() -> Optional[set[str]]:
    """This CPU's feature flags, or None where /proc/cpuinfo cannot tell (not Linux, not x86)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.partition(":")[2].split())
    except OSError:
        pass
    return None


def full_range_warning(card: dict[str, Any], flags: Optional[set[str]]) -> Optional[str]:
    """Why a full-range int8 file may be inexact on this CPU, or None."""
    quantization = card.get("quantization") or {}
    if quantization.get("reduce_range", True) or flags is None or flags & set(INT8_SAFE_FLAGS):
        return None
    return ("this int8 export has full-range (8-bit) weights, made for CPUs with VNNI or AMX; this CPU has "
            "neither, so ONNX Runtime's uint8 x int8 products can saturate: re-export with --int8-range reduced")


class ExportedQueryEncoder:
    """``encode(texts) -> float32 (n, dim)`` from an export directory (card, graph, tokenizer)."""

    def __init__(self, directory: str | Path, *, threads: Optional[int] = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.directory = Path(directory)
        self.card: dict[str, Any] = json.loads((self.directory / CARD_NAME).read_text())
        # Truncation and padding are configured inside the exported tokenizer.json.
        self.tokenizer = Tokenizer.from_file(str(self.directory / TOKENIZER_NAME))
        options, disabled = session_options(self.card, threads)
        self.session = ort.InferenceSession(str(self.directory / self.card["file"]), sess_options=options,
                                            providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
        self.extra_outputs = len(self.session.get_outputs()) - 1   # a router's confidence: 1
        if (warning := full_range_warning(self.card, cpu_flags())) is not None:
            import warnings

            warnings.warn(f"{self.directory}: {warning}", RuntimeWarning, stacklevel=2)

    def _run(self, texts: Sequence[str], batch_size: int) -> list[np.ndarray]:
        """Every output of the graph for ``texts``, in the texts' order (embeddings first)."""
        prefix = self.card.get("query_prefix", "")
        out: list[np.ndarray] = [np.zeros((len(texts), int(self.card["dim"])), dtype=np.float32)]
        out += [np.zeros(len(texts), dtype=np.float32) for _ in range(self.extra_outputs)]
        # Longest first, as tava's encoders batch: similar lengths waste little padding.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            batch = self.tokenizer.encode_batch([prefix + texts[i] for i in idx])
            ids = np.array([e.ids for e in batch], dtype=np.int64)
            mask = np.array([e.attention_mask for e in batch], dtype=np.int64)
            for target, values in zip(out, self.session.run(None, {"input_ids": ids, "attention_mask": mask}),
                                      strict=True):
                target[idx] = values
        return out

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return self._run(texts, batch_size)[0]

    def route(self, texts: Sequence[str], batch_size: int = 64) -> dict[str, np.ndarray]:
        """An export of a router: vectors, ``confidence`` (predicted agreement with the teacher) and
        ``to_teacher`` (confidence under the card's calibrated threshold: re-encode those queries with
        the card's teacher)."""
        router = self.card.get("router")
        if not router:
            raise ValueError(f"{self.directory} is an export of an encoder without a router: use encode()")
        vectors, confidence = self._run(texts, batch_size)
        return {"vectors": vectors, "confidence": confidence,
                "to_teacher": confidence < float(router["threshold"])}
