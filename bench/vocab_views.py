"""Vocabulary views: short training texts that put the tokenizer's rare tokens in context (tried for
issue #15's generic-text static student, not adopted: see docs/benchmarks.md).

The hypothesis: a static student is a table of token vectors and a row only learns when its token
occurs in the training text, so a student distilled from generic text (20,000 passages: 8,003 of
MiniLM's 30,522 tokens never occur) leaves a specialist corpus's pieces at their start. A vocabulary
view is a short span of the generic text with some of its words replaced by words built from tokens
that text rarely or never contains; the teacher embeds it like any other text. ``bench/transfer.py
--vocab-views N --vocab-fraction F`` trains with them; ``--diagnose`` here tests the hypothesis directly:
it buckets SciFact's dev queries by their share of rare tokens and reports each bucket's cosine to the
teacher and nDCG@10 gap, for the students given.

    python bench/vocab_views.py --diagnose STUDENT_DIR [STUDENT_DIR ...]   # -> bench/results/vocab_views_dev.json
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from shared_data import ROOT  # noqa: E402,F401 - sets sys.path

from tava_core.distill.spans import _rng, make_span
from tava_core.distill.vocabulary import unpadded

# A vocabulary entry usable as a word: letters only (no digits, punctuation or [unused] slots).
_LETTERS = re.compile(r"[^\W\d_]+")
CONTINUATION = "##"


def token_counts(texts: Sequence[str], tokenizer: Any) -> Counter[int]:
    """How often each token id of ``tokenizer`` (a ``tokenizers.Tokenizer``) occurs in ``texts``."""
    tokenizer = unpadded(tokenizer)
    counts: Counter[int] = Counter()
    for start in range(0, len(texts), 2048):
        for encoding in tokenizer.encode_batch(list(texts[start:start + 2048]), add_special_tokens=False):
            counts.update(encoding.ids)
    return counts


def rare_words(texts: Sequence[str], tokenizer: Any, *, max_count: int = 4, min_length: int = 3) -> list[str]:
    """Words that carry the vocabulary's tokens seen at most ``max_count`` times in ``texts``.

    A whole-word token (letters, ``min_length`` or longer) is its own word; a continuation piece
    (``##och``) is glued to a frequent short word start so that the tokenizer cuts it back out
    ("mit" + "och" → "mit", "##och"); a glued word that does not tokenise to its two pieces is
    dropped. Sorted by token id (deterministic)."""
    counts = token_counts(texts, tokenizer)
    vocab = tokenizer.get_vocab()
    starts = [t for t, i in vocab.items() if _LETTERS.fullmatch(t) and 2 <= len(t) <= 4]
    # the most frequent short starts: a piece glued to a common start reads like a real word
    starts = sorted(starts, key=lambda t: (-counts.get(vocab[t], 0), t))[:64]
    plain = unpadded(tokenizer)
    words: list[tuple[int, str]] = []
    glued: list[tuple[int, str, str]] = []
    for token, token_id in vocab.items():
        if counts.get(token_id, 0) > max_count:
            continue
        if token.startswith(CONTINUATION):
            piece = token[len(CONTINUATION):]
            if _LETTERS.fullmatch(piece) and len(piece) >= 2:
                glued.append((token_id, starts[token_id % len(starts)], piece))
        elif _LETTERS.fullmatch(token) and len(token) >= min_length:
            words.append((token_id, token))
    if glued:
        encodings = plain.encode_batch([s + p for _, s, p in glued], add_special_tokens=False)
        for (token_id, start, piece), encoding in zip(glued, encodings, strict=True):
            if encoding.ids[-1:] == [token_id] and len(encoding.ids) == 2:
                words.append((token_id, start + piece))
    return [w for _, w in sorted(words)]


def make_vocab_view(text: str, words: Sequence[str], rng: np.random.Generator, fraction: float) -> str:
    """A span of ``text`` (as spans.make_span cuts it) with ``fraction`` of its words, at least one,
    replaced by words drawn from ``words``."""
    span = make_span(text, rng).split()
    if not span or not words:
        return " ".join(span)
    replace = max(1, int(round(fraction * len(span))))
    for position in rng.choice(len(span), size=min(replace, len(span)), replace=False):
        span[int(position)] = words[int(rng.integers(len(words)))]
    return " ".join(span)


def make_vocab_views(ids: Sequence[str], texts: Sequence[str], words: Sequence[str], views: int, seed: int,
                     *, fraction: float = 0.25) -> tuple[list[str], list[str]]:
    """``views`` vocabulary views of every text; ids ``<text id>#vocab<k>``. The view's randomness
    differs from the span views' of the same text and seed (a view is not a span with edits)."""
    out_ids: list[str] = []
    out: list[str] = []
    for text_id, text in zip(ids, texts, strict=False):
        for view in range(views):
            out_ids.append(f"{text_id}#vocab{view}")
            out.append(make_vocab_view(text, words, _rng(text_id, 1000 + view, seed), fraction))
    return out_ids, out


def diagnose(student_dirs: Sequence[str], out: str) -> dict[str, Any]:
    """Per student: SciFact dev queries bucketed by the share of their tokens that the generic training
    text (20,000 passages + one span view each) shows at most 4 times; cosine to the teacher's query
    vector and nDCG@10 gap (teacher - student, the teacher's documents) per bucket."""
    import json

    from tokenizers import Tokenizer

    from bench.transfer import judged, score
    from bench.transfer_data import passages, scifact, spans, teacher_vectors
    from tava_core.encoders import load_encoder, resolve_model_path

    teacher = "all-MiniLM-L6-v2"
    tokenizer = Tokenizer.from_file(str(resolve_model_path(teacher) / "tokenizer.json"))
    generic = passages(20000)
    counts = token_counts(generic.texts + spans(generic).texts, tokenizer)
    sci = scifact()
    rows = judged(sci, "train")
    queries = [sci.queries.texts[k] for k in rows]
    teacher_q = teacher_vectors(teacher, sci.queries, compute=False)
    docs = teacher_vectors(teacher, sci.docs, compute=False)
    if teacher_q is None or docs is None:
        raise SystemExit("the teacher's SciFact vectors are not cached: python bench/transfer_data.py")
    teacher_q = teacher_q[rows]
    encodings = unpadded(tokenizer).encode_batch(queries, add_special_tokens=False)
    share = np.array([np.mean([counts.get(i, 0) <= 4 for i in e.ids]) for e in encodings])
    teacher_ndcg = score(teacher_q, sci, "train", docs)
    buckets = [(-1.0, 0.0), (0.0, 0.05), (0.05, 0.15), (0.15, 1.0)]
    result: dict[str, Any] = {"queries": len(rows), "rare": "token seen <= 4 times in the generic training text",
                              "mean_rare_share": round(float(share.mean()), 4), "students": {}}
    for student_dir in student_dirs:
        student_q = load_encoder(student_dir, cache=False).encode(queries, kind="query", batch_size=64)
        cosine = (student_q * teacher_q).sum(1)
        ndcg = score(student_q, sci, "train", docs)
        result["students"][student_dir] = {
            "cosine": round(float(cosine.mean()), 4), "retention": round(float(ndcg.mean() / teacher_ndcg.mean()), 4),
            "buckets": [{"rare_share": [lo, hi], "queries": int(m.sum()), "cosine": round(float(cosine[m].mean()), 4),
                         "ndcg_gap": round(float((teacher_ndcg[m] - ndcg[m]).mean()), 4)}
                        for lo, hi in buckets if (m := (share > lo) & (share <= hi)).any()]}
        print(json.dumps({student_dir: result["students"][student_dir]}, indent=1))
    Path(out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--diagnose", nargs="+", required=True, help="student directories (bench/transfer.py --keep-student)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "vocab_views_dev.json"))
    args = parser.parse_args()
    diagnose(args.diagnose, args.out)
