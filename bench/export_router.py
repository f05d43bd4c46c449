"""A confidence router exported with its query encoder (`tava export --model ROUTER_DIR`): does the
ONNX file route like tava, and what does the confidence cost there?

One run, side by side on the same queries (SciFact's 809 train queries: the dev split; only
vectors and confidences are compared, no relevance labels are read):
- agreement: the exported confidence against tava's RoutedEncoder (fp32 torch student + adapter,
  compiled confidence), max |diff|, and the share of queries both send to the teacher at the
  router's saved threshold, fp32 and int8;
- cost of a query that stays with the student, per query, at batch 64 and batch 1: the exported
  encoder without the router against the exported router (the confidence's share of encoding,
  issue 16's target: <= 10% of the student's encoding), and tava's torch path likewise; the
  exported router against tava's torch routed path. Timings are interleaved rounds with the order
  rotating, reported as the median of per-round ratios (bench/route_cost.py).

    .venv/bin/python bench/export_router.py [--router .tava/artifacts/routers/nightly] [--rounds 15]

The default router is the one `make demo` leaves (the demo student + adapter over
all-MiniLM-L6-v2, calibrated on the built-in data). Writes bench/results/export_router.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from shared_data import ROOT, cpu_info, scifact_train_queries, write_result

sys.path.insert(0, str(Path(__file__).resolve().parent))
from route_cost import interleaved_seconds, ratio  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--router", default=str(ROOT / ".tava" / "artifacts" / "routers" / "nightly"))
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="threads of every side (default: torch's)")
    parser.add_argument("--batch1-queries", type=int, default=128, help="queries timed one at a time")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "export_router.json"))
    args = parser.parse_args()

    import torch

    from tava_core.encoders import load_encoder
    from tava_core.export.config import ExportConfig
    from tava_core.export.query_encoder import export_query_encoder
    from tava_core.export.standalone import ExportedQueryEncoder
    from tava_core.home import TavaHome

    router_dir = Path(args.router)
    if not (router_dir / "router.json").is_file():
        sys.exit(f"{router_dir} is not a router directory: run `make demo` first, or pass --router DIR")
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    router = load_encoder(str(router_dir), cache=False)
    student = router.student
    queries = scifact_train_queries()
    started = time.perf_counter()
    report: dict = {"benchmark": "export_router", "router": str(router_dir), "threads": threads, "cpu": cpu_info(),
                    "queries": len(queries), "split": "SciFact train queries (dev); vectors and confidences only",
                    "signals": list(router.calibration.signals), "threshold": router.threshold.__dict__}
    with tempfile.TemporaryDirectory(prefix="tava-export-router-") as tmp:
        home = TavaHome(Path(tmp) / "home")
        exports: dict[str, ExportedQueryEncoder] = {}
        cards = {}
        for precision in ("fp32", "int8"):
            student_model = json.loads((router_dir / "router.json").read_text())["student"]["spec"]["model"]
            for what, model in (("router", str(router_dir)), ("encoder", student_model)):
                out = Path(tmp) / f"{what}-{precision}"
                cards[f"{what}-{precision}"] = export_query_encoder(
                    ExportConfig(model=model, precision=precision, out=str(out)), home)
                exports[f"{what}-{precision}"] = ExportedQueryEncoder(out, threads=threads)
        report["export"] = {k: {"bytes": c["bytes"], "agreement": c["agreement"], "router": c.get("router")}
                            for k, c in cards.items()}

        # agreement on the dev queries: tava's torch path is the reference
        vectors = student.encode(queries, kind="query")
        confidence = router.confidence(queries, vectors)
        to_teacher = confidence < router.threshold.threshold
        agreement = {"torch_sent_to_teacher": float(to_teacher.mean())}
        for precision in ("fp32", "int8"):
            routed = exports[f"router-{precision}"].route(queries)
            cos = np.sum(routed["vectors"] * vectors, axis=1)
            agreement[precision] = {
                "mean_cosine_vectors": float(cos.mean()),
                "max_abs_diff_confidence": float(np.abs(routed["confidence"] - confidence).max()),
                "confidence_spearman": float(np.corrcoef(np.argsort(np.argsort(routed["confidence"])),
                                                         np.argsort(np.argsort(confidence)))[0, 1]),
                "same_decisions": float(np.mean(routed["to_teacher"] == to_teacher)),
                "sent_to_teacher": float(routed["to_teacher"].mean()),
            }
        report["agreement"] = agreement
        print(json.dumps(agreement, indent=1), flush=True)

        calls = {
            "torch student": lambda batch: student.encode(batch, kind="query"),
            "torch student + confidence": lambda batch: router.confidence(batch, student.encode(batch, kind="query")),
            "exported fp32": lambda batch: exports["encoder-fp32"].encode(batch, batch_size=len(batch)),
            "exported fp32 + confidence": lambda batch: exports["router-fp32"].route(batch, batch_size=len(batch)),
            "exported int8": lambda batch: exports["encoder-int8"].encode(batch, batch_size=len(batch)),
            "exported int8 + confidence": lambda batch: exports["router-int8"].route(batch, batch_size=len(batch)),
        }
        timings = {}
        for batch_size, texts in ((64, queries), (1, queries[:args.batch1_queries])):
            measured = interleaved_seconds(calls, texts, batch_size=batch_size, rounds=args.rounds)
            ratios = {
                "confidence share, torch": ratio(measured, "torch student + confidence", "torch student"),
                "confidence share, exported fp32": ratio(measured, "exported fp32 + confidence", "exported fp32"),
                "confidence share, exported int8": ratio(measured, "exported int8 + confidence", "exported int8"),
                "torch routed / exported fp32 routed": ratio(measured, "torch student + confidence",
                                                             "exported fp32 + confidence"),
                "torch routed / exported int8 routed": ratio(measured, "torch student + confidence",
                                                             "exported int8 + confidence"),
            }
            timings[f"batch_{batch_size}"] = {"measured": measured, "ratios": ratios}
            print(f"batch {batch_size}: " + ", ".join(f"{k} {v['median_of_round_ratios']:.3f}"
                                                      for k, v in ratios.items()), flush=True)
        report["timings"] = timings
    # issue 16: confidence cost <= 10% of the student's encoding (ratio - 1 of the median round ratios)
    report["targets_met"] = {
        f"confidence_cost<=10%_{where}_batch_{b}": [
            round(timings[f"batch_{b}"]["ratios"][f"confidence share, {where}"]["median_of_round_ratios"] - 1, 4),
            timings[f"batch_{b}"]["ratios"][f"confidence share, {where}"]["median_of_round_ratios"] - 1 <= 0.10]
        for where in ("torch", "exported fp32", "exported int8") for b in (64, 1)}
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["load_average_end"] = list(os.getloadavg())
    write_result(Path(args.out), report)
    print(json.dumps(report["targets_met"], indent=1))


if __name__ == "__main__":
    main()
