"""A static student's live query (batch 1) in numpy instead of torch, alone and routed (issues 16, 18).

At batch 1 a static query is a tokenizer call, a mean of ~20 table rows and a normalisation: a few
microseconds of arithmetic, under torch's per-call dispatch (``embedding_bag``, ``normalize``,
``inference_mode``), which cost more than the arithmetic. Since session 45 ``StaticEncoder`` encodes
one text in numpy (``_encode_one``) and so does the fused routed path (``FusedStatic._one``); a batch
keeps the torch path. Here both paths run side by side in one process, interleaved rounds
(bench/route_cost.py: rotating order, median of per-round ratios), on SciFact queries one at a time:

- ``student``: the static student alone, shipped (numpy) and as before (torch: ``_encode_many``);
- ``model2vec``: model2vec's own encoder on the same directory (the fastest static runtime);
- ``routed <score>``: the router encoder with nothing sent to the teacher (budget 0), shipped and as
  before (``FusedStatic._one`` bypassed), for the default score (cell margin, full bank) and the
  two-stage bank (96 / 200).

Serving (``--serving``, a second table): what a live query costs a service that searches an index anyway
(FAISS ``HNSW32,Flat``, inner product, efSearch 64: ``tava index``'s defaults) -- the student + one
search (no router), the router on its own bank + one search, and ``RoutedEncoder.route_searched``: the
student, one search for 11 results, and the confidence read from them (the first 10 are the answer).

Fixture: bench/route_fastpath_data.py (a static student with MiniLM's token table; cost depends on
shapes, not on training). Wall clock, an idle machine.

    python bench/static_batch1.py --split dev    # -> bench/results/static_batch1_dev.json
    python bench/static_batch1.py --split dev --serving --out bench/results/static_batch1_serving_dev.json
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.route_cost import interleaved_seconds, ratio  # noqa: E402
from bench.route_fastpath import build_routers  # noqa: E402
from bench.route_fastpath_data import build_fixture  # noqa: E402
from bench.shared_data import split_results, write_result  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "static_batch1.json"
ROUNDS = 11
QUERIES = 128


def torch_path(call: Callable[[list[str]], Any]) -> Callable[[list[str]], Any]:
    """``call`` with the one-text numpy paths bypassed (the code before session 45)."""
    from tava_core.encoders.static import StaticEncoder
    from tava_core.route.fused import FusedStatic

    def before(texts: list[str]) -> Any:
        one, fused_one = StaticEncoder._encode_one, FusedStatic._one
        StaticEncoder._encode_one = lambda self, text: self._encode_many([text], None)  # type: ignore[method-assign]
        FusedStatic._one = lambda self, raw: self._many(raw)  # type: ignore[method-assign]
        try:
            return call(texts)
        finally:
            StaticEncoder._encode_one, FusedStatic._one = one, fused_one  # type: ignore[method-assign]
    return before


SERVE_K = 10


def hnsw(documents: np.ndarray, ef_search: int = 64) -> Any:
    """The index `tava index` builds by default (HNSW32,Flat, inner product) over unit ``documents``."""
    import faiss

    unit = documents / np.maximum(np.linalg.norm(documents, axis=1, keepdims=True), 1e-12)
    index = faiss.index_factory(documents.shape[1], "HNSW32,Flat", faiss.METRIC_INNER_PRODUCT)
    index.add(np.ascontiguousarray(unit, dtype=np.float32))
    index.hnsw.efSearch = ef_search
    return index


def serving_calls(student: Any, built: dict[str, Any], documents: np.ndarray,
                  index: Any) -> dict[str, Callable[[list[str]], Any]]:
    def plain(t: list[str]) -> Any:
        return index.search(student.encode(t, kind="query"), SERVE_K)

    calls: dict[str, Callable[[list[str]], Any]] = {"serve: student + search": plain}
    for name, r in built.items():
        fast = r["fast"]
        need = max(fast.compiled.results_needed(), SERVE_K)

        def own(t: list[str], fast: Any = fast) -> Any:
            return index.search(fast.route(t, batch_size=1)["vectors"], SERVE_K)

        def searched(t: list[str], fast: Any = fast, need: int = need) -> Any:
            vectors = fast.student.encode(t, kind="query")
            scores, ids = index.search(vectors, need)
            out = fast.route_searched(t, vectors, scores, documents[ids])
            # nothing is routed here (budget 0); a routed query would be searched again with its new vector
            return scores[:, :SERVE_K], ids[:, :SERVE_K], out["routed"]

        calls[f"serve: routed {name} (own bank) + search"] = own
        calls[f"serve: routed {name} from the search's results"] = searched
    return calls


def serving_agreement(student: Any, built: dict[str, Any], documents: np.ndarray, index: Any,
                      texts: list[str]) -> dict[str, Any]:
    """Confidence from the HNSW search's list against the router's own bank, per score."""
    out: dict[str, Any] = {}
    vectors = student.encode(texts, kind="query")     # the same query vectors for every router
    for name, r in built.items():
        fast = r["fast"]
        scores, ids = index.search(vectors, max(fast.compiled.results_needed(), SERVE_K))
        got = fast.route_searched(texts, vectors, scores, documents[ids])["confidence"]
        want = fast.route(texts)["confidence"]
        # the routing decisions at the budgets tava run reports: the threshold the calibration sets
        same = {f"same_decision_at_{b:g}": float(np.mean(
            (got < fast.calibration.threshold_for_budget(b)) == (want < fast.calibration.threshold_for_budget(b))))
            for b in (0.1, 0.2)}
        out[name] = {"queries": len(texts), "max_abs_confidence_difference": float(np.abs(got - want).max()),
                     "same_to_1e-5": float(np.mean(np.abs(got - want) < 1e-5)), **same}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=("dev", "test"), default="dev")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--out", default=None)
    parser.add_argument("--serving", action="store_true", help="add the serving table (student or router + HNSW search)")
    args = parser.parse_args()
    import torch
    from model2vec import StaticModel

    from tava_core.route.config import RouterSettings

    started = time.time()
    fx = build_fixture()
    texts = list((fx.test_queries if args.split == "test" else fx.dev_queries)[:QUERIES])
    scores = {"default (cell margin, full bank)": RouterSettings(),
              "cell margin, two-stage bank 96/200": RouterSettings(doc_pca_dim=96, doc_rescore=200)}
    student, built = build_routers(fx, list(scores), settings=scores)
    theirs = StaticModel.from_pretrained(str(fx.student_dir))

    def alone(t: list[str]) -> Any:
        return student.encode(t, kind="query")

    calls: dict[str, Callable[[list[str]], Any]] = {
        "student, numpy (shipped)": alone, "student, torch (before)": torch_path(alone),
        "model2vec": lambda t: theirs.encode(t)}
    for name, r in built.items():
        def routed(t: list[str], fast: Any = r["fast"]) -> Any:
            return fast.route(t, batch_size=1)
        calls[f"routed {name}, shipped"] = routed
        calls[f"routed {name}, before"] = torch_path(routed)
    # the two paths agree (float rounding): vectors and confidence
    check = texts[:32]
    got = np.concatenate([alone([t]) for t in check])
    want = np.concatenate([torch_path(alone)([t]) for t in check])
    agreement = {"student_max_abs_diff": float(np.abs(got - want).max())}
    for name, r in built.items():
        a = np.concatenate([r["fast"].route([t])["confidence"] for t in check])
        b = np.concatenate([torch_path(lambda x, f=r["fast"]: f.route(x))([t])["confidence"] for t in check])
        agreement[f"routed {name}: confidence_max_abs_diff"] = float(np.abs(a - b).max())
    index = hnsw(fx.documents) if args.serving else None
    if index is not None:
        calls.update(serving_calls(student, built, fx.documents, index))
    measured = interleaved_seconds(calls, texts, batch_size=1, rounds=args.rounds)
    us = {k: round(v["median"] * 1e6, 1) for k, v in measured["seconds_per_query"].items()}
    ratios: dict[str, Any] = {
        "student numpy / torch": ratio(measured, "student, numpy (shipped)", "student, torch (before)"),
        "model2vec / student numpy": ratio(measured, "model2vec", "student, numpy (shipped)"),
        "model2vec / student torch": ratio(measured, "model2vec", "student, torch (before)")}
    for name in built:
        ratios[f"routed {name}: shipped / student shipped"] = ratio(
            measured, f"routed {name}, shipped", "student, numpy (shipped)")
        ratios[f"routed {name}: before / student before"] = ratio(
            measured, f"routed {name}, before", "student, torch (before)")
        ratios[f"routed {name}: shipped / before"] = ratio(measured, f"routed {name}, shipped", f"routed {name}, before")
    if index is not None:
        for name in built:
            ratios[f"serve routed {name} / serve student"] = ratio(
                measured, f"serve: routed {name} (own bank) + search", "serve: student + search")
            ratios[f"serve routed {name} from the search's results / serve student"] = ratio(
                measured, f"serve: routed {name} from the search's results", "serve: student + search")
        # the same confidence from both lists (a search that finds the bank's exact top 11)
        agreement["serving"] = serving_agreement(student, built, fx.documents, index, texts)
    summary = {k: round(v["median_of_round_ratios"], 3) for k, v in ratios.items()}
    report = {
        "benchmark": "a static student's live query (batch 1): numpy one-text path (shipped) against torch "
                     "(before), alone and routed (nothing sent to the teacher), beside model2vec's encoder",
        "split": f"SciFact {'test' if args.split == 'test' else 'train (dev)'} queries, first {len(texts)}",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor(),
                    "torch_threads": torch.get_num_threads()},
        "agreement": agreement, "microseconds_per_query_median": us, "ratios_median_of_rounds": summary,
        "ratios": ratios, "measured": measured, "total_seconds": round(time.time() - started, 1)}
    for k, v in us.items():
        print(f"{k:55s} {v:8.1f} us")
    for k, v in summary.items():
        print(f"{k:70s} {v:6.3f}")
    out = split_results(RESULTS, args.split, args.out)
    write_result(out, report)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
