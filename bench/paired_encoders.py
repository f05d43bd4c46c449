"""Two saved query encoders on the same queries: is one's lead beyond the queries' noise?

`tava run`'s table gives one figure per encoder. This re-scores two saved query encoders (students,
student + adapter directories, blends) per query against the teacher's own document vectors of a tava home
(as `tava run` scored them: the student's queries, the teacher's documents) and reports each one's nDCG@10,
the teacher's, and a 95% paired bootstrap interval of the per-query difference B - A
(tava_core.evaluate.metrics.paired_bootstrap, 10,000 resamples). It chooses nothing: it reads figures already
reported, with their uncertainty beside them.

    python bench/paired_encoders.py --home /work/cache/s54/cli-home --dataset ../shared/data/beir/scifact \\
        --a artifacts/adapters/scifact-static-notitles --b artifacts/adapters/scifact-static-titles \\
        --label static-titles-test
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from shared_data import ROOT, add_run  # noqa: E402  (sets sys.path)

from tava_core.encoders import load_encoder
from tava_core.evaluate.data import load_beir_directory
from tava_core.evaluate.metrics import paired_bootstrap
from tava_core.evaluate.vectors import load_corpus_vectors
from tava_core.home import TavaHome
from tava_core.route.curves import per_query_ndcg

OUT = ROOT / "bench" / "results" / "paired_encoders.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", required=True, help="the tava home whose teacher vectors of the corpus are read")
    parser.add_argument("--dataset", required=True, help="the BEIR directory (queries and qrels)")
    parser.add_argument("--name", default=None, help="the dataset's name in the home (default: the directory's)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--teacher", default="all-MiniLM-L6-v2")
    parser.add_argument("--a", required=True, help="encoder A (relative to --home, or absolute)")
    parser.add_argument("--b", required=True, help="encoder B")
    parser.add_argument("--label", required=True)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    home = TavaHome(args.home)
    data = load_beir_directory(Path(args.dataset), args.split)
    teacher = load_encoder(args.teacher)
    docs = load_corpus_vectors(data, home.vector_dir(args.name or Path(args.dataset).name, "corpus", teacher.name,
                                                     teacher.fingerprint))   # in corpus order, checked complete

    def scores(encoder) -> np.ndarray:
        queries = encoder.encode(data.query_texts, kind="query")
        return per_query_ndcg(queries, docs, data.query_ids, data.corpus_ids, data.qrels)

    teacher_scores = scores(teacher)
    paths = {k: (Path(p) if Path(p).is_absolute() else Path(args.home) / p) for k, p in (("a", args.a), ("b", args.b))}
    per = {k: scores(load_encoder(str(p), cache=False)) for k, p in paths.items()}
    result = {"dataset": str(args.dataset), "split": args.split, "queries": len(data.query_ids),
              "teacher": args.teacher, "teacher_ndcg10": float(teacher_scores.mean()),
              **{k: {"encoder": str(paths[k]), "ndcg10": float(v.mean()),
                     "of_teacher": float(v.mean() / teacher_scores.mean())} for k, v in per.items()},
              "b_minus_a": paired_bootstrap(per["b"], per["a"], resamples=10000)}
    add_run(args.out, "paired_encoders", args.label, result)
    print({k: (round(v["ndcg10"], 4), round(v["of_teacher"], 3)) for k, v in result.items() if k in ("a", "b")},
          result["b_minus_a"])


if __name__ == "__main__":
    main()
