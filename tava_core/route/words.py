"""How the router's word signals see a text: lower-cased ``\\w+`` words, each hashed to one of
``WORD_BUCKETS`` buckets (word counts, rarity and word trust are tables over these buckets)."""
from __future__ import annotations

import re
import zlib

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
