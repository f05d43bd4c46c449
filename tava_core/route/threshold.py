"""How a teacher budget becomes a routing decision on live traffic.

A budget's threshold set once, on the calibration texts, holds only as far as those texts
resemble the queries that arrive: span views of the corpus stand in for queries roughly, and on
the built-in data the threshold saved for a 10% budget sent 22% of the real queries to the
teacher. ``LiveThreshold`` (policy ``adaptive``) sets the threshold from the confidence scores of
the queries the router actually serves instead: the budget quantile of a window of recent scores
(the current batch included, so a batch is ranked among its peers as well as recent history).
The calibration texts' confidence distribution joins the window with the weight of ``prior``
queries, fading by one per live query, so the first query is routed by the calibrated threshold
and the live quantile takes over smoothly. ``feedback`` corrects what the
window still got wrong: the quantile level is lowered by the queries routed beyond the budget in
the recent decisions (and raised by those short of it).

Policy ``fixed`` is the calibrated threshold as it was saved: what a target agreement always
uses (its threshold means "predicted agreement below this", not a share) and what drift is
measured against (a router whose threshold follows the traffic would route its budget on any
traffic, so the low-confidence share under the *calibrated* threshold is what moves).
"""
from __future__ import annotations

import threading
from bisect import bisect_left, insort
from typing import Any, Sequence

import numpy as np

from .config import ThresholdPolicy


def weighted_quantile(values: np.ndarray, weights: np.ndarray, level: float) -> float:
    """The ``level`` quantile of weighted samples (midpoint rule: each sample sits at the middle of
    its weight, so n equal weights give the usual quantile and a query is routed when its score is
    below the threshold, i.e. among the lowest ``level`` share)."""
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    position = (np.cumsum(w) - 0.5 * w) / w.sum()
    return float(np.interp(level, position, v))


def sorted_quantile(ordered: Sequence[float] | np.ndarray, level: float) -> float:
    """``weighted_quantile`` with equal weights, of values already in ascending order (an index and
    one interpolation)."""
    n = len(ordered)
    x = level * n - 0.5
    if x <= 0:
        return float(ordered[0])
    if x >= n - 1:
        return float(ordered[-1])
    lo = int(x)
    return float(ordered[lo] + (x - lo) * (ordered[lo + 1] - ordered[lo]))


class LiveThreshold:
    """The budget quantile of recent live confidence scores (see the module docstring).

    ``decide(scores)`` returns which of a batch go to the teacher and records the batch. Thread
    safe: an encoder serving several threads shares one window. The window is a ring buffer kept
    sorted beside (bisect), so once the prior has faded a small batch's quantile is an insertion
    and an index: microseconds, next to a static student's fraction of a millisecond per query."""

    SMALL_BATCH = 32     # up to this size, the batch is inserted into a copy of the sorted window

    def __init__(self, policy: ThresholdPolicy, budget: float, calibration_quantiles: np.ndarray) -> None:
        if policy.mode != "adaptive":
            raise ValueError("LiveThreshold is the adaptive policy; a fixed one compares with the saved threshold")
        self.policy, self.budget = policy, float(budget)
        self.calibration = np.asarray(calibration_quantiles, dtype=np.float64)
        self._scores = [0.0] * policy.window        # ring buffers of the last ``window`` queries
        self._routed = [False] * policy.window
        self._fill = 0
        self._next = 0
        self._routed_count = 0                      # routed among the last ``window`` (kept, not summed)
        self._sorted: list[float] = []              # the window's scores in ascending order
        self.seen = 0
        self.threshold = self._threshold(np.zeros(0))
        self._lock = threading.Lock()

    def level(self) -> float:
        """The quantile level for the next batch: the budget, minus the recent overshoot (feedback)."""
        if not self._fill or not self.policy.feedback:
            return self.budget
        overshoot = self._routed_count - self.budget * self._fill
        return min(max(self.budget - self.policy.feedback * overshoot / self.policy.window, 0.0), 1.0)

    def _threshold(self, batch: np.ndarray) -> float:
        if self.budget <= 0.0:
            return -np.inf
        if self.budget >= 1.0:
            return np.inf
        prior = max(float(self.policy.prior) - self.seen - len(batch), 0.0)   # pseudo-queries still standing in
        if prior == 0 and len(batch) <= self.SMALL_BATCH and (self._fill or len(batch)):
            pool = self._sorted.copy()
            for value in batch.tolist():
                insort(pool, value)
            return sorted_quantile(pool, self.level())
        live = np.concatenate((np.asarray(self._scores[:self._fill]), batch))
        if prior == 0 and len(live):
            return sorted_quantile(np.sort(live), self.level())
        values = np.concatenate([live, self.calibration])
        weights = np.concatenate([np.ones(len(live)), np.full(len(self.calibration), prior / len(self.calibration))])
        if weights.sum() <= 0:     # prior 0 and no query yet: the calibrated distribution alone
            weights[len(live):] = 1.0
        return weighted_quantile(values, weights, self.level())

    def _record(self, scores: np.ndarray, routed: np.ndarray) -> None:
        """Add a batch to the window (plain Python: a batch is small, and per-item numpy calls
        would cost more than the arithmetic)."""
        window = self.policy.window
        for value, sent in zip(scores[-window:].tolist(), routed[-window:].tolist(), strict=True):
            slot = self._next
            if self._fill == window:          # the slot holds the query leaving the window
                del self._sorted[bisect_left(self._sorted, self._scores[slot])]
                self._routed_count -= self._routed[slot]
            else:
                self._fill += 1
            insort(self._sorted, value)
            self._scores[slot], self._routed[slot] = value, sent
            self._routed_count += sent
            self._next = (slot + 1) % window

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """Mask of the batch's queries to send to the teacher (scores below the live threshold)."""
        scores = np.asarray(scores, dtype=np.float64)
        with self._lock:
            if not len(scores):
                return np.zeros(0, dtype=bool)
            self.threshold = self._threshold(scores)
            routed = scores < self.threshold
            self._record(scores, routed)
            self.seen += len(scores)
            return routed

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {"policy": self.policy.model_dump(mode="json"), "budget": self.budget,
                    "threshold": self.threshold, "window_fill": self._fill, "queries_seen": self.seen,
                    "recent_routed_share": self._routed_count / self._fill if self._fill else 0.0}


def simulate_stream(policy: ThresholdPolicy, budget: float, calibration_quantiles: np.ndarray, scores: np.ndarray,
                    batch_size: int, fixed_threshold: float) -> np.ndarray:
    """Which queries a router with ``policy`` sends to the teacher when ``scores`` arrive in order,
    ``batch_size`` at a time (exactly the decisions ``RoutedEncoder.route`` makes: the confidence
    of a query does not depend on its batch). Lets an evaluation report the live share without
    encoding the stream again."""
    if policy.mode == "fixed":
        return np.asarray(scores) < fixed_threshold
    live = LiveThreshold(policy, budget, calibration_quantiles)
    return np.concatenate([live.decide(scores[start:start + batch_size])
                           for start in range(0, len(scores), batch_size)] or [np.zeros(0, dtype=bool)])
