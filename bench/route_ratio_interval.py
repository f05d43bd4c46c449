"""How sure is a router's "x random" figure? Its 95% interval, from what `bench/route.py` already measured.

Issue 16's targets are ratios: the share of the student's gap to the teacher that the router recovers,
over what random routing recovers at the same teacher budget (>= 1.8x at 10%, >= 1.6x at 20%).
`bench/route.py` reports each ratio and, beside it, a 95% paired bootstrap interval of router minus random
nDCG@10 over the split's queries (``router_minus_random_ndcg_ci``). Random routing's gain is an exact
expectation (``random`` x ``gap``), so the ratio is ``1 + (router - random nDCG@10) / (random x gap)``
and the interval of the difference maps onto an interval of the ratio. The mapping holds the denominator
(the split's mean gap) at its full-sample value; resampling it too would widen the interval a little, so
these intervals are, if anything, narrow. It chooses nothing and runs nothing: it reads
``bench/results/route.json`` and writes ``bench/results/route_ratio_interval.json``.

    python bench/route_ratio_interval.py
"""
from __future__ import annotations

import json
from typing import Any

from shared_data import ROOT, write_result

ROUTE = ROOT / "bench" / "results" / "route.json"
OUT = ROOT / "bench" / "results" / "route_ratio_interval.json"


def ratio_interval(target: dict[str, Any], gap: float) -> dict[str, Any]:
    """One budget's ratio to random with its interval, from route.json's difference interval."""
    random_gain = target["random"] * gap          # nDCG@10 that random routing adds, in expectation
    diff = target["router_minus_random_ndcg_ci"]
    low, high = 1 + diff["low"] / random_gain, 1 + diff["high"] / random_gain
    needed = target["ratio_needed"]
    return {"ratio_to_random": round(target["ratio_to_random"], 3), "low": round(low, 3), "high": round(high, 3),
            "ratio_needed": needed, "queries": diff["queries"],
            "verdict": ("met beyond the noise" if low >= needed else
                        "missed beyond the noise" if high < needed else "inside the noise")}


def main() -> None:
    route = json.loads(ROUTE.read_text())
    report: dict[str, Any] = {"benchmark": "route_ratio_interval", "source": "bench/results/route.json",
                              "splits": {}}
    for split, students in route["targets"].items():
        if split not in route["results"]:     # the cost targets sit beside the splits
            continue
        for student, budgets in students.items():
            gap = route["results"][split][student]["gap"]
            for budget, target in budgets.items():
                row = ratio_interval(target, gap)
                report["splits"].setdefault(split, {}).setdefault(student, {})[budget] = row
                print(f"{split:<13} {student:<14} {budget:>6}: {row['ratio_to_random']:.2f}x random "
                      f"(95% {row['low']:.2f}-{row['high']:.2f}; target {row['ratio_needed']}x: {row['verdict']})")
    write_result(OUT, report)


if __name__ == "__main__":
    main()
