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
PROBES = ["processing", "subspace", "final_fit", "whitened", "spans", "directions", "in_domain", "reweight", "pooled_search"]


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def polar(m: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(m.astype(np.float64), full_matrices=False)
    return (u @ vt).astype(np.float32)


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
    sides = tb.dev_sides("mpnet", args.size)
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

    refined = td.cached_weight(tag, search)
    sharpened = td.cached_weight(f"{tag}-sharpened", lambda: sharpen(xa, xb, refined, settings))
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
    def processing() -> None:
        log("processing", "paired_raw_procrustes", measure(fit_procrustes(sides["pairs_source"], sides["pairs_target"])))
        docs_centred = unit(sf["docs_mpnet"] - mean_b)
        for name, weight in maps.items():
            assert np.allclose(centred_map(weight).weight, to_linear_maps(weight, mean_a, mean_b, sides["source"],
                                                                         sides["target"], name)[0].weight, atol=1e-4)
            for beta in (0.0, 0.5, 1.0, 1.5, 2.0):  # 1.0 is the library's map (to_linear_maps)
                log("processing", f"{name}_target_mean_x{beta}", measure(centred_map(weight, name, beta)))
            log("processing", f"{name}_docs_centred", measure(centred_map(weight, name, 0.0), docs_centred))
            log("processing", f"{name}_uncentred_input", measure(LinearMap(name, weight, None)))

    probes: dict[str, Callable[[], None]] = {
        "processing": processing,
        "subspace": lambda: subspace_probe(maps, xb, centred_map, measure, log),
        "final_fit": lambda: final_fit_probe(xa, xb, sharpened, centred_map, measure, log, sides, mean_a, mean_b),
        "whitened": lambda: whitened_probe(xa, xb, refined, sharpened, centred_map, measure, log),
        "spans": lambda: spans_probe(args.size, run_seed, sf, log),
        "directions": lambda: directions_probe(xa, sf, mean_a, paired_c, sharpened, log),
        "reweight": lambda: reweight_probe(xa, xb, sharpened, sides, mean_a, mean_b, centred_map, measure, log),
        "pooled_search": lambda: pooled_search_probe(sides, sf, args.seed, measure, log),
        "in_domain": lambda: in_domain_probe(sides, sf, refined, centred_map, measure, log),
    }
    for probe in args.probes:
        probes[probe]()
    report["seconds"] = round(time.perf_counter() - started, 1)
    tb.write_report(report, args.out, started)
    print(f"wrote {args.out}")


def span_vectors(model: str, rows: int) -> np.ndarray:
    """One short span view per shuffled passage (tava's span maker, bench/transfer_data.py), first ``rows``."""
    folder = td.TRANSFER_CACHE / td.TRANSFER_FOLDERS[model] / "passages20000.spans1"
    blocks = [np.load(f) for f in sorted(folder.glob("*.npy"))]
    out = np.concatenate(blocks).astype(np.float32)
    if len(out) < rows:
        raise SystemExit(f"{folder} holds {len(out)} span vectors, {rows} needed: run bench/transfer_data.py first")
    return unit(out[:rows])


def spans_probe(n: int, run_seed: int, sf: dict, log) -> None:
    """Sides swapped so both models' span views exist (mpnet's cover the first 11,500 passages): the target
    (mpnet) side is passages 1000..1000+n and their spans, the source (MiniLM) side the last n of 20,000
    and their spans -- disjoint texts. The search runs on passages; the last step (self-learning) pairs
    passages only, passages + spans pooled, or spans only. Paired Procrustes on the source's texts is the
    reference (passages, and passages + spans)."""
    from tava_core.adapter.baselines import LinearMap
    from tava_core.adapter.self_learning import SelfLearningSettings, self_learn
    from tava_core.adapter.unsupervised import (
        UnsupervisedSettings,
        procrustes_weight,
        refine,
        relative_pseudo_pairs,
        sharpen,
    )

    t0 = tb.HELDOUT
    minilm = unit(np.concatenate([np.load(f) for f in sorted(
        (td.TRANSFER_CACHE / td.TRANSFER_FOLDERS["minilm"] / "passages20000").glob("*.npy"))]).astype(np.float32))
    _, mpnet = td.mpnet_vectors("passages_shuffled_first20000.parquet")
    src_rows, tgt_rows = np.arange(20000 - n, 20000), np.arange(t0, t0 + n)
    source_p, target_p = minilm[src_rows], mpnet[tgt_rows]
    source_s, target_s = span_vectors("minilm", 20000)[src_rows], span_vectors("mpnet", t0 + n)[tgt_rows]
    held_a, held_b = minilm[:t0], mpnet[:t0]
    dev = sf["dev"]["rows"]

    def measure(linear_map: LinearMap) -> dict[str, float]:
        row = tb.heldout_metrics(linear_map(held_a), held_b)
        mapped = linear_map(sf["queries_minilm"])
        row["scifact_ndcg_at_10_dev"] = tb.ndcg(mapped, sf["docs_mpnet"], sf, "dev")
        row["scifact_query_cosine_dev"] = round(float((mapped[dev] * sf["queries_mpnet"][dev]).sum(1).mean()), 4)
        return row

    def affine(weight: np.ndarray, a_raw: np.ndarray, b_raw: np.ndarray) -> LinearMap:
        mean_a, mean_b = a_raw.mean(0), b_raw.mean(0)
        scale = float(np.linalg.norm(b_raw - mean_b, axis=1).mean() / np.linalg.norm(a_raw - mean_a, axis=1).mean())
        return LinearMap("m", scale * weight, (mean_b - mean_a @ (scale * weight)).astype(np.float32))

    def centred(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
        return unit(x - mean).astype(np.float32)

    pooled_a, pooled_b = np.concatenate([source_p, source_s]), np.concatenate([target_p, target_s])
    for name, (a, b) in (("passages", (source_p, mpnet[src_rows])),
                         ("passages_and_spans", (pooled_a, np.concatenate([mpnet[src_rows],
                                                                           span_vectors("mpnet", 11500)[src_rows]
                                                                           if src_rows.max() < 11500 else target_s])))):
        if name == "passages_and_spans" and src_rows.max() >= 11500:
            continue  # mpnet has no span vectors of the source side's texts: no paired reference with spans
        ma, mb = a.mean(0), b.mean(0)
        log("spans", f"paired_procrustes_{name}", measure(affine(procrustes_weight(centred(a, ma), centred(b, mb)), a, b)))
    settings = UnsupervisedSettings()
    xa, xb = centred(source_p, source_p.mean(0)), centred(target_p, target_p.mean(0))
    refined = td.cached_weight(f"swapped-{n}-restart{run_seed}", lambda: refine(
        xa, xb, procrustes_weight(xa, relative_pseudo_pairs(xa, xb, settings, np.random.default_rng(run_seed))),
        settings, np.random.default_rng(run_seed + 1)))
    log("spans", "unpaired_refined", measure(affine(refined, source_p, target_p)))
    sharpened = sharpen(xa, xb, refined, settings)
    log("spans", "unpaired_sharpened_passages", measure(affine(sharpened, source_p, target_p)))
    for name, (a, b) in (("pooled", (pooled_a, pooled_b)), ("spans_only", (source_s, target_s))):
        ya, yb = centred(a, a.mean(0)), centred(b, b.mean(0))
        for start_name, start in (("refined", refined), ("sharpened", sharpened)):
            weight = self_learn(ya, yb, start, SelfLearningSettings(sample=2 * n))
            log("spans", f"self_learning_{name}_from_{start_name}", measure(affine(weight, a, b)))


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

    sources, partners, _ = _cross(xa, xb, sharpened, SelfLearningSettings())
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


def directions_probe(xa, sf, mean_a, paired, unpaired, log) -> None:
    """Where the two maps disagree: the source passages' principal directions in bins of 32 (by variance),
    the cosine between a direction mapped by the unpaired map and by the paired one, beside the share of
    the passages' and of the SciFact dev queries' centred variance each bin holds."""
    vals, vecs = np.linalg.eigh((xa.T.astype(np.float64) @ xa) / len(xa))
    vecs = vecs[:, ::-1].astype(np.float32)
    agreement = (unit(vecs.T @ unpaired) * unit(vecs.T @ paired)).sum(1)
    queries = unit(sf["queries_minilm"][sf["dev"]["rows"]] - mean_a)
    q_energy = ((queries @ vecs) ** 2).mean(0)
    p_energy = vals[::-1] / vals.sum()
    for start in range(0, len(vecs), 32):
        part = slice(start, start + 32)
        log("directions", f"components_{start + 1}_{start + 32}", {
            "mapped_direction_cosine_unpaired_vs_paired": round(float(agreement[part].mean()), 4),
            "passage_variance_share": round(float(p_energy[part].sum()), 4),
            "scifact_dev_query_variance_share": round(float(q_energy[part].sum() / q_energy.sum()), 4)})


def in_domain_probe(sides, sf, refined, centred_map, measure, log) -> None:
    """Unlabelled in-domain text on both sides, still disjoint: the source adds MiniLM vectors of the even
    SciFact documents, the target mpnet vectors of the odd ones; self-learning from the passage search.
    The paired reference: Procrustes on the source's texts (passages + the even documents, both models)."""
    from tava_core.adapter.self_learning import SelfLearningSettings, self_learn
    from tava_core.adapter.unsupervised import _centre, procrustes_weight

    docs_minilm = td.cached_only("minilm", "corpus")
    even, odd = np.arange(0, len(docs_minilm), 2), np.arange(1, len(docs_minilm), 2)
    a_raw = np.concatenate([sides["source"], docs_minilm[even]])
    b_raw = np.concatenate([sides["target"], sf["docs_mpnet"][odd]])
    ya, _ = _centre(a_raw)
    yb, _ = _centre(b_raw)
    weight = self_learn(ya, yb, refined, SelfLearningSettings(sample=len(ya)))
    # the map is used with the passages' means (centred_map): the docs shift the pooled means a little
    log("in_domain", "unpaired_self_learning_with_half_docs_each_side", measure(centred_map(weight)))
    pa = np.concatenate([sides["pairs_source"], docs_minilm[even]])
    pb = np.concatenate([sides["pairs_target"], sf["docs_mpnet"][even]])
    log("in_domain", "paired_procrustes_with_even_docs", measure(centred_map(procrustes_weight(
        unit(pa - sides["source"].mean(0)), unit(pb - sides["target"].mean(0))))))


def reweight_probe(xa, xb, sharpened, sides, mean_a, mean_b, centred_map, measure, log) -> None:
    """VecMap's re-weighting: the map U diag(w) V' from the SVD U S V' of the final pseudo-pairs'
    cross-covariance, w = (S / S_max)^p (directions matched consistently weigh more) or w = the
    per-direction correlation of the pairs ^p. The same on the true pairs is the control."""
    from tava_core.adapter.self_learning import SelfLearningSettings, _cross

    pseudo = _cross(xa, xb, sharpened, SelfLearningSettings())[:2]
    true = (unit(sides["pairs_source"] - mean_a), unit(sides["pairs_target"] - mean_b))
    for name, (a, b) in (("pseudo_pairs", pseudo), ("true_pairs", true)):
        u, s, vt = np.linalg.svd(a.T.astype(np.float64) @ b, full_matrices=False)
        corr = s / (np.linalg.norm(a @ u, axis=0) * np.linalg.norm(b @ vt.T, axis=0))
        for kind, base in (("singular", s / s.max()), ("correlation", corr / corr.max())):
            for power in (0.25, 0.5, 1.0):
                weight = ((u * base ** power) @ vt).astype(np.float32)
                log("reweight", f"{name}_{kind}_p{power}", measure(centred_map(weight)))
        log("reweight", f"{name}_correlation_spectrum", {f"q{q}": round(float(np.quantile(corr, q)), 4)
                                                          for q in (0.0, 0.1, 0.5, 0.9, 1.0)})


def pooled_search_probe(sides, sf, seed, measure, log) -> None:
    """The library's whole search (fit_unsupervised, default settings) on sets that hold in-domain text:
    the passages plus the even SciFact documents (MiniLM) / the odd ones (mpnet) -- still disjoint."""
    from tava_core.adapter.unsupervised import fit_unsupervised

    docs_minilm = td.cached_only("minilm", "corpus")
    even, odd = np.arange(0, len(docs_minilm), 2), np.arange(1, len(docs_minilm), 2)
    a_raw = np.concatenate([sides["source"], docs_minilm[even]])
    b_raw = np.concatenate([sides["target"], sf["docs_mpnet"][odd]])
    cpu = time.process_time()
    result = fit_unsupervised(a_raw, b_raw, seed=seed)
    log("pooled_search", "fit_unsupervised_passages_and_half_docs", {
        **measure(result.linear_map), "cpu_seconds": round(time.process_time() - cpu, 1), "load": os.getloadavg()[0]})


if __name__ == "__main__":
    main()
