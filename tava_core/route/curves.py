"""Routing curves: quality against the share of queries sent to the teacher, for the router and
the baselines (random, longest-queries-first, label-free oracle, labelled oracle), with paired
bootstrap intervals against random routing and the cost per query of each point."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from ..evaluate.metrics import Qrels, ScoreMatrix, identical_id_rows, paired_bootstrap, retrieval_metrics
from .calibrate import true_agreement

SHARES = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)
METHODS = ("router", "random", "longest_first", "label_free_oracle", "labelled_oracle")


def per_query_ndcg(queries: np.ndarray, documents: np.ndarray, query_ids: Sequence[str], doc_ids: Sequence[str],
                   qrels: Qrels) -> np.ndarray:
    scores = ScoreMatrix.cosine(queries, documents)
    return retrieval_metrics(scores, query_ids, doc_ids, qrels, per_query=True)["ndcg_at_10_per_query"]


def route_lowest(priority: np.ndarray, share: float) -> np.ndarray:
    """Mask of the round(share * n) queries with the LOWEST priority (stable: ties by position)."""
    n_route = int(round(share * len(priority)))
    mask = np.zeros(len(priority), dtype=bool)
    mask[np.argsort(priority, kind="stable")[:n_route]] = True
    return mask


# nDCG@10 the teacher must lead the student by before "share of the gap recovered" means anything
MIN_GAP = 0.005


def routing_curves(*, student_ndcg: np.ndarray, teacher_ndcg: np.ndarray, student_overlap: np.ndarray,
                   confidence: np.ndarray, lengths: np.ndarray, agreement: np.ndarray,
                   shares: Sequence[float] = SHARES, costs: Optional[dict[str, float]] = None,
                   bootstrap_resamples: int = 2000) -> dict[str, Any]:
    """Curves per method. ``agreement`` is the label-free truth (e.g. top-10 overlap) used by the
    label-free oracle; ``costs`` = seconds per query of student, confidence and teacher."""
    gain = teacher_ndcg - student_ndcg
    priorities = {"router": confidence, "longest_first": -lengths.astype(np.float64),
                  "label_free_oracle": agreement, "labelled_oracle": -gain}
    gap = float(teacher_ndcg.mean() - student_ndcg.mean())
    # Under MIN_GAP (or negative: the student beats the teacher, so every routed query costs) a share of
    # the gap is noise or reads backwards (a router below random came out "2.0x random"): None then.
    meaningful = gap >= MIN_GAP
    rows: list[dict[str, Any]] = []
    for share in shares:
        row: dict[str, Any] = {"share": float(share)}
        routed_values: dict[str, np.ndarray] = {}
        for method in METHODS:
            if method == "random":   # the exact expectation over random draws of the same size
                fraction = round(share * len(gain)) / len(gain)
                values = student_ndcg + fraction * gain
                overlap = student_overlap + fraction * (1.0 - student_overlap)
            else:
                mask = route_lowest(priorities[method], share)
                values = np.where(mask, teacher_ndcg, student_ndcg)
                overlap = np.where(mask, 1.0, student_overlap)
            routed_values[method] = values
            recovered = float((values.mean() - student_ndcg.mean()) / gap) if meaningful else None
            row[method] = {"ndcg10": float(values.mean()), "top10_overlap_with_teacher": float(overlap.mean()),
                           "gap_recovered": recovered}
        row["router_vs_random"] = paired_bootstrap(routed_values["router"], routed_values["random"],
                                                   resamples=bootstrap_resamples)
        rand, routed = row["random"]["gap_recovered"], row["router"]["gap_recovered"]
        row["router_over_random_gap_ratio"] = routed / rand if meaningful and rand > 1e-12 else None
        row["router_minus_label_free_oracle_gap"] = (routed - row["label_free_oracle"]["gap_recovered"]
                                                     if meaningful else None)
        if costs:
            row["cost_per_query_teacher_units"] = (costs["student"] + costs["confidence"]
                                                   + share * costs["teacher"]) / costs["teacher"]
        rows.append(row)
    return {"queries": int(len(gain)), "student_ndcg10": float(student_ndcg.mean()),
            "teacher_ndcg10": float(teacher_ndcg.mean()), "gap": gap,
            # a share of a gap this small is noise (a student within 0.0003 of its teacher read "1103%
            # recovered"): the shares, their ratio and the oracle distance are None then, and the report prints none
            "gap_meaningful": bool(meaningful),
            "queries_student_below_teacher": float((gain > 0).mean()), "rows": rows, "costs": costs or {}}


def curves_from_vectors(*, student_queries: np.ndarray, teacher_queries: np.ndarray, documents: np.ndarray,
                        query_ids: Sequence[str], query_texts: Sequence[str], doc_ids: Sequence[str], qrels: Qrels,
                        confidence: np.ndarray, shares: Sequence[float] = SHARES,
                        costs: Optional[dict[str, float]] = None) -> dict[str, Any]:
    """Everything from vectors: per-query nDCG of both encoders, true agreement, then the curves."""
    student_ndcg = per_query_ndcg(student_queries, documents, query_ids, doc_ids, qrels)
    teacher_ndcg = per_query_ndcg(teacher_queries, documents, query_ids, doc_ids, qrels)
    # a query's own id is out of both result lists, as out of the nDCG rankings (identical ids)
    agreement = true_agreement(student_queries, teacher_queries, documents,
                               exclude=identical_id_rows(query_ids, doc_ids, qrels))
    lengths = np.array([len(t.split()) for t in query_texts])
    out = routing_curves(student_ndcg=student_ndcg, teacher_ndcg=teacher_ndcg, student_overlap=agreement["overlap"],
                         confidence=confidence, lengths=lengths,
                         agreement=agreement["overlap"] + 1e-3 * agreement["cosine"], shares=shares, costs=costs)
    from .calibrate import spearman
    out["confidence_spearman"] = {"overlap": spearman(confidence, agreement["overlap"]),
                                  "cosine": spearman(confidence, agreement["cosine"]),
                                  "ndcg_gain_negated": spearman(confidence, -(teacher_ndcg - student_ndcg))}
    return out
