"""Which signals should the router's DEFAULT be (issue 16)? Candidate defaults for bench/route.py's
four students, on the two dev corpora: SciFact's 809 train queries and the built-in data's 250
queries (test is not read; ``--test`` reads SciFact's test queries once, after the choice).

    python bench/route_default.py                     # -> bench/results/route_default.json
    python bench/route_default.py --compare retrieval # -> bench/results/route_default_retrieval_dev.json
    python bench/route_default.py --compare cell_margin   # -> bench/results/route_default_cell_margin_dev.json
    python bench/route_default.py --compare equal         # -> bench/results/route_default_equal_dev.json

``--compare word_trust`` (the first comparison): the product default as it was (knn_distance,
head_disagreement, rare_word_share, length + 16 vector components) against the same plus word_trust.
``--compare retrieval``: that default against defaults with the retrieval entropy (the signal
bench/route.py chose for all four students) -- alone, beside a manifold and a word signal (so that
off-domain text still looks doubtful: retrieval signals alone rate nonsense over a small corpus as
confident), and beside the whole default.
``--compare cell_margin``: the entropy (the default since session 14) against the best document's
cell margin (``retrieval_cell_margin``; bench/route_stability.py found it routing better for both
static students on both corpora) and the two together.
``--compare equal``: the cell margin (the default since session 21) against the same signals combined
with equal weights (``combiner="equal"``: the standardised signals' mean, nothing fitted) -- the cell
margin + entropy pair, whose ridge combination routed worse than either alone, and all seven
retrieval signals.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import route as R  # noqa: E402
from tava_core.home import TavaHome  # noqa: E402

# the default before the word_trust comparison (word_trust joined it after)
MANIFOLD_AND_WORDS = ["knn_distance", "head_disagreement", "rare_word_share", "length"]
COMPONENTS = 16
COMPARISONS: dict[str, tuple[Path, dict[str, dict[str, Any]]]] = {
    "word_trust": (ROOT / "bench" / "results" / "route_default.json", {
        "default": R._candidate(MANIFOLD_AND_WORDS, COMPONENTS),
        "default+word_trust": R._candidate(MANIFOLD_AND_WORDS + ["word_trust"], COMPONENTS)}),
    "retrieval": (ROOT / "bench" / "results" / "route_default_retrieval_dev.json", {
        "default": R._candidate(MANIFOLD_AND_WORDS + ["word_trust"], COMPONENTS),
        "entropy": R._candidate(["retrieval_entropy"]),
        "entropy+knn+word_trust": R._candidate(["retrieval_entropy", "knn_distance", "word_trust"]),
        "entropy+default": R._candidate(["retrieval_entropy", *MANIFOLD_AND_WORDS, "word_trust"], COMPONENTS)}),
    "cell_margin": (ROOT / "bench" / "results" / "route_default_cell_margin_dev.json", {
        "entropy": R._candidate(["retrieval_entropy"]),
        "cell_margin": R._candidate(["retrieval_cell_margin"]),
        "entropy+cell_margin": R._candidate(["retrieval_entropy", "retrieval_cell_margin"])}),
    "equal": (ROOT / "bench" / "results" / "route_default_equal_dev.json", {
        "cell_margin": R._candidate(["retrieval_cell_margin"]),
        "entropy": R._candidate(["retrieval_entropy"]),
        "entropy+cell_margin": R._candidate(["retrieval_entropy", "retrieval_cell_margin"]),
        "entropy+cell_margin:equal": R._candidate(["retrieval_entropy", "retrieval_cell_margin"], 0, "equal"),
        "retrieval": R._candidate(list(R.RETRIEVAL_SIGNALS)),
        "retrieval:equal": R._candidate(list(R.RETRIEVAL_SIGNALS), 0, "equal")}),
}


def main() -> None:
    import argparse

    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", choices=sorted(COMPARISONS), default="word_trust")
    parser.add_argument("--test", action="store_true",
                        help="score SciFact's test queries instead of the dev corpora (once, after the choice "
                             "was made on dev; written beside the dev file as *_test.json)")
    args = parser.parse_args()
    RESULTS, CANDIDATES = COMPARISONS[args.compare]
    if args.test:
        RESULTS = RESULTS.with_name(RESULTS.name.replace("_dev.json", ".json").replace(".json", "_test.json"))
    wanted = ("scifact-test",) if args.test else ("scifact-dev", "builtin-test")
    torch.set_num_threads(1)
    started = time.time()
    R.CANDIDATES = CANDIDATES           # only the full-dimension bank's signal models are fitted
    teacher = R.load_encoder("all-MiniLM-L6-v2")
    home = TavaHome(R.HOME)
    paths = R.bench_paths(home, teacher)
    datasets = {k: v for k, v in R.load_datasets(paths, teacher).items() if k in wanted}
    corpora = "SciFact test, read once" if args.test else "dev corpora only"
    report: dict[str, Any] = {"benchmark": f"default router signals: {args.compare} comparison ({corpora})",
                              "machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()},
                              "candidates": CANDIDATES, "students": {}, "results": {}}
    state = R.encode_students(R.find_students(), datasets, paths, teacher, report)
    for label, st in state.items():
        for name, dataset in datasets.items():
            for cname, candidate in CANDIDATES.items():
                curves = R.evaluate_candidate(R.model_for(st, dataset.name, candidate), candidate, dataset,
                                              st["encoded"][name], fast=True)
                row = {f"{m}_{s}": R.gap_at(curves, s / 100, m) for m in ("router", "random", "label_free_oracle")
                       for s in (10, 20)}
                row["spearman_overlap"] = curves["confidence_spearman"]["overlap"]
                report["results"].setdefault(label, {}).setdefault(name, {})[cname] = row
                print(f"{label:14s} {name:13s} {cname:20s} gap10 {row['router_10']:.3f} gap20 {row['router_20']:.3f}"
                      f" rho {row['spearman_overlap']:.3f}", flush=True)
    report["total_seconds"] = time.time() - started
    R.save_json(RESULTS, report)
    print(json.dumps({"out": str(RESULTS), "seconds": report["total_seconds"]}))


if __name__ == "__main__":
    main()
