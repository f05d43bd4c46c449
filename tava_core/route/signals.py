"""Label-free confidence signals: how likely the student's vector of a query is to agree with
the teacher's, computed from the query text and the student's vector alone (no teacher call).

Every signal is "higher = less trustworthy" except where the name says otherwise, and each is
cheap at query time (a few small matrix products per query):

- ``head_disagreement``: several linear heads (ridge maps student -> teacher, fitted on
  bootstrap halves of the training pairs) disagree where the pairs were thin;
- ``cycle_error``: 1 - cos(s, B(F(s))) for a forward ridge map F (student -> teacher) and a
  backward one B (teacher -> student): the reverse map fails to reconstruct off-manifold inputs;
- ``knn_distance``: 1 - mean cosine of the query's student vector to its k nearest training
  texts (a PCA-reduced bank): is the query on the manifold the student was trained on?
- ``rare_word_share``: share of the query's words the training texts (almost) never showed;
- ``length``: words in the query (short queries carry less context).
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

SIGNAL_NAMES = ("head_disagreement", "cycle_error", "knn_distance", "rare_word_share", "length")
_WORD = re.compile(r"\w+")
WORD_BUCKETS = 1 << 18   # hashed word counts: ~1 MB, collisions only make rare words look common


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def ridge_map(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """W minimising ||xW - y||^2 + alpha ||W||^2 (closed form, float64 for stability)."""
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    gram = x64.T @ x64 + alpha * np.eye(x.shape[1])
    return np.linalg.solve(gram, x64.T @ y64).astype(np.float32)


def word_buckets(text: str) -> np.ndarray:
    """Hashed bucket of every lower-cased word of ``text`` (crc32 is stable across processes)."""
    words = _WORD.findall(text.lower())
    return np.fromiter((zlib.crc32(w.encode()) % WORD_BUCKETS for w in words), dtype=np.int64, count=len(words))


@dataclass
class SignalModel:
    """Everything the signals need at query time; arrays are saved as safetensors by the router."""

    heads: np.ndarray            # (n_heads, d_student, d_teacher) ridge heads on bootstrap halves
    forward: np.ndarray          # (d_student, d_teacher)
    backward: np.ndarray         # (d_teacher, d_student)
    bank: np.ndarray             # (n_bank, pca_dim) PCA-reduced unit student vectors of training texts
    pca: np.ndarray              # (d_student, pca_dim) uncentred PCA basis of the training vectors
    pca_mean: np.ndarray         # (d_student,) mean training vector (centres the combiner's vector features)
    word_counts: np.ndarray      # (WORD_BUCKETS,) int32 counts of words in the training texts
    knn: int = 10
    rare_below: int = 2          # a word seen fewer times than this in the training texts is rare
    info: dict = field(default_factory=dict)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"heads": self.heads, "forward": self.forward, "backward": self.backward, "bank": self.bank,
                "pca": self.pca, "pca_mean": self.pca_mean, "word_counts": self.word_counts}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], *, knn: int, rare_below: int, info: dict) -> "SignalModel":
        return cls(**{k: np.asarray(arrays[k]) for k in ("heads", "forward", "backward", "bank", "pca", "pca_mean",
                                                          "word_counts")}, knn=knn, rare_below=rare_below, info=info)


def fit_signal_model(texts: Sequence[str], student: np.ndarray, teacher: np.ndarray, *, n_heads: int = 4,
                     alpha: float = 1.0, bank_size: int = 4096, pca_dim: int = 64, knn: int = 10,
                     rare_below: int = 2, seed: int = 0) -> SignalModel:
    """Fit the signals on the student's TRAINING texts (their student and teacher vectors): the
    heads and maps learn where pairs exist, the bank and word counts record what was seen."""
    if len(texts) != len(student) or len(student) != len(teacher):
        raise ValueError(f"texts ({len(texts)}), student ({len(student)}) and teacher ({len(teacher)}) vectors "
                         "must be the same texts")
    rng = np.random.default_rng(seed)
    s, t = _unit(student), _unit(teacher)
    heads = []
    for _ in range(n_heads):
        half = rng.choice(len(s), size=max(len(s) // 2, 2), replace=False)
        heads.append(ridge_map(s[half], t[half], alpha))
    forward = ridge_map(s, t, alpha)
    backward = ridge_map(t, s, alpha)
    pca_mean = s.mean(axis=0)
    # Uncentred PCA (the mean direction included): dot products in the reduced space approximate
    # the cosines of the unit vectors, and a query off the training manifold projects short, so
    # its nearest-neighbour similarities drop instead of being blown up by re-normalisation.
    _, _, vt = np.linalg.svd(s[rng.choice(len(s), size=min(len(s), 8192), replace=False)], full_matrices=False)
    pca = vt[:pca_dim].T.astype(np.float32)
    pick = rng.choice(len(s), size=min(bank_size, len(s)), replace=False)
    bank = (s[pick] @ pca).astype(np.float32)
    counts = np.zeros(WORD_BUCKETS, dtype=np.int32)
    for text in texts:
        np.add.at(counts, word_buckets(text), 1)
    return SignalModel(heads=np.stack(heads), forward=forward, backward=backward, bank=bank, pca=pca,
                       pca_mean=pca_mean.astype(np.float32), word_counts=counts, knn=knn, rare_below=rare_below,
                       info={"training_texts": len(texts), "n_heads": n_heads, "alpha": alpha,
                             "bank_size": int(len(bank)), "pca_dim": int(pca.shape[1])})


def compute_signals(model: SignalModel, texts: Sequence[str], student: np.ndarray,
                    names: Sequence[str] = SIGNAL_NAMES) -> dict[str, np.ndarray]:
    """The named signals of ``texts`` given their student vectors; float32 arrays of len(texts)."""
    s = _unit(student)
    out: dict[str, np.ndarray] = {}
    if "head_disagreement" in names:
        mapped = np.stack([_unit(s @ h) for h in model.heads])          # (heads, n, d)
        centre = _unit(mapped.mean(axis=0))
        out["head_disagreement"] = (1.0 - np.einsum("hnd,nd->hn", mapped, centre).mean(axis=0)).astype(np.float32)
    if "cycle_error" in names:
        back = _unit((s @ model.forward) @ model.backward)
        out["cycle_error"] = (1.0 - np.sum(back * s, axis=1)).astype(np.float32)
    if "knn_distance" in names:
        sims = (s @ model.pca) @ model.bank.T
        k = min(model.knn, sims.shape[1])
        nearest = np.partition(sims, sims.shape[1] - k, axis=1)[:, -k:]
        out["knn_distance"] = (1.0 - nearest.mean(axis=1)).astype(np.float32)
    if "rare_word_share" in names or "length" in names:
        rare, length = np.zeros(len(texts), np.float32), np.zeros(len(texts), np.float32)
        for row, text in enumerate(texts):
            buckets = word_buckets(text)
            length[row] = len(buckets)
            if len(buckets):
                rare[row] = float(np.mean(model.word_counts[buckets] < model.rare_below))
        if "rare_word_share" in names:
            out["rare_word_share"] = rare
        if "length" in names:
            out["length"] = length
    return out
