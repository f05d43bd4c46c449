"""Why does SciFact retrieval through the unpaired MiniLM -> mpnet map trail the paired Procrustes map
when held-out top-1 is as good? Dev only: the 809 SciFact *train* queries, the 1,000 held-out passage
pairs; no test-split number is computed here.

The unpaired map (anchors + refinement + sharpening, restart seed ``seed*1000``; cached under
.tava/bench-translate/dev) and the paired Procrustes map on the same texts are put through the same
probes:

- ``processing``: raw vs centred fits, with and without the target mean added back, and retrieval
  in the target's centred space (documents minus the target mean): is a missing mean or scale what
  cosine retrieval against raw mpnet documents needs?
- ``subspace``: a 384 -> 768 semi-orthogonal map picks a 384-d subspace of mpnet's space. The principal
  angles between the two maps' subspaces, the share of mpnet's variance each subspace holds, and the
  two hybrids (the unpaired rotation moved into the paired subspace and vice versa): is it *where* the
  map lands or *how it turns inside* that decides retrieval?
- ``final_fit``: ridge / least squares instead of Procrustes on the final pseudo-pairs.
- ``whitened``: self-learning rounds in whitened coordinates (VecMap's whitening / de-whitening).
- ``spans``: the same pseudo-pair rounds with short span views added on each side (disjoint texts).

Writes bench/results/translate_diagnose_dev.json.

    python bench/translate_diagnose.py [--size 9500] [--seed 0] [--probes processing subspace ...]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import translate as tb  # noqa: E402
import translate_data as td  # noqa: E402

OUT = ROOT / "bench" / "results" / "translate_diagnose_dev.json"
PROBES = ["processing", "subspace", "final_fit", "whitened", "spans"]


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def polar(m: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(m.astype(np.float64), full_matrices=False)
    return (u @ vt).astype(np.float32)


def cached_weight(name: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
    path = td.CACHE / "dev" / f"{name}.npy"
    if path.is_file():
        return np.load(path)
    weight = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, weight)
    os.replace(tmp, path)
    return weight


def main() -> None:
    from tava_core.adapter.baselines import LinearMap, fit_procrustes
    from tava_core.adapter.unsupervised import (
        UnsupervisedSettings,
        _centre,
        neighbour_similarity,
        procrustes_weight,
        refine,
        relative_pseudo_pairs,
        sharpen,
        to_linear_maps,
    )

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=9500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--probes", nargs="+", default=PROBES, choices=PROBES)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    tb.limit_threads(1)
    started = time.perf_counter()
    minilm = td.cached_only("minilm", "passages")
    _, mpnet = td.mpnet_vectors("passages_shuffled_first20000.parquet")
    sides = tb.pair_sides("mpnet", args.size, minilm, mpnet, None, tb.random_rotation(minilm.shape[1]))
    sf = tb.scifact()
    dev = sf["dev"]["rows"]
    xa, mean_a = _centre(sides["source"])
    xb, mean_b = _centre(sides["target"])
    settings = UnsupervisedSettings()
    run_seed = args.seed * 1000
    tag = f"mpnet-{args.size}-restart{run_seed}"

    def search() -> np.ndarray:
        rng = np.random.default_rng(run_seed)
        return refine(xa, xb, procrustes_weight(xa, relative_pseudo_pairs(xa, xb, settings, rng)), settings, rng)

    refined = cached_weight(tag, search)
    sharpened = cached_weight(f"{tag}-sharpened", lambda: sharpen(xa, xb, refined, settings))
    paired_c = procrustes_weight(unit(sides["pairs_source"] - mean_a), unit(sides["pairs_target"] - mean_b))

    def measure(linear_map: Any, docs: np.ndarray | None = None) -> dict[str, float]:
        row = tb.heldout_metrics(linear_map(sides["heldout_source"]), sides["heldout_target"])
        mapped = linear_map(sf["queries_minilm"])
        row["scifact_ndcg_at_10_dev"] = tb.ndcg(mapped, sf["docs_mpnet"] if docs is None else docs, sf, "dev")
        row["scifact_query_cosine_dev"] = round(float((mapped[dev] * sf["queries_mpnet"][dev]).sum(1).mean()), 4)
        row["neighbour_similarity"] = round(neighbour_similarity(linear_map(sides["source"]), sides["target"]), 4)
        return row

    r_a = float(np.linalg.norm(sides["source"] - mean_a, axis=1).mean())
    r_b = float(np.linalg.norm(sides["target"] - mean_b, axis=1).mean())

    def centred_map(weight: np.ndarray, name: str = "map", beta: float = 1.0) -> LinearMap:
        """x -> s (x - mean_a) W + beta mean_b: a centred-space map (unit rows in, ~unit rows out) in raw
        coordinates, s scaling the source's typical centred norm to the target's (as ``to_linear_maps``;
        also undoing a non-orthogonal W's shrinkage), beta the weight of the target mean added back."""
        scale = r_b / (r_a * float(np.linalg.norm(xa @ weight, axis=1).mean()))
        return LinearMap(name, (scale * weight).astype(np.float32),
                         (beta * mean_b - mean_a @ (scale * weight)).astype(np.float32))

    report: dict[str, Any] = {"benchmark": "why SciFact trails through the unpaired map (bench/translate_diagnose.py)",
                              "split": "dev only: SciFact train queries, 1,000 held-out passage pairs",
                              "texts_per_side": args.size, "seed": args.seed, "load_at_start": os.getloadavg()[0],
                              "probes": {}}

    def log(probe: str, name: str, row: dict) -> None:
        report["probes"].setdefault(probe, {})[name] = row
        print(json.dumps({"probe": probe, "name": name, **row}), flush=True)
        tb.write_report(report, args.out, started)

    maps = {"paired": paired_c, "unpaired_refined": refined, "unpaired_sharpened": sharpened}
    if "processing" in args.probes:
        log("processing", "paired_raw_procrustes", measure(fit_procrustes(sides["pairs_source"], sides["pairs_target"])))
        docs_centred = unit(sf["docs_mpnet"] - mean_b)
        for name, weight in maps.items():
            assert np.allclose(centred_map(weight).weight, to_linear_maps(weight, mean_a, mean_b, sides["source"],
                                                                         sides["target"], name)[0].weight, atol=1e-4)
            for beta in (0.0, 0.5, 1.0, 1.5, 2.0):  # 1.0 is the library's map (to_linear_maps)
                log("processing", f"{name}_target_mean_x{beta}", measure(centred_map(weight, name, beta)))
            log("processing", f"{name}_docs_centred", measure(centred_map(weight, name, 0.0), docs_centred))
            log("processing", f"{name}_uncentred_input", measure(LinearMap(name, weight, None)))
    if "subspace" in args.probes:
        subspace_probe(maps, xb, centred_map, measure, log)
    if "final_fit" in args.probes:
        final_fit_probe(xa, xb, sharpened, centred_map, measure, log, sides, mean_a, mean_b)
    if "whitened" in args.probes:
        whitened_probe(xa, xb, refined, sharpened, centred_map, measure, log)
    report["seconds"] = round(time.perf_counter() - started, 1)
    tb.write_report(report, args.out, started)
    print(f"wrote {args.out}")


def subspace_probe(maps: dict, xb: np.ndarray, centred_map, measure, log) -> None:
    """Principal angles and target variance per map; hybrids that swap subspace and in-plane rotation."""
    paired, unpaired = maps["paired"], maps["unpaired_sharpened"]
    cov_b = (xb.T @ xb) / len(xb)
    total = float(np.trace(cov_b))
    for name, weight in maps.items():
        # rows of W are orthonormal (384 of them in 768-d): W cov W' is the variance the subspace holds
        cosines = np.linalg.svd(weight @ paired.T, compute_uv=False)
        log("subspace", name, {"target_variance_share": round(float(np.trace(weight @ cov_b @ weight.T)) / total, 4),
                               "principal_cosine_to_paired_mean": round(float(cosines.mean()), 4),
                               "principal_cosine_to_paired_min": round(float(cosines.min()), 4)})
    project_paired = paired.T @ paired  # projector onto the paired map's subspace (768 x 768)
    project_unpaired = unpaired.T @ unpaired
    log("subspace", "unpaired_rotation_in_paired_subspace", measure(centred_map(polar(unpaired @ project_paired), "h1")))
    log("subspace", "paired_rotation_in_unpaired_subspace", measure(centred_map(polar(paired @ project_unpaired), "h2")))


def final_fit_probe(xa, xb, sharpened, centred_map, measure, log, sides, mean_a, mean_b) -> None:
    """Ridge / least squares on the final pseudo-pairs (and, as a reference, on the true pairs)."""
    from tava_core.adapter.self_learning import SelfLearningSettings, _cross

    sources, partners = _cross(xa, xb, sharpened, SelfLearningSettings())
    true_a, true_b = unit(sides["pairs_source"] - mean_a), unit(sides["pairs_target"] - mean_b)
    for alpha in (1e-3, 1e-2, 1e-1, 1.0):
        for name, (a, b) in (("pseudo_pairs", (sources, partners)), ("true_pairs_centred", (true_a, true_b))):
            gram = a.T.astype(np.float64) @ a
            weight = np.linalg.solve(gram + alpha * np.trace(gram) / len(gram) * np.eye(len(gram)), a.T @ b)
            log("final_fit", f"ridge_alpha{alpha}_{name}", measure(centred_map(weight.astype(np.float32))))


def whitened_probe(xa, xb, refined, sharpened, centred_map, measure, log) -> None:
    """Self-learning in whitened coordinates: pair and fit Procrustes between whitened sides, then map
    back with the target's colouring (VecMap: whiten, orthogonal map, de-whiten)."""
    from tava_core.adapter.self_learning import SelfLearningSettings, self_learn

    def whitener(x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
        cov = (x.T.astype(np.float64) @ x) / len(x)
        vals, vecs = np.linalg.eigh(cov)
        vals = np.maximum(vals, eps * vals.max())
        return (vecs / np.sqrt(vals)) @ vecs.T, (vecs * np.sqrt(vals)) @ vecs.T

    for eps in (1e-3, 1e-2):
        wa, _ = whitener(xa, eps)
        wb, colour_b = whitener(xb, eps)
        ya, yb = unit(xa @ wa).astype(np.float32), unit(xb @ wb).astype(np.float32)
        for start_name, start in (("refined", refined), ("sharpened", sharpened)):
            # the start expressed between whitened sides: W_w = polar(W_a^-1 W W_b) ~ the same map
            start_w = polar(np.linalg.pinv(wa) @ start @ wb)
            q = self_learn(ya, yb, start_w, SelfLearningSettings())
            log("whitened", f"eps{eps}_from_{start_name}", measure(centred_map((wa @ q @ colour_b).astype(np.float32))))


if __name__ == "__main__":
    main()
