"""Label-free confidence signals: how likely the student's vector of a query is to agree with
the teacher's, computed from the query text and the student's vector alone (no teacher call).

Every signal is "higher = less trustworthy" except where the name says otherwise, and each is
cheap at query time (a few small matrix products per query):

- ``head_disagreement``: several linear heads (ridge maps student -> teacher, fitted on
  bootstrap halves of the training pairs) disagree where the pairs were thin;
- ``cycle_error``: 1 - cos(s, B(F(s))) for a forward ridge map F (student -> teacher) and a
  backward one B (teacher -> student): the reverse map fails to reconstruct off-manifold inputs;
- ``knn_distance``: 1 - mean cosine of the query's student vector to its k nearest training
  texts (a PCA-reduced bank): is the query on the manifold the student was trained on?
- ``rare_word_share``: share of the query's words the training texts (almost) never showed;
- ``length``: words in the query (short queries carry less context);
- ``word_rarity``: mean inverse frequency, log((N + 1) / (count + 1)), of the query's words in
  the N training texts (a graded ``rare_word_share``);
- ``word_trust``: minus the mean learned trust of the query's words (trust.py: a ridge regression
  of the calibration texts' true agreement on their words; fitted by ``fit_router``, which gives
  the combiner cross-fitted values).

Retrieval signals (``RETRIEVAL_SIGNALS``) read the student's own result list: the query's cosine
to the served corpus' documents, which are the teacher's vectors (the router keeps a bank of
them, PCA-reduced like the training bank). They need no teacher call either: a query whose best
documents stand clearly above the rest keeps its top-10 under a small error of its vector, a flat
score profile does not:

- ``retrieval_top_score``: 1 - the best document's cosine (no document matches well);
- ``retrieval_margin``: -(best - second best) cosine;
- ``retrieval_boundary``: -(10th - 11th) cosine: the cut of the top-10 is close;
- ``retrieval_contrast``: -(mean of the top 10 - mean of all) / std of all, a z-score: how far
  the result list stands out of the corpus;
- ``retrieval_entropy``: entropy of the softmax (temperature 0.05) of the top-50 cosines,
  divided by log 50 (1 = flat);
- ``retrieval_cell_margin``: minus how deep the query sits in its best document's cell: the mean,
  over the next ``CELL_RIVALS`` documents d_k, of its distance to the hyperplane that bisects the best
  document d_1 and d_k, (s . d_1 - s . d_k) / |d_1 - d_k| (unit documents: the hyperplane goes through
  the origin). The student's error must move the query that far to change its first result; the
  raw score gap alone counts two near-duplicate documents as a clear decision;
- ``retrieval_map_change``: 1 - overlap of the query's top-10 with the top-10 of its vector moved
  by the forward ridge map (the training pairs' linear guess of the teacher's vector): a label-free
  estimate of the very agreement the router predicts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from tava_core import linalg

from .trust import word_trust_signal
from .words import WORD_BUCKETS, WordBags, word_buckets

TEXT_SIGNALS = ("head_disagreement", "cycle_error", "knn_distance", "rare_word_share", "length", "word_rarity",
                "word_trust")
RETRIEVAL_SIGNALS = ("retrieval_top_score", "retrieval_margin", "retrieval_boundary", "retrieval_contrast",
                     "retrieval_entropy", "retrieval_cell_margin", "retrieval_map_change")
SIGNAL_NAMES = TEXT_SIGNALS + RETRIEVAL_SIGNALS
# What compute_signals returns when no names are given: the signals every router can compute
# (a router saved before the document bank existed has none).
DEFAULT_SIGNALS = ("head_disagreement", "cycle_error", "knn_distance", "rare_word_share", "length")
ENTROPY_TOP = 50
ENTROPY_TEMPERATURE = 0.05
CELL_RIVALS = 10


def cell_margin(scores: np.ndarray, documents: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """``retrieval_cell_margin`` (higher = less trustworthy) from each query's result list ``scores``
    (-inf: not in the list) and the bank's unit ``documents`` (rows; PCA-reduced when the scores are:
    an orthonormal basis keeps the distances). The list's columns are bank rows, or with ``rows``
    candidates whose bank rows ``rows`` holds (-1: padding). Rivals outside the list are skipped."""
    n_docs = scores.shape[1]
    k = min(CELL_RIVALS + 1, n_docs)
    if k < 2:
        return np.zeros(len(scores), np.float32)
    if len(scores) == 1:
        return _cell_margin_one(scores[0], documents, None if rows is None else rows[0], k)
    # the k best in any order: the mean over the rivals needs only which one is first (no sort)
    picked = np.argpartition(scores, n_docs - k, axis=1)[:, n_docs - k:]
    top = np.take_along_axis(scores, picked, axis=1)                                 # (n, k)
    if rows is not None:
        picked = np.maximum(np.take_along_axis(rows, picked, axis=1), 0)
    first = top.argmax(axis=1)
    vectors = documents[picked]                                                      # (n, k, d)
    best = vectors[np.arange(len(vectors)), first]
    distance = np.sqrt(np.einsum("nkd,nkd->nk", vectors - best[:, None, :], vectors - best[:, None, :]))
    best_score = top[np.arange(len(top)), first][:, None]
    valid = np.isfinite(top) & np.isfinite(best_score)
    valid[np.arange(len(top)), first] = False                                        # the best is no rival
    depth = np.where(valid, (best_score - np.where(valid, top, 0.0)) / np.maximum(distance, 1e-6), 0.0)
    return -(depth.sum(axis=1) / np.maximum(valid.sum(axis=1), 1))


def _cell_margin_one(scores: np.ndarray, documents: np.ndarray, rows: np.ndarray | None, k: int) -> np.ndarray:
    """``cell_margin`` of one query (a live query at batch 1): the same arithmetic on 1-d arrays,
    without the batch's index grids and masks, which cost several times the arithmetic for one row."""
    n_docs = len(scores)
    picked = np.argpartition(scores, n_docs - k)[n_docs - k:]
    top = scores[picked]
    if rows is not None:
        picked = np.maximum(rows[picked], 0)
    first = int(top.argmax())
    best_score = top[first]
    if not np.isfinite(best_score):
        return np.zeros(1)
    vectors = documents.take(picked, axis=0)                                         # (k, d)
    difference = vectors - vectors[first]
    distance = np.sqrt(np.einsum("kd,kd->k", difference, difference))
    valid = np.isfinite(top)
    valid[first] = False                                                             # the best is no rival
    depth = (best_score - top[valid]) / np.maximum(distance[valid], 1e-6)
    return np.array([-(depth.sum() / max(len(depth), 1))])


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def ridge_map(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """W minimising ||xW - y||^2 + alpha ||W||^2 (closed form, float64 for stability)."""
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    gram = x64.T @ x64 + alpha * np.eye(x.shape[1])
    return linalg.solve(gram, x64.T @ y64).astype(np.float32)


@dataclass
class SignalModel:
    """Everything the signals need at query time; arrays are saved as safetensors by the router."""

    heads: np.ndarray            # (n_heads, d_student, d_teacher) ridge heads on bootstrap halves
    forward: np.ndarray          # (d_student, d_teacher)
    backward: np.ndarray         # (d_teacher, d_student)
    bank: np.ndarray             # (n_bank, pca_dim) PCA-reduced unit student vectors of training texts
    pca: np.ndarray              # (d_student, pca_dim) uncentred PCA basis of the training vectors
    pca_mean: np.ndarray         # (d_student,) mean training vector (centres the combiner's vector features)
    word_counts: np.ndarray      # (WORD_BUCKETS,) int32 counts of words in the training texts
    knn: int = 10
    rare_below: int = 2          # a word seen fewer times than this in the training texts is rare
    info: dict = field(default_factory=dict)
    # (n_docs, doc_dim) the served corpus' teacher vectors for the retrieval signals: unit vectors,
    # or their projection on ``doc_pca`` when that is non-empty; (0, 0) = no retrieval signals.
    documents: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    doc_pca: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    # (WORD_BUCKETS,) learned trust per word bucket for ``word_trust`` (trust.py); empty = not fitted
    word_trust: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    # Two-stage scoring (``doc_rescore`` > 0, with a PCA bank): the PCA bank picks each query's
    # ``doc_rescore`` best candidates, whose exact cosines (``doc_exact``: the same documents as
    # full unit vectors) give the result list; the corpus profile (mean, spread) is exact too.
    doc_exact: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    doc_rescore: int = 0
    # Clustered scoring (``doc_probe`` > 0, full-dimension bank): the bank's documents are sorted by
    # spherical k-means cluster (cluster c holds rows ``doc_offsets[c]:doc_offsets[c + 1]``); a query
    # scores exactly the documents of the ``doc_probe`` clusters whose centroids (``doc_centroids``,
    # unit rows) it is closest to, and no other. A static student's query then reads a few hundred
    # document rows instead of the whole bank -- what decided its cost at batch 1 was the bank's
    # size in cache, not the arithmetic (bench/route_fastpath.py) -- and the centroid scores are a
    # linear map of the query, which fused.py gets for free.
    doc_centroids: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    doc_offsets: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    doc_probe: int = 0
    # rows of the corpus the bank holds (calibration only, never saved: see compute_signals' exclude)
    doc_rows: np.ndarray | None = None
    # doc_pca @ documents.T, made at the first query (never saved: it is the two arrays above)
    _folded: np.ndarray | None = field(default=None, repr=False)

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"heads": self.heads, "forward": self.forward, "backward": self.backward, "bank": self.bank,
               "pca": self.pca, "pca_mean": self.pca_mean, "word_counts": self.word_counts}
        # safetensors cannot hold empty tensors: a model without a document bank just omits them
        if self.documents.size:
            out["documents"] = self.documents
        if self.doc_pca.size:
            out["doc_pca"] = self.doc_pca
        if self.word_trust.size:
            out["word_trust"] = self.word_trust
        if self.doc_exact.size:
            out["doc_exact"] = self.doc_exact
        if self.doc_centroids.size:
            out["doc_centroids"] = self.doc_centroids
            out["doc_offsets"] = self.doc_offsets
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], *, knn: int, rare_below: int, info: dict) -> "SignalModel":
        optional = {k: np.asarray(arrays[k]) for k in ("documents", "doc_pca", "word_trust", "doc_exact",
                                                       "doc_centroids", "doc_offsets") if k in arrays}
        return cls(**{k: np.asarray(arrays[k]) for k in ("heads", "forward", "backward", "bank", "pca", "pca_mean",
                                                          "word_counts")}, knn=knn, rare_below=rare_below, info=info,
                   doc_rescore=int(info.get("doc_rescore", 0)), doc_probe=int(info.get("doc_probe", 0)), **optional)


def document_bank(documents: np.ndarray, *, size: int, pca_dim: int, seed: int = 0,
                  keep_exact: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(bank, basis, rows, exact) for the retrieval signals: up to ``size`` unit document vectors (a
    random sample of a bigger corpus: ``rows``), projected on their top ``pca_dim`` uncentred
    principal directions (``pca_dim`` 0 = full dimension, empty basis). Scores in the reduced
    space approximate the cosines at pca_dim/d of the cost. ``exact``: with ``keep_exact`` and a
    PCA bank, the same documents as full unit vectors (two-stage scoring), else empty."""
    docs = _unit(np.asarray(documents, dtype=np.float32))
    rng = np.random.default_rng(seed)
    rows = np.arange(len(docs))
    none = np.zeros((0, 0), np.float32)
    if len(docs) > size:
        rows = np.sort(rng.choice(len(docs), size=size, replace=False))
        docs = docs[rows]
    if not pca_dim or pca_dim >= docs.shape[1]:
        return docs, none, rows, none
    _, _, vt = linalg.svd(docs[rng.choice(len(docs), size=min(len(docs), 8192), replace=False)])
    basis = vt[:pca_dim].T.astype(np.float32)
    return (docs @ basis).astype(np.float32), basis, rows, (docs if keep_exact else none)


def cluster_documents(docs: np.ndarray, clusters: int, *, seed: int = 0, iterations: int = 25
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, centroids, offsets) of spherical k-means on unit vectors ``docs``: ``docs[order]``
    lists cluster 0's documents first, then cluster 1's, ... (cluster c: rows offsets[c]:offsets[c+1]
    of the sorted bank); ``centroids`` are unit rows. Deterministic for a seed; an emptied cluster
    keeps its previous centroid (and holds no document)."""
    rng = np.random.default_rng(seed)
    clusters = max(1, min(int(clusters), len(docs)))
    centroids = docs[rng.choice(len(docs), size=clusters, replace=False)].copy()
    assign = np.zeros(len(docs), dtype=np.int64)
    for step in range(iterations):
        new = np.argmax(docs @ centroids.T, axis=1)
        if step and np.array_equal(new, assign):
            break
        assign = new
        sums = np.zeros_like(centroids, dtype=np.float64)
        np.add.at(sums, assign, docs)
        filled = np.linalg.norm(sums, axis=1) > 0
        centroids[filled] = _unit(sums[filled]).astype(np.float32)
    assign = np.argmax(docs @ centroids.T, axis=1)
    order = np.argsort(assign, kind="stable")
    offsets = np.searchsorted(assign[order], np.arange(clusters + 1)).astype(np.int64)
    return order, centroids.astype(np.float32), offsets


def probed_mask(model: "SignalModel", unit_vectors: np.ndarray) -> np.ndarray:
    """(n, n_docs) bool: the bank documents in each query's ``doc_probe`` nearest clusters."""
    centre_scores = unit_vectors @ model.doc_centroids.T
    probe = min(model.doc_probe, centre_scores.shape[1])
    nearest = np.argpartition(-centre_scores, probe - 1, axis=1)[:, :probe]
    cluster_of = np.repeat(np.arange(len(model.doc_offsets) - 1), np.diff(model.doc_offsets))
    return (cluster_of[None, :, None] == nearest[:, None, :]).any(axis=2)


def fit_signal_model(texts: Sequence[str], student: np.ndarray, teacher: np.ndarray, *, n_heads: int = 4,
                     alpha: float = 1.0, bank_size: int = 4096, pca_dim: int = 64, knn: int = 10,
                     rare_below: int = 2, seed: int = 0, documents: np.ndarray | None = None,
                     doc_bank_size: int = 8192, doc_pca_dim: int = 0, doc_rescore: int = 0,
                     doc_clusters: int = 0, doc_probe: int = 0) -> SignalModel:
    """Fit the signals on the student's TRAINING texts (their student and teacher vectors): the
    heads and maps learn where pairs exist, the bank and word counts record what was seen.
    ``documents`` (the teacher's vectors of the served corpus) enable the retrieval signals;
    ``doc_rescore`` > 0 with ``doc_pca_dim`` > 0 scores them in two stages, ``doc_clusters`` and
    ``doc_probe`` > 0 (full-dimension bank) in the probed clusters only (see SignalModel)."""
    if doc_probe and (doc_pca_dim or doc_rescore or doc_probe > doc_clusters):
        raise ValueError(f"doc_probe {doc_probe} needs a full-dimension bank (doc_pca_dim 0, doc_rescore 0) and "
                         f"at most doc_clusters ({doc_clusters}) clusters probed")
    if len(texts) != len(student) or len(student) != len(teacher):
        raise ValueError(f"texts ({len(texts)}), student ({len(student)}) and teacher ({len(teacher)}) vectors "
                         "must be the same texts")
    rng = np.random.default_rng(seed)
    s, t = _unit(student), _unit(teacher)
    heads = []
    for _ in range(n_heads):
        half = rng.choice(len(s), size=max(len(s) // 2, 2), replace=False)
        heads.append(ridge_map(s[half], t[half], alpha))
    forward = ridge_map(s, t, alpha)
    backward = ridge_map(t, s, alpha)
    pca_mean = s.mean(axis=0)
    # Uncentred PCA (the mean direction included): dot products in the reduced space approximate
    # the cosines of the unit vectors, and a query off the training manifold projects short, so
    # its nearest-neighbour similarities drop instead of being blown up by re-normalisation.
    _, _, vt = linalg.svd(s[rng.choice(len(s), size=min(len(s), 8192), replace=False)])
    pca = vt[:pca_dim].T.astype(np.float32)
    pick = rng.choice(len(s), size=min(bank_size, len(s)), replace=False)
    bank = (s[pick] @ pca).astype(np.float32)
    counts = np.zeros(WORD_BUCKETS, dtype=np.int32)
    for text in texts:
        np.add.at(counts, word_buckets(text), 1)
    info = {"training_texts": len(texts), "n_heads": n_heads, "alpha": alpha, "bank_size": int(len(bank)),
            "pca_dim": int(pca.shape[1])}
    none = np.zeros((0, 0), np.float32)
    doc_bank, doc_pca, doc_rows, doc_exact = none, none, None, none
    if documents is not None and len(documents):
        doc_bank, doc_pca, doc_rows, doc_exact = document_bank(documents, size=doc_bank_size, pca_dim=doc_pca_dim,
                                                               seed=seed, keep_exact=doc_rescore > 0)
        info.update(doc_bank_size=int(len(doc_bank)), doc_pca_dim=int(doc_pca.shape[1]) if doc_pca.size else 0)
        if doc_exact.size:
            info.update(doc_rescore=int(doc_rescore))
    centroids, offsets = np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
    if doc_probe and doc_bank.size:
        order, centroids, offsets = cluster_documents(doc_bank, doc_clusters, seed=seed)
        doc_bank = np.ascontiguousarray(doc_bank[order])
        doc_rows = None if doc_rows is None else doc_rows[order]
        info.update(doc_clusters=int(len(centroids)), doc_probe=int(doc_probe))
    return SignalModel(heads=np.stack(heads), forward=forward, backward=backward, bank=bank, pca=pca,
                       pca_mean=pca_mean.astype(np.float32), word_counts=counts, knn=knn, rare_below=rare_below,
                       info=info, documents=doc_bank, doc_pca=doc_pca, doc_rows=doc_rows,
                       doc_exact=doc_exact, doc_rescore=int(doc_rescore) if doc_exact.size else 0,
                       doc_centroids=centroids, doc_offsets=offsets, doc_probe=int(doc_probe) if centroids.size else 0)


def rare_word_shares(model: SignalModel, texts: Sequence[str]) -> np.ndarray:
    """``rare_word_share`` of each text alone: no student vector needed (drift's unseen-word share)."""
    return _word_stats(model, WordBags(texts))[0]


def _word_stats(model: SignalModel, bags: WordBags) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rare share, length, mean rarity) per text, from its word buckets' training counts."""
    if not bags.lengths.sum():
        zeros = np.zeros(bags.n, np.float32)
        return zeros, zeros.copy(), zeros.copy()
    counts = model.word_counts[bags.buckets].astype(np.float64)
    total = float(model.info.get("training_texts", 1))
    rarity = np.log((total + 1.0) / (counts + 1.0))
    rare = bags.mean((counts < model.rare_below).astype(np.float64))
    return rare.astype(np.float32), bags.lengths.astype(np.float32), bags.mean(rarity).astype(np.float32)


def _result_list(model: SignalModel, s: np.ndarray, rows: np.ndarray, hit: np.ndarray, profile: bool
                 ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(scores, mean, std): each query's scores over the bank as its result list reads them (-inf:
    not in the list: an excluded source, a candidate the first stage dropped, an unprobed cluster)
    and, with ``profile``, the mean and spread of its scores over the whole bank (exact where the
    list is exact: retrieval_contrast's corpus profile)."""
    scores = _bank_scores(model, s)                                      # (n, n_docs)
    mean = std = None
    if model.doc_rescore:
        # two stages: the PCA scores pick candidates, their exact cosines are the result list
        exact = s @ model.doc_exact.T
        if profile:
            mean, std = exact.mean(axis=1), np.maximum(exact.std(axis=1), 1e-6)
        scores[rows, hit[rows]] = -np.inf
        exact[rows, hit[rows]] = -np.inf
        return _rescored(scores, exact, model.doc_rescore), mean, std
    if profile:    # only retrieval_contrast reads the whole profile (a live query pays for each pass)
        mean, std = scores.mean(axis=1), np.maximum(scores.std(axis=1), 1e-6)
    scores[rows, hit[rows]] = -np.inf
    if model.doc_probe:
        scores[~probed_mask(model, s)] = -np.inf
    return scores, mean, std


def _retrieval_signals(model: SignalModel, s: np.ndarray, names: Sequence[str],
                       exclude: np.ndarray | None = None) -> dict[str, np.ndarray]:
    if not model.documents.size:
        raise ValueError(f"signals {[n for n in names if n in RETRIEVAL_SIGNALS]} need the served corpus' documents: "
                         "fit the signal model with documents=... (fit_router passes the corpus)")
    rows = np.zeros(0, dtype=np.int64)
    hit = _excluded_bank_rows(model, exclude)
    if exclude is not None:
        rows = np.flatnonzero(hit >= 0)
    scores, mean, std = _result_list(model, s, rows, hit, "retrieval_contrast" in names)
    top_n = min(max(ENTROPY_TOP, 11), scores.shape[1])
    top = np.partition(scores, scores.shape[1] - top_n, axis=1)[:, -top_n:]
    top = -np.sort(-top, axis=1)                                         # descending
    out: dict[str, np.ndarray] = {}
    if "retrieval_top_score" in names:
        out["retrieval_top_score"] = 1.0 - top[:, 0]
    if "retrieval_margin" in names:
        out["retrieval_margin"] = -(top[:, 0] - top[:, 1]) if top_n > 1 else np.zeros(len(s))
    if "retrieval_boundary" in names:
        out["retrieval_boundary"] = -(top[:, 9] - top[:, 10]) if top_n > 10 else np.zeros(len(s))
    if "retrieval_contrast" in names:
        assert mean is not None and std is not None
        out["retrieval_contrast"] = -(top[:, :10].mean(axis=1) - mean) / std
    if "retrieval_entropy" in names:
        logits = (top - top[:, :1]) / ENTROPY_TEMPERATURE
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        out["retrieval_entropy"] = -(p * np.log(np.maximum(p, 1e-30))).sum(axis=1) / np.log(top_n)
    if "retrieval_cell_margin" in names:
        out["retrieval_cell_margin"] = cell_margin(scores, model.doc_exact if model.doc_rescore else model.documents)
    if "retrieval_map_change" in names:
        # the forward ridge map is the training pairs' best linear guess of the teacher vector:
        # where moving the query there reshuffles its top-10, the top-10 is fragile
        mapped, _, _ = _result_list(model, _unit(s @ model.forward), rows, hit, profile=False)
        k = min(10, scores.shape[1])
        a = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        b = np.argpartition(-mapped, k - 1, axis=1)[:, :k]
        out["retrieval_map_change"] = 1.0 - (a[:, :, None] == b[:, None, :]).any(axis=2).mean(axis=1)
    return {k: v.astype(np.float32) for k, v in out.items()}


def _rescored(approximate: np.ndarray, exact: np.ndarray, candidates: int) -> np.ndarray:
    """Each row's ``candidates`` best documents by the approximate scores keep their exact score;
    every other document scores -inf (so it is in no top list)."""
    k = min(candidates, approximate.shape[1])
    picked = np.argpartition(-approximate, k - 1, axis=1)[:, :k]
    out = np.full_like(exact, -np.inf)
    np.put_along_axis(out, picked, np.take_along_axis(exact, picked, axis=1), axis=1)
    return out


def _bank_scores(model: SignalModel, unit_vectors: np.ndarray) -> np.ndarray:
    """Cosines (approximate with a PCA bank) of each query to the bank's documents. A PCA bank is
    scored through its basis and documents folded into one (d, n_docs) matrix: one product per
    query instead of two (the same numbers up to float rounding)."""
    if not model.doc_pca.size:
        return unit_vectors @ model.documents.T
    if model._folded is None:
        model._folded = np.ascontiguousarray(model.doc_pca @ model.documents.T)
    return unit_vectors @ model._folded


def _excluded_bank_rows(model: SignalModel, exclude: np.ndarray | None) -> np.ndarray:
    """Per text, the bank row of the corpus document to leave out (-1: none)."""
    if exclude is None:
        return np.zeros(0, dtype=np.int64)
    if model.doc_rows is None:
        raise ValueError("exclude needs the signal model fitted in this process (fit_signal_model(documents=...))")
    lookup = np.full(int(model.doc_rows.max()) + 1, -1)                  # corpus row -> bank row (-1: not in it)
    lookup[model.doc_rows] = np.arange(len(model.doc_rows))
    valid = (exclude >= 0) & (exclude < len(lookup))
    hit = np.full(len(exclude), -1)
    hit[valid] = lookup[exclude[valid]]
    return hit


def compute_signals(model: SignalModel, texts: Sequence[str], student: np.ndarray,
                    names: Sequence[str] = DEFAULT_SIGNALS, *, exclude: np.ndarray | None = None
                    ) -> dict[str, np.ndarray]:
    """The named signals of ``texts`` given their student vectors; float32 arrays of len(texts).
    ``exclude`` (calibration only): per text, the row of the corpus document it was cut from (-1:
    none); the retrieval signals then leave that document out, as a real query's result list
    holds no verbatim copy of it."""
    s = _unit(student)
    out: dict[str, np.ndarray] = {}
    if "head_disagreement" in names:
        mapped = np.stack([_unit(s @ h) for h in model.heads])          # (heads, n, d)
        centre = _unit(mapped.mean(axis=0))
        out["head_disagreement"] = (1.0 - np.einsum("hnd,nd->hn", mapped, centre).mean(axis=0)).astype(np.float32)
    if "cycle_error" in names:
        back = _unit((s @ model.forward) @ model.backward)
        out["cycle_error"] = (1.0 - np.sum(back * s, axis=1)).astype(np.float32)
    if "knn_distance" in names:
        sims = (s @ model.pca) @ model.bank.T
        k = min(model.knn, sims.shape[1])
        nearest = np.partition(sims, sims.shape[1] - k, axis=1)[:, -k:]
        out["knn_distance"] = (1.0 - nearest.mean(axis=1)).astype(np.float32)
    # the word signals share one tokenisation of the texts
    bags = WordBags(texts) if {"rare_word_share", "length", "word_rarity", "word_trust"} & set(names) else None
    if {"rare_word_share", "length", "word_rarity"} & set(names):
        assert bags is not None
        rare, length, rarity = _word_stats(model, bags)
        for name, values in (("rare_word_share", rare), ("length", length), ("word_rarity", rarity)):
            if name in names:
                out[name] = values
    if "word_trust" in names:
        if not model.word_trust.size:
            raise ValueError("signal word_trust needs a trust table fitted on calibration texts: "
                             "fit the router with fit_router (it fits the table when word_trust is among the signals)")
        assert bags is not None
        out["word_trust"] = word_trust_signal(model.word_trust, bags)
    if set(RETRIEVAL_SIGNALS) & set(names):
        out.update(_retrieval_signals(model, s, names, exclude))
    return out
