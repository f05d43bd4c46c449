"""One model-selection rule: a primary metric, its direction, a tolerance, an optional tie-break."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence


@dataclass(frozen=True)
class Selection:
    """Is a validation better than the best so far?

    Better means the primary ``metric`` moves the right way by more than ``tolerance``; values are
    first rounded to ``decimals`` when set (so a change below the metric's resolution is a tie). On an
    exact tie, ``tie_break`` (another metric name and its direction) decides. A validation without
    the primary metric (nothing held out) always replaces the best: there is nothing to select on.
    """

    metric: str
    greater_is_better: bool = True
    tolerance: float = 0.0
    decimals: Optional[int] = None
    tie_break: Optional[str] = None
    tie_break_greater_is_better: bool = True

    def _value(self, metrics: Mapping[str, float]) -> float:
        value = float(metrics[self.metric])
        return value if self.decimals is None else round(value, self.decimals)

    def is_better(self, candidate: Mapping[str, float], best: Mapping[str, float]) -> bool:
        if self.metric not in candidate or self.metric not in best:
            return True
        new, old = self._value(candidate), self._value(best)
        if self.greater_is_better:
            if new > old + self.tolerance:
                return True
        elif new < old - self.tolerance:
            return True
        if new != old or self.tie_break is None:
            return False
        a, b = float(candidate[self.tie_break]), float(best[self.tie_break])
        return a > b if self.tie_break_greater_is_better else a < b

    def best_index(self, runs: Sequence[Mapping[str, float]]) -> int:
        """The best of several validations (the first of equals)."""
        best = 0
        for i in range(1, len(runs)):
            if self.metric in runs[i] and self.metric in runs[best] and self.is_better(runs[i], runs[best]):
                best = i
        return best
