"""Does a better predictor of agreement route better? Perturbation signals against the retrieval
entropy (issue 16's static-a miss: "within 0.05 of the label-free oracle"; dev only).

The shipped confidence (``retrieval_entropy``) reads how flat the student's top-50 cosines are, at a
fixed temperature. A flat list is fragile, but "flat" is measured in cosine, not in the student's own
error. Here the error is measured: on the served corpus' calibration spans (label-free: the teacher
runs offline there, as fit_router does) the residual teacher - student has a covariance S, and a
query's top-10 is scored by how likely it survives that error:

- ``mc_stability``: 32 draws of a residual (S's top 64 directions) added to the query vector; 1 -
  the mean top-10 overlap with the unperturbed list (100 candidates);
- ``boundary_swap``: mean over the top-10 x ranks 11-20 pairs of P(swap) = sigmoid(-1.7 z), z the
  score gap over the residual's standard deviation along the two documents' difference;
- ``top1_z``: -mean z of the best document against ranks 2-11 (ablations: ``top1_z_isotropic`` divides
  the gaps by the documents' distance only -- the router's ``retrieval_cell_margin`` --, ``top1_gap``
  is the raw mean gap);
- ``token_dropout`` (static students): 1 - mean top-10 overlap of the query with one token left out;
- the entropy at other temperatures, and rank averages of the entropy with the two error-scaled ones.

Scored on SciFact's 809 train queries (dev) and the built-in data (the second dev corpus, as in
route_default.py), by route.py's own curves: Spearman with the true top-10
overlap and the share of the gap recovered at 10% / 20% (label-free and labelled oracles beside).
No test query is read.

    python bench/route_stability.py static-a,static-b   # -> bench/results/route_stability_dev.json
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bench.route as route  # noqa: E402
from bench.shared_data import write_result  # noqa: E402
from tava_core.route.signals import cell_margin  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "route_stability_dev.json"
CANDIDATES = 100     # the perturbed lists are re-ranked among the query's 100 best documents
DRAWS, RANK = 32, 64


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def entropy(scores: np.ndarray, temperature: float, top: int = 50) -> np.ndarray:
    best = -np.sort(-np.partition(scores, scores.shape[1] - top, axis=1)[:, -top:], axis=1)
    p = np.exp((best - best[:, :1]) / temperature)
    p /= p.sum(axis=1, keepdims=True)
    return -(p * np.log(np.maximum(p, 1e-30))).sum(axis=1) / np.log(top)


def top10_overlap(base: np.ndarray, perturbed: np.ndarray) -> float:
    """Mean share of ``base``'s top-10 (indices into the candidates) found in each perturbed list's."""
    top = set(np.argsort(-base)[:10].tolist())
    return float(np.mean([len(top & set(np.argpartition(-p, 9)[:10].tolist())) / 10 for p in perturbed]))


def stability_signals(queries: np.ndarray, docs: np.ndarray, residual: np.ndarray) -> dict[str, np.ndarray]:
    """The three error-scaled signals (higher = less trustworthy) of unit ``queries``."""
    cov = np.cov(residual.T)
    lam, vecs = np.linalg.eigh(cov)
    lam, vecs = np.clip(lam[::-1], 0, None), vecs[:, ::-1]
    basis = vecs[:, :RANK] * np.sqrt(lam[:RANK])                       # (d, RANK): draws = z @ basis.T
    scores = queries @ docs.T
    cand = np.argpartition(-scores, CANDIDATES - 1, axis=1)[:, :CANDIDATES]
    rng = np.random.default_rng(0)
    out = {name: np.empty(len(queries)) for name in ("mc_stability", "boundary_swap", "top1_z", "top1_gap")}
    for k in range(len(queries)):
        base = scores[k, cand[k]]
        order = cand[k][np.argsort(-base)]
        shifts = (rng.standard_normal((DRAWS, RANK)) @ basis.T) @ docs[cand[k]].T
        out["mc_stability"][k] = 1.0 - top10_overlap(base, base[None, :] + shifts)
        diff = docs[order[:10]][:, None, :] - docs[order[10:20]][None, :, :]
        z = (scores[k, order[:10]][:, None] - scores[k, order[10:20]][None, :]) / np.sqrt(
            np.einsum("ijd,de,ije->ij", diff, cov, diff) + 1e-12)
        out["boundary_swap"][k] = float(np.mean(1.0 / (1.0 + np.exp(1.7 * z))))
        diff1 = docs[order[0]][None, :] - docs[order[1:11]]
        z1 = (scores[k, order[0]] - scores[k, order[1:11]]) / np.sqrt(
            np.einsum("kd,de,ke->k", diff1, cov, diff1) + 1e-12)
        out["top1_z"][k] = -float(np.mean(z1))
        out["top1_gap"][k] = -float(np.mean(scores[k, order[0]] - scores[k, order[1:11]]))   # ablation: raw gaps
    # ablation: the same walls without S -- the router's own retrieval_cell_margin
    out["top1_z_isotropic"] = cell_margin(scores, docs)
    return out


def token_dropout_signal(encoder, texts: list[str], queries: np.ndarray, docs: np.ndarray) -> np.ndarray:
    """1 - mean top-10 overlap of each query with one of its tokens left out (a static student's
    leave-one-out vectors cost one subtraction each)."""
    table = encoder.table.numpy()
    scores = queries @ docs.T
    cand = np.argpartition(-scores, CANDIDATES - 1, axis=1)[:, :CANDIDATES]
    out = np.ones(len(texts))
    for k, text in enumerate(texts):
        ids = encoder.token_bags([encoder._prefix("query") + text])[0].numpy()
        if len(ids) < 2:
            continue
        rows = table[ids]
        left_out = _unit(rows.sum(axis=0)[None, :] - rows)
        out[k] = 1.0 - top10_overlap(scores[k, cand[k]], left_out @ docs[cand[k]].T)
    return out


def rank01(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x)).astype(float) / len(x)


def main() -> None:
    torch.set_num_threads(1)
    labels = sys.argv[1].split(",") if len(sys.argv) > 1 else ["static-a", "static-b"]
    teacher, paths, loaded, students = route.dev_bench_inputs(labels)
    sets = {"scifact-dev": loaded["scifact-dev"], "builtin-test": loaded["builtin-test"]}
    route.CANDIDATES = {"full": route.CANDIDATES["only:retrieval_entropy"]}   # one signal model is enough
    state = route.encode_students(students, sets, paths, teacher, {"students": {}})
    out: dict[str, dict] = {}
    for (label, st), (set_name, dev) in ((a, b) for a in state.items() for b in sets.items()):
        docs = _unit(dev.docs)
        enc = st["encoded"][set_name]
        queries = _unit(enc["queries"])
        residual = _unit(enc["calibration_teacher"]) - _unit(enc["calibration"])
        scores = queries @ docs.T
        signals = {f"entropy_t{t}": entropy(scores, t) for t in (0.02, 0.03, 0.05, 0.08)}
        signals.update(stability_signals(queries, docs, residual))
        if hasattr(st["encoder"], "token_bags"):
            signals["token_dropout"] = token_dropout_signal(st["encoder"], dev.data.query_texts, queries, docs)
        for w in (0.25, 0.5):
            for other in ("mc_stability", "boundary_swap"):
                signals[f"entropy {1 - w} + {other} {w} (ranks)"] = (
                    (1 - w) * rank01(signals["entropy_t0.05"]) + w * rank01(signals[other]))
        rows = {}
        for name, signal in signals.items():
            curves = route.fast_curves(dev, enc, -signal)               # confidence: higher = trusted
            rows[name] = {"spearman_overlap": curves["confidence_spearman"]["overlap"],
                          **{f"gap_recovered_{int(s * 100)}": route.gap_at(curves, s) for s in (0.1, 0.2)},
                          **{f"label_free_oracle_{int(s * 100)}": route.gap_at(curves, s, "label_free_oracle")
                             for s in (0.1, 0.2)},
                          **{f"labelled_oracle_{int(s * 100)}": route.gap_at(curves, s, "labelled_oracle") for s in (0.1, 0.2)}}
            r = rows[name]
            print(f"{label:9s} {set_name:12s} {name:42s} spearman {r['spearman_overlap']:.3f}  gap 10% {r['gap_recovered_10']:.3f}"
                  f"  20% {r['gap_recovered_20']:.3f}  (label-free oracle {r['label_free_oracle_10']:.3f} / "
                  f"{r['label_free_oracle_20']:.3f})", flush=True)
        out.setdefault(label, {})[set_name] = {"residual_norm_mean": float(np.linalg.norm(residual, axis=1).mean()),
                      "calibration_spans": len(residual), "signals": rows}
    import json

    earlier = json.loads(RESULTS.read_text())["students"] if RESULTS.is_file() else {}    # students run before
    write_result(RESULTS, {"benchmark": "error-scaled perturbation signals against the retrieval entropy "
                                        "(issue 16), dev only (SciFact train queries, built-in data)",
                           "students": {**earlier, **out}})


if __name__ == "__main__":
    main()
