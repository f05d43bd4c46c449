"""Exact retrieval metrics in numpy, with pytrec_eval's (trec_eval's) definitions.

- Ranking: score descending, ties broken by document id descending (as trec_eval and mteb do).
- nDCG@k: gain = relevance grade, discount 1/log2(rank + 1), ideal DCG from the judged grades.
- recall@k: relevant (grade > 0) documents in the top k / all relevant documents of the query.
- MRR@k: 1 / rank of the first relevant document within the top k (0 when none), as mteb.
- Identical ids: a document whose id is the query's id is left out of that query's ranking, as
  BEIR does (and mteb for the sets where it matters), unless the qrels judge it relevant to that
  query. In ArguAna and Quora every query is also in the corpus under its own id; kept, it would
  rank first for every encoder and push every answer down one place (BEIR issues #14, #72). A set
  numbered 1..n on both sides whose query i is answered by document i keeps its answers.
Averages are over the judged queries. mteb computes the same with pytrec_eval; `evaluate`
cross-checks the two on every full-dimension mode.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..progress import progress_bar

Qrels = Mapping[str, Mapping[str, int]]


# Scoring never holds more than this many bytes of scores at once: one (queries x documents) float32
# matrix of Quora's test split (10,000 queries x 523k documents) is 21 GB, NQ's 37 GB.
SCORE_BLOCK_BYTES = 256 * 2**20


def rows_per_block(n_docs: int) -> int:
    """Query rows whose float32 scores against ``n_docs`` documents fit `SCORE_BLOCK_BYTES` (at least 1)."""
    return max(1, SCORE_BLOCK_BYTES // (4 * max(n_docs, 1)))


class ScoreMatrix:
    """A (queries x documents) score matrix computed a block of query rows at a time.

    ``scores[a:b]`` returns the float32 scores of queries ``a..b-1`` against every document, so
    ranking a large collection needs memory for one block, not for the whole product. The documents
    are prepared once (normalised, dequantised or bit-packed), not once per block. `top_k` and
    `retrieval_metrics` take a ScoreMatrix or a plain ndarray alike."""

    def __init__(self, queries: np.ndarray, documents: np.ndarray,
                 block: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> None:
        self.queries, self.documents, self._block = queries, documents, block
        self.shape = (len(queries), len(documents))

    @classmethod
    def cosine(cls, queries: np.ndarray, documents: np.ndarray) -> "ScoreMatrix":
        return cls(_unit_rows(queries), _unit_rows(documents), lambda q, d: q @ d.T)

    @classmethod
    def int8(cls, queries: np.ndarray, documents: np.ndarray) -> "ScoreMatrix":
        """Asymmetric int8: float queries · dequantised int8 documents (ranges from this corpus)."""
        start, step = int8_ranges(documents)
        deq = dequantize_int8(quantize_int8(documents, start, step), start, step)
        return cls(queries.astype(np.float32), deq, lambda q, d: q @ d.T)

    @classmethod
    def hamming(cls, queries: np.ndarray, documents: np.ndarray) -> "ScoreMatrix":
        """Symmetric binary: similarity = dim - 2 * Hamming distance of the sign bits (= ±1 dot product)."""
        dim = documents.shape[1]

        def block(q_bits: np.ndarray, d_bits: np.ndarray) -> np.ndarray:
            out = np.empty((len(q_bits), len(d_bits)), dtype=np.float32)
            for row, code in enumerate(q_bits):   # row by row keeps the xor at n_docs x bytes
                out[row] = dim - 2 * np.bitwise_count(np.bitwise_xor(d_bits, code)).sum(axis=1, dtype=np.int32)
            return out
        return cls(binary_codes(queries), binary_codes(documents), block)

    def __getitem__(self, rows: slice) -> np.ndarray:
        if not isinstance(rows, slice):
            raise TypeError("ScoreMatrix is read a block of query rows at a time: scores[a:b]")
        return np.asarray(self._block(self.queries[rows], self.documents), dtype=np.float32)

    def dense(self) -> np.ndarray:
        """The whole matrix at once (small collections, tests)."""
        return self[:]


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Unit rows, normalised in the input's precision, then float32."""
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32, copy=False)


def cosine_scores(queries: np.ndarray, documents: np.ndarray) -> np.ndarray:
    """(n_queries, n_docs) cosine similarities in float32, all at once (use `ScoreMatrix.cosine`
    to rank a large collection)."""
    return ScoreMatrix.cosine(queries, documents).dense()


def identical_id_rows(query_ids: Sequence[str], doc_ids: Sequence[str], qrels: Qrels) -> np.ndarray:
    """Per query, the corpus row with the query's own id, unless ``qrels`` judge that document
    relevant to the query (-1: none, or judged relevant)."""
    row_of = {doc_id: row for row, doc_id in enumerate(doc_ids)}
    return np.array([-1 if qrels.get(qid, {}).get(qid, 0) > 0 else row_of.get(qid, -1) for qid in query_ids],
                    dtype=np.int64)


def top_k(scores: np.ndarray | ScoreMatrix, doc_ids: Sequence[str], k: int,
          exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of the top ``k`` documents per query: score desc, then doc id desc (trec_eval).
    ``scores`` is read a block of query rows at a time (at most `SCORE_BLOCK_BYTES` of them).
    ``exclude``: per query, a corpus row ranked last whatever its score (-1: none)."""
    n_queries, n_docs = scores.shape
    k = min(k, n_docs)
    # rank of each doc id in descending string order: the secondary key
    order = sorted(range(len(doc_ids)), key=lambda i: doc_ids[i], reverse=True)
    id_rank = np.empty(len(doc_ids), dtype=np.int64)
    id_rank[order] = np.arange(len(doc_ids))
    out = np.empty((n_queries, k), dtype=np.int64)
    block = rows_per_block(n_docs)
    # a bar only where ranking takes a while: more than one block (Quora's test split: minutes per variant)
    progress = progress_bar(total=n_queries, unit="query", desc=f"rank {n_docs:,} documents", leave=False,
                            disable=n_queries <= block)
    for first in range(0, n_queries, block):
        part = scores[first:first + block]
        for offset in range(len(part)):
            row = first + offset
            s = part[offset]
            if exclude is not None and exclude[row] >= 0:
                s = s.copy()
                s[exclude[row]] = -np.inf
            # cheap prefilter: everything scoring at least the k-th best (ties included) goes to the exact sort
            kth = np.partition(s, len(s) - k)[len(s) - k]
            candidates = np.flatnonzero(s >= kth)
            ranked = candidates[np.lexsort((id_rank[candidates], -s[candidates].astype(np.float64)))]
            out[row] = ranked[:k]
        progress.update(len(part))
        del part, s   # before the next block is computed: one block in memory, not two
    progress.close()
    return out


def retrieval_metrics(scores: np.ndarray | ScoreMatrix, query_ids: Sequence[str], doc_ids: Sequence[str], qrels: Qrels,
                      *, ndcg_k: int = 10, recall_k: int = 100, mrr_k: int = 10,
                      per_query: bool = False, ignore_identical_ids: bool = True) -> dict[str, Any]:
    """nDCG@ndcg_k, recall@recall_k and MRR@mrr_k averaged over ``query_ids`` (all must be judged);
    ``per_query`` adds ``ndcg_at_<k>_per_query``, every query's nDCG in order (for paired statistics).
    ``ignore_identical_ids``: leave a document with the query's own id out of its ranking (BEIR),
    unless it is judged relevant to the query."""
    exclude = identical_id_rows(query_ids, doc_ids, qrels) if ignore_identical_ids else None
    ranked = top_k(scores, doc_ids, max(ndcg_k, recall_k, mrr_k), exclude)
    ndcgs, recalls, rrs = [], [], []
    discounts = 1.0 / np.log2(np.arange(2, ranked.shape[1] + 2))
    for row, qid in enumerate(query_ids):
        judged = qrels[qid]
        grades = np.array([judged.get(doc_ids[i], 0) for i in ranked[row]], dtype=np.float64)
        if exclude is not None and exclude[row] >= 0:
            grades[ranked[row] == exclude[row]] = 0.0   # ranked last only when k covers the whole corpus
        grades_pos = np.where(grades > 0, grades, 0.0)
        ideal = np.sort(np.array([g for g in judged.values() if g > 0], dtype=np.float64))[::-1][:ndcg_k]
        idcg = float((ideal * discounts[:len(ideal)]).sum())
        dcg = float((grades_pos[:ndcg_k] * discounts[:min(ndcg_k, len(grades_pos))]).sum())
        ndcgs.append(dcg / idcg if idcg > 0 else 0.0)
        n_rel = sum(1 for g in judged.values() if g > 0)
        recalls.append(float((grades[:recall_k] > 0).sum()) / n_rel if n_rel else 0.0)
        hits = np.flatnonzero(grades[:mrr_k] > 0)
        rrs.append(1.0 / (hits[0] + 1) if len(hits) else 0.0)
    out: dict[str, Any] = {f"ndcg_at_{ndcg_k}": float(np.mean(ndcgs)), f"recall_at_{recall_k}": float(np.mean(recalls)),
                           f"mrr_at_{mrr_k}": float(np.mean(rrs))}
    if per_query:
        out[f"ndcg_at_{ndcg_k}_per_query"] = np.asarray(ndcgs)
    return out


def paired_bootstrap(a: np.ndarray, b: np.ndarray, *, resamples: int = 10000, confidence: float = 0.95,
                     seed: int = 0) -> dict[str, float]:
    """Mean of ``a - b`` over the same queries with a percentile bootstrap interval: 300 queries move
    nDCG@10 by about +-0.01, so a gap whose interval straddles 0 is a tie, not a win."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (resamples, len(diff)))].mean(axis=1)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return {"mean": float(diff.mean()), "low": float(low), "high": float(high),
            "confidence": confidence, "queries": int(len(diff))}


# ------------------------------------------------------------------ Matryoshka and quantisation

def truncate(vectors: np.ndarray, dim: int) -> np.ndarray:
    """First ``dim`` dimensions, re-normalised to unit length (Matryoshka)."""
    cut = np.ascontiguousarray(vectors[:, :dim], dtype=np.float32)
    return cut / np.maximum(np.linalg.norm(cut, axis=1, keepdims=True), 1e-12)


def int8_ranges(documents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension (start, step) of scalar int8 quantisation from the corpus' min/max."""
    lo = documents.min(axis=0)
    hi = documents.max(axis=0)
    step = np.maximum(hi - lo, 1e-12) / 255.0
    return lo.astype(np.float32), step.astype(np.float32)


def quantize_int8(documents: np.ndarray, start: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Scalar int8 codes: ``round((x - start) / step) - 128`` clipped to [-128, 127]."""
    codes = np.rint((documents - start) / step) - 128
    return np.clip(codes, -128, 127).astype(np.int8)


def dequantize_int8(codes: np.ndarray, start: np.ndarray, step: np.ndarray) -> np.ndarray:
    return ((codes.astype(np.float32) + 128.0) * step + start).astype(np.float32)


def int8_scores(queries: np.ndarray, documents: np.ndarray) -> np.ndarray:
    """Asymmetric int8 scores, all at once (see `ScoreMatrix.int8`)."""
    return ScoreMatrix.int8(queries, documents).dense()


def binary_codes(vectors: np.ndarray) -> np.ndarray:
    """Sign bits packed 8 per byte (bit = value > 0), as a binary index stores them."""
    return np.packbits(vectors > 0, axis=1)


def hamming_scores(queries: np.ndarray, documents: np.ndarray) -> np.ndarray:
    """Symmetric binary scores, all at once (see `ScoreMatrix.hamming`)."""
    return ScoreMatrix.hamming(queries, documents).dense()
