"""Alignment metrics on held-out pairs (mapped student vector i belongs with teacher vector i).

- mean_cosine: mean cosine between mapped and true teacher vector;
- top1 / mean_rank: rank of the true teacher vector among all held-out teacher vectors when
  searched with the mapped vector (vec2vec's metrics; rank 1 is best);
- knn_overlap: share of each item's k nearest neighbours (among mapped vectors) that are also its
  k nearest among the true teacher vectors, averaged;
- retrieval_overlap (with a ``pool`` of teacher vectors, e.g. training documents): share of the k
  pool items the true teacher vector retrieves that the mapped vector retrieves too -- asymmetric
  search (mapped query against teacher documents) measured without labels.
"""
from __future__ import annotations

import numpy as np
import torch


def _unit(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x, dtype=np.float32)) if not isinstance(x, torch.Tensor) else x.float()
    return torch.nn.functional.normalize(t, dim=-1)


@torch.no_grad()
def alignment_metrics(mapped: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor, k: int = 10,
                      chunk: int = 2048, pool: np.ndarray | torch.Tensor | None = None) -> dict[str, float]:
    """Metrics of ``mapped`` against ``target`` (same row order, same dimension); with ``pool``
    (teacher vectors of other texts) also ``retrieval_overlap@k``."""
    a, b = _unit(mapped), _unit(target)
    if a.shape != b.shape:
        raise ValueError(f"mapped {tuple(a.shape)} and target {tuple(b.shape)} differ")
    n = a.shape[0]
    k = min(k, n - 1) if n > 1 else 0
    cos_true = (a * b).sum(-1)
    ranks = torch.empty(n)
    overlap = torch.empty(n)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        sims = a[start:stop] @ b.T
        # A tolerance: the diagonal of a matmul and a row-wise dot product differ in the last bits.
        ranks[start:stop] = (sims > cos_true[start:stop, None] + 1e-6).sum(-1).float() + 1
        if k > 0:
            rows = torch.arange(stop - start)
            mapped_sims = a[start:stop] @ a.T
            teacher_sims = b[start:stop] @ b.T
            mapped_sims[rows, rows + start] = -2  # an item is not its own neighbour
            teacher_sims[rows, rows + start] = -2
            nn_mapped = mapped_sims.topk(k, dim=-1).indices
            nn_teacher = teacher_sims.topk(k, dim=-1).indices
            hits = (nn_mapped[:, :, None] == nn_teacher[:, None, :]).any(-1).float().sum(-1)
            overlap[start:stop] = hits / k
    out = {"n": int(n), "mean_cosine": float(cos_true.mean()), "top1": float((ranks == 1).float().mean()),
           "mean_rank": float(ranks.mean()), "median_rank": float(ranks.median())}
    if k > 0:
        out[f"knn_overlap@{k}"] = float(overlap.mean())
    if pool is not None and len(pool) > k > 0:
        out[f"retrieval_overlap@{k}"] = retrieval_overlap(a, b, pool, k, chunk)
    return out


@torch.no_grad()
def top_k(queries: np.ndarray | torch.Tensor, pool: np.ndarray | torch.Tensor, k: int, chunk: int = 2048
          ) -> torch.Tensor:
    """(n, k) indices of each query's k most similar ``pool`` items by cosine."""
    a, docs = _unit(queries), _unit(pool)
    return torch.cat([(a[start:start + chunk] @ docs.T).topk(k, dim=-1).indices
                      for start in range(0, a.shape[0], chunk)])


@torch.no_grad()
def retrieval_overlap(mapped: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor,
                      pool: np.ndarray | torch.Tensor, k: int = 10, chunk: int = 2048,
                      target_top: torch.Tensor | None = None) -> float:
    """Mean share of the top-k ``pool`` items of each true teacher vector that its mapped vector also
    ranks in its top-k: how well search with mapped queries reproduces the teacher's own search.
    ``target_top``: the teacher's top-k (``top_k(target, pool, k)``) when the caller keeps it across
    calls (the same targets and pool at every evaluation)."""
    top_teacher = top_k(target, pool, k, chunk) if target_top is None else target_top
    top_mapped = top_k(mapped, pool, k, chunk)
    hits = float((top_mapped[:, :, None] == top_teacher[:, None, :]).any(-1).float().sum())
    return hits / (top_mapped.shape[0] * k)


@torch.no_grad()
def mean_pairwise_cosine(x: np.ndarray | torch.Tensor, sample: int = 512) -> float:
    """Mean off-diagonal cosine of (up to ``sample``) rows: near 1 means the outputs collapsed."""
    t = _unit(x)[:sample]
    n = t.shape[0]
    if n < 2:
        return 0.0
    sims = t @ t.T
    return float((sims.sum() - sims.diagonal().sum()) / (n * (n - 1)))
