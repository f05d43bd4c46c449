"""Why is MiniLM <-> its model2vec static distillation at chance for the unpaired search?

Hypothesis: the pair-free search assumes the two spaces are near-isometric -- texts close in one model
are close in the other -- because everything it does (anchor matching by centroid similarities, nearest
neighbours) compares *within-space* geometry. Measured on the 1,000 held-out texts (the same texts in
both spaces; pairs used only for this diagnosis): the correlation of pairwise cosines between the two
spaces and the overlap of each text's 10 nearest neighbours, for MiniLM -> mpnet (which the search
solves) and MiniLM -> static (which it does not), under three pre-processings of both sides: raw,
centred (the search's own), and centred with the top principal directions removed ("all-but-the-top",
Mu & Viswanath 2018: static token-average vectors are dominated by a few common directions).
Then, when a pre-processing makes the static pair as isometric as the mpnet pair, the search is run on
the static pair with it (2,500 texts per side, seed 0) to see whether that was the obstacle.
Writes bench/results/translate_static.json.

    python bench/translate_static.py
"""
from __future__ import annotations

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

OUT = ROOT / "bench" / "results" / "translate_static.json"


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def remove_top(x: np.ndarray, reference: np.ndarray, directions: int) -> np.ndarray:
    """Centre on the reference's mean and project out its top principal directions."""
    mean = reference.mean(0)
    if directions <= 0:
        return unit(x - mean)
    _, _, vt = np.linalg.svd(reference - mean, full_matrices=False)
    top = vt[:directions]
    centred = x - mean
    return unit(centred - centred @ top.T @ top)


def isometry(a: np.ndarray, b: np.ndarray, k: int = 10) -> dict[str, float]:
    """How alike two spaces' geometries are on the same texts (rows): correlation of pairwise cosines,
    and the mean share of each text's k nearest neighbours that agree."""
    ga, gb = a @ a.T, b @ b.T
    upper = np.triu_indices(len(a), 1)
    np.fill_diagonal(ga, -2)
    np.fill_diagonal(gb, -2)
    na, nb = np.argsort(-ga, axis=1)[:, :k], np.argsort(-gb, axis=1)[:, :k]
    overlap = np.mean([len(set(na[i]) & set(nb[i])) / k for i in range(len(a))])
    return {"cosine_correlation": round(float(np.corrcoef(ga[upper], gb[upper])[0, 1]), 4),
            f"knn_overlap@{k}": round(float(overlap), 4)}


def main() -> None:
    from tava_core.adapter.unsupervised import UnsupervisedSettings

    tb.limit_threads(1)
    started = time.perf_counter()
    minilm = td.cached_only("minilm", "passages")
    static = td.cached_only("model2vec", "passages", prefix_ok=False)
    if static is None:
        raise SystemExit("no model2vec passage vectors: run `python bench/translate_data.py model2vec:passages`")
    _, mpnet = td.mpnet_vectors("passages_shuffled_first20000.parquet")
    held = slice(0, tb.HELDOUT)
    fit_rows = slice(tb.HELDOUT, tb.HELDOUT + 2500)  # each side's pre-processing is fitted on its own texts
    report: dict[str, Any] = {"benchmark": "static pair diagnosis (bench/translate_static.py)",
                              "load_at_start": os.getloadavg()[0], "heldout_texts": tb.HELDOUT, "isometry": {}}
    for directions in (-1, 0, 1, 3, 10):
        name = "raw" if directions < 0 else ("centred" if directions == 0 else f"centred, top {directions} removed")

        def prep(x: np.ndarray, directions: int = directions) -> np.ndarray:
            return unit(x[held]) if directions < 0 else remove_top(x[held], x[fit_rows], directions)

        base = prep(minilm)
        report["isometry"][name] = {"minilm_vs_mpnet": isometry(base, prep(mpnet)),
                                    "minilm_vs_static": isometry(base, prep(static))}
        print(json.dumps({name: report["isometry"][name]}), flush=True)
    tb.write_report(report, OUT, started)
    best = max((k for k in report["isometry"] if k.startswith("centred, top")),
               key=lambda k: report["isometry"][k]["minilm_vs_static"]["cosine_correlation"])
    directions = int(best.split("top ")[1].split()[0])
    sides = tb.pair_sides("static", 2500, minilm, mpnet, static, tb.random_rotation(minilm.shape[1]))
    # the search on the pre-processed static pair: both sides with their own top directions removed
    prepared = {key: remove_top(value, sides["source" if "source" in key else "target"], directions)
                for key, value in sides.items() if key in ("source", "target", "heldout_source", "heldout_target")}
    run, _ = tb.run_unsupervised(prepared, 0, UnsupervisedSettings())
    report["search_with_top_removed"] = {"directions_removed": directions, "texts_per_side": 2500, "seed": 0, **run}
    print(json.dumps(report["search_with_top_removed"], default=str), flush=True)
    tb.write_report(report, OUT, started)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
