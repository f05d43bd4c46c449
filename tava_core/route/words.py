"""How the router's word signals see a text: lower-cased ``\\w+`` words, each hashed to one of
``WORD_BUCKETS`` buckets (word counts, rarity and word trust are tables over these buckets)."""
from __future__ import annotations

import re
import zlib
from typing import Sequence

import numpy as np

WORD = re.compile(r"\w+")
WORD_BUCKETS = 1 << 18   # hashed word counts: ~1 MB, collisions only make rare words look common


def bucket_of(word: str) -> int:
    """The bucket of one lower-cased word (crc32 is stable across processes)."""
    return zlib.crc32(word.encode()) % WORD_BUCKETS


def word_buckets(text: str) -> np.ndarray:
    """Hashed bucket of every lower-cased word of ``text``."""
    words = WORD.findall(text.lower())
    return np.fromiter(map(bucket_of, words), dtype=np.int64, count=len(words))


class WordBags:
    """Texts as hashed word bags, tokenised once for every word signal: a flat array of buckets and,
    per word, the text it belongs to, weighted 1 / |words| so a sum over a text's words is a mean."""

    def __init__(self, texts: Sequence[str]):
        per_text = [word_buckets(t) for t in texts]
        self.lengths = np.fromiter(map(len, per_text), dtype=np.int64, count=len(per_text))
        self.n = len(per_text)
        self.buckets = np.concatenate(per_text) if per_text else np.zeros(0, np.int64)
        self.owner = np.repeat(np.arange(self.n), self.lengths)
        self.weight = np.repeat(1.0 / np.maximum(self.lengths, 1), self.lengths)

    def mean(self, per_word: np.ndarray) -> np.ndarray:
        """Per text, the mean of ``per_word`` (one value per word, in ``buckets`` order; 0 for a text
        without words)."""
        return np.bincount(self.owner, weights=per_word * self.weight, minlength=self.n)

    def predict(self, table: np.ndarray) -> np.ndarray:
        """Per text, the mean of its words' values in a per-bucket ``table``."""
        return self.mean(table[self.buckets])

    def adjoint(self, per_text: np.ndarray) -> np.ndarray:
        """The transpose of ``predict``: per bucket, the weighted sum of its texts' values."""
        return np.bincount(self.buckets, weights=per_text[self.owner] * self.weight, minlength=WORD_BUCKETS)
