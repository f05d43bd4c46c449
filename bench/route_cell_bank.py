"""The default confidence (``retrieval_cell_margin``) over a two-stage document bank: the same
routing as the full bank, for how much less per query? (issue 16's cost target)

The cell margin reads only the top 11 of the student's result list: the best document and its ten
nearest rivals. A two-stage bank (``doc_pca_dim`` components pick ``doc_rescore`` candidates, whose
exact cosines make the list) finds that top 11 exactly whenever the candidates hold it, while the
full bank reads every document at full dimension per query (5,183 x 384 floats, 8 MB, for SciFact).
At batch 1 that read, not the arithmetic, is most of a routed static query's cost: the bank, the
student's table and its tokenizer evict each other from the core's cache.

Per bank (the full bank first): the routers of bench/route_fastpath_data.py's fixture (a static
student of all-MiniLM-L6-v2, signals fitted on generic passages, SciFact's corpus as the bank,
calibrated on span views), then on the split's queries

- ``agreement_with_full_bank``: the share of queries whose top 11 is the full bank's (same
  documents), the Spearman correlation of the confidences, the largest difference, and the
  overlap of the routed sets at 10% / 20% budgets (each router routing its own least confident
  queries: what a budget does);
- ``cost``: the static student alone and a query through the real ``RoutedEncoder`` that is not
  sent to the teacher (budget 0), interleaved in the same rounds (bench/route_cost.py: rotating
  order, median of the per-round ratios, interquartile range, load), at batch 1 and 64.

Development on SciFact's train queries (``--split dev``, the default); ``--split test`` once.

    python bench/route_cell_bank.py            # -> bench/results/route_cell_bank_dev.json
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.route_cost import interleaved_seconds, ratio  # noqa: E402
from bench.route_fastpath import BATCHES, ROUNDS, uptime  # noqa: E402
from bench.route_fastpath_data import build_fixture  # noqa: E402
from bench.shared_data import write_result  # noqa: E402

RESULTS = ROOT / "bench" / "results"
# (doc_pca_dim, doc_rescore); (0, 0) = the full bank, the product default
BANKS = [(0, 0), (96, 200), (64, 200), (64, 100), (32, 100), (32, 50), (16, 100)]
BUDGETS = (0.1, 0.2)


def bank_name(pca: int, rescore: int) -> str:
    return "full" if not pca else f"pca{pca}-rescore{rescore}"


def build(fx, banks: Sequence[tuple[int, int]], student_dir: Path | None = None) -> tuple[Any, dict[str, Any]]:
    """The static student (the fixture's, or a trained one from ``student_dir``) and, per bank, a
    router with a budget of 0 (nothing goes to the teacher) on the fast path (the default), with
    its signal model."""
    from tava_core.encoders import load_encoder
    from tava_core.route.build import TextVectors, fit_router
    from tava_core.route.config import RouterSettings, ThresholdPolicy
    from tava_core.route.router import RoutedEncoder, threshold_from

    student = load_encoder(str(student_dir or fx.student_dir), cache=False)
    teacher = load_encoder("all-MiniLM-L6-v2")
    reference = TextVectors(fx.reference_texts, student.encode(fx.reference_texts), fx.reference_teacher)
    calibration = TextVectors(fx.calibration_texts, student.encode(fx.calibration_texts, kind="query"),
                              fx.calibration_teacher)
    out: dict[str, Any] = {}
    for pca, rescore in banks:
        settings = RouterSettings(doc_pca_dim=pca, doc_rescore=rescore)       # the default signal
        model, fitted = fit_router(reference, calibration, fx.documents, settings)
        router = RoutedEncoder(student, teacher, model, fitted, threshold_from(fitted, teacher_budget=0.0),
                               weights_sha256="bench", name="bench", routing=ThresholdPolicy(mode="fixed"))
        out[bank_name(pca, rescore)] = {"router": router, "model": model, "settings": settings.model_dump(mode="json")}
    return student, out


def top11(model, unit: np.ndarray) -> list[frozenset[int]]:
    """Each query's 11 best documents as the router's bank finds them (exact cosines; the
    two-stage bank: among its candidates)."""
    from tava_core.route.signals import _bank_scores

    scores = _bank_scores(model, unit)
    picked = np.argpartition(-scores, 10, axis=1)[:, :11]
    if model.doc_rescore and model.doc_exact.size:
        # the two-stage list's columns are candidates: map them back to bank rows
        first = unit @ model.doc_pca @ model.documents.T if model.doc_pca.size else None
        assert first is not None
        candidates = np.argpartition(-first, model.doc_rescore - 1, axis=1)[:, :model.doc_rescore]
        exact = np.einsum("nkd,nd->nk", model.doc_exact[candidates], unit)
        best = np.argpartition(-exact, 10, axis=1)[:, :11]
        return [frozenset(candidates[i, best[i]].tolist()) for i in range(len(unit))]
    return [frozenset(row.tolist()) for row in picked]


def agreement(full: dict[str, Any], other: dict[str, Any], texts: Sequence[str], vectors: np.ndarray
              ) -> dict[str, Any]:
    from scipy.stats import spearmanr

    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    a = full["router"].confidence(list(texts), vectors)
    b = other["router"].confidence(list(texts), vectors)
    same_top = np.mean([x == y for x, y in zip(top11(full["model"], unit), top11(other["model"], unit),
                                               strict=True)])
    routed = {}
    for budget in BUDGETS:
        k = int(round(budget * len(texts)))
        ra, rb = set(np.argsort(a, kind="stable")[:k].tolist()), set(np.argsort(b, kind="stable")[:k].tolist())
        routed[str(budget)] = round(len(ra & rb) / k, 4)
    return {"same_top11_share": round(float(same_top), 4), "confidence_spearman": round(float(spearmanr(a, b)[0]), 4),
            "max_abs_confidence_difference": float(np.abs(a - b).max()), "routed_overlap_at_budget": routed}


def cost(student, router, texts: Sequence[str], rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for batch, n in BATCHES.items():
        calls = {"student": lambda t: student.encode(t, kind="query", batch_size=len(t)),
                 "not_routed": lambda t: router.route(t, batch_size=len(t))}
        measured = interleaved_seconds(calls, list(texts[:n]), batch_size=batch, rounds=rounds)
        r = ratio(measured, "not_routed", "student")
        out[str(batch)] = {"not_routed_over_student": round(r["median_of_round_ratios"], 3),
                           "iqr": [round(x, 3) for x in r["round_ratio_iqr"]],
                           "ratio_of_best": round(r["ratio_of_best"], 3),
                           "us_per_query_median": {k: round(v["median"] * 1e6, 1)
                                                   for k, v in measured["seconds_per_query"].items()},
                           "load_average_after": measured["load_average_after"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=("dev", "test"), default="dev")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--student-dir", type=Path, default=None,
                        help="a trained static student (Stage A output directory) instead of the fixture's "
                             "untrained token table: its vectors lie where the teacher's documents do, so the "
                             "agreement is the one a real router sees (the cost depends on shapes only)")
    parser.add_argument("--no-cost", action="store_true", help="agreement only")
    parser.add_argument("--tag", default="", help="suffix of the output file")
    parser.add_argument("--banks", default=",".join(f"{p}x{r}" for p, r in BANKS),
                        help="comma list of PCAxRESCORE (0x0 = full bank, always measured first)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)     # a shared 2-core machine: one thread, steadier timings
    started = time.time()
    banks = [(0, 0)] + [b for b in (tuple(int(x) for x in s.split("x")) for s in args.banks.split(","))
                        if b != (0, 0)]
    fx = build_fixture()
    texts = fx.test_queries if args.split == "test" else fx.dev_queries
    student, routers = build(fx, banks, args.student_dir)   # type: ignore[arg-type]
    vectors = student.encode(list(texts), kind="query")
    report: dict[str, Any] = {
        "benchmark": "the default confidence (retrieval_cell_margin) over a two-stage bank against the full bank: "
                     "agreement and the cost of a routed static query not sent to the teacher (issue 16)",
        "split": f"SciFact {'test' if args.split == 'test' else 'train (dev)'} queries ({len(texts)})",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "uptime_at_start": uptime()},
        "fixture": {"student": str(args.student_dir) if args.student_dir else
                    "all-MiniLM-L6-v2's input token embeddings as a static table (30,522 x 384)",
                    "documents": int(len(fx.documents)), "calibration_spans": len(fx.calibration_texts)},
        "rounds": args.rounds, "batches": {str(b): n for b, n in BATCHES.items()}, "banks": {}}
    full = routers["full"]
    for name, entry in routers.items():
        row: dict[str, Any] = {"settings": {k: entry["settings"][k] for k in ("doc_pca_dim", "doc_rescore",
                                                                             "doc_bank_size")}}
        if name != "full":
            row["agreement_with_full_bank"] = agreement(full, entry, texts, vectors)
        if not args.no_cost:
            row["cost"] = cost(student, entry["router"], texts, args.rounds)
        print(name, {k: v for k, v in row.items() if k != "settings"}, flush=True)
        report["banks"][name] = row
    report["machine"]["uptime_at_end"] = uptime()
    report["total_seconds"] = round(time.time() - started, 1)
    tag = f"_{args.tag}" if args.tag else ""
    out = RESULTS / (f"route_cell_bank{tag}.json" if args.split == "test" else f"route_cell_bank{tag}_dev.json")
    write_result(out, report)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
