"""Why a `tava run` student falls on long queries: each saved query encoder of one run, per query, by length.

`bench/cli_run.py --dataset scifact-reversed` (SciFact turned around: ~190-word abstracts as queries, ~12-word
claims as documents) showed the mpnet transformer student keeping far less of its teacher than on SciFact
itself, while MiniLM's held. This script reads that run's artifacts and scores, on the dev split only
(the abstracts some train claim cites): the teacher (its query vectors from the run's cache), the
transformer student (with the seconds each encoder takes over the queries, best of 2: ratios
within one run are the speed figures) with its queries cut at several token lengths (``max_length``: the length the student
was trained on vs the teacher's), read whole, and read in windows (its ``window.json``, session 51:
tava_core/encoders/windows.py), student + adapter, the static blend member and the blend -- each query's
nDCG@10 against the teacher's claim vectors (as the run cached them; mpnet's are the shared vectors it imported), its cosine to the
teacher's query vector, and the means per third of the queries by token length. It chooses nothing.

    python bench/long_queries.py --home /work/cache/s50/cli-home --tag mpnet
    python bench/long_queries.py --home /work/cache/s50/cli-home --tag minilm --teacher all-MiniLM-L6-v2
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
from shared_data import ROOT, add_run

from tava_core.config import EncoderSpec
from tava_core.encoders import load_encoder
from tava_core.evaluate.data import RetrievalData, load_retrieval_data
from tava_core.evaluate.vectors import load_corpus_vectors
from tava_core.io import read_vector_shard
from tava_core.route.curves import per_query_ndcg

OUT = ROOT / "bench" / "results" / "long_queries_dev.json"     # one run per --tag (--out to keep another)
DATASET = "scifact-reversed"


def teacher_queries(home: Path, teacher: str, ids: list[str]) -> np.ndarray:
    """The teacher's vectors of the dev queries, as the run's evaluation cached them."""
    shard = next((home / "vectors" / DATASET / "queries-train").glob(f"{teacher}-*/shard-00000.parquet"))
    shard_ids, vectors = read_vector_shard(shard)
    row = {i: k for k, i in enumerate(shard_ids)}
    return vectors[[row[i] for i in ids]].astype(np.float32)


def teacher_documents(home: Path, teacher: str, data: RetrievalData) -> np.ndarray:
    """The teacher's vectors of the claims, as the run embedded (MiniLM) or imported (mpnet) them."""
    return load_corpus_vectors(data, next((home / "vectors" / DATASET / "corpus").glob(f"{teacher}-*"))).astype(np.float32)


def summarize(ndcg: np.ndarray, cosine: np.ndarray, teacher_ndcg: np.ndarray, thirds: list[np.ndarray]) -> dict[str, Any]:
    """Share of the teacher's nDCG@10 and mean cosine to its query vectors, overall and per length third."""
    def share(mask: np.ndarray) -> float:
        return round(float(ndcg[mask].mean() / teacher_ndcg[mask].mean()), 3)

    return {"of_teacher": round(float(ndcg.mean() / teacher_ndcg.mean()), 3),
            "cosine_to_teacher": round(float(cosine.mean()), 3),
            "of_teacher_by_length_third": [share(t) for t in thirds],
            "cosine_by_length_third": [round(float(cosine[t].mean()), 3) for t in thirds]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, required=True, help="the tava home bench/cli_run.py ran in")
    parser.add_argument("--tag", default="mpnet", help="the run's --tag (artifacts scifact-reversed-TAG)")
    parser.add_argument("--teacher", default="all-mpnet-base-v2", help="the run's teacher (its cached vectors)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--windows", type=int, nargs="*", default=[],
                        help="also read the queries in windows of these many tokens (EncoderSpec.window)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    run = f"{DATASET}-{args.tag}"
    artifacts = args.home / "artifacts"
    data = load_retrieval_data(args.home / "bench-data" / DATASET, "train")     # the dev split, as tava run read it
    ids, texts, qrels, doc_ids = data.query_ids, data.query_texts, data.qrels, data.corpus_ids
    documents = teacher_documents(args.home, args.teacher, data)
    teacher = teacher_queries(args.home, args.teacher, ids)
    teacher_ndcg = per_query_ndcg(teacher, documents, ids, doc_ids, qrels)
    student_dir = artifacts / "students" / run
    student = load_encoder(str(student_dir), cache=False)
    tokens = np.array([len(student.tokenizer(t)["input_ids"]) for t in texts])      # type: ignore[attr-defined]
    order = np.argsort(tokens, kind="stable")
    thirds = [np.sort(part) for part in np.array_split(order, 3)]
    # window=0: read whole (up to max_length), as every student did before session 51
    encoders: dict[str, Any] = {f"student, queries cut at {n} tokens": EncoderSpec(model=str(student_dir), max_length=n,
                                                                                   window=0)
                                for n in args.lengths}
    encoders[f"student, full ({student.max_length} tokens)"] = EncoderSpec(model=str(student_dir), window=0)  # type: ignore[attr-defined]
    for n in args.windows:          # the sweep the window rule was chosen from (dev; session 51)
        encoders[f"student, in windows of {n} tokens"] = EncoderSpec(model=str(student_dir), window=n)
    if student.window:                                                          # type: ignore[attr-defined]
        encoders[f"student, in windows of {student.window} tokens (window.json)"] = str(student_dir)  # type: ignore[attr-defined]
    encoders.update({"student + adapter": str(artifacts / "adapters" / run),
                     "static member": str(artifacts / "students" / f"{run}-static"),
                     "blend": str(artifacts / "blends" / run)})
    report: dict[str, Any] = {
        "teacher": args.teacher, "dataset": DATASET, "split": "train (dev)", "run": run, "queries": len(ids),
        "query_tokens": {"median": int(np.median(tokens)), "thirds_max": [int(tokens[t].max()) for t in thirds]},
        "teacher_ndcg10": round(float(teacher_ndcg.mean()), 4), "encoders": {}}
    for name, spec in encoders.items():
        encoder = load_encoder(spec, cache=False)
        encoder.encode(texts[:16], kind="query")            # loading and first-call set-up off the clock
        seconds = []
        for _ in range(2):                                  # best of 2 passes over every query, one process
            start = time.perf_counter()
            vectors = encoder.encode(texts, kind="query")
            seconds.append(time.perf_counter() - start)
        ndcg = per_query_ndcg(vectors, documents, ids, doc_ids, qrels)
        row = summarize(ndcg, np.sum(vectors * teacher, axis=1), teacher_ndcg, thirds)
        row["seconds_best_of_2"] = round(min(seconds), 3)
        report["encoders"][name] = row
        print(f"{name:<36} {row['of_teacher']:.3f} of teacher, cosine {row['cosine_to_teacher']:.3f}; by length "
              f"third {row['of_teacher_by_length_third']}", flush=True)
    add_run(args.out, "long_queries", args.tag, report)


if __name__ == "__main__":
    main()
