"""A static student's start from the teacher's own token vectors in context.

A mean-pooling teacher (the sentence-transformers default: all-MiniLM-L6-v2, all-mpnet-base-v2)
embeds a text as the mean of its last layer's token vectors. A static student embeds it as the
mean of one fixed vector per token. If each token's fixed vector is the teacher's vector of that
token averaged over its occurrences in the training text, the student's mean is the teacher's mean
up to how much each occurrence differs from its token's average -- so training starts where the
teacher already is on this text's vocabulary, not at model2vec's vector of the token alone, which
sits far from the space a text's mean lives in (on SciFact's dev queries a MiniLM student kept 0.18
of its teacher's nDCG@10 from the model2vec table and 0.82 from this one, before any training).

The averages are taken over the training texts cut into windows of ``window`` tokens (the student
reads at most ``max_length`` tokens anyway, and short windows keep attention cheap), each window
framed by the teacher's special tokens as the teacher frames a text. Tokens the texts never show keep
their model2vec vector, rescaled to the averages' typical length.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch

from ..errors import ConfigError
from .vocabulary import unpadded

CONTEXT_WINDOW = 128


def pooling_mode(teacher_dir: Path) -> Optional[str]:
    """The pooling mode of a teacher's sentence-transformers directory, e.g. ``mean`` or ``cls`` (None:
    not such a directory). Read as the encoder reads it, from the configs of every sentence-transformers
    version."""
    from ..encoders.transformer import read_sentence_transformers_layout

    return read_sentence_transformers_layout(Path(teacher_dir)).get("pooling_mode")


def _frame(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids a teacher's tokenizer puts before and after a text ([CLS] / [SEP], <s> / </s>)."""
    probe = tokenizer.encode("a", add_special_tokens=True)
    inner = tokenizer.encode("a", add_special_tokens=False).ids
    ids, special = probe.ids, probe.special_tokens_mask
    first = next((k for k, s in enumerate(special) if not s), len(ids))
    if ids[first:first + len(inner)] != inner:
        raise ConfigError("cannot find where the teacher's tokenizer puts a text between its special tokens",
                          hint="use static_init model2vec")
    return ids[:first], ids[first + len(inner):]


TOKENIZE_CHUNK = 4096   # texts tokenised at once: only lengths are kept from the first pass


def _token_ids(texts: Sequence[str], tokenizer: Any) -> Iterator[list[int]]:
    """Each text's token ids (no special tokens), tokenised a chunk at a time."""
    for start in range(0, len(texts), TOKENIZE_CHUNK):
        for encoding in tokenizer.encode_batch(list(texts[start:start + TOKENIZE_CHUNK]), add_special_tokens=False):
            yield encoding.ids


def windows(texts: Sequence[str], tokenizer: Any, window: int, *, max_tokens: Optional[int] = None,
            seed: int = 0) -> list[list[int]]:
    """Every text's token ids (no special tokens) cut into consecutive pieces of at most ``window``
    minus the frame, each framed by the teacher's special tokens, in text order. ``max_tokens``: a
    random sample of the pieces (seeded, kept in text order) holding about that many tokens, the frame
    included. Two passes over the text, so that a big corpus is never held as token ids: the first
    keeps each text's length only, the second tokenises again the texts that hold a sampled piece."""
    tokenizer = unpadded(tokenizer)
    head, tail = _frame(tokenizer)
    frame = len(head) + len(tail)
    size = window - frame
    if size < 1:
        raise ConfigError(f"context window {window} leaves no room for text between the special tokens")
    lengths = np.fromiter((len(ids) for ids in _token_ids(texts, tokenizer)), dtype=np.int64, count=len(texts))
    pieces = -(-lengths // size)                                    # per text; 0 for a text with no tokens
    text_of = np.repeat(np.arange(len(texts)), pieces)              # per piece: its text ...
    offset = np.arange(len(text_of)) - np.repeat(np.cumsum(pieces) - pieces, pieces)   # ... and its place there
    piece_length = np.minimum(size, lengths[text_of] - offset * size) + frame
    keep = np.arange(len(text_of))
    if max_tokens is not None and piece_length.sum() > max_tokens:
        shuffled = np.random.default_rng(seed).permutation(len(text_of))
        total = np.cumsum(piece_length[shuffled])
        keep = np.sort(shuffled[:int(np.searchsorted(total, max_tokens)) + 1])
    wanted = np.unique(text_of[keep])
    ids_of = dict(zip(wanted.tolist(), _token_ids([texts[i] for i in wanted], tokenizer), strict=True))
    return [head + ids_of[int(text_of[p])][int(offset[p]) * size:(int(offset[p]) + 1) * size] + tail for p in keep]


@torch.inference_mode()
def contextual_token_sums(teacher_dir: Path, texts: Sequence[str], *, window: int = CONTEXT_WINDOW,
                          max_tokens: Optional[int] = None, seed: int = 0, batch_size: int = 32,
                          progress: bool = False) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """(sums, counts, vocab): per teacher token id, the sum of the teacher's last-layer vectors of that
    token over its occurrences in ``texts`` (special tokens left out, as the student has none) and the
    number of occurrences; ``vocab`` maps token strings to those ids. ``max_tokens``: read a random
    sample of the windows (seeded) holding about that many tokens -- the pass costs a teacher forward
    per token, and a big teacher reads a few hundred thousand tokens in the time it embeds them once."""
    from tokenizers import Tokenizer
    from transformers import AutoModel

    tokenizer = unpadded(Tokenizer.from_file(str(Path(teacher_dir) / "tokenizer.json")))
    model = AutoModel.from_pretrained(str(teacher_dir), dtype=torch.float32).eval()
    head, tail = _frame(tokenizer)
    pieces = windows(texts, tokenizer, window, max_tokens=max_tokens, seed=seed)
    vocab = tokenizer.get_vocab()
    dim = int(model.config.hidden_size)
    sums = torch.zeros((max(vocab.values()) + 1, dim), dtype=torch.float64)
    counts = torch.zeros(len(sums), dtype=torch.int64)
    order = np.argsort([len(p) for p in pieces], kind="stable")    # similar lengths share a batch: less padding
    batches = range(0, len(pieces), batch_size)
    if progress:
        from ..progress import progress_bar

        batches = progress_bar(batches, desc="teacher token vectors", unit="batch")
    for start in batches:
        batch = [pieces[i] for i in order[start:start + batch_size]]
        length = max(len(p) for p in batch)
        ids = torch.zeros((len(batch), length), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, piece in enumerate(batch):
            ids[row, :len(piece)] = torch.tensor(piece)
            mask[row, :len(piece)] = 1
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
        # the text's own tokens: inside the attention mask, outside the frame
        inner = mask.clone()
        inner[:, :len(head)] = 0
        for row, piece in enumerate(batch):
            inner[row, len(piece) - len(tail):] = 0
        keep = inner.bool()
        tokens = ids[keep]
        sums.index_add_(0, tokens, hidden[keep].double())
        counts.index_add_(0, tokens, torch.ones_like(tokens))
    return sums.numpy(), counts.numpy(), vocab


def cached_token_sums(cache_dir: Optional[Path], teacher_dir: Path, texts: Sequence[str], *,
                      max_tokens: Optional[int] = None, seed: int = 0,
                      progress: bool = False) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """``contextual_token_sums``, kept under ``cache_dir`` (the teacher's own cache directory) per text,
    sample and window: the pass is most of a static student's cost with a big teacher (mpnet reads
    400,000 tokens in ~20 minutes here), and a second static student of the same text -- another blend
    partner, another weight or learning rate -- starts from the same sums. Only the tokens seen are
    stored; a damaged entry is computed again."""
    if cache_dir is None:
        return contextual_token_sums(teacher_dir, texts, max_tokens=max_tokens, seed=seed, progress=progress)
    from tokenizers import Tokenizer

    from ..io import atomic_directory, stable_hash

    digest = hashlib.sha256()
    for text in texts:                            # one at a time: a big corpus is never joined in memory
        digest.update(text.encode())
        digest.update(b"\x1e")
    key = stable_hash({"texts": digest.hexdigest(), "window": CONTEXT_WINDOW, "max_tokens": max_tokens, "seed": seed})
    entry = Path(cache_dir) / f"context-{key}"
    try:
        with np.load(entry / "sums.npz") as stored:
            ids, seen_sums, seen_counts = stored["ids"], stored["sums"], stored["counts"]
        vocab = unpadded(Tokenizer.from_file(str(Path(teacher_dir) / "tokenizer.json"))).get_vocab()
        rows = max(vocab.values()) + 1
        sums = np.zeros((rows, seen_sums.shape[1]), dtype=np.float64)
        counts = np.zeros(rows, dtype=np.int64)
        sums[ids], counts[ids] = seen_sums, seen_counts
        return sums, counts, vocab
    except (OSError, KeyError, ValueError, IndexError):
        pass                                      # absent or damaged: computed (again) below
    sums, counts, vocab = contextual_token_sums(teacher_dir, texts, max_tokens=max_tokens, seed=seed, progress=progress)
    ids = np.flatnonzero(counts)
    with atomic_directory(entry) as tmp:
        np.savez(tmp / "sums.npz", ids=ids, sums=sums[ids], counts=counts[ids])
    return sums, counts, vocab


def contextual_table(fallback: np.ndarray, student_vocab: dict[str, int], sums: np.ndarray, counts: np.ndarray,
                     teacher_vocab: dict[str, int]) -> tuple[np.ndarray, int]:
    """The student's table (rows in ``student_vocab``'s ids): each token the texts showed gets the mean
    of its teacher vectors, the others their ``fallback`` row rescaled to the means' median length.
    Returns the table and how many rows came from context."""
    table = np.array(fallback, dtype=np.float32, copy=True)
    seen = np.zeros(len(table), dtype=bool)
    for token, student_id in student_vocab.items():
        teacher_id = teacher_vocab.get(token)
        if teacher_id is not None and student_id < len(table) and counts[teacher_id]:
            table[student_id] = sums[teacher_id] / counts[teacher_id]
            seen[student_id] = True
    if seen.any() and (~seen).any():
        length = np.median(np.linalg.norm(table[seen], axis=1))
        rest = np.linalg.norm(table[~seen], axis=1, keepdims=True)
        table[~seen] *= length / np.maximum(np.median(rest), 1e-12)
    return table, int(seen.sum())
