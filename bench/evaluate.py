"""Benchmark `tava evaluate` on BEIR SciFact: the teacher's nDCG@10 must be 0.6451 (exact search).

Runs the real CLI (`tava evaluate`, i.e. the Prefect flow) in a subprocess, then copies the
figures from its report into bench/results/evaluate.json: nDCG@10, recall@100, MRR@10, query
throughput, mteb-vs-numpy agreement, and the Matryoshka / quantisation rows.

    python bench/evaluate.py                 # full SciFact test split (~4 min of teacher encoding on 2 cores, once)
    python bench/evaluate.py --quick         # 50 test queries over a 300-document cut (no 0.6451 check)
    python bench/evaluate.py --student DIR --adapted DIR   # add the other modes
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tava_core.io import write_json  # noqa: E402  (atomic: bench results are never half-written)

SCIFACT = Path(os.environ.get("TAVA_SHARED_DATA", ROOT.parent / "shared" / "data")) / "beir" / "scifact"
EXPECTED_NDCG = 0.6451


def quick_subset(source: Path, out: Path, n_queries: int = 50, n_docs: int = 300) -> Path:
    """A small BEIR dir: the first test queries, their judged documents, and other documents."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "qrels").mkdir(exist_ok=True)
    lines = (source / "qrels" / "test.tsv").read_text().splitlines()
    header, pairs = lines[0], [line.split("\t") for line in lines[1:] if line.strip()]
    keep_q = list(dict.fromkeys(p[0] for p in pairs))[:n_queries]
    pairs = [p for p in pairs if p[0] in set(keep_q)]
    judged = {p[1] for p in pairs}
    docs = []
    with open(source / "corpus.jsonl") as handle:
        for line in handle:
            record = json.loads(line)
            if record["_id"] in judged or len(docs) < n_docs - len(judged):
                docs.append(line)
    (out / "corpus.jsonl").write_text("".join(docs))
    queries = [line for line in open(source / "queries.jsonl") if json.loads(line)["_id"] in set(keep_q)]
    (out / "queries.jsonl").write_text("".join(queries))
    (out / "qrels" / "test.tsv").write_text("\n".join([header] + ["\t".join(p) for p in pairs]) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small SciFact cut instead of the full test split")
    parser.add_argument("--home", default=str(ROOT / ".tava"), help="tava home (vectors are cached there)")
    parser.add_argument("--student", default=None)
    parser.add_argument("--adapted", default=None)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "evaluate.json"))
    args = parser.parse_args()
    if not SCIFACT.is_dir():
        sys.exit(f"SciFact not found at {SCIFACT} (set TAVA_SHARED_DATA)")

    dataset = SCIFACT
    if args.quick:
        dataset = quick_subset(SCIFACT, Path(args.home) / "bench-data" / "scifact-quick")
    command = [sys.executable, "-m", "flows.cli", "--home", args.home, "evaluate", "--dataset", str(dataset),
               "--split", "test", "--run", "bench-scifact" + ("-quick" if args.quick else ""),
               "--matryoshka-dims", "256", "--matryoshka-dims", "128", "--matryoshka-dims", "64"]
    if args.student:
        command += ["--student", args.student]
    if args.adapted:
        command += ["--adapted", args.adapted]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
           "PREFECT_LOGGING_LEVEL": "WARNING",
           # a loaded shared machine can take minutes to start the ephemeral Prefect server
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": os.environ.get(
               "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")}
    cached_before = sorted(str(p.parent) for p in Path(args.home).glob("vectors/*/corpus/*/manifest.json"))
    began = time.perf_counter()
    completed = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - began
    if completed.returncode != 0:
        sys.exit(f"tava evaluate failed (exit {completed.returncode})")
    cached_after = sorted(str(p.parent) for p in Path(args.home).glob("vectors/*/corpus/*/manifest.json"))
    result = json.loads(completed.stdout[completed.stdout.index("{"):])
    report = json.loads(Path(result["files"]["json"]).read_text())
    teacher = next(r for r in report["rows"] if r["mode"] == "teacher/teacher" and r["variant"] == "full")
    figures = {
        "benchmark": "evaluate", "quick": args.quick, "dataset": report["dataset"], "command": " ".join(command[1:]),
        "wall_seconds": round(seconds, 1),
        # False on a first run: wall_seconds then includes encoding the whole corpus
        "corpus_vectors_cached": bool(cached_before) and set(cached_after) <= set(cached_before),
        "teacher": {k: teacher[k] for k in ("ndcg_at_10", "recall_at_100", "mrr_at_10")},
        "expected_teacher_ndcg_at_10": None if args.quick else EXPECTED_NDCG,
        "teacher_ndcg_matches": None if args.quick else round(teacher["ndcg_at_10"], 4) == EXPECTED_NDCG,
        "mteb_check": report["mteb_check"],
        "query_throughput": {role: {"queries_per_second": round(r["queries_per_second"], 1),
                                    "batch_size": r["batch_size"], "queries": r["queries"]}
                             for role, r in report["throughput"].items()},
        "rows": [{k: row[k] for k in ("mode", "variant", "dim", "ndcg_at_10", "recall_at_100", "mrr_at_10",
                                      "retention", "source")} for row in report["rows"]],
        "report_dir": report["directory"],
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
    }
    out = Path(args.out if not args.quick else str(Path(args.out).with_name("evaluate-quick.json")))
    write_json(out, figures)
    print(json.dumps({k: figures[k] for k in ("teacher", "teacher_ndcg_matches", "query_throughput",
                                              "wall_seconds")}, indent=2))
    print(f"wrote {out}")
    if not args.quick and not figures["teacher_ndcg_matches"]:
        sys.exit(f"teacher nDCG@10 {teacher['ndcg_at_10']:.4f} != {EXPECTED_NDCG}")


if __name__ == "__main__":
    main()
