"""A confidence router's score as a torch module, so `tava export` can put it in the query
encoder's ONNX graph: one file gives each query's vector *and* its confidence, and a serving
stack routes the doubtful queries to the teacher without tava or torch.

``ConfidenceGraph`` computes what ``route.fast.CompiledConfidence`` computes (it is built from
one, so the folded matrices and coefficients are shared, not re-derived), in float32 tensor
operations that export to plain ONNX ops (MatMul, TopK, Gather, Softmax-like arithmetic). Signals
that read the query's *words* (``rare_word_share``, ``length``, ``word_rarity``, ``word_trust``)
need a word splitter and a hashed table outside a tensor graph, a clustered document bank needs
per-query ragged reads, and ``retrieval_map_change`` compares index sets: those are refused with
the fix (calibrate the router with vector and retrieval signals; the default, ``retrieval_cell_margin``,
exports).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..route.fast import WORD_SIGNALS, CompiledConfidence
from ..route.signals import CELL_RIVALS, ENTROPY_TEMPERATURE

VECTOR_SIGNALS = ("head_disagreement", "cycle_error", "knn_distance")
RETRIEVAL_EXPORTABLE = ("retrieval_top_score", "retrieval_margin", "retrieval_boundary", "retrieval_contrast",
                        "retrieval_entropy", "retrieval_cell_margin")
EXPORTABLE = VECTOR_SIGNALS + RETRIEVAL_EXPORTABLE


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / torch.sqrt((x * x).sum(dim=-1, keepdim=True)).clamp(min=1e-12)


class ConfidenceGraph(nn.Module):
    """``(n, d)`` student (+ adapter) vectors -> ``(n,)`` confidence: the router's predicted
    agreement with the teacher (queries under the router's threshold go to the teacher)."""

    matrix: torch.Tensor          # buffers (declared for the type checker)
    knn_bank_t: torch.Tensor
    doc_matrix: torch.Tensor
    doc_exact: torch.Tensor
    doc_vectors: torch.Tensor

    def __init__(self, compiled: CompiledConfidence) -> None:
        super().__init__()
        signals = sorted(compiled.signals)
        refused = [s for s in signals if s not in EXPORTABLE]
        if refused:
            words = [s for s in refused if s in WORD_SIGNALS]
            raise ConfigError(
                f"the router's signals {refused} cannot go into an ONNX graph"
                + (" (they read the query's words, not its vector)" if words else ""),
                hint="calibrate a router with vector or retrieval signals only, e.g. the default "
                     "`tava calibrate-router ... --settings-signals retrieval_cell_margin`, and export that")
        if compiled.retrieval and compiled.probe:
            raise ConfigError("a router with a clustered document bank (doc_clusters) cannot go into an ONNX graph "
                              "(each query reads a different number of documents)",
                              hint="calibrate with --settings-doc-clusters 0 (a full or PCA bank) and export that")
        self.coef = {name: float(value) for name, value in compiled.coef.items()}
        self.bias = float(compiled.bias)
        self.slices = {name: (s.start, s.stop) for name, s in compiled._slices.items()}
        self.register_buffer("matrix", torch.from_numpy(np.ascontiguousarray(compiled.matrix, dtype=np.float32)))
        self.n_heads = int(getattr(compiled, "n_heads", 0))
        self.head_dim = int(getattr(compiled, "head_dim", 0))
        self.knn = int(getattr(compiled, "knn", 0))
        if "knn_distance" in self.coef:
            self.register_buffer("knn_bank_t", torch.from_numpy(np.ascontiguousarray(compiled.knn_bank_t,
                                                                                     dtype=np.float32)))
        self.retrieval = bool(compiled.retrieval)
        self.top_n = int(getattr(compiled, "top_n", 0))
        self.rescore = int(getattr(compiled, "rescore", 0))
        if self.retrieval:
            self.register_buffer("doc_matrix", torch.from_numpy(np.ascontiguousarray(compiled.doc_matrix,
                                                                                     dtype=np.float32)))
            if self.rescore:
                self.register_buffer("doc_exact", torch.from_numpy(np.ascontiguousarray(compiled.doc_exact,
                                                                                        dtype=np.float32)))
            elif "retrieval_cell_margin" in self.coef:     # the bank's rows, to gather each list's best documents
                self.register_buffer("doc_vectors", torch.from_numpy(np.ascontiguousarray(compiled.doc_vectors,
                                                                                          dtype=np.float32)))

    def _part(self, projected: torch.Tensor, name: str) -> torch.Tensor:
        start, stop = self.slices[name]
        return projected[:, start:stop]

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        s = _unit(vectors.float())
        score = torch.full_like(s[:, 0], self.bias)
        projected: Optional[torch.Tensor] = s @ self.matrix if self.matrix.shape[1] else None
        coef = self.coef
        if projected is not None:
            if "head_disagreement" in coef:
                mapped = self._part(projected, "head_disagreement").reshape(-1, self.n_heads, self.head_dim)
                summed = _unit(mapped).sum(dim=1)
                spread = 1.0 - torch.sqrt((summed * summed).sum(dim=-1)) / self.n_heads
                score = score + coef["head_disagreement"] * spread
            if "cycle_error" in coef:
                back = _unit(self._part(projected, "cycle_error"))
                score = score + coef["cycle_error"] * (1.0 - (back * s).sum(dim=-1))
            if "knn_distance" in coef:
                sims = self._part(projected, "knn_distance") @ self.knn_bank_t
                nearest = torch.topk(sims, self.knn, dim=1).values
                score = score + coef["knn_distance"] * (1.0 - nearest.sum(dim=1) / self.knn)
            if "direction" in self.slices:
                score = score + self._part(projected, "direction")[:, 0]
        if self.retrieval:
            score = score + self._retrieval(s, projected)
        return score

    def _retrieval(self, s: torch.Tensor, projected: Optional[torch.Tensor]) -> torch.Tensor:
        coef = self.coef
        out = torch.zeros_like(s[:, 0])
        contrast = "retrieval_contrast" in coef
        if contrast and self.rescore:       # the whole bank's profile, from its mean and covariance
            assert projected is not None
            mean = self._part(projected, "doc_mean")[:, 0]
            var = (self._part(projected, "doc_cov") * s).sum(dim=-1)
            std = torch.sqrt(var.clamp(min=0.0)).clamp(min=1e-6)
        reduced = self._part(projected, "doc_pca") if projected is not None and "doc_pca" in self.slices else s
        scores = reduced @ self.doc_matrix                                     # (n, n_docs)
        if self.rescore:
            k = min(self.rescore, int(self.doc_matrix.shape[1]))
            picked = torch.topk(scores, k, dim=1).indices                      # (n, k)
            rows = nn.functional.embedding(picked, self.doc_exact)             # (n, k, d): a Gather
            # one batched MatMul: a Mul + ReduceSum would write and read another (n, k, d) tensor
            scores = torch.matmul(rows, s[:, :, None])[:, :, 0]
        elif contrast:
            mean = scores.mean(dim=1)
            centred = scores - mean[:, None]
            std = torch.sqrt((centred * centred).mean(dim=1)).clamp(min=1e-6)   # population std, as numpy's
        top, at = torch.topk(scores, self.top_n, dim=1)                        # descending
        if "retrieval_top_score" in coef:
            out = out + coef["retrieval_top_score"] * (1.0 - top[:, 0])
        if "retrieval_margin" in coef and self.top_n > 1:
            out = out + coef["retrieval_margin"] * -(top[:, 0] - top[:, 1])
        if "retrieval_boundary" in coef and self.top_n > 10:
            out = out + coef["retrieval_boundary"] * -(top[:, 9] - top[:, 10])
        if contrast:
            out = out + coef["retrieval_contrast"] * (-(top[:, :10].mean(dim=1) - mean) / std)
        if "retrieval_entropy" in coef:
            p = torch.exp((top - top[:, :1]) / ENTROPY_TEMPERATURE)
            p = p / p.sum(dim=1, keepdim=True)
            entropy = -(p * torch.log(p.clamp(min=1e-30))).sum(dim=1) / float(np.log(self.top_n))
            out = out + coef["retrieval_entropy"] * entropy
        if "retrieval_cell_margin" in coef:
            k = min(CELL_RIVALS + 1, self.top_n)
            if self.rescore:                    # candidates -> bank rows, then their exact vectors
                best = nn.functional.embedding(torch.gather(picked, 1, at[:, :k]), self.doc_exact)
            else:
                best = nn.functional.embedding(at[:, :k], self.doc_vectors)   # (n, k, d)
            distance = torch.sqrt(((best[:, :1] - best[:, 1:]) ** 2).sum(dim=-1)).clamp(min=1e-6)
            depth = (top[:, :1] - top[:, 1:k]) / distance
            out = out + coef["retrieval_cell_margin"] * -(depth.sum(dim=1) / (k - 1))
        return out
