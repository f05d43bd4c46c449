"""What Stage A loses when span views come from a sample of a corpus's documents
(`DistillConfig.span_documents`, default 100,000; session 36). Dev only.

`tava run` trains on the corpus's documents plus span views of them, and the teacher embeds every
view: two views of each document cost about a third of embedding the documents (short texts run
~6x faster), for a run that reads at most ~100,000 (transformer) to ~400,000 (static) examples
with its fitted steps. On NQ (2.7M documents) that is 5.4M views. Since session 36 the views are cut
from a seeded sample of at most 100,000 documents; every document is still trained on.

SciFact stands in for a corpus bigger than the cap, harshly (a run here passes over its texts
several times, where on a corpus past the cap it cannot pass once): the student trains on all
5,183 documents and one span view of each (`--fractions 1`) or of a seeded sample of them (0.5,
0.25), corpus only, no generic text, as `tava run` trains without --unlabeled. Scored on SciFact's
dev split (its 809 train queries) and the built-in data, asymmetric nDCG@10 against the teacher's
documents (bench/transfer.py's scoring). Teacher vectors from bench/transfer_data.py's cache.

    python bench/span_sample.py --student static          # ~2 minutes a row here
    python bench/span_sample.py --student transformer     # ~8 minutes a row
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.shared_data import cpu_info, write_result  # noqa: E402
from bench.transfer import DEV_SPLIT, evaluate_student, load_pairs, train_student  # noqa: E402
from bench.transfer_data import TextSet, scifact, spans  # noqa: E402

OUT = ROOT / "bench" / "results" / "span_sample_dev.json"
TEACHER = "all-MiniLM-L6-v2"
# the settings of transfer.json's corpus-only rows (dev/.../corpus-only-rank1 for static)
# max_epochs: only a guard; 25 lets the quarter sample (6,479 texts) train the same 2,000 steps
OPTIONS = {"static": {"steps": 2000, "lr": 1e-3, "alpha_rank": 1.0, "threads": 1, "max_epochs": 25},
           "transformer": {"steps": 1000, "layers": [0, 2, 5], "threads": 1}}


def sampled_spans(docs: TextSet, fraction: float, seed: int) -> tuple[TextSet, np.ndarray]:
    """One span view of each document in a seeded sample (as write_span_dataset samples), and the
    rows of the full span set it keeps (so the cached vectors of all spans serve every fraction)."""
    every = spans(docs, 1)
    if fraction >= 1:
        return every, np.arange(len(every.ids))
    n = int(round(fraction * len(docs.ids)))
    keep_docs = {docs.ids[i] for i in np.random.default_rng(seed).choice(len(docs.ids), n, replace=False)}
    rows = np.array([k for k, sid in enumerate(every.ids) if sid.split("#")[0] in keep_docs])
    return TextSet(every.name, [every.ids[k] for k in rows], [every.texts[k] for k in rows]), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--student", choices=sorted(OPTIONS), default="static")
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.5, 0.25])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    docs = scifact().docs
    doc_texts, doc_vectors, _ = load_pairs(TEACHER, [docs])
    span_texts, span_vectors, _ = load_pairs(TEACHER, [spans(docs, 1)])
    for fraction in args.fractions:
        kept, rows = sampled_spans(docs, fraction, args.seed)
        texts = doc_texts + kept.texts
        vectors = np.concatenate([doc_vectors, span_vectors[rows]])
        with tempfile.TemporaryDirectory() as work:
            student_dir, training = train_student(TEACHER, args.student, texts, vectors, OPTIONS[args.student],
                                                  Path(work))
            scores = evaluate_student(student_dir, TEACHER, DEV_SPLIT, None)
        name = f"{args.student}/spans-of-{fraction:g}-of-documents/seed{args.seed}"
        # read just before writing: rows of another run of this script (another student) are kept
        report = json.loads(args.out.read_text()) if args.out.is_file() else {"bench": "span_sample", "rows": {}}
        report["cpu"] = cpu_info()
        report["rows"][name] = {"documents": len(docs.ids), "span_views": len(kept.ids), "fraction": fraction,
                                "training_texts": len(texts), "train_seconds": training["train_seconds"],
                                "best_validation_cosine": training["best_validation_cosine"],
                                "scores": scores, "options": OPTIONS[args.student]}
        print(name, {k: v.get("retention") for k, v in scores.items() if isinstance(v, dict)})
        write_result(args.out, report)


if __name__ == "__main__":
    main()
