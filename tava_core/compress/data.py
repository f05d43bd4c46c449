"""Vectors and labels for training compressors: query sets, splits, and triplet mining.

Triplets are (anchor, positive document, pool of negative documents):
- labeled: a training query, a document its qrels judge relevant, and the documents the
  teacher ranks highest for it that are *not* judged relevant (hard negatives);
- label-free: an anchor vector (a document, or a query without labels), the document the teacher
  puts first for it, and documents the teacher ranks far lower (pseudo-triplets).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..errors import ConfigError

Qrels = dict[str, dict[str, int]]


@dataclass
class QuerySet:
    """Query ids, their (teacher) vectors in the same order, and qrels (may be empty: unlabeled)."""

    ids: list[str]
    vectors: np.ndarray
    qrels: Qrels = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, rows: np.ndarray | list[int]) -> "QuerySet":
        rows = list(int(r) for r in rows)
        ids = [self.ids[r] for r in rows]
        return QuerySet(ids, self.vectors[rows], {q: self.qrels[q] for q in ids if q in self.qrels})


@dataclass
class CompressionData:
    """Everything one compression run reads: the corpus and the labeled/unlabeled query sets."""

    corpus_ids: list[str]
    corpus: np.ndarray
    train: QuerySet                      # labeled training queries
    validation: QuerySet                 # labeled queries for early stopping and model choice
    test: Optional[QuerySet] = None      # the score (never trained or tuned on)
    unlabeled: Optional[np.ndarray] = None   # extra anchors for label-free training (query vectors, no labels)
    info: dict = field(default_factory=dict)

    @property
    def input_dim(self) -> int:
        return int(self.corpus.shape[1])


@dataclass
class Triplets:
    """Rows of (anchor row, positive doc) with a pool of negative docs each (-1 pads the pool)."""

    anchors: np.ndarray        # (n_anchors, D) float32
    anchor_rows: np.ndarray    # (n_pairs,) int: row into anchors
    positives: np.ndarray      # (n_pairs,) int: corpus row
    negatives: np.ndarray      # (n_pairs, pool) int: corpus rows, -1 = none

    def __len__(self) -> int:
        return len(self.anchor_rows)


def split_queries(queries: QuerySet, validation_fraction: float, seed: int,
                  max_labeled: Optional[int] = None) -> tuple[QuerySet, QuerySet]:
    """(train, validation) of the judged queries; ``max_labeled`` keeps only that many in total
    (the few-label setting: train and validation both come out of the small labeled set)."""
    judged = [i for i, q in enumerate(queries.ids) if q in queries.qrels]
    rng = np.random.default_rng(seed)
    order = rng.permutation(judged)
    if max_labeled is not None:
        order = order[:max_labeled]
    n_val = max(1, int(round(len(order) * validation_fraction)))
    if len(order) - n_val < 1:
        raise ConfigError(f"{len(order)} labeled queries leave none for training after a validation split of "
                          f"{n_val}", hint="give more labeled queries or a smaller --validation-fraction")
    return queries.subset(np.sort(order[n_val:])), queries.subset(np.sort(order[:n_val]))


def top_documents(anchors: np.ndarray, corpus: np.ndarray, k: int, *, exclude: Optional[np.ndarray] = None,
                  block: int = 1024) -> np.ndarray:
    """Corpus rows of the teacher's top ``k`` per anchor (cosine of unit vectors), best first;
    ``exclude[i]`` (a corpus row or -1) is never returned for anchor ``i`` (a document itself)."""
    k = min(k, len(corpus) - (1 if exclude is not None else 0))
    out = np.empty((len(anchors), k), dtype=np.int64)
    for start in range(0, len(anchors), block):
        scores = anchors[start:start + block] @ corpus.T
        if exclude is not None:
            rows = np.arange(len(scores))
            own = exclude[start:start + block]
            scores[rows[own >= 0], own[own >= 0]] = -np.inf
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
        out[start:start + len(scores)] = np.take_along_axis(part, order, axis=1)
    return out


def mine_labeled_triplets(queries: QuerySet, corpus_ids: list[str], corpus: np.ndarray, depth: int) -> Triplets:
    """One row per judged-relevant (query, document); negatives: the teacher's top ``depth`` minus
    everything judged relevant for that query."""
    position = {d: i for i, d in enumerate(corpus_ids)}
    ranked = top_documents(queries.vectors, corpus, depth + 10)
    anchor_rows, positives, pools = [], [], []
    for row, qid in enumerate(queries.ids):
        relevant = {position[d] for d, g in queries.qrels.get(qid, {}).items() if g > 0 and d in position}
        if not relevant:
            continue
        pool = [int(i) for i in ranked[row] if int(i) not in relevant][:depth]
        for doc in sorted(relevant):
            anchor_rows.append(row)
            positives.append(doc)
            pools.append(pool + [-1] * (depth - len(pool)))
    if not anchor_rows:
        raise ConfigError("no training query has a judged-relevant document in the corpus",
                          hint="check the qrels split, or train the label-free variant (method dive-label-free)")
    return Triplets(np.asarray(queries.vectors, np.float32), np.asarray(anchor_rows), np.asarray(positives),
                    np.asarray(pools, dtype=np.int64))


def mine_pseudo_triplets(anchors: np.ndarray, corpus: np.ndarray, *, anchor_docs: Optional[np.ndarray] = None,
                         positive_top: int = 1, negative_ranks: tuple[int, int] = (10, 50)) -> Triplets:
    """Label-free triplets from the teacher's neighbourhoods: positive = one of the teacher's top
    ``positive_top`` documents, negatives = its ranks ``negative_ranks`` [start, end) (1-based start).
    ``anchor_docs[i]`` is anchor i's own corpus row (or -1), excluded from its neighbours."""
    start, end = negative_ranks
    if not 1 <= positive_top < start < end:
        raise ConfigError(f"pseudo-triplet ranks overlap: positives from the top {positive_top}, negatives "
                          f"from ranks {start}..{end}", hint="use e.g. positive_top 1, negative ranks 10 50")
    ranked = top_documents(anchors, corpus, end - 1, exclude=anchor_docs)
    rows = np.repeat(np.arange(len(anchors)), positive_top)
    positives = ranked[:, :positive_top].reshape(-1)
    pools = np.repeat(ranked[:, start - 1:end - 1], positive_top, axis=0)
    return Triplets(np.asarray(anchors, np.float32), rows, positives, pools)


def pseudo_qrels(anchors: np.ndarray, corpus: np.ndarray, corpus_ids: list[str], k: int = 10, *,
                 anchor_docs: Optional[np.ndarray] = None, prefix: str = "anchor") -> tuple[list[str], Qrels]:
    """Label-free validation: each anchor's teacher top ``k`` documents count as its relevant ones."""
    ranked = top_documents(anchors, corpus, k, exclude=anchor_docs)
    ids = [f"{prefix}-{i}" for i in range(len(anchors))]
    return ids, {qid: {corpus_ids[j]: 1 for j in ranked[i]} for i, qid in enumerate(ids)}
