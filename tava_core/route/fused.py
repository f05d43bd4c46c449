"""A static student's query vectors and the router's confidence from ONE pass over the tokens.

A static student's vector is the mean of its tokens' table rows, normalised: v = mean_t E[t],
s = v / |v|. Every linear map the confidence applies to s (heads, forward x backward, the knn
basis, the combiner's vector direction, a PCA document basis: ``CompiledConfidence.matrix`` M)
therefore commutes with the mean: s @ M = mean_t (E[t] @ M) / |v|. With the table widened once
to [E | E @ M], one ``embedding_bag`` over a query's ~20 token rows gives the student vector and
every projection together, instead of a (d x ~2,000) matrix-vector product per query -- which
at batch 1 reads ~3 MB of weights per query and cost as much as the student itself.

The price is memory: (vocabulary x (d + M's columns)) float32, 231 MiB for the default score
over a 30k vocabulary, so ``RoutedEncoder`` builds it only under ``MAX_TABLE_BYTES``. The numbers
are the reference's up to float rounding (sums in another order); tests/route/test_route_fast.py
checks vectors, confidence and routing against the unfused path.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..encoders.static import StaticEncoder, mean_rows
from .fast import CompiledConfidence

MAX_TABLE_BYTES = 768 * 1024 * 1024


def fused_table_bytes(student: StaticEncoder, compiled: CompiledConfidence) -> int:
    """Bytes of the widened table (what building a ``FusedStatic`` allocates)."""
    vocabulary, dim = student.table.shape
    return int(vocabulary) * (int(dim) + int(compiled.matrix.shape[1])) * 4


class FusedStatic:
    """``(student.encode(texts, kind="query"), compiled(texts, those vectors))`` in one token pass."""

    def __init__(self, student: StaticEncoder, compiled: CompiledConfidence) -> None:
        self.student, self.compiled = student, compiled
        table = student.table.float()
        self.dim = int(table.shape[1])
        with torch.inference_mode():
            extra = table @ torch.from_numpy(compiled.matrix)
            self.table = torch.cat([table, extra], dim=1).contiguous()

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        raw = list(texts)                      # the word signals read the query as given
        if len(raw) == 1:
            return self._one(raw)
        return self._many(raw)

    def _one(self, raw: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """One query (the live case) in numpy, as ``StaticEncoder`` encodes one text: no torch dispatch."""
        student = self.student
        pooled = mean_rows(self.table.numpy(), student.token_ids(student.spec.query_prefix + raw[0]))
        # exactly F.normalize's arithmetic (x / max(|x|, 1e-12)) on the student's part, for all of it
        scaled = pooled / max(float(np.sqrt(np.dot(pooled[:self.dim], pooled[:self.dim]))), 1e-12)
        unit, projected = scaled[None, :self.dim], scaled[None, self.dim:]
        vectors = unit if student.normalized else pooled[None, :self.dim]
        return vectors, self.compiled.score(raw, unit, projected)

    @torch.inference_mode()
    def _many(self, raw: list[str]) -> tuple[np.ndarray, np.ndarray]:
        student = self.student
        prefix = student.spec.query_prefix
        texts = [prefix + t for t in raw] if prefix else raw
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        scores = np.zeros(len(texts), dtype=np.float32)
        # the same tokens and pooling as StaticEncoder.encode (its token_bags), on the widened table
        for start in range(0, len(texts), 1024):
            chunk = texts[start:start + 1024]
            flat, offsets = student.token_bags(chunk)
            pooled = torch.nn.functional.embedding_bag(flat, self.table, offsets, mode="mean")
            # exactly F.normalize's arithmetic (x / max(|x|, 1e-12)), one division for the student's
            # vector and every projection
            norms = pooled[:, :self.dim].norm(dim=1, keepdim=True).clamp_min(1e-12)
            scaled = (pooled / norms).numpy()
            unit, projected = scaled[:, :self.dim], scaled[:, self.dim:]
            vectors[start:start + len(chunk)] = unit if student.normalized else pooled[:, :self.dim].numpy()
            scores[start:start + len(chunk)] = self.compiled.score(raw[start:start + 1024], unit, projected)
        return vectors, scores
