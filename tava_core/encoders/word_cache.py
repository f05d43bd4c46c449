"""Token ids of a static student's texts from a per-word cache instead of the whole tokenizer pipeline.

Why: a static student's vector is a mean of table rows, so the tokenizer is most of its cost. Measured on
a Zen 2 EPYC (bench/results/route_fastpath_zen2_dev.json), ``encode_batch_fast`` took 40 of the 49 µs a
SciFact query cost at batch 64, and 40 of 93 µs at batch 1. Query and document words repeat (Zipf), so
the ids of each whitespace-separated word are looked up in a dict and the tokenizer runs only on words
not seen yet.

When is that exact? For a WordPiece tokenizer behind a BERT-style normalizer (lower-casing, accent
stripping, NFx, BERT's text cleaning) and a pre-tokenizer that splits on whitespace and punctuation, the
ids of a text are the concatenation of the ids of its whitespace-separated words: normalisation is
per character, and whitespace always ends a word. Two things break it, and both fall back to the
tokenizer for the whole text:

- the seven characters where Python's ``str.split`` and the tokenizer disagree about whitespace (BERT's
  cleaning *removes* the control characters ``\\x0b``, ``\\x0c``, ``\\x1c``-``\\x1f`` and ``\\x85``, which
  ``str.split`` splits on): a text holding one is tokenised whole;
- an added token containing whitespace (it would match across words): such a tokenizer gets no cache.

Any other tokenizer (BPE or Unigram with byte-level or metaspace pre-tokenisation, where a word's ids
depend on the space before it) gets no cache either: ``WordCache.ids`` then is the tokenizer itself.
At construction the cache also checks itself against the tokenizer on a few probe texts and turns
itself off on any difference. tests/encoders/test_word_cache.py compares the two on real corpora.
"""
from __future__ import annotations

import bisect
import itertools
import json
import re
from typing import Any, Sequence

# The characters str.split splits on that BERT's text cleaning *removes* (control characters, category
# Cc): "a\x0bb" is one word to the tokenizer and two to str.split. Every other character str.split takes
# for whitespace (space, tab, newline, carriage return, Unicode's Zs / Zl / Zp) the tokenizer splits on too.
SPLIT_BUT_REMOVED = "\x0b\x0c\x1c\x1d\x1e\x1f\x85"
_REFUSED = re.compile(f"[{SPLIT_BUT_REMOVED}]")

# tokenizers whose pipeline is word-local (see the module docstring)
_NORMALIZERS = {"BertNormalizer", "Lowercase", "NFC", "NFD", "NFKC", "NFKD", "StripAccents", "Strip"}
_PRE_TOKENIZERS = {"BertPreTokenizer", "Whitespace", "WhitespaceSplit", "Punctuation", "Digits"}
_MODELS = {"WordPiece", "WordLevel"}

PROBES = ("Hello, world!  Tabs\tand\nnew lines\r\n", "COVID-19 vaccines reduce ICU admissions by 40%.",
          "x" * 300 + " unbelievably-long_words don't ##split [MASK] [UNK]x", "",
          "e.g. p<0.05; (n=1,024) -- 3.14159 A/B tests", "   leading and trailing   ")


def _components(node: Any, key: str) -> list[str]:
    """The type names of a normalizer / pre-tokenizer node, flattening ``Sequence``."""
    if node is None:
        return []
    if node.get("type") == "Sequence":
        return [name for child in node.get(key, []) for name in _components(child, key)]
    return [str(node.get("type"))]


def _spec(component: Any) -> Any:
    """A normalizer's / pre-tokenizer's JSON (None for none): its own state, not the whole tokenizer's,
    whose vocabulary made ``to_str()`` cost ~12 ms on every static encoder's load."""
    return None if component is None else json.loads(component.__getstate__())


def word_local(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` (a ``tokenizers.Tokenizer``) gives a text's ids as its words' ids joined."""
    normalizers = _components(_spec(tokenizer.normalizer), "normalizers")
    pre_tokenizers = _components(_spec(tokenizer.pre_tokenizer), "pretokenizers")
    added = [token.content for token in tokenizer.get_added_tokens_decoder().values()]
    return (set(normalizers) <= _NORMALIZERS and bool(pre_tokenizers) and set(pre_tokenizers) <= _PRE_TOKENIZERS
            and type(tokenizer.model).__name__ in _MODELS
            and not any(any(c.isspace() for c in content) for content in added))


class WordCache:
    """``ids(texts)``: each text's token ids without special tokens, as ``tokenizer.encode_batch_fast``
    gives them, from a cache of each word's ids where that is exact (the module docstring).

    ``capacity`` bounds the words kept (~220 bytes a word: 100,000 words ~22 MB; 60,000 generic passages
    hold ~80,000 distinct ones); when it is reached the cache starts again empty, so a long stream of new
    words (a backfill of a big corpus) cannot grow it without bound.
    """

    def __init__(self, tokenizer: Any, capacity: int = 100_000) -> None:
        self.tokenizer = tokenizer
        self.capacity = int(capacity)
        self.words: dict[str, tuple[int, ...]] = {}
        self.enabled = self.capacity > 0 and word_local(tokenizer)
        if self.enabled and self.ids(list(PROBES)) != self._tokenize(list(PROBES)):
            self.enabled = False   # a pipeline the type check let through but that is not word-local
        self.words.clear()

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch_fast(texts, add_special_tokens=False)]

    def _word_ids(self, words: list[str]) -> list[tuple[int, ...]]:
        """Each word's ids from ONE tokenizer call over the words joined by spaces, each token given to
        the word its first character falls in: the tokenizer's cost is per text as much as per
        character, so a cold batch of ~600 new words as 600 texts cost 1.4x its 64 queries whole."""
        joined = " ".join(words)
        encoding = self.tokenizer.encode(joined, add_special_tokens=False)
        starts = list(itertools.accumulate((len(w) + 1 for w in words[:-1]), initial=0))
        out: list[list[int]] = [[] for _ in words]
        for token, (begin, _) in zip(encoding.ids, encoding.offsets, strict=True):
            out[bisect.bisect_right(starts, begin) - 1].append(token)
        return [tuple(ids) for ids in out]

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        texts = list(texts)
        if not self.enabled:
            return self._tokenize(texts)
        words = self.words
        split = [None if _REFUSED.search(text) else text.split() for text in texts]
        unique = {w for parts in split if parts is not None for w in parts}
        missing = [w for w in unique if w not in words]
        if missing and len(words) + len(missing) > self.capacity:
            words.clear()
            missing = list(unique)
        if missing:
            words.update(zip(missing, self._word_ids(missing), strict=True))
        whole = [i for i, parts in enumerate(split) if parts is None]
        tokenized = dict(zip(whole, self._tokenize([texts[i] for i in whole]), strict=True)) if whole else {}
        out: list[list[int]] = []
        for i, parts in enumerate(split):
            if parts is None:
                out.append(tokenized[i])
                continue
            ids: list[int] = []
            for w in parts:
                # a word evicted by a concurrent clear() (threads share the cache) is tokenised again
                found = words.get(w)
                ids.extend(found if found is not None else self._tokenize([w])[0])
            out.append(ids)
        return out
