"""Does the label-free score (the teacher's own top 10 as judgements) track the labelled one?

`tava run` on a corpus without qrels scores every system against the teacher's own top 10 for
query-like texts (`tava_core.evaluate.judgements`). That figure is only useful if it orders systems
as their labelled retention does. This bench takes a labelled set (an ingested BEIR dataset in a tava
home, its dev split) and several trained query encoders (students, students + adapters, blends), and
scores each, queries by the system against the teacher's documents, three ways:
- labelled: nDCG@10 on the split's qrels, as a share of the teacher's (retention);
- label-free, the split's own queries judged by the teacher (a query log without labels);
- label-free, span views of the documents (what `tava run` uses when there are no queries at all).
Then the rank and linear correlation of the label-free figures with retention across the systems.

    python bench/label_free.py --home HOME --dataset scifact --split train \\
        --system NAME=ENCODER ...   # an encoder: a student, adapter or blend directory
    # -> bench/results/label_free_dev.json (the dev split only: nothing here is a test figure)
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from shared_data import ROOT, write_result


def judged(query_ids: list[str], queries: np.ndarray, doc_ids: list[str], documents: np.ndarray) -> dict:
    from tava_core.evaluate.judgements import teacher_top_k

    return {qid: dict.fromkeys(top, 1) for qid, top in zip(query_ids, teacher_top_k(query_ids, queries, doc_ids,
                                                                                     documents, 10), strict=True)}


def ndcg(queries: np.ndarray, documents: np.ndarray, query_ids: list[str], doc_ids: list[str], qrels: dict) -> float:
    from tava_core.evaluate import metrics as M

    return float(M.retrieval_metrics(M.ScoreMatrix.cosine(queries, documents), query_ids, doc_ids, qrels)["ndcg_at_10"])


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return round(float(spearmanr(a, b).statistic), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", required=True, help="tava home holding the ingested dataset and its teacher vectors")
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--split", default="train", help="the dev split (SciFact: train, 809 queries)")
    parser.add_argument("--teacher", default="all-MiniLM-L6-v2")
    parser.add_argument("--system", action="append", required=True, help="NAME=ENCODER (student, adapter or blend dir)")
    parser.add_argument("--spans", type=int, default=300, help="span views judged (one each of as many documents)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "label_free_dev.json"))
    args = parser.parse_args()
    if args.split == "test":
        raise SystemExit("this bench reads the dev split only")

    from tava_core.config import EncoderSpec
    from tava_core.encoders import load_encoder
    from tava_core.evaluate.data import load_retrieval_data
    from tava_core.evaluate.judgements import query_like_texts
    from tava_core.evaluate.vectors import embed_corpus, load_corpus_vectors
    from tava_core.home import TavaHome

    home = TavaHome(args.home)
    data = load_retrieval_data(args.dataset, args.split, home)
    teacher = load_encoder(EncoderSpec(model=args.teacher))
    documents = load_corpus_vectors(data, embed_corpus(data, teacher, home, show_progress=False))
    span_ids, span_texts, spans_what = query_like_texts(data.source, args.spans, seed=0, spans=True)
    query_ids, doc_ids = list(data.query_ids), list(data.corpus_ids)

    def encode(encoder, texts: list[str]) -> np.ndarray:
        return encoder.encode(texts, kind="query")

    teacher_queries, teacher_spans = encode(teacher, data.query_texts), encode(teacher, span_texts)
    by_queries = judged(query_ids, teacher_queries, doc_ids, documents)
    by_spans = judged(span_ids, teacher_spans, doc_ids, documents)
    teacher_ndcg = ndcg(teacher_queries, documents, query_ids, doc_ids, data.qrels)
    rows = []
    for item in args.system:
        name, spec = item.split("=", 1)
        started = time.perf_counter()
        encoder = load_encoder(EncoderSpec(model=spec))
        queries, spans = encode(encoder, data.query_texts), encode(encoder, span_texts)
        labelled = ndcg(queries, documents, query_ids, doc_ids, data.qrels)
        rows.append({"system": name, "encoder": spec, "ndcg_at_10": round(labelled, 4),
                     "retention": round(labelled / teacher_ndcg, 4),
                     "label_free_queries": round(ndcg(queries, documents, query_ids, doc_ids, by_queries), 4),
                     "label_free_spans": round(ndcg(spans, documents, span_ids, doc_ids, by_spans), 4),
                     "seconds": round(time.perf_counter() - started, 1)})
        print({k: rows[-1][k] for k in ("system", "retention", "label_free_queries", "label_free_spans")}, flush=True)
    retention = [r["retention"] for r in rows]
    report = {
        "what": "label-free score (teacher's own top 10 as judgements) against labelled retention, dev split only",
        "dataset": args.dataset, "split": args.split, "queries": len(query_ids), "documents": len(doc_ids),
        "teacher": args.teacher, "teacher_ndcg_at_10": round(teacher_ndcg, 4), "spans": spans_what,
        "rows": rows,
        "spearman_with_retention": {"label_free_queries": spearman(retention, [r["label_free_queries"] for r in rows]),
                                    "label_free_spans": spearman(retention, [r["label_free_spans"] for r in rows])},
        "pearson_with_retention": {
            key: round(float(np.corrcoef(retention, [r[key] for r in rows])[0, 1]), 3)
            for key in ("label_free_queries", "label_free_spans")},
    }
    write_result(Path(args.out), report)
    print(report["spearman_with_retention"], report["pearson_with_retention"])


if __name__ == "__main__":
    main()
