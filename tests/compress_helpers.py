"""Synthetic retrieval data for the compression tests: relevance lives in low-variance directions
and high-variance nuisance directions carry none, so PCA keeps the wrong axes and a supervised
compressor has something to learn."""
from __future__ import annotations

import numpy as np

from tava_core.compress.data import CompressionData, QuerySet


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def synthetic_retrieval(n_docs: int = 300, n_queries: int = 160, dim: int = 24, signal: int = 6,
                        seed: int = 0) -> tuple[list[str], np.ndarray, QuerySet, QuerySet]:
    """(corpus ids, corpus, labeled queries, test queries): each query is a noisy copy of one
    document's signal part plus independent nuisance; its qrels name that document."""
    rng = np.random.default_rng(seed)
    docs_signal = rng.standard_normal((n_docs, signal))
    docs_nuisance = 2.0 * rng.standard_normal((n_docs, dim - signal))
    corpus = unit(np.hstack([docs_signal, docs_nuisance]))
    ids = [f"d{i}" for i in range(n_docs)]

    def queries(prefix: str, count: int) -> QuerySet:
        target = rng.integers(0, n_docs, count)
        q_signal = docs_signal[target] + 0.3 * rng.standard_normal((count, signal))
        q_nuisance = 2.0 * rng.standard_normal((count, dim - signal))
        q_ids = [f"{prefix}{i}" for i in range(count)]
        return QuerySet(q_ids, unit(np.hstack([q_signal, q_nuisance])),
                        {q: {ids[t]: 1} for q, t in zip(q_ids, target, strict=False)})

    labeled, test = queries("q", n_queries), queries("t", n_queries)
    # a random rotation: neither a prefix nor the top principal axes line up with the signal
    rotation = np.linalg.qr(rng.standard_normal((dim, dim)))[0].astype(np.float32)
    labeled.vectors, test.vectors = labeled.vectors @ rotation, test.vectors @ rotation
    return ids, corpus @ rotation, labeled, test


def synthetic_data(max_labeled: int | None = None, seed: int = 0, **kwargs) -> CompressionData:
    from tava_core.compress.data import split_queries

    ids, corpus, labeled, test = synthetic_retrieval(seed=seed, **kwargs)
    train, validation = split_queries(labeled, 0.25, seed, max_labeled)
    return CompressionData(ids, corpus, train, validation, test, unlabeled=labeled.vectors)
