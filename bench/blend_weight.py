"""Can the blend's weight be chosen without labels? For a blend that `tava run` made (student + adapter
beside a static student), every weight of 0.1 ... 0.9 is scored two ways on one corpus:
- label-free, as `tava run` now chooses (``tava_core.encoders.blend_weight``): the mean cosine of the
  blended vectors of span views of the corpus's documents to the teacher's vectors of the same views
  (and, beside it, the top-10 overlap of the two result lists, the router's calibration target);
- labelled: nDCG@10 of the blended queries against the teacher's documents, as a share of the teacher's.
The question is whether the label-free argmax lands where the labelled one does. Dev only: SciFact's
train queries (``--split train``) and the built-in data (its one split); no test split is read here.

    python bench/blend_weight.py --home /work/cache/s42/cli-home --dataset builtin --split test \\
        --teacher all-MiniLM-L6-v2 --blend /work/cache/s42/cli-home/artifacts/blends/builtin-std --tag builtin-minilm
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from shared_data import ROOT, add_run  # noqa: E402  (sets sys.path)

from tava_core.adapter.baselines import normalize_rows as unit
from tava_core.distill.spans import sample_span_views
from tava_core.encoders import load_encoder
from tava_core.encoders.blend_weight import VIEW_SEED, VIEWS, WEIGHTS, choose_weight
from tava_core.evaluate.data import load_retrieval_data
from tava_core.evaluate.vectors import embed_corpus, load_corpus_vectors
from tava_core.home import TavaHome
from tava_core.route.calibrate import true_agreement
from tava_core.route.curves import per_query_ndcg

OUT = ROOT / "bench" / "results" / "blend_weight_dev.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", required=True, help="the tava home the blend's run used")
    parser.add_argument("--dataset", required=True, help="ingested dataset name in that home")
    parser.add_argument("--split", required=True, help="dev split: 'train' for SciFact, 'test' for the built-in data")
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--blend", required=True, help="a blend directory: student + adapter, static student")
    parser.add_argument("--tag", required=True)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.split == "test" and args.dataset != "builtin":
        raise SystemExit("dev only: SciFact's dev split is 'train'")

    home = TavaHome(args.home)
    data = load_retrieval_data(args.dataset, args.split, home)
    teacher = load_encoder(args.teacher)
    documents = load_corpus_vectors(data, embed_corpus(data, teacher, home, show_progress=False))
    members = json.loads((Path(args.blend) / "tava_encoder.json").read_text())["members"]
    first, second = (load_encoder(m["encoder"]["model"], cache=False) for m in members)

    views = sample_span_views(data.corpus_ids, data.document_texts, VIEWS, VIEW_SEED)   # tava run's views
    view_t = teacher.encode(views, kind="query")
    view_a, view_s = unit(first.encode(views, kind="query")), unit(second.encode(views, kind="query"))
    choice = choose_weight(view_a, view_s, view_t)
    query_t = teacher.encode(data.query_texts, kind="query")
    query_a = unit(first.encode(data.query_texts, kind="query"))
    query_s = unit(second.encode(data.query_texts, kind="query"))
    teacher_ndcg = float(per_query_ndcg(query_t, documents, data.query_ids, data.corpus_ids, data.qrels).mean())

    rows = {}
    for w in WEIGHTS:
        overlap = true_agreement(unit(w * view_a + (1 - w) * view_s), view_t, documents)["overlap"]
        ndcg = per_query_ndcg(unit(w * query_a + (1 - w) * query_s), documents, data.query_ids, data.corpus_ids,
                              data.qrels).mean()
        rows[f"{w:.1f}"] = {"mean_cosine_views": round(choice.cosine[w], 5), "top10_overlap_views": round(float(overlap.mean()), 4),
                            "retention": round(float(ndcg) / teacher_ndcg, 4)}
        print(w, rows[f"{w:.1f}"], flush=True)
    by_label = max(WEIGHTS, key=lambda w: rows[f"{w:.1f}"]["retention"])
    by_overlap = max(WEIGHTS, key=lambda w: rows[f"{w:.1f}"]["top10_overlap_views"])
    result = {"dataset": args.dataset, "split": args.split, "queries": len(data.query_ids), "teacher": args.teacher,
              "teacher_ndcg_at_10": round(teacher_ndcg, 4), "blend": args.blend, "views": len(views),
              "weights": rows, "chosen_by_cosine": choice.weight, "chosen_by_overlap": by_overlap,
              "best_by_labels": by_label,
              "retention_at": {"cosine's choice": rows[f"{choice.weight:.1f}"]["retention"],
                               "0.5 (the fixed weight before)": rows["0.5"]["retention"],
                               "labelled best": rows[f"{by_label:.1f}"]["retention"]}}
    print(json.dumps({k: result[k] for k in ("chosen_by_cosine", "chosen_by_overlap", "best_by_labels", "retention_at")}))
    add_run(args.out, "blend_weight", f"dev/{args.tag}", result)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
