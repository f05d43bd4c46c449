"""Dev check: does more *source-side* text help the unpaired MiniLM -> mpnet map (issue 17)?

The sharpening step's fixed point is limited by the variance of pairing two finite disjoint samples
(bench/translate_final.py: the rotation pair's held-out cosine rises 0.78 -> 0.93 from 2,500 to 5,000 texts
a side). A user moving a store into another model's space usually has far more text on the source side
(the model already in use, cheap to run) than vectors of the target model. So: the target side fixed at
9,500 mpnet passages + the odd SciFact documents, the source side 9,500 MiniLM passages + the even documents
+ 0 / 10,000 / 30,000 *more* MiniLM passages (shuffle rows 20,000+, which no mpnet vector covers), and the
sharpening step pairing every row. Scored on the 1,000 held-out passage pairs and SciFact's *dev* split
(809 train queries); no test number is computed here.

    TAVA_TRANSLATE_PASSAGES=50000 python bench/translate_data.py minilm:passages   # once (a separate cache dir)
    python bench/translate_source_size.py --extra 0 10000 30000 -> bench/results/translate_source_size_dev.json
"""
from __future__ import annotations

import argparse
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

OUT = ROOT / "bench" / "results" / "translate_source_size_dev.json"
FIRST_EXTRA_ROW = 20000  # the shared mpnet vectors cover the shuffle's first 20,000 passages


def main() -> None:
    from dataclasses import replace

    from tava_core.adapter.unsupervised import UnsupervisedSettings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--extra", type=int, nargs="+", default=[0, 10000, 30000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=9500)
    parser.add_argument("--long-cache", type=Path, default=ROOT / ".tava" / "bench-translate-50k",
                        help="where translate_data.py cached MiniLM vectors of the first 50,000 passages")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    tb.limit_threads(1)
    defaults = UnsupervisedSettings()
    started = time.perf_counter()
    long_passages = np.load(args.long_cache / "minilm-passages.npy")
    sf = tb.scifact()
    sides = tb.with_domain_docs(tb.dev_sides("mpnet", args.size), td.minilm("corpus"), sf["docs_mpnet"])
    paired = tb.run_paired(sides)["procrustes"]["map"]
    report: dict[str, Any] = {
        "benchmark": "unpaired MiniLM -> mpnet, more source-side text (bench/translate_source_size.py), dev only",
        "texts_per_side": args.size, "seed": args.seed, "domain": "SciFact documents, even -> source, odd -> target",
        "load_at_start": os.getloadavg()[0],
        "paired_procrustes_passages_and_even_docs": {
            **tb.heldout_metrics(paired(sides["heldout_source"]), sides["heldout_target"]),
            "scifact_ndcg_at_10_dev": tb.ndcg(paired(sf["queries_minilm"]), sf["docs_mpnet"], sf, "dev")},
        "runs": []}
    print(report["paired_procrustes_passages_and_even_docs"], flush=True)
    for extra in args.extra:
        rows = long_passages[FIRST_EXTRA_ROW:FIRST_EXTRA_ROW + extra]
        if len(rows) < extra:
            raise SystemExit(f"only {len(rows)} extra MiniLM passages are cached; run translate_data.py first")
        run_sides = {**sides, "source": np.concatenate([sides["source"], rows])}
        # the sharpening step pairs every row of both sides (its default cap is 10,000 generic rows a side)
        settings = replace(defaults, final_sample=max(defaults.final_sample, len(run_sides["source"])))
        metrics, result = tb.run_unsupervised(run_sides, args.seed, settings)
        metrics.pop("restarts", None)
        row = {"extra_source_passages": extra, "source_rows": len(run_sides["source"]), **metrics,
               "scifact_ndcg_at_10_dev": tb.ndcg(result.linear_map(sf["queries_minilm"]), sf["docs_mpnet"], sf, "dev")}
        report["runs"].append(row)
        print(row, flush=True)
        tb.write_report(report, args.out, started)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
