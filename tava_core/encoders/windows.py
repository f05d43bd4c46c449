"""Windowed reading: a text longer than an encoder's window is encoded as the token-weighted mean of
the vectors of its consecutive windows.

Why: a Stage A student is a few layers trained on the texts it was given -- often short ones (claims,
span views). Asked to read a query ten times longer than anything it saw, it drifts: on SciFact turned
around (~300-token abstracts as queries; ``bench/long_queries.py``, dev) mpnet's 2-layer student kept 0.778
of its teacher reading each query whole and 0.920 reading it in windows of its training texts' length; MiniLM's
3-layer student 0.954 and 0.988. So a transformer student carries ``window.json`` (written by Stage A; the
95th percentile of its training texts' token counts) and never reads more tokens at a time than that.
The cutting (``split_windows``, over a tokenizer's character offsets) is defined once, in
``tava_core/export/standalone.py``, which a server copies without tava, and imported here, so the tava encoder
and an exported encoder cut texts identically.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..export.standalone import SPECIAL_TOKENS, split_windows

__all__ = ["MIN_WINDOW", "SPECIAL_TOKENS", "WINDOW_FILE", "WINDOW_PERCENTILE", "pool_windows", "read_window",
           "split_windows", "window_from_lengths", "window_record"]

WINDOW_FILE = "window.json"
WINDOW_PERCENTILE = 95      # of the training texts' token counts (as trained: cut at max_length)
MIN_WINDOW = 16             # tokens, special tokens included: shorter windows carry too little context


def read_window(directory: Path) -> Optional[int]:
    """The window (tokens, special tokens included) a model directory records, or None."""
    path = Path(directory) / WINDOW_FILE
    if not path.is_file():
        return None
    return int(json.loads(path.read_text())["window_tokens"])


def window_from_lengths(token_counts: Sequence[int], max_length: int) -> int:
    """The window of a student trained on texts of ``token_counts`` tokens (special tokens included),
    each cut at ``max_length`` in training: their 95th percentile, at least MIN_WINDOW."""
    counts = np.minimum(np.asarray(token_counts, dtype=np.int64), max_length)
    if counts.size == 0:
        return int(max_length)
    return int(max(MIN_WINDOW, min(max_length, np.ceil(np.percentile(counts, WINDOW_PERCENTILE)))))


def window_record(token_counts: Sequence[int], max_length: int) -> dict[str, object]:
    """What ``window.json`` holds: the window and the training lengths it came from."""
    counts = np.minimum(np.asarray(token_counts, dtype=np.int64), max_length)
    return {"window_tokens": window_from_lengths(token_counts, max_length),
            "rule": f"{WINDOW_PERCENTILE}th percentile of the training texts' token counts (cut at max_length "
                    f"{max_length}, special tokens included), at least {MIN_WINDOW}",
            "training_texts": int(counts.size),
            "training_tokens": {f"p{q}": int(np.percentile(counts, q)) for q in (50, 90, 95, 99)} if counts.size else {}}


def pool_windows(vectors: np.ndarray, owner: np.ndarray, weight: np.ndarray, count: int,
                 normalize: bool = True) -> np.ndarray:
    """The token-weighted mean of each text's piece vectors (L2-normalised when ``normalize``): a text of
    one piece keeps its vector exactly."""
    out = np.zeros((count, vectors.shape[1]), dtype=np.float32)
    np.add.at(out, owner, vectors.astype(np.float32) * weight[:, None])
    out /= np.bincount(owner, weights=weight, minlength=count).astype(np.float32).clip(min=1e-12)[:, None]
    if normalize:
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    whole = np.bincount(owner, minlength=count)[owner] == 1     # pieces that are a whole text
    out[owner[whole]] = vectors[whole]
    return out
