"""Does `tava adapt --mode unpaired`'s adversarial stage earn its time after the unsupervised start?

`tava adapt --mode unpaired` across model families runs the unsupervised linear start (the map
bench/translate.py scores), then vec2vec's adversarial training from it (adversarial + cycle + VSP losses,
up to `max_steps`), and keeps the trained adapter only if the pair-free criterion improves on the start.
bench/translate.py times the start alone. This bench runs what the CLI runs, on the sides a user gives it
(two disjoint sets, no text in common, so no held-out pairs and no early stopping), and scores the
result afterwards on the held-out pairs the user does not have: dev data only (rows 0..999 of the
passages, never SciFact).

For each setting: held-out top-1 / mean rank / mean cosine (1,000 pairs), whether the adversarial
result was kept, steps run and wall seconds (start and adversarial stage apart).

Session 60 (`unpaired_gan_dev.json`, before the default changed; its "0 steps" row ran one adversarial
step, kept at an equal criterion): start 0.977 top-1 in 764 s; + 3,000 steps 0.976 in 773 s more. So
`AdapterConfig.unsupervised_adversarial` is off by default: the found map is the adapter.

    python bench/unpaired_gan.py [--size 5000] [--steps 0 3000] [--seed 0] [--out bench/results/unpaired_gan_dev.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from translate import dev_sides  # noqa: E402

from tava_core.adapter.config import AdapterConfig  # noqa: E402
from tava_core.adapter.data import AdapterData  # noqa: E402
from tava_core.adapter.fit import train_best_of_seeds  # noqa: E402
from tava_core.adapter.metrics import alignment_metrics  # noqa: E402


def run(sides: dict, steps: int, seed: int) -> dict:
    """The CLI's unpaired training on two disjoint sides (no held-out pairs), scored afterwards."""
    # steps 0: the start alone (the default since session 60); else that many adversarial steps from it
    config = AdapterConfig(mode="unpaired", init="unsupervised", max_steps=max(steps, 1), seeds=[seed],
                           unsupervised_adversarial=steps > 0)
    empty_s, empty_t = sides["source"][:0], sides["target"][:0]
    data = AdapterData(sides["source"], sides["target"], empty_s, empty_t, paired=False)
    started = time.perf_counter()
    result, runs = train_best_of_seeds(data, config)
    seconds = time.perf_counter() - started
    metrics = alignment_metrics(result.adapter.map_numpy(sides["heldout_source"]), sides["heldout_target"])
    evidence = runs[0].get("start_evidence") or {}
    return {"max_steps": steps, "steps_run": result.steps, "seconds": round(seconds, 1),
            "adversarial_seconds": round(result.seconds, 1),
            "adversarial_kept": bool(evidence.get("adversarial_kept")),
            "start_criterion": evidence.get("start_criterion"), "trained_criterion": evidence.get("trained_criterion"),
            **{k: round(float(metrics[k]), 4) for k in ("top1", "mean_rank", "mean_cosine")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=5000, help="texts per side")
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 3000],
                        help="adversarial steps (0 = the start alone, the default of `tava adapt --mode unpaired`)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "unpaired_gan_dev.json"))
    args = parser.parse_args()
    sides = dev_sides("mpnet", args.size)
    rows = []
    for steps in args.steps:
        rows.append(run(sides, steps, args.seed))
        print(json.dumps(rows[-1]), flush=True)
    Path(args.out).write_text(json.dumps({"pair": "all-MiniLM-L6-v2 -> all-mpnet-base-v2", "texts_per_side": args.size,
                                          "heldout_pairs": int(len(sides["heldout_source"])), "seed": args.seed,
                                          "split": "dev (held-out passages)", "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
