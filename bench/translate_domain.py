"""What closes the SciFact gap of the unpaired MiniLM -> mpnet map with in-domain text? Dev only: the
809 SciFact *train* queries and the 1,000 held-out passage pairs; no test-split number is computed here.

Setting (as ``bench/translate.py --domain-docs``): 9,500 disjoint generic passages per side; the
source's domain vectors are MiniLM's of the even SciFact documents, the target's mpnet's of the odd
ones (no text on both sides, no labels). Every variant starts from the same generic search result
(anchors + refinement, restart ``seed*1000``, cached under .tava/bench-translate/dev) and changes only
what happens with the domain vectors afterwards:

- ``pooled``: the library's step so far -- self-learning (CSLS, 5 best, both directions) on generic +
  domain rows pooled, ``rounds`` rounds;
- ``pooled_then_domain``: that, then more rounds on the domain rows alone;
- ``domain_weighted``: the pooled rounds with the domain rows' pairs up-weighted in Procrustes;
- ``confidence``: pairs weighted by their CSLS score;
- ``spans``: one short span view of each side's documents added to its domain rows (MiniLM spans of the
  even documents, mpnet spans of the odd ones; bench/transfer_data.py's cache);
- ``oracle``: the pooled rounds started from paired Procrustes on passages + the even documents (does
  self-learning keep the right map, or drift to its own fixed point?);
- ``sweep:KEY=VALUE,...``: the published recipe's step with its knobs (span views, the documents' titles,
  optimal-transport pairs, a source-side query log of the 300 test-split query *texts* -- never their labels, and
  no test query is scored -- and the oracle's start; ``swept`` lists them). Every variant of one invocation is
  compared with its first, paired by query (``paired_dev_vs``).

Writes bench/results/translate_domain_dev.json (one row per variant).

    python bench/translate_domain.py [--variants pooled ...] [--seed 0]
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import translate as tb  # noqa: E402
import translate_data as td  # noqa: E402

OUT = ROOT / "bench" / "results" / "translate_domain_dev.json"


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def own_centred(x: np.ndarray) -> np.ndarray:
    """Rows centred on their own mean (not the generic set's), then unit length."""
    return unit(x - x.mean(0))


def weighted_procrustes(a: np.ndarray, b: np.ndarray, w: Optional[np.ndarray]) -> np.ndarray:
    if w is None:
        w = np.ones(len(a))
    u, _, vt = np.linalg.svd((a.astype(np.float64) * w[:, None]).T @ b.astype(np.float64), full_matrices=False)
    return (u @ vt).astype(np.float32)


def rounds_of(a: np.ndarray, b: np.ndarray, weight: np.ndarray, rounds: int, *, neighbours: int = 5,
              csls_k: int = 10, domain_a: int = 0, domain_b: int = 0, domain_weight: float = 1.0,
              confidence: bool = False, blocks: bool = False, ot_eps: float = 0.0,
              source_weights: Optional[np.ndarray] = None,
              on_round: Optional[Callable[[int, np.ndarray], None]] = None) -> np.ndarray:
    """Self-learning rounds like ``self_learning.self_learn`` (CSLS, each row's ``neighbours`` best, both
    directions), with optional per-pair weights: the last ``domain_a`` / ``domain_b`` rows of each side are
    domain rows, whose pairs (as the picking row) weigh ``domain_weight``; ``confidence`` multiplies each
    pair by its mean CSLS score (clipped at 0); ``ot_eps`` > 0 pairs the domain rows (both directions) by an
    entropic optimal-transport plan between the mapped source domain rows and the target domain rows instead
    (``sinkhorn_targets``), the generic rows as before; ``source_weights`` (one per row of ``a``) replaces the
    weight of the pairs the source rows pick."""
    from tava_core.adapter.self_learning import csls, similarities

    if blocks and source_weights is not None:  # blocks reorder the pairs; the weights follow the rows of ``a``
        raise ValueError("source_weights and blocks do not combine")
    is_dom_a = np.arange(len(a)) >= len(a) - domain_a
    is_dom_b = np.arange(len(b)) >= len(b) - domain_b

    def pairs(a: np.ndarray, b: np.ndarray, dom_a: np.ndarray, dom_b: np.ndarray, weight: np.ndarray):
        scores = csls(similarities(a, b, weight), csls_k)
        fwd = scores.topk(neighbours, dim=1)
        bwd = scores.topk(neighbours, dim=0)
        src = np.concatenate([a, unit(a[bwd.indices.T.numpy()].mean(1))])
        tgt = np.concatenate([unit(b[fwd.indices.numpy()].mean(1)), b])
        w = np.concatenate([np.where(dom_a, domain_weight, 1.0), np.where(dom_b, domain_weight, 1.0)])
        if confidence:
            conf = np.concatenate([fwd.values.mean(1).numpy(), bwd.values.mean(0).numpy()])
            w = w * np.clip(conf, 0, None)
        return src, tgt, w

    for r in range(1, rounds + 1):
        if blocks:  # generic rows pair only with generic rows, domain rows with domain rows
            ga, gb = ~is_dom_a, ~is_dom_b
            p1 = pairs(a[ga], b[gb], is_dom_a[ga], is_dom_b[gb], weight)
            p2 = pairs(a[is_dom_a], b[is_dom_b], is_dom_a[is_dom_a], is_dom_b[is_dom_b], weight)
            src, tgt, w = (np.concatenate([x, y]) for x, y in zip(p1, p2, strict=True))
        else:
            src, tgt, w = pairs(a, b, is_dom_a, is_dom_b, weight)
        if source_weights is not None:
            w[:len(a)] = source_weights
        if ot_eps > 0:  # replace the domain rows' nearest-neighbour pairs by barycentric OT pairs
            a_dom, b_dom = a[is_dom_a], b[is_dom_b]
            to_b, to_a = sinkhorn_targets(similarities(a_dom, b_dom, weight), a_dom, b_dom, ot_eps)
            keep = np.concatenate([~is_dom_a, ~is_dom_b])
            src = np.concatenate([src[keep], a_dom, to_a])
            tgt = np.concatenate([tgt[keep], to_b, b_dom])
            w = np.concatenate([w[keep], np.full(len(a_dom) + len(b_dom), domain_weight)])
        weight = weighted_procrustes(src, tgt, w)
        if on_round is not None:
            on_round(r, weight)
    return weight


def sinkhorn_targets(sims: torch.Tensor, a: np.ndarray, b: np.ndarray, eps: float,
                     iters: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """The entropic OT plan with uniform marginals between the rows (mapped source) and columns (target) of
    ``sims`` (cosines, cost 1 - cos, temperature ``eps``; log-domain Sinkhorn), and each side's barycentric
    partner under it: (for each source row, the unit plan-weighted mean of ``b``; for each target row, that
    of ``a``). Unlike a row's k nearest neighbours, the plan must use every row of the other side equally,
    so dense regions cannot pull the pairs towards them (no hubs, no contraction)."""
    log_k = sims / eps
    n, m = log_k.shape
    log_u, log_v = torch.zeros(n), torch.zeros(m)
    for _ in range(iters):
        log_u = -torch.logsumexp(log_k + log_v[None, :], dim=1) - np.log(n)
        log_v = -torch.logsumexp(log_k + log_u[:, None], dim=0) - np.log(m)
    plan = torch.exp(log_k + log_u[:, None] + log_v[None, :])
    to_b = unit((plan @ torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32))).numpy())
    to_a = unit((plan.T @ torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))).numpy())
    return to_b, to_a


@functools.cache
def extra_domain_vectors(views: int, titles: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """Raw (MiniLM of the even documents, mpnet of the odd ones) domain vectors beyond the documents and their
    first span view: span views 1 .. ``views`` - 1, then (``titles``) the documents' titles. Cached only (and read
    once per run: callers derive new arrays, never write these)."""
    out = []
    for view in range(1, views):  # more span views of the same documents
        raw_a = td.doc_span_vectors("minilm", view, 0, compute=False)
        raw_b = td.doc_span_vectors("mpnet", view, 1, compute=False)
        if raw_a is None or raw_b is None:
            raise SystemExit(f"span view {view} is not cached: python bench/translate_data.py "
                             f"minilm:spans-view{view}-parity0 mpnet:spans-view{view}-parity1")
        out.append((raw_a, raw_b))
    if titles:  # each side's titles of its own documents (Stage A's title views)
        raw_a, raw_b = td.doc_title_vectors("minilm", 0, compute=False), td.doc_title_vectors("mpnet", 1, compute=False)
        if raw_a is None or raw_b is None:
            raise SystemExit("titles are not cached: python bench/translate_data.py minilm:titles-parity0 "
                             "mpnet:titles-parity1")
        out.append((raw_a, raw_b))
    return out


def with_query_log(kw: dict[str, str], dom_a: list[np.ndarray], log_rows: np.ndarray,
                   generic_rows: int) -> Optional[np.ndarray]:
    """With ``log=W`` in ``kw``: append ``log_rows`` (the other split's query texts, on the source side only:
    the model queries are encoded by) to the source's domain rows ``dom_a`` and return every source row's pair
    weight (generic 1, domain ``w``, log W); else None, ``dom_a`` untouched."""
    if "log" not in kw:
        return None
    dom_a.append(log_rows)
    return np.repeat([1.0, float(kw.get("w", 2)), float(kw["log"])],
                     [generic_rows, sum(map(len, dom_a[:-1])), len(log_rows)])


def paired_against_first(per_query: dict[str, np.ndarray]) -> dict[str, Any]:
    """``{"paired_dev_vs": ...}``: every variant's dev nDCG@10 against the first one's, paired by query (mean
    difference, 95% interval); empty for fewer than two variants."""
    if len(per_query) < 2:
        return {}
    from tava_core.evaluate.metrics import paired_bootstrap

    first, *rest = per_query
    out = {"against": first, "variants": {name: paired_bootstrap(per_query[name], per_query[first]) for name in rest}}
    print(json.dumps(out, indent=1), flush=True)
    return {"paired_dev_vs": out}


def sym_power(m: np.ndarray, power: float, floor: float = 1e-6) -> np.ndarray:
    values, vectors = np.linalg.eigh(m.astype(np.float64))
    return (vectors * np.maximum(values, floor * values.max()) ** power) @ vectors.T


def gaussian_ot(weight: np.ndarray, da: np.ndarray, db: np.ndarray, measure, log) -> None:
    """A pair-free non-orthogonal correction: the linear optimal-transport (Monge) map between two Gaussians
    with the covariances of the mapped source domain rows and of the target domain rows (pulled back
    into the source's coordinates through W'), x -> x A W, A = S^-1/2 (S^1/2 T S^1/2)^1/2 S^-1/2;
    ``alpha`` interpolates from the identity."""
    s_cov = np.cov(da.T)
    t_cov = np.cov((db @ weight.T).T)
    s_half, s_inv_half = sym_power(s_cov, 0.5), sym_power(s_cov, -0.5)
    a_map = s_inv_half @ sym_power(s_half @ t_cov @ s_half, 0.5) @ s_inv_half
    for alpha in (0.25, 0.5, 1.0):
        mix = (1 - alpha) * np.eye(len(a_map)) + alpha * a_map
        log(f"gaussian_ot_alpha{alpha}", measure((mix @ weight).astype(np.float32)))


def main() -> None:
    from tava_core.adapter.baselines import LinearMap
    from tava_core.adapter.unsupervised import (
        UnsupervisedSettings,
        _centre,
        _domain_rows,
        neighbour_similarity,
        procrustes_weight,
        refine,
        relative_pseudo_pairs,
        to_linear_maps,
    )
    from tava_core.route.curves import per_query_ndcg

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=9500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", nargs="+", default=["pooled"])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    tb.limit_threads(1)
    started = time.perf_counter()
    sf = tb.scifact()
    sides = tb.with_domain_docs(tb.dev_sides("mpnet", args.size), td.cached_only("minilm", "corpus"),
                                sf["docs_mpnet"])
    xa, mean_a = _centre(sides["source"])
    xb, mean_b = _centre(sides["target"])
    da = _domain_rows(sides["domain_source"], mean_a, 384, "source")
    db = _domain_rows(sides["domain_target"], mean_b, 768, "target")
    n_docs = len(sf["doc_ids"])
    even, odd = np.arange(0, n_docs, 2), np.arange(1, n_docs, 2)
    raw_spans_a = td.transfer_cached("minilm", "corpus-spans")[even]     # read once, used raw and centred
    raw_spans_b = td.transfer_cached("mpnet", "corpus-spans")[odd]
    spans_a = _domain_rows(raw_spans_a, mean_a, 384, "source")
    log_rows = _domain_rows(sf["queries_minilm"][sf["test"]["rows"]], mean_a, 384, "source")  # sweep's log=W
    spans_b = _domain_rows(raw_spans_b, mean_b, 768, "target")
    dom_mean_a, dom_mean_b = sides["domain_source"].mean(0), sides["domain_target"].mean(0)
    own_da, own_db = unit(sides["domain_source"] - dom_mean_a), unit(sides["domain_target"] - dom_mean_b)
    own_sa, own_sb = own_centred(raw_spans_a), own_centred(raw_spans_b)
    settings = UnsupervisedSettings()
    run_seed = args.seed * 1000

    def search() -> np.ndarray:
        rng = np.random.default_rng(run_seed)
        return refine(xa, xb, procrustes_weight(xa, relative_pseudo_pairs(xa, xb, settings, rng)), settings, rng)

    refined = td.cached_weight(f"mpnet-{args.size}-restart{run_seed}", search)

    latest: dict[str, np.ndarray] = {}  # the dev nDCG@10 per query of the map measure() scored last

    def measure(weight: np.ndarray) -> dict[str, float]:
        forward, _ = to_linear_maps(weight, mean_a, mean_b, sides["source"], sides["target"], "dev")
        row = tb.heldout_metrics(forward(sides["heldout_source"]), sides["heldout_target"])
        dev = sf["dev"]
        latest["per_query"] = per_query_ndcg(forward(sf["queries_minilm"])[dev["rows"]], sf["docs_mpnet"], dev["ids"],
                                             sf["doc_ids"], dev["qrels"])
        row["scifact_ndcg_at_10_dev"] = round(float(latest["per_query"].mean()), 4)
        # the same rotation with the domain's centres matched instead of the generic ones (pair-free: the
        # mean of the source's domain vectors goes to the mean of the target's)
        scale = float(forward.weight[0] @ forward.weight[0]) ** 0.5 / float(weight[0] @ weight[0]) ** 0.5
        row["scifact_ndcg_at_10_dev_domain_means"] = tb.ndcg(LinearMap(
            "d", (scale * weight).astype(np.float32), (dom_mean_b - dom_mean_a @ (scale * weight)).astype(np.float32))(
            sf["queries_minilm"]), sf["docs_mpnet"], sf, "dev")
        # the pair-free criterion on the generic sets and on the domain sets (mapped in centred space)
        row["criterion_generic"] = round(neighbour_similarity(xa @ weight, xb), 4)
        row["criterion_domain"] = round(neighbour_similarity(da @ weight, db), 4)
        row["criterion_pooled"] = round(neighbour_similarity(np.concatenate([xa, da]) @ weight,
                                                             np.concatenate([xb, db])), 4)
        return row

    report: dict[str, Any] = {
        "benchmark": "domain step variants, dev (bench/translate_domain.py)",
        "split": "dev only: SciFact train queries (809), 1,000 held-out passage pairs",
        "texts_per_side": args.size, "seed": args.seed, "domain_rows": [len(da), len(db)],
        "load_at_start": os.getloadavg()[0], "variants": {}}
    if args.out.is_file():  # variants run one at a time accumulate in one file
        report["variants"] = json.loads(args.out.read_text()).get("variants", {})

    def log(name: str, row: dict) -> None:
        row = {**row, "load": round(os.getloadavg()[0], 2)}
        report["variants"][name] = row
        print(json.dumps({"variant": name, **row}), flush=True)
        tb.write_report(report, args.out, started)

    pooled_a, pooled_b = np.concatenate([xa, da]), np.concatenate([xb, db])
    cache: dict[str, np.ndarray] = {}

    def pooled(rounds: int = 4) -> np.ndarray:
        key = f"pooled{rounds}"
        if key not in cache:
            cache[key] = td.cached_weight(f"mpnet-{args.size}-restart{run_seed}-{key}", lambda: rounds_of(
                pooled_a, pooled_b, refined, rounds, domain_a=len(da), domain_b=len(db)))
        return cache[key]

    def run(name: str, fn: Callable[[], np.ndarray]) -> None:
        cpu = time.process_time()
        weight = fn()
        log(name, {**measure(weight), "cpu_seconds": round(time.process_time() - cpu, 1)})

    final_per_query: dict[str, np.ndarray] = {}  # each traced variant's last map: dev nDCG@10 per query

    def traced(name: str, a: np.ndarray, b: np.ndarray, start: np.ndarray, rounds: int, **kw: Any) -> None:
        cpu = time.process_time()
        trace: list[dict] = []
        rounds_of(a, b, start, rounds, on_round=lambda r, w: trace.append({"round": r, **measure(w)}), **kw)
        final_per_query[name] = latest["per_query"]   # the last round's map is the one returned
        log(name, {"trace": trace, "cpu_seconds_with_measuring": round(time.process_time() - cpu, 1)})

    def spans_w2() -> np.ndarray:
        return td.cached_weight(f"mpnet-{args.size}-restart{run_seed}-spans-w2-r5", lambda: rounds_of(
            np.concatenate([xa, da, spans_a]), np.concatenate([xb, db, spans_b]), refined, 5,
            domain_a=len(da) + len(spans_a), domain_b=len(db) + len(spans_b), domain_weight=2.0))

    paired_docs = procrustes_weight(unit(sides["pairs_source"] - mean_a), unit(sides["pairs_target"] - mean_b))
    variants: dict[str, Callable[[], None]] = {
        "refined": lambda: run("refined", lambda: refined),
        "paired_procrustes_with_even_docs": lambda: run("paired_procrustes_with_even_docs", lambda: paired_docs),
        "paired_procrustes_even_docs_only": lambda: run("paired_procrustes_even_docs_only", lambda: procrustes_weight(
            da, unit(sf["docs_mpnet"][even] - mean_b))),
        "pooled": lambda: traced("pooled", pooled_a, pooled_b, refined, 8, domain_a=len(da), domain_b=len(db)),
        "pooled_then_domain": lambda: traced("pooled_then_domain", da, db, pooled(), 8),
        "domain_only_from_refined": lambda: traced("domain_only_from_refined", da, db, refined, 8),
        "domain_weighted_3": lambda: traced("domain_weighted_3", pooled_a, pooled_b, refined, 6,
                                            domain_a=len(da), domain_b=len(db), domain_weight=3.0),
        "domain_weighted_10": lambda: traced("domain_weighted_10", pooled_a, pooled_b, refined, 6,
                                             domain_a=len(da), domain_b=len(db), domain_weight=10.0),
        "confidence": lambda: traced("confidence", pooled_a, pooled_b, refined, 6, domain_a=len(da),
                                     domain_b=len(db), confidence=True),
        "spans": lambda: traced("spans", np.concatenate([xa, da, spans_a]), np.concatenate([xb, db, spans_b]),
                                refined, 6, domain_a=len(da) + len(spans_a), domain_b=len(db) + len(spans_b)),
        "spans_then_domain": lambda: traced("spans_then_domain", np.concatenate([da, spans_a]),
                                            np.concatenate([db, spans_b]), pooled(), 6),
        "spans_weighted_2": lambda: traced("spans_weighted_2", np.concatenate([xa, da, spans_a]),
                                           np.concatenate([xb, db, spans_b]), refined, 8,
                                           domain_a=len(da) + len(spans_a), domain_b=len(db) + len(spans_b),
                                           domain_weight=2.0),
        "blocks": lambda: traced("blocks", pooled_a, pooled_b, refined, 6, domain_a=len(da), domain_b=len(db),
                                 blocks=True),
        "blocks_weighted_3": lambda: traced("blocks_weighted_3", pooled_a, pooled_b, refined, 6, domain_a=len(da),
                                            domain_b=len(db), blocks=True, domain_weight=3.0),
        "blocks_spans_weighted_2": lambda: traced(
            "blocks_spans_weighted_2", np.concatenate([xa, da, spans_a]), np.concatenate([xb, db, spans_b]),
            refined, 8, domain_a=len(da) + len(spans_a), domain_b=len(db) + len(spans_b), blocks=True,
            domain_weight=2.0),
        "own_centre_spans_weighted_2": lambda: traced(
            "own_centre_spans_weighted_2", np.concatenate([xa, own_da, own_sa]), np.concatenate([xb, own_db, own_sb]),
            refined, 6, domain_a=2 * len(da), domain_b=2 * len(db), domain_weight=2.0),
        "gaussian_ot": lambda: gaussian_ot(spans_w2(), da, db, measure, log),
        "oracle_domain_spans": lambda: traced("oracle_domain_spans", np.concatenate([da, spans_a]),
                                              np.concatenate([db, spans_b]), paired_docs, 4),
        "oracle_spans_weighted_2": lambda: traced(
            "oracle_spans_weighted_2", np.concatenate([xa, da, spans_a]), np.concatenate([xb, db, spans_b]),
            paired_docs, 4, domain_a=len(da) + len(spans_a), domain_b=len(db) + len(spans_b), domain_weight=2.0),
        "oracle_pooled": lambda: traced("oracle_pooled", pooled_a, pooled_b, paired_docs, 4,
                                        domain_a=len(da), domain_b=len(db)),
        "oracle_domain": lambda: traced("oracle_domain", da, db, paired_docs, 4),
        "domain_neighbours_1": lambda: traced("domain_neighbours_1", da, db, pooled(), 6, neighbours=1),
        "domain_neighbours_10": lambda: traced("domain_neighbours_10", da, db, pooled(), 6, neighbours=10),
    }
    def swept(name: str) -> None:
        """'sweep:w=2,n=5,k=10,own=0,spans=1,views=1,titles=0,rounds=5': spans/docs pooled with the passages,
        weighted; ``titles=1`` adds each side's titles of its own documents as domain rows; ``ot=EPS`` pairs the
        domain rows by an entropic OT plan at temperature EPS (``sinkhorn_targets``); ``start=paired`` starts from
        paired Procrustes on passages + the even documents instead of the unpaired search (where does it drift?);
        ``log=W``: the 300 test-split query texts' MiniLM vectors as source-side domain rows whose pairs weigh W
        (label-free, as `tava run` takes the other splits' queries; dev scores the train queries)."""
        kw = dict(item.split("=") for item in name.split(":", 1)[1].split(","))
        own, use_spans = kw.get("own", "0") == "1", kw.get("spans", "1") == "1"
        dom_a = [own_da if own else da] + ([own_sa if own else spans_a] if use_spans else [])
        dom_b = [own_db if own else db] + ([own_sb if own else spans_b] if use_spans else [])
        for raw_a, raw_b in extra_domain_vectors(int(kw.get("views", 1)), kw.get("titles", "0") == "1"):
            dom_a.append(own_centred(raw_a) if own else _domain_rows(raw_a, mean_a, 384, "source"))
            dom_b.append(own_centred(raw_b) if own else _domain_rows(raw_b, mean_b, 768, "target"))
        if "frac" in kw:  # a share of the domain documents (and their spans): does more domain text help?
            keep = int(float(kw["frac"]) * len(da))
            dom_a, dom_b = [d[:keep] for d in dom_a], [d[:keep] for d in dom_b]
        source_weights = with_query_log(kw, dom_a, log_rows, len(xa))
        a, b = np.concatenate([xa, *dom_a]), np.concatenate([xb, *dom_b])
        start = paired_docs if kw.get("start") == "paired" else refined  # start=paired: the oracle's start
        traced(name, a, b, start, int(kw.get("rounds", 5)), domain_a=len(a) - len(xa), domain_b=len(b) - len(xb),
               domain_weight=float(kw.get("w", 2)), neighbours=int(kw.get("n", 5)), csls_k=int(kw.get("k", 10)),
               ot_eps=float(kw.get("ot", 0)), source_weights=source_weights)

    for name in args.variants:
        swept(name) if name.startswith("sweep:") else variants[name]()
    report.update(paired_against_first(final_per_query))  # a one-variant run keeps an earlier run's comparison
    tb.write_report(report, args.out, started)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
