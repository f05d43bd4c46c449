"""Stage A benchmark: students of all-MiniLM-L6-v2 on SciFact (test split), label-free training.

Settings: (a) generic -- passages of ../shared/data/corpus_passages_en.jsonl.gz only;
          (b) in-domain -- the passages plus SciFact's corpus documents (never its queries/qrels).
For each student: nDCG@10 alone (student queries + student docs) and asymmetric (student queries
vs teacher docs, no adapter), mean cosine to the teacher on the 300 test queries, query
throughput against the teacher (same queries, same batch size), training time; plus a small
table of quality against corpus size and steps.

Teacher vectors (passages, SciFact docs and queries) are computed once by tava's embedding core
and cached under $TAVA_BENCH_HOME (default /tmp/tava-bench-home), so re-runs are free.

    python bench/distill.py --quick          # minutes: small corpus, few steps
    python bench/distill.py                  # the full benchmark (~20 min of training per student)
    python bench/distill.py --only transformer-b --minutes 15   # one real setting-(b) run
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench.distill_data import BENCH_HOME, SCIFACT, prepare  # noqa: E402
from tava_core.distill import DistillConfig, distill  # noqa: E402
from tava_core.encoders import load_encoder  # noqa: E402
from tava_core.home import TavaHome  # noqa: E402
from tava_core.manifest import read_vector_dir  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "distill.json"
TEACHER_NDCG_PUBLISHED = 0.6451


# ------------------------------------------------------------------------------ evaluation

def load_qrels(split: str = "test") -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    lines = (SCIFACT / "qrels" / f"{split}.tsv").read_text().splitlines()
    for line in lines[1:]:
        qid, did, score = line.split("\t")
        qrels.setdefault(qid, {})[did] = int(score)
    return qrels


def ndcg_at_10(query_vectors: np.ndarray, query_ids: list[str], doc_vectors: np.ndarray, doc_ids: list[str],
               qrels: dict[str, dict[str, int]]) -> float:
    """Exact cosine search, BEIR/pytrec_eval nDCG@10 (linear gains), mean over judged queries."""
    q = query_vectors / np.linalg.norm(query_vectors, axis=1, keepdims=True)
    d = doc_vectors / np.linalg.norm(doc_vectors, axis=1, keepdims=True)
    scores = q @ d.T
    top = np.argsort(-scores, axis=1)[:, :10]
    discounts = 1.0 / np.log2(np.arange(2, 12))
    values = []
    for row, qid in enumerate(query_ids):
        rel = qrels.get(qid)
        if not rel:
            continue
        gains = np.array([rel.get(doc_ids[j], 0) for j in top[row]], dtype=np.float64)
        ideal = np.sort(np.array(list(rel.values()), dtype=np.float64))[::-1][:10]
        values.append(float((gains * discounts).sum() / (ideal * discounts[:len(ideal)]).sum()))
    return float(np.mean(values))


def throughput(encoder, texts: list[str], batch_size: int = 64, repeats: int = 3) -> float:
    """Best-of-``repeats`` queries per second (the CPU is shared: the best run is the least disturbed)."""
    encoder.encode(texts[:batch_size], kind="query", batch_size=batch_size)
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        encoder.encode(texts, kind="query", batch_size=batch_size)
        best = max(best, len(texts) / (time.perf_counter() - start))
    return best


class SciFact:
    """One split's queries (test by default; "train" is the dev split), qrels and the teacher's cached vectors
    of queries and documents."""

    def __init__(self, paths: dict[str, Path], split: str = "test") -> None:
        self.qrels = load_qrels(split)
        queries = [json.loads(x) for x in (SCIFACT / "queries.jsonl").read_text().splitlines() if x.strip()]
        judged = [q for q in queries if q["_id"] in self.qrels]   # the split's queries
        self.query_ids = [q["_id"] for q in judged]
        self.query_texts = [q["text"] for q in judged]
        corpus = [json.loads(x) for x in (SCIFACT / "corpus.jsonl").read_text().splitlines() if x.strip()]
        self.doc_ids = [d["_id"] for d in corpus]
        self.doc_texts = [f"{d['title']} {d['text']}" if d.get("title") else d["text"] for d in corpus]
        ids, vectors, _ = read_vector_dir(paths["scifact_corpus_vectors"])
        pos = {i: k for k, i in enumerate(ids)}
        self.teacher_docs = vectors[[pos[i] for i in self.doc_ids]]
        ids, vectors, _ = read_vector_dir(paths["scifact_queries_vectors"])
        pos = {i: k for k, i in enumerate(ids)}
        self.teacher_queries = vectors[[pos[i] for i in self.query_ids]]

    def teacher_ndcg(self) -> float:
        return ndcg_at_10(self.teacher_queries, self.query_ids, self.teacher_docs, self.doc_ids, self.qrels)


def query_scores(encoder, data: SciFact) -> tuple[np.ndarray, dict[str, float]]:  # noqa: ANN001
    """The student's query vectors, their nDCG@10 against the teacher's documents and mean cosine to the
    teacher's query vectors."""
    queries = encoder.encode(data.query_texts, kind="query")
    cos = float(np.mean(np.sum(queries * data.teacher_queries, axis=1) /
                        (np.linalg.norm(queries, axis=1) * np.linalg.norm(data.teacher_queries, axis=1))))
    return queries, {"asymmetric_ndcg10": ndcg_at_10(queries, data.query_ids, data.teacher_docs, data.doc_ids,
                                                     data.qrels), "query_cosine_to_teacher": cos}


def evaluate_student(student_dir: Path, data: SciFact, teacher_qps: float, *, alone: bool) -> dict[str, Any]:
    encoder = load_encoder(str(student_dir), cache=False)
    queries, out = query_scores(encoder, data)
    if alone:
        docs = encoder.encode(data.doc_texts, kind="document", show_progress=True)
        out["alone_ndcg10"] = ndcg_at_10(queries, data.query_ids, docs, data.doc_ids, data.qrels)
    qps = throughput(encoder, data.query_texts)
    out.update({"queries_per_second": qps, "speedup_vs_teacher": qps / teacher_qps,
                "asymmetric_retention": out["asymmetric_ndcg10"] / TEACHER_NDCG_PUBLISHED})
    return out


# ------------------------------------------------------------------------------ runs

def run_config(name: str, kind: str, setting: str, texts: int, steps: int, quick: bool, minutes: float | None,
               paths: dict[str, Path], threads: int | None = None) -> DistillConfig:
    passages, scifact = str(paths["passages"]), str(paths["scifact"])
    # Setting (b) lists SciFact first so max_texts trims passages, never the in-domain documents.
    datasets = [passages] if setting == "a" else [scifact, passages]
    max_texts = texts if setting == "a" else texts + 5183
    common = dict(name=name, datasets=datasets, collections=["texts", "corpus"], max_texts=max_texts, steps=steps,
                  seed=0, time_budget_minutes=minutes, eval_every=max(25, steps // 10),
                  checkpoint_every=max(50, steps // 5), patience=4, warmup_steps=max(1, steps // 20),
                  validation_fraction=0.04, max_epochs=50, threads=threads)
    if kind == "transformer":
        return DistillConfig(student="transformer", layers=[0, 5], projection=True, lr=5e-4,
                             batch_size=16 if quick else 64, alpha_cos=1.0, alpha_mse=1.0, max_length=128, **common)
    # Static: cosine only. Its saved model normalises, and a mean of token vectors cannot have unit
    # norm at every text length, so an MSE term would spend the table's capacity on the norm.
    # Projection on: a shared linear map also moves the tokens the corpus never shows (setting (a)
    # on SciFact: 0.478 -> 0.504 at 12,500 passages); it is folded into the saved table (free at query time).
    return DistillConfig(student="static", lr=5e-3 if not quick else 1e-2, batch_size=128, projection=True,
                         alpha_cos=1.0, alpha_mse=0.0, max_length=256, **common)


PLANS = {
    # name: (kind, setting, passages, steps, full eval of the student alone)
    "quick": [("static", "a", 5000, 600, True), ("static", "b", 5000, 600, True),
              ("transformer", "a", 5000, 60, False), ("transformer", "b", 5000, 60, False)],
    # Static students read 50,000 passages: a step costs them almost nothing, and what they lack is
    # vocabulary coverage (setting (a): 0.504 at 12,500 passages -> 0.537 at 50,000, same 3,000 steps).
    "full": [("transformer", "a", 20000, 3000, True), ("transformer", "b", 20000, 3000, True),
             ("static", "a", 50000, 3000, True), ("static", "b", 50000, 3000, True),
             # quality against corpus size and steps (setting b, transformer)
             ("transformer", "b", 5000, 750, False), ("transformer", "b", 5000, 1500, False),
             ("transformer", "b", 20000, 1500, False)],
    # quality against corpus size and steps, with the static student (minutes per run)
    "scaling": [("static", setting, passages, steps, False) for setting in ("b", "a")
                for passages in (2500, 5000, 12500) for steps in (750, 2000)],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small corpus, few steps (minutes)")
    parser.add_argument("--remeasure", action="store_true",
                        help="re-measure query throughput (and alone nDCG) of the saved students of the "
                             "full results, e.g. on a quieter machine; training is not repeated")
    parser.add_argument("--scaling", action="store_true",
                        help="static students over corpus sizes x steps (quality vs data and steps)")
    parser.add_argument("--only", default=None, help="run only KIND-SETTING[,...], e.g. transformer-b")
    parser.add_argument("--passages", type=int, default=None, help="override the number of passages")
    parser.add_argument("--steps", type=int, default=None, help="override the number of steps")
    parser.add_argument("--minutes", type=float, default=None, help="training time budget per run")
    parser.add_argument("--wait-minutes", type=float, default=0.0,
                        help="wait up to this long for bench/adapter.py's cached passage vectors before embedding")
    parser.add_argument("--no-alone", action="store_true",
                        help="skip 'student alone' nDCG (encoding the 5,183 documents with each student)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (1 helps on a busy shared CPU)")
    parser.add_argument("--home", default=str(BENCH_HOME))
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()

    if args.remeasure:
        remeasure(Path(args.out), Path(args.home), alone=not args.no_alone)
        return
    plan = PLANS["quick" if args.quick else "scaling" if args.scaling else "full"]
    if args.only:  # e.g. "transformer-b" or "transformer-a,transformer-b": the first run of each
        wanted = [tuple(x.split("-")) for x in args.only.split(",")]
        plan = [next(p for p in plan if (p[0], p[1]) == w) for w in wanted]
    plan = [(k, s, args.passages or n, args.steps or st, alone and not args.no_alone) for k, s, n, st, alone in plan]
    started = time.time()
    load_before = os.getloadavg()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    paths = prepare(max(p[2] for p in plan), Path(args.home), progress=True, wait_minutes=args.wait_minutes)
    data = SciFact(paths)
    teacher = load_encoder("all-MiniLM-L6-v2")
    teacher_qps = throughput(teacher, data.query_texts)
    report: dict[str, Any] = {
        "benchmark": "Stage A distillation, SciFact test (300 queries, 5,183 docs)",
        "mode": "quick" if args.quick else "scaling" if args.scaling else "full", "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                                               "load_average_at_start": load_before},
        "teacher": {"model": "all-MiniLM-L6-v2", "ndcg10": data.teacher_ndcg(), "published_ndcg10": TEACHER_NDCG_PUBLISHED,
                    "queries_per_second": teacher_qps},
        "targets": {"transformer_b": "speedup >= 2.5 and asymmetric nDCG@10 >= 0.96 x 0.6451 = 0.619",
                    "static_b": "speedup >= 50 and asymmetric nDCG@10 >= 0.93 x 0.6451 = 0.600",
                    "setting_a": "above every closed-form figure (0.518 best asymmetric)"},
        "runs": [],
    }
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    for kind, setting, passages, steps, alone in plan:
        name = f"bench-{kind}-{setting}-{passages}-{steps}{'-quick' if args.quick else ''}"
        config = run_config(name, kind, setting, passages, steps, args.quick, args.minutes, paths, args.threads)
        print(f"== {name}", flush=True)
        t0 = time.time()
        record = distill(config, TavaHome(args.home), progress=True)
        card = {**json.loads(record.card_path.read_text()), "output": record.output, "reused": record.reused}
        wall = time.time() - t0
        metrics = evaluate_student(Path(card["output"]), data, teacher_qps, alone=alone)
        run = {"name": name, "student": kind, "setting": setting, "passages": passages,
               "training_texts": card["corpus"]["texts"], "steps_requested": steps,
               "steps_run": card["training"]["steps_done"], "stopped": card["training"]["stopped"],
               "best_step": card["validation"]["best_step"], "train_seconds": card["training"]["train_seconds"],
               "wall_seconds": wall, "held_out_cosine": card["validation"]["best_cosine"],
               "held_out_cosine_start": card["validation"]["initial_cosine"], **metrics,
               "output": card["output"], "reused": card["reused"]}
        report["runs"].append(run)
        print(json.dumps(run, indent=1), flush=True)
        report["machine"]["load_average_at_end"] = os.getloadavg()
        report["total_seconds"] = time.time() - started
        save_report(out_path, report)  # after every run: partial results survive
    print(markdown_table(report))


def remeasure(out_path: Path, home: Path, *, alone: bool) -> None:
    """Evaluate the saved students of the 'full' results again (same weights), teacher speed first."""
    saved = json.loads(out_path.read_text())
    report = saved["full"]
    paths = prepare(0, home, progress=False, wait_minutes=0)
    data = SciFact(paths)
    teacher_qps = throughput(load_encoder("all-MiniLM-L6-v2"), data.query_texts)
    report["teacher"]["queries_per_second"] = teacher_qps
    report["machine"]["load_average_at_start"] = os.getloadavg()
    for run in report["runs"]:
        if not Path(run["output"]).is_dir():
            print(f"skip {run['name']}: {run['output']} is gone", flush=True)
            continue
        run.update(evaluate_student(Path(run["output"]), data, teacher_qps, alone=alone or "alone_ndcg10" in run))
        run["remeasured"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        print(json.dumps({k: run[k] for k in ("name", "asymmetric_ndcg10", "speedup_vs_teacher")}), flush=True)
    report["machine"]["load_average_at_end"] = os.getloadavg()
    save_report(out_path, report)
    print(markdown_table(report))


def save_report(path: Path, report: dict[str, Any]) -> None:
    """Results by mode ('quick' / 'full'); runs of earlier invocations are kept unless re-run by name,
    so single runs (--only) accumulate into one file."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        saved = {}
    if "runs" in saved:  # a single-mode file (older layout)
        saved = {saved.get("mode", "quick"): saved}
    previous = saved.get(report["mode"], {}).get("runs", [])
    names = {r["name"] for r in report["runs"]}
    merged = {**report, "runs": [r for r in previous if r["name"] not in names] + report["runs"]}
    saved[report["mode"]] = merged
    saved["table_" + report["mode"]] = markdown_table(merged).splitlines()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(saved, indent=2) + "\n")
    os.replace(tmp, path)


def markdown_table(report: dict[str, Any]) -> str:
    lines = [f"teacher nDCG@10 {report['teacher']['ndcg10']:.4f}, {report['teacher']['queries_per_second']:.0f} q/s",
             "| student | setting | texts | steps | held-out cos | query cos | asym nDCG@10 | alone nDCG@10 | speed-up |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["runs"]:
        alone = f"{r['alone_ndcg10']:.4f}" if "alone_ndcg10" in r else "-"
        lines.append(f"| {r['student']} | {r['setting']} | {r['training_texts']} | {r['steps_run']} | "
                     f"{r['held_out_cosine']:.4f} | {r['query_cosine_to_teacher']:.4f} | {r['asymmetric_ndcg10']:.4f} | "
                     f"{alone} | {r['speedup_vs_teacher']:.1f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
