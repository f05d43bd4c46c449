"""Encoder over a static (model2vec-format) model: a token table, mean of token rows, normalise.

Matches sentence-transformers' ``StaticEmbedding`` (+ ``Normalize``): no special tokens, no
truncation unless a max length is set, and a model2vec ``weights``/``mapping`` folded into one row
per token. Inference is one ``EmbeddingBag`` call per batch, which is why it is so fast.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..config import EncoderSpec
from ..errors import ModelLoadError
from ..interrupt import raise_if_stop_requested
from .base import Encoder, TextKind, combine_fingerprint, hash_model_files
from .word_cache import WordCache


def load_static_table(directory: Path) -> torch.Tensor:
    """The (vocab, dim) table with model2vec's optional mapping and per-token weights folded in."""
    from safetensors.torch import load_file

    weights_file = directory / "model.safetensors"
    if not weights_file.is_file():
        raise ModelLoadError("static model has no model.safetensors", path=directory)
    state = load_file(str(weights_file))
    if "embedding.weight" in state:  # saved by sentence-transformers' StaticEmbedding
        return state["embedding.weight"].float()
    if "embeddings" not in state:
        raise ModelLoadError("model.safetensors holds neither 'embeddings' (model2vec) nor 'embedding.weight'",
                             path=weights_file)
    table = state["embeddings"].float()
    if "mapping" in state:
        table = table[state["mapping"].long()]
    if "weights" in state:
        table = table * state["weights"].float().unsqueeze(-1)
    return table.contiguous()


class StaticEncoder(Encoder):
    """Mean of per-token vectors (weights folded in), optionally L2-normalised."""

    def __init__(self, directory: str | Path, spec: EncoderSpec | None = None, *, name: str | None = None) -> None:
        from tokenizers import Tokenizer

        self.directory = Path(directory)
        self.spec = spec or EncoderSpec(model=str(directory))
        self.name = name or self.directory.name
        tok_file = self.directory / "tokenizer.json"
        if not tok_file.is_file():
            raise ModelLoadError("static model has no tokenizer.json", path=self.directory)
        self.tokenizer = Tokenizer.from_file(str(tok_file))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        # each word's ids cached where the tokenizer is word-local (WordPiece, BERT-style): most of a
        # static vector's cost is the tokenizer (word_cache's docstring)
        self.word_cache = WordCache(self.tokenizer)
        self.table = load_static_table(self.directory)
        config_file = self.directory / "config.json"
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        default_norm = config.get("normalize", True)
        if (self.directory / "modules.json").is_file():
            modules = json.loads((self.directory / "modules.json").read_text())
            default_norm = any(m.get("type", "").endswith("Normalize") for m in modules)
        self.normalized = self.spec.normalize if self.spec.normalize is not None else bool(default_norm)
        self.max_length = self.spec.max_length  # None = no truncation, as sentence-transformers does
        self.dim = int(self.table.shape[1])
        self.batch_size = max(self.spec.batch_size, 1)
        self.workers: Optional[int] = None   # threads for inputs of several chunks; None = torch's thread count
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = combine_fingerprint(hash_model_files(self.directory), "static", self.normalized,
                                                    self.max_length, self.spec.query_prefix,
                                                    self.spec.document_prefix)
        return self._fingerprint

    def _prefix(self, kind: TextKind) -> str:
        return self.spec.query_prefix if kind == "query" else self.spec.document_prefix

    def encode(self, texts: Sequence[str], *, kind: TextKind = "document", batch_size: int | None = None,
               show_progress: bool = False) -> np.ndarray:
        if len(texts) == 1 and self.table.device.type == "cpu":
            return self._encode_one(self._prefix(kind) + texts[0])
        return self._encode_many([self._prefix(kind) + t for t in texts], batch_size)

    def _encode_one(self, text: str) -> np.ndarray:
        """One text (a live query) in numpy: the same rows, sum and division as ``embedding_bag``'s mean,
        without torch's per-call dispatch, which cost more than the arithmetic. Batch-1 p50 against
        model2vec's encoder on the same table went from 0.39 / 0.33 ms to 0.23 / 0.28 ms
        (bench/results/speed_zen4_quick.json, then speed_zen4_static_batch1.json)."""
        vector = mean_rows(self.table.detach().numpy(), self.token_ids(text))
        if self.normalized:     # F.normalize's arithmetic: x / max(|x|, 1e-12)
            vector = vector / max(float(np.sqrt(np.dot(vector, vector))), 1e-12)
        return vector[None, :]

    def token_ids(self, text: str) -> list[int]:
        """One text's token ids as ``token_bags`` takes them (no special tokens, cut at ``max_length``)."""
        ids = self.word_cache.ids([text])[0]
        return ids if self.max_length is None else ids[: self.max_length]

    @torch.inference_mode()
    def _encode_many(self, texts: list[str], batch_size: int | None) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # Static inference is memory-bound, not compute-bound: big batches are cheapest.
        step = max(batch_size or self.batch_size, 1024)
        starts = range(0, len(texts), step)

        def encode_chunk(start: int) -> None:
            chunk = texts[start:start + step]
            flat, offsets = self.token_bags(chunk)
            pooled = torch.nn.functional.embedding_bag(flat, self.table, offsets, mode="mean")
            if self.normalized:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out[start:start + len(chunk)] = pooled.numpy()

        workers = min(self.workers or torch.get_num_threads(), len(starts))
        # The stop request is read on the calling thread (a shard's worker): between chunks when serial, once
        # before the chunks go to threads of its own (a chunk takes well under a second).
        if workers <= 1:
            for start in starts:
                raise_if_stop_requested()
                encode_chunk(start)
            return out
        raise_if_stop_requested()
        # Chunks on threads: the tokenizer and embedding_bag release the GIL, so a large input uses
        # every core (model2vec's encode spreads inputs over 10,000 texts across processes; one
        # thread ran 0.58x its speed there, bench/results/speed_epyc_full.json). Each chunk writes
        # its own rows, so the vectors equal the one-thread path's.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tava-static") as pool:
            list(pool.map(encode_chunk, starts))
        return out

    def token_bags(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``embedding_bag``'s flat token ids and offsets for ``texts`` (prefix already applied): no
        special tokens, cut at ``max_length``. One text (a live query) builds no offsets."""
        ids = self.word_cache.ids(texts)
        if self.max_length is not None:
            ids = [i[: self.max_length] for i in ids]
        if len(ids) == 1:
            return torch.from_numpy(np.array(ids[0], dtype=np.int64)), _FIRST_OFFSET
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths[:-1])]))
        # chain.from_iterable flattens in C; a nested generator expression cost ~20% of the
        # whole encode (measured against model2vec's own encoder on the same table).
        flat = torch.from_numpy(np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64,
                                            count=int(lengths.sum())))
        return flat, offsets


_FIRST_OFFSET = torch.zeros(1, dtype=torch.int64)   # the offsets of a single bag (never written to)


def mean_rows(table: np.ndarray, ids: Sequence[int]) -> np.ndarray:
    """``embedding_bag(mode="mean")`` of one bag in numpy (float32): zeros for an empty bag."""
    if not len(ids):
        return np.zeros(table.shape[1], dtype=np.float32)
    return table.take(ids, axis=0).mean(axis=0, dtype=np.float32)


def load_static(directory: Path, spec: EncoderSpec) -> StaticEncoder:
    """Factory for ``ENCODER_TYPES['static']``."""
    return StaticEncoder(directory, spec)
