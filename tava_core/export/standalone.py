"""Run an exported query encoder with onnxruntime, tokenizers and numpy only (no torch, no tava
model code): what a serving stack does, and what `tava export` measures its agreement with.
The README's snippet is this, inlined (for exports without a window). This file imports nothing of
tava's: a server may copy it as it is."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

CARD_NAME = "card.json"
TOKENIZER_NAME = "tokenizer.json"
SPECIAL_TOKENS = 2          # [CLS] ... [SEP] (or <s> ... </s>) around every window

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


def split_windows(texts: Sequence[str], offsets: Sequence[Sequence[tuple[int, int]]], window: int,
                  prefix_tokens: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Cut every text longer than ``window`` tokens into consecutive pieces of at most ``window`` tokens
    (special tokens and the prefix included); returns the pieces, the index of the text each came from and
    its content-token count (the weight of its vector). A text that fits is one piece, unchanged. The one
    definition: tava's encoder imports it (``tava_core/encoders/windows.py``), as this file imports nothing
    of tava's."""
    size = max(1, window - SPECIAL_TOKENS - prefix_tokens)      # content tokens per piece
    pieces: list[str] = []
    owner: list[int] = []
    weight: list[int] = []
    for i, (text, spans) in enumerate(zip(texts, offsets, strict=True)):
        if len(spans) <= size:
            pieces.append(text)
            owner.append(i)
            weight.append(max(1, len(spans)))
            continue
        for start in range(0, len(spans), size):
            chunk = spans[start:start + size]
            pieces.append(text[chunk[0][0]:chunk[-1][1]])
            owner.append(i)
            weight.append(len(chunk))
    return pieces, np.asarray(owner, dtype=np.int64), np.asarray(weight, dtype=np.float32)


class ExportedQueryEncoder:
    """``encode(texts) -> float32 (n, dim)`` from an export directory (card, graph, tokenizer)."""

    def __init__(self, directory: str | Path, *, threads: Optional[int] = None, warn: bool = True) -> None:
        """``warn``: say so when a full-range int8 file may saturate on this CPU (``full_range_warning``);
        ``tava export`` measures its staging directory with False and warns about the saved one instead."""
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
        self.inputs = [i.name for i in self.session.get_inputs()]
        # A windowed export (card "window_tokens"): long texts are read in pieces, as tava's encoder reads
        # them; the cutting reads the tokenizer without its truncation and padding.
        self.window: Optional[int] = self.card.get("window_tokens")
        self.plain: Any = None
        if self.window:
            self.plain = Tokenizer.from_str(self.tokenizer.to_str())
            self.plain.no_truncation()
            self.plain.no_padding()
        if warn and (warning := full_range_warning(self.card, cpu_flags())) is not None:
            import warnings

            warnings.warn(f"{self.directory}: {warning}", RuntimeWarning, stacklevel=2)

    def _run(self, texts: Sequence[str], batch_size: int) -> list[np.ndarray]:
        """Every output of the graph for ``texts``, in the texts' order (embeddings first)."""
        out: list[np.ndarray] = [np.zeros((len(texts), int(self.card["dim"])), dtype=np.float32)]
        out += [np.zeros(len(texts), dtype=np.float32) for _ in range(self.extra_outputs)]
        # Longest first, as tava's encoders batch: similar lengths waste little padding.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            for target, values in zip(out, self.session.run(None, self.feeds([texts[i] for i in idx])), strict=True):
                target[idx] = values
        return out

    def windows(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
        """The pieces a windowed export reads ``texts`` in (``split_windows``), as tava's encoder cuts them:
        the first max_length - 2 - prefix content tokens of each text, windows of the card's size."""
        assert self.window and self.plain is not None, "an export without a window reads each text whole"
        prefix_tokens = int(self.card.get("window_prefix_tokens", 0))
        max_length = int(self.card["max_length"])
        limit = max(1, max_length - SPECIAL_TOKENS - prefix_tokens)
        offsets = [e.offsets[:limit] for e in self.plain.encode_batch(list(texts), add_special_tokens=False)]
        return split_windows(texts, offsets, min(int(self.window), max_length), prefix_tokens)

    def feeds(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The graph's inputs for ``texts``."""
        prefix = self.card.get("query_prefix", "")
        if not self.window:
            batch = self.tokenizer.encode_batch([prefix + t for t in texts])
            return {"input_ids": np.array([e.ids for e in batch], dtype=np.int64),
                    "attention_mask": np.array([e.attention_mask for e in batch], dtype=np.int64)}
        pieces, owner, weight = self.windows(texts)
        batch = self.tokenizer.encode_batch([prefix + p for p in pieces])    # each with its special tokens
        piece_weights = np.zeros((len(texts), len(pieces)), dtype=np.float32)
        piece_weights[owner, np.arange(len(pieces))] = weight
        feeds: dict[str, np.ndarray] = {"input_ids": np.array([e.ids for e in batch], dtype=np.int64),
                                        "attention_mask": np.array([e.attention_mask for e in batch], dtype=np.int64),
                                        "piece_weights": piece_weights}
        if "static_ids" in self.inputs:    # a blend's static members read the whole text, untruncated
            ids = [e.ids for e in self.plain.encode_batch([prefix + t for t in texts], add_special_tokens=False)]
            static_ids = np.full((len(texts), max([1, *map(len, ids)])), -1, dtype=np.int64)
            for row, text_ids in zip(static_ids, ids, strict=True):
                row[:len(text_ids)] = text_ids
            feeds["static_ids"] = static_ids
        return feeds

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
