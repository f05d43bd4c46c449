"""Per-query cost of cheap encoders on a shared CPU, measured so that noise cannot decide.

A static student encodes a query in a fraction of a millisecond, so one disturbed timing (another
process taking the core) moves a ratio by 2x: bench/route.py once rejected a confidence score
because its cost measured 1.06x and accepted another at 2.28x, at load ~10. Here every call
being compared is timed in the same round, the order rotating from round to round, over many
rounds; each round gives a ratio between calls measured seconds apart, and the report keeps the
median of those ratios (robust to a slow spell on either side) beside the ratio of the medians
and of the best times. Batch size 1 (a live query) and 64 (a bulk client) are measured apart:
per-call overheads weigh on the first, arithmetic on the second. The load average is recorded.
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable, Sequence

import numpy as np

Call = Callable[[list[str]], Any]


def interleaved_seconds(calls: dict[str, Call], texts: Sequence[str], *, batch_size: int,
                        rounds: int = 15, clock: Callable[[], float] = time.perf_counter,
                        settle: float = 0.0) -> dict[str, Any]:
    """Seconds per query of each call over ``texts`` in batches of ``batch_size``: per-round
    timings (interleaved, rotating order), their median and minimum, and the load average.
    ``clock``: wall time by default; ``time.process_time`` counts only this process' CPU time (what
    a call costs when other processes take the core half the time: it leaves out the waiting).
    ``settle``: seconds of pause before each timed pass, so helper threads a call leaves busy-waiting
    (an OpenBLAS worker spins ~0.1 s after a threaded product) are not charged to the next call."""
    batches = [list(texts[i:i + batch_size]) for i in range(0, len(texts), batch_size)]
    for fn in calls.values():          # warm-up: first calls allocate, import and fill caches
        fn(batches[0])
    names = list(calls)
    per_round: dict[str, list[float]] = {name: [] for name in names}
    load_before = os.getloadavg()
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn = calls[name]
            if settle:
                time.sleep(settle)
            start = clock()
            for batch in batches:
                fn(batch)
            per_round[name].append((clock() - start) / len(texts))
    return {"batch_size": batch_size, "queries_per_round": len(texts), "rounds": rounds, "settle_seconds": settle,
            "clock": getattr(clock, "__name__", str(clock)),
            "load_average_before": load_before, "load_average_after": os.getloadavg(),
            "seconds_per_query": {name: {"median": float(np.median(v)), "min": float(np.min(v)),
                                         "rounds": [float(x) for x in v]} for name, v in per_round.items()}}


def ratio(measured: dict[str, Any], numerator: str, denominator: str) -> dict[str, float]:
    """numerator / denominator three ways: median of the per-round ratios (the robust figure the
    targets use), ratio of the medians, ratio of the best times."""
    s = measured["seconds_per_query"]
    per_round = np.array(s[numerator]["rounds"]) / np.array(s[denominator]["rounds"])
    return {"median_of_round_ratios": float(np.median(per_round)),
            "ratio_of_medians": s[numerator]["median"] / s[denominator]["median"],
            "ratio_of_best": s[numerator]["min"] / s[denominator]["min"],
            "round_ratio_iqr": [float(np.percentile(per_round, 25)), float(np.percentile(per_round, 75))]}
