"""Model selection for the adapter: the held-out metrics that choose among maps, and the rule that compares them.

``SelectionSet`` holds the label-free in-domain rows that only choose, never train; ``selection_for`` (and
``best_index``) is the one rule early stopping, the best of N seeds and the keep gates share; ``heldout_metrics``
(with ``retrieval_pool`` and ``query_metrics``) measures an adapter on the held-out pairs, their query-like rows
and the selection rows, and raises ``Diverged`` for non-finite or collapsed outputs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

import numpy as np
import torch

from ..errors import ConfigError
from ..training import Diverged, Selection
from .baselines import normalize_rows
from .config import AdapterConfig
from .data import MIN_QUERY_LIKE, AdapterData
from .metrics import alignment_metrics, mean_pairwise_cosine, retrieval_overlap, top_k
from .model import Vec2VecAdapter


@dataclass
class SelectionSet:
    """Label-free in-domain rows that only choose, never train (``AdapterConfig.selection_*_vectors``): the
    student's ``queries`` (span views), mapped, should retrieve among ``documents`` (the teacher's vectors of
    the target collection) what the teacher's vectors of the same texts, ``targets``, retrieve."""

    queries: np.ndarray
    targets: np.ndarray
    documents: np.ndarray
    # the teacher's top-k of each target among the documents, per k: the same at every evaluation
    _target_top: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)

    def overlap(self, mapped_queries: np.ndarray, k: int) -> float:
        """selection_retrieval_overlap@k of the mapped queries."""
        if k not in self._target_top:
            self._target_top[k] = top_k(self.targets, self.documents, k)
        return retrieval_overlap(mapped_queries, self.targets, self.documents, k, target_top=self._target_top[k])

    @classmethod
    def from_rows(cls, student: np.ndarray, teacher: np.ndarray, query_like: np.ndarray) -> "SelectionSet":
        """Query-like rows (span views) are the queries, the other rows' teacher vectors the documents."""
        query_like = np.asarray(query_like, dtype=bool)
        if int(query_like.sum()) < MIN_QUERY_LIKE or int((~query_like).sum()) < MIN_QUERY_LIKE:
            raise ConfigError(f"the selection vectors hold {int(query_like.sum())} span views and "
                              f"{int((~query_like).sum())} documents; at least {MIN_QUERY_LIKE} of each are needed",
                              hint="embed the target collection's documents and its span views (`tava distill` "
                                   "writes them) with both encoders and give all four directories")
        return cls(student[query_like], teacher[query_like], teacher[~query_like])


def selection_for(metric: str, metric_names: Iterable[str]) -> Selection:
    """The held-out selection rule (early stopping, best-of-N seeds, the keep-learned gate) for
    ``config.early_stopping_metric``: mean cosine (ties: lower mean rank), retrieval overlap (to 4 decimals;
    ties: mean cosine) when it is measured, else mean rank (to 4 decimals; ties: mean cosine). Mean cosine
    and retrieval overlap are taken over the query-like held-out rows when they are measured ('query_'); retrieval
    overlap over the in-domain selection rows ('selection_', ``SelectionSet``) wins over both when measured."""
    names = list(metric_names)
    in_domain = next((name for name in names if name.startswith("selection_retrieval_overlap@")), None)
    if metric == "retrieval_overlap" and in_domain is not None:
        return Selection(in_domain, greater_is_better=True, decimals=4, tie_break="mean_cosine")
    if metric == "mean_cosine":
        return Selection("query_mean_cosine" if "query_mean_cosine" in names else "mean_cosine",
                         greater_is_better=True, tie_break="mean_rank", tie_break_greater_is_better=False)
    overlap = next((name for name in names if name.startswith("query_retrieval_overlap@")), None)
    overlap = overlap or next((name for name in names if name.startswith("retrieval_overlap@")), None)
    if metric == "retrieval_overlap" and overlap is not None:
        return Selection(overlap, greater_is_better=True, decimals=4, tie_break="mean_cosine")
    return Selection("mean_rank", greater_is_better=False, decimals=4, tie_break="mean_cosine")


def best_index(metrics: list[dict[str, float]], metric: str) -> int:
    """Which of several runs' held-out ``metrics`` is best by ``metric`` (the first of equals)."""
    return selection_for(metric, metrics[0] if metrics else ()).best_index(metrics)


def metric_names(config: AdapterConfig, data: AdapterData) -> list[str]:
    """The held-out metrics ``evaluate`` will report (``alignment_metrics`` measures retrieval overlap only
    when the document pool is larger than k)."""
    n = len(data.heldout_student)
    k = min(config.knn_k, n - 1) if n > 1 else 0
    names = ["mean_cosine", "mean_rank"] if data.has_heldout else []
    pooled = data.has_heldout and min(config.retrieval_pool, len(data.teacher)) > k > 0
    if pooled:
        names.append(f"retrieval_overlap@{k}")
    if data.has_heldout and _query_rows(config, data) is not None:
        names.append("query_mean_cosine")
        if pooled:
            names.append(f"query_retrieval_overlap@{k}")
    if data.selection is not None:
        names.append(f"selection_retrieval_overlap@{_selection_k(config, data.selection)}")
    return names


def _selection_k(config: AdapterConfig, selection: SelectionSet) -> int:
    return min(config.knn_k, len(selection.documents) - 1)


def _query_rows(config: AdapterConfig, data: AdapterData) -> Optional[np.ndarray]:
    """The held-out rows maps are compared on besides all: the query-like ones, under selection_rows
    'query_like' and when there are enough of them; else None."""
    return data.heldout_query_rows() if config.selection_rows == "query_like" else None


def retrieval_pool(data: AdapterData, config: AdapterConfig) -> np.ndarray:
    """Documents for the retrieval-overlap metric: a fixed sample of training teacher vectors."""
    n = min(config.retrieval_pool, len(data.teacher))
    rows = np.random.default_rng(0).choice(len(data.teacher), n, replace=False)
    return data.teacher[np.sort(rows)]


@torch.no_grad()
def heldout_metrics(adapter: Vec2VecAdapter, data: AdapterData, config: AdapterConfig,
                    pool: np.ndarray) -> dict[str, float]:
    """What early stopping, the best seed and the keep gates compare: the adapter's metrics on the held-out
    pairs (all, and the query-like ones) and on the in-domain selection rows; raises ``Diverged`` for
    non-finite or collapsed outputs."""
    probe = data.heldout_student if data.has_heldout else data.student[:512]
    mapped = adapter.map_numpy(probe)
    if not np.isfinite(mapped).all():
        raise Diverged("adapter outputs are not finite")
    spread = mean_pairwise_cosine(mapped)
    if spread > config.collapse_threshold:
        raise Diverged(f"adapter outputs collapsed (mean pairwise cosine {spread:.3f})")
    metrics: dict[str, float] = {"mean_pairwise_cosine": spread}
    if data.selection is not None:
        chosen = data.selection
        k = _selection_k(config, chosen)
        metrics[f"selection_retrieval_overlap@{k}"] = chosen.overlap(adapter.map_numpy(chosen.queries), k)
    if not data.has_heldout:
        return metrics
    metrics.update(alignment_metrics(mapped, data.heldout_teacher, k=config.knn_k, pool=pool))
    rows = _query_rows(config, data)
    if rows is not None:
        metrics.update(query_metrics(mapped[rows], data.heldout_teacher[rows], pool, config.knn_k))
    return metrics


def query_metrics(mapped: np.ndarray, target: np.ndarray, pool: np.ndarray, k: int) -> dict[str, float]:
    """Mean cosine and retrieval overlap@k (when the pool is larger than k) of query-like held-out rows."""
    out = {"query_mean_cosine": float((normalize_rows(mapped) * normalize_rows(target)).sum(1).mean())}
    k = min(k, len(mapped) - 1)
    if len(pool) > k > 0:
        out[f"query_retrieval_overlap@{k}"] = retrieval_overlap(mapped, target, pool, k)
    return out
