"""A static student's per-word id cache gives exactly the tokenizer's ids, and refuses where it could not."""
from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest
from helpers import synthetic_texts, write_static_model

import tava_core.encoders.word_cache as word_cache
from tava_core.encoders.static import StaticEncoder
from tava_core.encoders.word_cache import WordCache, word_local

# every kind of character that could break "a text's ids are its words' ids joined": Unicode spaces,
# the control characters BERT's cleaning removes, combining marks, CJK (split per character), ligatures
# and compatibility forms (NFKC), Greek sigma (lower-casing), special tokens written in the text
POOL = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"()[]{}-_/#%&*+=<>@$^~`|\\")
        + [" "] * 10 + list("\t\n\r\xa0\u2000\u3000\u2028\u2029\u1680\u202f\u205f\u200b\x00\ufffd\x7f\x01\x1b")
        + list("\u0301\u0308\u00e9\u00c9\u00df\u03a3\u03c3\u0392\u4e2d\u6587\u3042\u00a8\ufb01\u2126\uff21\u00b5\u0130")
        + ["\U0001F600", "[MASK]", "[UNK]", "[CLS]", "##"] + list(word_cache.SPLIT_BUT_REMOVED))


def fuzz_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(POOL) for _ in range(rng.randint(0, 60))) for _ in range(n)]


def tokenizer_of(path):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def reference(tokenizer, texts):
    return [e.ids for e in tokenizer.encode_batch_fast(texts, add_special_tokens=False)]


def in_batches(cache: WordCache, texts: list[str], size: int = 64) -> list[list[int]]:
    return [ids for start in range(0, len(texts), size) for ids in cache.ids(texts[start:start + size])]


def with_nfkc(tokenizer):
    """The same WordPiece vocabulary behind NFKC + lower-casing: compatibility characters expand, some
    into a space and a combining mark ("\u00a8" -> " \u0308"), inside a word."""
    from tokenizers import Tokenizer

    spec = json.loads(tokenizer.to_str())
    spec["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Lowercase"}]}
    return Tokenizer.from_str(json.dumps(spec))


@pytest.mark.parametrize("normalizer", ["bert", "nfkc"])
@pytest.mark.parametrize("capacity", [100_000, 500])
def test_ids_equal_the_tokenizer_on_fuzzed_unicode(teacher_path, capacity, normalizer):
    """20,000 random strings over the pool, in batches of 64; a small capacity makes the cache start
    again many times mid-stream."""
    tokenizer = tokenizer_of(teacher_path)
    if normalizer == "nfkc":
        tokenizer = with_nfkc(tokenizer)
    cache = WordCache(tokenizer, capacity=capacity)
    assert cache.enabled
    texts = fuzz_texts(20_000, seed=capacity)
    assert in_batches(cache, texts) == reference(tokenizer, texts)
    assert 0 < len(cache.words) <= capacity + 64 * 61
    # one text at a time (a live query): new words come from the text's own tokenisation
    single = fuzz_texts(3000, seed=capacity + 1)
    assert in_batches(cache, single, size=1) == reference(tokenizer, single)


def test_ids_equal_the_tokenizer_on_scifact(teacher_path, scifact_dir):
    """Real text: SciFact's claims and abstracts (Greek letters, units, symbols), each alone and in batches."""
    tokenizer = tokenizer_of(teacher_path)
    cache = WordCache(tokenizer)
    queries = [json.loads(line)["text"] for line in (scifact_dir / "queries.jsonl").open()]
    documents = [(d["title"] + " " + d["text"]) for d in map(json.loads, (scifact_dir / "corpus.jsonl").open())]
    assert sum(not t.isascii() for t in documents) > 500            # the non-ASCII paths are exercised
    for texts in (queries, documents):
        assert in_batches(cache, texts) == reference(tokenizer, texts)
    assert [cache.ids([q])[0] for q in queries[:200]] == reference(tokenizer, queries[:200])


def test_the_refused_characters_are_the_ones_that_would_break_it(teacher_path, monkeypatch):
    """Each character str.split splits on but BERT's cleaning removes joins two words for the tokenizer:
    with the refusal switched off the cache gets them wrong, with it on they go to the tokenizer whole."""
    tokenizer = tokenizer_of(teacher_path)
    texts = [f"claim{c}text" for c in word_cache.SPLIT_BUT_REMOVED]
    assert WordCache(tokenizer).ids(texts) == reference(tokenizer, texts)
    monkeypatch.setattr(word_cache, "_REFUSED", re.compile("(?!)"))     # refuse nothing
    wrong = WordCache(tokenizer).ids(texts)
    assert all(a != b for a, b in zip(wrong, reference(tokenizer, texts), strict=True))
    # every other whitespace str.split knows is whitespace to the tokenizer too
    spaces = "".join(chr(c) for c in range(0x110000) if chr(c).isspace() and chr(c) not in word_cache.SPLIT_BUT_REMOVED)
    texts = [f"claim{c}text" for c in spaces]
    assert WordCache(tokenizer).ids(texts) == reference(tokenizer, texts)


def byte_level_bpe():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.train_from_iterator(synthetic_texts(300, seed=0), trainers.BpeTrainer(vocab_size=300, show_progress=False))
    return tokenizer


def test_tokenizers_that_are_not_word_local_get_no_cache(teacher_path):
    """Byte-level BPE keeps the space in a word's tokens ("Ġword"), and an added token with a space
    matches across words: both get the tokenizer itself, ids unchanged."""
    from tokenizers import AddedToken

    bpe = byte_level_bpe()
    assert not word_local(bpe) and not WordCache(bpe).enabled
    texts = synthetic_texts(50, seed=2)
    assert reference(bpe, texts)[0] != [i for w in texts[0].split() for i in reference(bpe, [w])[0]]
    assert WordCache(bpe).ids(texts) == reference(bpe, texts)

    bert = tokenizer_of(teacher_path)
    assert word_local(bert)
    bert.add_tokens([AddedToken("new york", normalized=True)])
    assert not word_local(bert)
    texts = ["flights to new york today"]
    assert WordCache(bert).ids(texts) == reference(bert, texts)


@pytest.mark.parametrize("max_length", [None, 8])
def test_static_vectors_equal_the_uncached_ones(tmp_path, teacher_path, max_length):
    """StaticEncoder with its cache gives the vectors it gives without one: batches, single texts
    (the live-query path) and the cut at max_length."""
    from tava_core.config import EncoderSpec

    directory = write_static_model(tmp_path / "static", teacher_path, 16, seed=0)
    spec = EncoderSpec(model=str(directory), max_length=max_length)
    cached, plain = StaticEncoder(directory, spec), StaticEncoder(directory, spec)
    assert cached.word_cache.enabled
    plain.word_cache.enabled = False
    texts = synthetic_texts(500, seed=4) + fuzz_texts(500, seed=5) + ["", " ", "x"]
    np.testing.assert_array_equal(cached.encode(texts), plain.encode(texts))
    for text in texts[:50] + texts[-60:]:
        np.testing.assert_array_equal(cached.encode([text], kind="query"), plain.encode([text], kind="query"))


def test_stage_a_static_student_prepares_the_same_batches(teacher_path):
    """Stage A's static student tokenises every training batch through the cache: the same flat ids and
    offsets as the tokenizer gives, cut at its max_length."""
    import torch

    from tava_core.distill.students import StaticStudent

    tokenizer = tokenizer_of(teacher_path)
    student = StaticStudent(torch.zeros(tokenizer.get_vocab_size(), 4), tokenizer, None, max_length=16)
    assert student.word_cache.enabled
    texts = synthetic_texts(300, seed=6) + fuzz_texts(300, seed=7)
    for start in range(0, len(texts), 64):
        batch = texts[start:start + 64]
        cached = student.prepare(batch)
        student.word_cache.enabled = False
        plain = student.prepare(batch)
        student.word_cache.enabled = True
        assert all(torch.equal(cached[key], plain[key]) for key in ("input_ids", "offsets"))
