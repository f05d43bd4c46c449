"""Vocabulary expansion of a static student: the training text's frequent words that the teacher's
tokenizer cuts into pieces become whole-word tokens.

A static student averages token vectors, so a domain word the tokenizer splits ("glucocorticoid" →
"glu", "##co", "##cor", ...) is represented by pieces that mean something else in other words; a
whole-word token starts at the teacher's own vector of the word (model2vec embeds each vocabulary
entry with the teacher) and then trains like any other row. pyNIFE expands its vocabulary the same
way from its query corpus.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Any, Iterable

# A candidate word: letters (any script), optionally joined by inner hyphens or apostrophes; no
# digits (numbers are many and rarely carry a query's meaning).
WORD = re.compile(r"[^\W\d_]+(?:[-'][^\W\d_]+)*")


def unpadded(tokenizer: Any) -> Any:
    """A copy of a ``tokenizers.Tokenizer`` without padding or truncation: a teacher's tokenizer.json
    may pad every text to a fixed length (all-MiniLM-L6-v2's pads to 128)."""
    tokenizer = type(tokenizer).from_str(tokenizer.to_str())
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def frequent_split_words(texts: Iterable[str], tokenizer: Any, count: int, *, min_count: int = 3,
                         min_length: int = 4) -> list[str]:
    """The ``count`` most frequent words of ``texts`` (normalised as ``tokenizer`` normalises, e.g.
    lower-cased) that ``tokenizer`` (a ``tokenizers.Tokenizer``) encodes as more than one token, seen
    at least ``min_count`` times; most frequent first, ties in alphabetical order (deterministic)."""
    if count <= 0:
        return []
    tokenizer = unpadded(tokenizer)       # padding would make every word look split
    normalizer = tokenizer.normalizer
    counts: Counter[str] = Counter()
    for text in texts:
        if normalizer is not None:
            text = normalizer.normalize_str(text)
        counts.update(w for w in WORD.findall(text) if len(w) >= min_length)
    ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    chosen: list[str] = []
    for start in range(0, len(ranked), 4096):        # tokenise in batches, stop once enough are found
        batch = ranked[start:start + 4096]
        for word, encoding in zip(batch, tokenizer.encode_batch(batch, add_special_tokens=False), strict=True):
            if len(encoding.ids) > 1:
                chosen.append(word)
                if len(chosen) == count:
                    return chosen
    return chosen
