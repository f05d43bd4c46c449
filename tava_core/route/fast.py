"""A router's confidence score compiled for live queries: the numbers of ``calibrate.confidence``
(``signals.compute_signals`` + the combiner) with the per-call work folded away at load time.

Why: for a static student the router's own work, not the student, decided the cost of a query
that stays with the student (bench/results/route_fastpath.json has the breakdown). The reference
path is written for calibration -- any signal set, dicts of arrays, a float64 feature matrix, one
general numpy expression per signal -- and at batch 1 its dozens of small numpy calls cost more
than the student's encoding. Here, once per router:

- every linear map the query vector goes through (the heads, forward x backward for the cycle,
  the knn PCA basis) is one float32 matrix, so a batch takes ONE matrix product for all of them;
- the combiner is folded: standardisation and weights become one coefficient per feature and one
  bias, and the student-vector features (PCA components) fold into a single direction
  (``pca[:, 1:k+1] @ weights``), one dot product instead of k columns;
- head disagreement uses 1 - mean_h cos(u_h, centre) = 1 - |sum_h u_h| / H (the centre is the
  normalised sum), so no centre is materialised;
- the word signals read each word's (rare?, rarity) from a per-word cache in plain Python;
- a PCA document bank is scored in two steps (query -> basis, inside the one matrix; then the
  reduced documents) and document scores go through torch's BLAS.

The results equal the reference up to float rounding (the order of float32 sums changes):
tests/route/test_route_fast.py checks confidence to 1e-5 and identical routing on real routers.
Calibration keeps the reference path (it needs every signal separately, and leave-one-out).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from .calibrate import Calibration
from .signals import (
    CELL_RIVALS,
    ENTROPY_TEMPERATURE,
    ENTROPY_TOP,
    RETRIEVAL_SIGNALS,
    SIGNAL_NAMES,
    SignalModel,
    cell_margin,
)
from .words import WORD, bucket_of

WORD_SIGNALS = ("rare_word_share", "length", "word_rarity", "word_trust")
# the retrieval signals that read the sorted top-50 of the result list (the other two find their own top)
LIST_TOP_SIGNALS = frozenset(RETRIEVAL_SIGNALS) - {"retrieval_cell_margin", "retrieval_map_change"}
# the matrix blocks the non-retrieval signals read (the rest are the document bank's maps)
OWN_LINEAR_BLOCKS = frozenset({"head_disagreement", "cycle_error", "knn_distance", "direction"})
# the retrieval signals one result list holds (CompiledConfidence.score_from_results)
RESULT_SIGNALS = frozenset(RETRIEVAL_SIGNALS) - {"retrieval_contrast", "retrieval_map_change"}
WORD_CACHE = 100_000      # words whose (rare?, rarity, trust) a compiled confidence keeps


class CompiledConfidence:
    """``confidence(model, calibration, texts, student)`` for live queries (see the module docstring)."""

    def __init__(self, model: SignalModel, calibration: Calibration) -> None:
        signals = list(calibration.signals)
        unknown = sorted(set(signals) - set(SIGNAL_NAMES))
        if unknown:
            raise ValueError(f"the router's calibration names unknown signals {unknown}; known: {SIGNAL_NAMES}")
        self.model = model
        weights = np.asarray(calibration.weights, dtype=np.float64)
        scale = np.asarray(calibration.scale, dtype=np.float64)
        mean = np.asarray(calibration.mean, dtype=np.float64)
        coef = weights / scale
        self.bias = float(calibration.bias) - float(np.dot(mean / scale, weights))
        self.coef = {name: float(coef[i]) for i, name in enumerate(signals)}
        self.signals = frozenset(signals)
        # the one matrix the unit query vector is multiplied by, as needed:
        # [heads | forward @ backward | knn basis | vector direction | document PCA basis | forward]
        blocks: list[np.ndarray] = []
        self._slices: dict[str, slice] = {}
        d = int(model.pca.shape[0])

        def add(name: str, block: np.ndarray) -> None:
            start = sum(b.shape[1] for b in blocks)
            blocks.append(np.asarray(block, dtype=np.float32))
            self._slices[name] = slice(start, start + block.shape[1])

        if "head_disagreement" in self.signals:
            self.n_heads = int(model.heads.shape[0])
            self.head_dim = int(model.heads.shape[2])
            add("head_disagreement", np.concatenate(list(model.heads), axis=1))      # (d, H * d_teacher)
        if "cycle_error" in self.signals:
            add("cycle_error", model.forward.astype(np.float64) @ model.backward.astype(np.float64))
        if "knn_distance" in self.signals:
            add("knn_distance", model.pca)
            self.knn_bank_t = np.ascontiguousarray(model.bank.T)                     # (pca_dim, n_bank)
            self.knn = min(model.knn, int(model.bank.shape[0]))
        # student-vector features: sum_j coef_j ((s - pca_mean) @ pca[:, j]) = s @ direction - offset
        k = calibration.vector_components
        if k:
            basis = model.pca[:, 1:k + 1].astype(np.float64)
            direction = basis @ coef[len(signals):len(signals) + k]
            self.bias -= float(model.pca_mean.astype(np.float64) @ direction)
            add("direction", direction[:, None])
        self.words = bool(self.signals & set(WORD_SIGNALS))
        self._word_cache: dict[str, tuple[int, float, float]] = {}
        if "word_trust" in self.signals and not model.word_trust.size:
            raise ValueError("the router's calibration uses word_trust but its signal model has no trust table: "
                             "calibrate the router again (tava calibrate-router)")
        self.total = float(model.info.get("training_texts", 1))
        self.retrieval = sorted(self.signals & set(RETRIEVAL_SIGNALS))
        if self.retrieval:
            if not model.documents.size:
                raise ValueError(f"signals {self.retrieval} need the served corpus' documents: fit the signal model "
                                 "with documents=... (fit_router passes the corpus)")
            # a PCA bank is scored in two steps, query -> basis (in the one matrix) -> documents: for any
            # bank bigger than ~100 documents that reads less memory than the folded (d, n_docs) matrix
            if model.doc_pca.size:
                add("doc_pca", model.doc_pca)
            # clustered bank: the centroid scores are one more linear map of s (free in a fused table);
            # only the probed clusters' rows are read, so the bank stays row-major
            self.probe = int(model.doc_probe) if model.doc_centroids.size else 0
            # the bank row-major (the saved array itself: no copy): the clusters' reads, the cell margin's gathers
            self.doc_vectors = np.ascontiguousarray(model.documents, dtype=np.float32)       # (n_docs, d or pca)
            if self.probe:
                add("doc_centroids", model.doc_centroids.T)
                self.offsets = np.asarray(model.doc_offsets, dtype=np.int64)
                self.cluster_sizes = np.diff(self.offsets)
            else:
                self.doc_matrix = np.ascontiguousarray(model.documents.T)            # (d or pca, n_docs)
            self.top_n = min(max(ENTROPY_TOP, 11), int(model.documents.shape[0]))
            # two-stage scoring: the exact cosines of the PCA bank's candidates; the corpus profile
            # for retrieval_contrast from the documents' mean and covariance, s @ mu and s' Cov s
            # (both linear maps of s: in the one matrix, so a fused static table gives them free)
            self.rescore = int(model.doc_rescore) if model.doc_exact.size else 0
            if self.rescore:
                self.doc_exact = np.ascontiguousarray(model.doc_exact, dtype=np.float32)   # (n_docs, d)
            # the whole bank's exact profile when a query reads only part of it
            if "retrieval_contrast" in self.signals and (self.rescore or self.probe):
                exact = (model.doc_exact if self.rescore else model.documents).astype(np.float64)
                mu = exact.mean(axis=0)
                add("doc_mean", mu[:, None])
                add("doc_cov", (exact - mu).T @ (exact - mu) / len(exact))
            if "retrieval_map_change" in self.signals:
                add("forward", model.forward)
        self.matrix = np.ascontiguousarray(np.concatenate(blocks, axis=1)) if blocks else np.zeros((d, 0), np.float32)
        # what reading the caller's own result list needs (score_from_results), settled once, not per query
        self._unreadable = sorted(set(self.retrieval) - RESULT_SIGNALS)
        self._results_needed = 0 if not self.retrieval else (
            self.top_n if self.coef.keys() & LIST_TOP_SIGNALS else min(CELL_RIVALS + 1, self.top_n))

    def __call__(self, texts: Sequence[str], student: np.ndarray) -> np.ndarray:
        """Predicted agreement per text (float32), as ``calibrate.confidence``."""
        s, projected = self._project(student)
        return self.score(texts, s, projected)

    def from_results(self, texts: Sequence[str], student: np.ndarray, result_scores: np.ndarray,
                     result_vectors: np.ndarray) -> np.ndarray:
        """``__call__`` with the retrieval signals read from the caller's search (``score_from_results``)."""
        # when the matrix holds only the bank's maps, which a result list replaces, no product is made
        s, projected = self._project(student, maps=bool(self._slices.keys() & OWN_LINEAR_BLOCKS))
        return self.score_from_results(texts, s, projected, result_scores, result_vectors)

    def _project(self, student: np.ndarray, maps: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(unit query vectors, their product with ``self.matrix``; an empty one unless ``maps``)."""
        norms = np.linalg.norm(student, axis=1, keepdims=True)
        s = (student / np.maximum(norms, 1e-12)).astype(np.float32)
        # the default score reads no linear map of the vector (an empty matrix): no product to make
        projected = _matmul(s, self.matrix) if maps and self.matrix.shape[1] else np.zeros((len(s), 0), np.float32)
        return s, projected

    def score(self, texts: Sequence[str], s: np.ndarray, projected: np.ndarray) -> np.ndarray:
        """The confidence from the unit query vectors ``s`` and ``projected = s @ self.matrix``
        (which a static student can deliver without the product: fused.py)."""
        score = self._own_terms(texts, s, projected)
        if self.retrieval:
            score += self._retrieval_terms(s, projected)
        return score.astype(np.float32)

    def score_from_results(self, texts: Sequence[str], s: np.ndarray, projected: np.ndarray,
                           result_scores: np.ndarray, result_vectors: np.ndarray) -> np.ndarray:
        """``score`` with the retrieval signals read from the caller's own search of ``s`` instead of
        the router's document bank: ``result_scores`` (n, k) the cosines of each query's k best
        documents, ``result_vectors`` (n, k, d) those documents' teacher vectors. A serving stack
        searches its index with the student's vector anyway; reusing that list spares the router
        its own pass over the bank, the bulk of a static query's routing cost. The list-top
        signals need k >= ``top_n`` (``retrieval_cell_margin`` alone: 11); ``retrieval_contrast``
        (the whole corpus's score distribution) and ``retrieval_map_change`` (a second search) cannot
        be read from one list."""
        score = self._own_terms(texts, s, projected)
        if self.retrieval:
            score += self._result_terms(np.asarray(result_scores, dtype=np.float32),
                                        np.asarray(result_vectors, dtype=np.float32))
        return score.astype(np.float32)

    def results_needed(self) -> int:
        """How many results per query ``score_from_results`` needs (0: the score reads no list)."""
        return self._results_needed

    def _own_terms(self, texts: Sequence[str], s: np.ndarray, projected: np.ndarray) -> np.ndarray:
        """Every term but the retrieval signals' (float64, the bias included)."""
        score = np.full(len(s), self.bias)
        if self.matrix.shape[1]:
            if "head_disagreement" in self.coef:
                mapped = projected[:, self._slices["head_disagreement"]].reshape(len(s), self.n_heads, self.head_dim)
                inverse = 1.0 / np.maximum(np.sqrt(np.einsum("nhd,nhd->nh", mapped, mapped)), 1e-12)
                summed = np.einsum("nhd,nh->nd", mapped, inverse)
                spread = 1.0 - np.sqrt(np.einsum("nd,nd->n", summed, summed)) / self.n_heads
                score += self.coef["head_disagreement"] * spread.astype(np.float32)
            if "cycle_error" in self.coef:
                back = projected[:, self._slices["cycle_error"]]
                back = back / np.maximum(np.linalg.norm(back, axis=1, keepdims=True), 1e-12)
                score += self.coef["cycle_error"] * (1.0 - np.sum(back * s, axis=1)).astype(np.float32)
            if "knn_distance" in self.coef:
                sims = _matmul(projected[:, self._slices["knn_distance"]], self.knn_bank_t)
                width = sims.shape[1]
                nearest = np.partition(sims, width - self.knn, axis=1)[:, -self.knn:]
                # sum / k is numpy's float32 mean exactly, without mean()'s Python-level overhead
                score += self.coef["knn_distance"] * (1.0 - nearest.sum(axis=1) / self.knn).astype(np.float32)
            if "direction" in self._slices:
                score += projected[:, self._slices["direction"]][:, 0]
        if self.words:
            score += self._word_terms(texts)
        return score

    def _word_terms(self, texts: Sequence[str]) -> np.ndarray:
        """The word signals' share of the score, per text, in plain Python over each text's words
        (a query has a few dozen: numpy's per-call cost would exceed the arithmetic). Each word's
        (rare?, rarity, trust) is looked up once and kept: queries repeat their vocabulary."""
        c_rare, c_len, c_rarity, c_trust = (self.coef.get(n, 0.0) for n in WORD_SIGNALS)
        cache, lookup = self._word_cache, self._word_value
        out = np.zeros(len(texts))
        for row, text in enumerate(texts):
            words = WORD.findall(text.lower())
            n = len(words)
            if not n:
                continue    # the reference gives 0 for all three (log1p(0) = 0)
            rare, rarity, trust = 0, 0.0, 0.0
            for word in words:          # in order: the same sum as the reference's reduceat
                value = cache.get(word) or lookup(word)
                rare += value[0]
                rarity += value[1]
                trust += value[2]
            total = 0.0
            if c_rare:
                total += c_rare * float(np.float32(rare / n))
            if c_len:
                total += c_len * float(np.log1p(np.float32(n)))
            if c_rarity:
                total += c_rarity * float(np.float32(rarity / n))
            if c_trust:
                total += c_trust * float(np.float32(-trust / n))
            out[row] = total
        return out

    def _word_value(self, word: str) -> tuple[int, float, float]:
        """(1 if rare else 0, log((N + 1) / (count + 1)), trust) of a word, as signals._word_stats and
        trust.word_trust_signal grade it."""
        bucket = bucket_of(word)
        count = int(self.model.word_counts[bucket])
        trust = float(self.model.word_trust[bucket]) if self.model.word_trust.size else 0.0
        value = (int(count < self.model.rare_below), math.log((self.total + 1.0) / (count + 1.0)), trust)
        if len(self._word_cache) >= WORD_CACHE:
            self._word_cache.clear()        # bounded: a stream of new words cannot grow it forever
        self._word_cache[word] = value
        return value

    def _retrieval_terms(self, s: np.ndarray, projected: np.ndarray) -> np.ndarray:
        out = np.zeros(len(s))
        picked: np.ndarray | None = None        # bank rows of the list's columns when it holds candidates
        if "retrieval_contrast" in self.coef and (self.rescore or self.probe):
            mean = projected[:, self._slices["doc_mean"]][:, 0]
            var = np.einsum("nd,nd->n", projected[:, self._slices["doc_cov"]], s)
            std = np.maximum(np.sqrt(np.maximum(var, 0.0)), 1e-6)
        if self.probe:
            scores, picked = self._probed(s, projected[:, self._slices["doc_centroids"]])   # (n, width)
        else:
            reduced = projected[:, self._slices["doc_pca"]] if "doc_pca" in self._slices else s
            scores = _matmul(reduced, self.doc_matrix)                        # (n, n_docs)
            if self.rescore:
                scores, picked = self._exact_candidates(s, scores)            # (n, rescore)
            elif "retrieval_contrast" in self.coef:
                mean, std = scores.sum(axis=1) / scores.shape[1], np.maximum(scores.std(axis=1), 1e-6)
        n_docs = scores.shape[1]
        coef = self.coef
        if coef.keys() & LIST_TOP_SIGNALS:    # the sorted top of the list (the cell margin finds its own 11)
            top = np.partition(scores, n_docs - self.top_n, axis=1)[:, -self.top_n:]
            top = -np.sort(-top, axis=1)                                      # descending
            out += self._top_terms(top)
        if "retrieval_contrast" in coef:
            out += coef["retrieval_contrast"] * (-(top[:, :10].sum(axis=1) / top[:, :10].shape[1] - mean) / std)
        if "retrieval_cell_margin" in coef:     # `picked`: the candidates' bank rows (None: columns are rows)
            out += coef["retrieval_cell_margin"] * cell_margin(
                scores, self.doc_exact if self.rescore else self.doc_vectors, picked)
        if "retrieval_map_change" in coef:
            mapped = projected[:, self._slices["forward"]]
            mapped = (mapped / np.maximum(np.linalg.norm(mapped, axis=1, keepdims=True), 1e-12)).astype(np.float32)
            k = min(10, n_docs)
            if self.probe:
                a = np.take_along_axis(picked, np.argpartition(-scores, k - 1, axis=1)[:, :k], axis=1)
                moved, moved_picked = self._probed(mapped, _matmul(mapped, self.model.doc_centroids.T))
                b = np.take_along_axis(moved_picked, np.argpartition(-moved, k - 1, axis=1)[:, :k], axis=1)
            elif self.rescore:    # candidates' document rows, not positions in each query's candidate list
                moved = _matmul(_matmul(mapped, self.model.doc_pca), self.doc_matrix)
                a = np.take_along_axis(picked, np.argpartition(-scores, k - 1, axis=1)[:, :k], axis=1)
                moved, moved_picked = self._exact_candidates(mapped, moved)
                b = np.take_along_axis(moved_picked, np.argpartition(-moved, k - 1, axis=1)[:, :k], axis=1)
            else:
                moved = _matmul(_matmul(mapped, self.model.doc_pca) if "doc_pca" in self._slices else mapped,
                                self.doc_matrix)
                a = np.argpartition(-scores, k - 1, axis=1)[:, :k]
                b = np.argpartition(-moved, k - 1, axis=1)[:, :k]
            out += coef["retrieval_map_change"] * (1.0 - (a[:, :, None] == b[:, None, :]).any(axis=2).mean(axis=1))
        return out

    def _top_terms(self, top: np.ndarray) -> np.ndarray:
        """The signals that read only the list's sorted top ``top_n`` scores (``top``, descending)."""
        coef, out = self.coef, np.zeros(len(top))
        if "retrieval_top_score" in coef:
            out += coef["retrieval_top_score"] * (1.0 - top[:, 0])
        if "retrieval_margin" in coef and self.top_n > 1:
            out += coef["retrieval_margin"] * -(top[:, 0] - top[:, 1])
        if "retrieval_boundary" in coef and self.top_n > 10:
            out += coef["retrieval_boundary"] * -(top[:, 9] - top[:, 10])
        if "retrieval_entropy" in coef:
            logits = (top - top[:, :1]) / ENTROPY_TEMPERATURE
            p = np.exp(logits)
            p /= p.sum(axis=1, keepdims=True)
            out += coef["retrieval_entropy"] * (-(p * np.log(np.maximum(p, 1e-30))).sum(axis=1) / np.log(self.top_n))
        return out

    def _result_terms(self, scores: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """The retrieval signals from the caller's result lists (``score_from_results``)."""
        if self._unreadable:
            raise ValueError(f"signals {self._unreadable} cannot be read from one result list (they need the "
                             "whole corpus or a second search): route with route() instead, or calibrate a router "
                             "whose retrieval signals are among " + ", ".join(sorted(RESULT_SIGNALS)))
        needed = self._results_needed
        if scores.ndim != 2 or vectors.shape[:2] != scores.shape or vectors.ndim != 3:
            raise ValueError(f"result_scores must be (queries, k) and result_vectors (queries, k, dim); got "
                             f"{scores.shape} and {vectors.shape}")
        if scores.shape[1] < needed:
            raise ValueError(f"this router's confidence reads the top {needed} results of each query; got "
                             f"{scores.shape[1]} (search with k >= {needed})")
        out = np.zeros(len(scores))
        if self.coef.keys() & LIST_TOP_SIGNALS:     # best first: a caller's order is not relied on
            out += self._top_terms(-np.sort(-scores, axis=1)[:, :self.top_n])
        if "retrieval_cell_margin" in self.coef:    # it finds its own best 11, in any order
            n, k = scores.shape
            norms = np.sqrt(np.einsum("nkd,nkd->nk", vectors, vectors))
            unit = (vectors / np.maximum(norms, 1e-12)[:, :, None]).reshape(n * k, -1)
            out += self.coef["retrieval_cell_margin"] * cell_margin(scores, unit, np.arange(n * k).reshape(n, k))
        return out

    def _probed(self, s: np.ndarray, centre_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """((n, width) exact cosines, (n, width) bank rows) of the documents in each row's ``probe``
        nearest clusters (by ``centre_scores``), padded with -inf / -1 to the widest row (and to at
        least ``top_n`` columns, as the reference's -inf for every unprobed document)."""
        probe = min(self.probe, centre_scores.shape[1])
        nearest = np.argpartition(-centre_scores, probe - 1, axis=1)[:, :probe]
        if len(s) == 1:
            # one query (the live case): one matrix-vector product per probed cluster, no scatter
            offsets, query = self.offsets, s[0]
            ranges = [(int(offsets[c]), int(offsets[c + 1])) for c in nearest[0]]
            found = np.concatenate([_matmul(self.doc_vectors[lo:hi], query[:, None])[:, 0] for lo, hi in ranges])
            rows = np.concatenate([np.arange(lo, hi) for lo, hi in ranges])
            if len(found) < self.top_n:       # fewer documents than the list is long: -inf, as the reference
                found = np.concatenate([found, np.full(self.top_n - len(found), -np.inf, np.float32)])
                rows = np.concatenate([rows, np.full(self.top_n - len(rows), -1)])
            return found[None, :], rows[None, :]
        # a batch: each probed cluster once, for all the queries that probe it (one product per cluster)
        sizes = self.cluster_sizes[nearest]                                   # (n, probe)
        starts = np.cumsum(sizes, axis=1) - sizes                             # each cluster's first column
        width = max(int(sizes.sum(axis=1).max()), self.top_n)
        scores = np.full((len(s), width), -np.inf, dtype=np.float32)
        rows = np.full((len(s), width), -1, dtype=np.int64)
        ids = "retrieval_map_change" in self.coef or "retrieval_cell_margin" in self.coef
        flat_nearest = nearest.ravel()
        by_cluster = np.argsort(flat_nearest, kind="stable")
        bounds = np.searchsorted(flat_nearest[by_cluster], np.arange(len(self.cluster_sizes) + 1))
        for c in np.flatnonzero(np.diff(bounds)):
            lo, hi = int(self.offsets[c]), int(self.offsets[c + 1])
            if hi == lo:
                continue
            entries = by_cluster[bounds[c]:bounds[c + 1]]
            who, slot = entries // probe, entries % probe
            columns = starts[who, slot][:, None] + np.arange(hi - lo)        # (queries probing c, size)
            scores[who[:, None], columns] = _matmul(s[who], self.doc_vectors[lo:hi].T)
            if ids:
                rows[who[:, None], columns] = np.arange(lo, hi)
        return scores, rows

    def _exact_candidates(self, s: np.ndarray, approximate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """((n, rescore) exact cosines, (n, rescore) document rows) of each row's best candidates
        by the ``approximate`` scores."""
        k = min(self.rescore, approximate.shape[1])
        if len(s) == 1:     # a live query: one gather and one matrix-vector product, no per-row loop
            picked = np.argpartition(-approximate[0], k - 1)[:k]
            return _matmul(np.take(self.doc_exact, picked, axis=0), s[0][:, None])[:, 0][None, :], picked[None, :]
        picked = np.argpartition(-approximate, k - 1, axis=1)[:, :k]
        # numpy's row gather (np.take) is ~3x faster than torch's advanced indexing for ~200 rows
        exact = np.empty(picked.shape, dtype=np.float32)
        for row in range(len(picked)):
            exact[row] = _matmul(np.take(self.doc_exact, picked[row], axis=0), s[row][:, None])[:, 0]
        return exact, picked


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` in float32 through torch, for every product a live query makes. For a batch against
    the document bank torch's BLAS (MKL) took ~50 us per query where numpy's took ~62-77
    (bench/route_fastpath.py's machine). For ONE query it matters more: torch runs a query's
    matrix-vector products on the calling thread, where numpy's OpenBLAS splits each over the cores
    and its worker then busy-waits for the next call, holding the core the rest of the query needs.
    Beside one busy process a routed static query took 13.7x the static student alone that way and
    3.2x this way (bench/route_threads.py, SciFact test, batch 1). The numbers agree with numpy's
    to float rounding."""
    return (torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
            @ torch.from_numpy(np.asarray(b, dtype=np.float32))).numpy()
