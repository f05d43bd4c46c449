"""What BEIR's identical-id quirk does to a score, and that tava's scoring undoes it.

In ArguAna and Quora every query is also in the corpus under its own id. BEIR (and mteb for those
sets) leaves that document out of the query's ranking; tava did not before session 35, so every
encoder found the query itself first. This bench rebuilds the situation from SciFact with the
shared all-mpnet-base-v2 vectors (no encoding), scored with the same-id document kept (before) and
left out (now), two ways:
- own document only: each query meets one extra document, itself under its own id. Left out must
  give the clean corpus's figures exactly.
- every query in the corpus (ArguAna's shape): all judged queries join the corpus under their ids;
  left out, a query still competes with the *other* queries, as it does in ArguAna.

    python bench/beir_quirks.py        # -> bench/results/beir_quirks.json (seconds; no model is run)
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import translate_data as td
from shared_data import ROOT, SCIFACT, write_result


def score(queries: np.ndarray, documents: np.ndarray, query_ids: list[str], doc_ids: list[str], qrels,
          ignore: bool) -> dict[str, float]:
    from tava_core.evaluate import metrics as M

    values = M.retrieval_metrics(M.cosine_scores(queries, documents), query_ids, doc_ids, qrels,
                                 ignore_identical_ids=ignore)
    return {k: round(v, 4) for k, v in values.items()}


def own_document_only(queries: np.ndarray, documents: np.ndarray, data, ignore: bool) -> dict[str, float]:
    """Each query ranked over the corpus plus one document: itself, under its own id (cosine 1)."""
    from tava_core.evaluate import metrics as M

    base = M.cosine_scores(queries, documents)
    keys = ("ndcg_at_10", "recall_at_100", "mrr_at_10")
    per_query = {k: [] for k in keys}
    for row, qid in enumerate(data.query_ids):
        scores = np.append(base[row], np.float32(1.0))[None, :]
        values = M.retrieval_metrics(scores, [qid], list(data.corpus_ids) + [qid], data.qrels,
                                     ignore_identical_ids=ignore)
        for k in keys:
            per_query[k].append(values[k])
    return {k: round(float(np.mean(v)), 4) for k, v in per_query.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "beir_quirks.json")
    args = parser.parse_args()
    from tava_core.evaluate import load_retrieval_data

    corpus = dict(zip(*td.mpnet_vectors("scifact/corpus.parquet"), strict=True))
    query_vectors = dict(zip(*td.mpnet_vectors("scifact/queries.parquet"), strict=True))
    rows = {}
    for split, name in (("train", "dev (SciFact train queries)"), ("test", "test")):
        data = load_retrieval_data(SCIFACT, split)
        queries = np.stack([query_vectors[q] for q in data.query_ids])
        documents = np.stack([corpus[d] for d in data.corpus_ids])
        clean = score(queries, documents, data.query_ids, data.corpus_ids, data.qrels, ignore=True)
        own = {rule: own_document_only(queries, documents, data, ignore) for rule, ignore in
               (("kept", False), ("left out", True))}
        # ArguAna's shape: the query is a document too, under its own id, embedded as itself
        with_self = np.concatenate([documents, queries])
        ids = list(data.corpus_ids) + list(data.query_ids)
        kept = score(queries, with_self, data.query_ids, ids, data.qrels, ignore=False)
        left_out = score(queries, with_self, data.query_ids, ids, data.qrels, ignore=True)
        rows[name] = {"queries": len(data.query_ids), "documents": len(data.corpus_ids), "clean corpus": clean,
                      "own document only, kept (before)": own["kept"],
                      "own document only, left out (now)": own["left out"],
                      "own document only, left out equals clean": own["left out"] == clean,
                      "every query in the corpus, kept (before)": kept,
                      "every query in the corpus, left out (now)": left_out}
        print(f"{name}: nDCG@10 clean {clean['ndcg_at_10']:.4f}; own document only: kept "
              f"{own['kept']['ndcg_at_10']:.4f}, left out {own['left out']['ndcg_at_10']:.4f}; every query in "
              f"the corpus: kept {kept['ndcg_at_10']:.4f}, left out {left_out['ndcg_at_10']:.4f}")
    write_result(args.out, {"bench": "beir_quirks", "encoder": "all-mpnet-base-v2 (shared vectors)",
                            "data": "SciFact, each judged query added to the corpus under its own id",
                            "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
