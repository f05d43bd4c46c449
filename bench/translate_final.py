"""Dev tuning of the unsupervised search's last step (self-learning: CSLS re-pairing + Procrustes).

For one pair / size / seed, the search up to the end of the k-NN-average refinement is run once per
restart and its map cached (``.tava/bench-translate/dev``); then every variant of the final step
(``tava_core.adapter.self_learning``) starts from it and is traced round by round: held-out top-1 and
mean cosine (the 1,000 held-out passage pairs), SciFact nDCG@10 on the *dev* split only (the 809 train
queries, MiniLM queries through the map against mpnet documents; mpnet pair), and the pair-free criteria
(neighbour similarity, and the CSLS-corrected one). The paired Procrustes map on the same texts is the
reference. No test-split number is computed here. Writes bench/results/translate_final_dev.json.

    python bench/translate_final.py [--pair mpnet] [--size 9500] [--seed 0]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import translate as tb  # noqa: E402
import translate_data as td  # noqa: E402

OUT = ROOT / "bench" / "results" / "translate_final_dev.json"
VARIANTS: dict[str, dict[str, Any]] = {
    "mutual_csls": {"neighbours": 0},
    "csls_best1": {"neighbours": 1},
    "csls_best5": {"neighbours": 5},
    "csls_best20": {"neighbours": 20},
    "union_best5": {"neighbours": 5, "direction": "union"},
    "union_mutual": {"neighbours": 0, "direction": "union"},
    "sinkhorn_eps0.02": {"pairing": "sinkhorn", "epsilon": 0.02},
    "sinkhorn_eps0.05": {"pairing": "sinkhorn", "epsilon": 0.05},
    # both ends of a pair averaged alike: the source end over its own side's nearest rows (session 20)
    "union_best5_own5": {"neighbours": 5, "direction": "union", "own_side_neighbours": 5},
    "union_best5_own3": {"neighbours": 5, "direction": "union", "own_side_neighbours": 3},
    "union_best5_own10": {"neighbours": 5, "direction": "union", "own_side_neighbours": 10},
    "union_best1_own1": {"neighbours": 1, "direction": "union", "own_side_neighbours": 1},
}


def refined_weight(xa: np.ndarray, xb: np.ndarray, run_seed: int, settings, tag: str) -> np.ndarray:
    """The search's map after anchors + refinement (restart seed ``run_seed``), cached."""
    from tava_core.adapter.unsupervised import procrustes_weight, refine, relative_pseudo_pairs

    def search() -> np.ndarray:
        rng = np.random.default_rng(run_seed)
        return refine(xa, xb, procrustes_weight(xa, relative_pseudo_pairs(xa, xb, settings, rng)), settings, rng)

    return td.cached_weight(f"{tag}-restart{run_seed}", search)


def main() -> None:
    from tava_core.adapter.self_learning import SelfLearningSettings, self_learn
    from tava_core.adapter.unsupervised import (
        UnsupervisedSettings,
        _centre,
        _unit,
        neighbour_similarity,
        to_linear_maps,
    )

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", default="mpnet", choices=["mpnet", "rotation"])
    parser.add_argument("--size", type=int, default=9500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--restarts", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--start", choices=["search", "paired"], default="search", help=(
        "'paired': start from the paired Procrustes map instead (an oracle: does self-learning keep a right "
        "map, or drift to its own fixed point?)"))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    tb.limit_threads(1)
    started = time.perf_counter()
    sides = tb.dev_sides(args.pair, args.size)
    sf = tb.scifact() if args.pair == "mpnet" else None
    xa, mean_a = _centre(sides["source"])
    xb, mean_b = _centre(sides["target"])

    def measure(weight: np.ndarray) -> dict[str, float]:
        forward, _ = to_linear_maps(weight, mean_a, mean_b, sides["source"], sides["target"], "dev")
        row = tb.heldout_metrics(forward(sides["heldout_source"]), sides["heldout_target"])
        row["neighbour_similarity"] = round(neighbour_similarity(forward(sides["source"]), sides["target"]), 4)
        if sf is not None:
            mapped = forward(sf["queries_minilm"])
            row["scifact_ndcg_at_10_dev"] = tb.ndcg(mapped, sf["docs_mpnet"], sf, "dev")
            dev = sf["dev"]["rows"]  # out-of-domain closeness: mapped dev queries to their own mpnet vectors
            row["scifact_query_cosine_dev"] = round(float((mapped[dev] * sf["queries_mpnet"][dev]).sum(1).mean()), 4)
        return row

    report: dict[str, Any] = {"benchmark": "self-learning final step, dev (bench/translate_final.py)",
                              "pair": args.pair, "texts_per_side": args.size, "seed": args.seed, "start": args.start,
                              "load_at_start": os.getloadavg()[0], "restarts": []}
    paired = tb.run_paired(sides)["procrustes"]["map"]
    report["paired_procrustes"] = tb.heldout_metrics(paired(sides["heldout_source"]), sides["heldout_target"])
    if sf is not None:
        report["paired_procrustes"]["scifact_ndcg_at_10_dev"] = tb.ndcg(paired(sf["queries_minilm"]),
                                                                         sf["docs_mpnet"], sf, "dev")
    print(json.dumps({"paired_procrustes": report["paired_procrustes"]}), flush=True)
    settings = UnsupervisedSettings()
    for restart in range(args.restarts):
        run_seed = args.seed * 1000 + restart
        t0 = time.process_time()
        if args.start == "paired":
            from tava_core.adapter.unsupervised import procrustes_weight

            start = procrustes_weight(_unit(sides["pairs_source"] - mean_a), _unit(sides["pairs_target"] - mean_b))
        else:
            start = refined_weight(xa, xb, run_seed, settings, f"{args.pair}-{args.size}")
        entry: dict[str, Any] = {"restart_seed": run_seed, "search_cpu_seconds": round(time.process_time() - t0, 1),
                                 "refined": measure(start), "variants": {}}
        print(json.dumps({"restart": run_seed, "refined": entry["refined"]}), flush=True)
        report["restarts"].append(entry)
        for name in args.variants:
            trace: list[dict[str, Any]] = []
            cpu = time.process_time()

            def on_round(round_: int, weight: np.ndarray, pairs: int, trace=trace, name=name) -> None:
                trace.append({"round": round_, "pairs": pairs, **measure(weight)})
                print(json.dumps({"variant": name, **trace[-1]}), flush=True)

            self_learn(xa, xb, start, SelfLearningSettings(rounds=args.rounds, **VARIANTS[name]), on_round=on_round)
            entry["variants"][name] = {"settings": VARIANTS[name], "trace": trace,
                                       "cpu_seconds_with_measuring": round(time.process_time() - cpu, 1)}
            tb.write_report(report, args.out, started)  # after every variant: a run stopped later keeps it
    tb.write_report(report, args.out, started)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
