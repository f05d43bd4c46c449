"""How a cross-family student's projection should start: ridge on how many texts, how much ridge.

A transformer student built from another model's layers (``DistillConfig.student_base``, e.g.
all-MiniLM-L6-v2 for the all-mpnet-base-v2 teacher) starts with its projection at a closed-form map
from its pooled vectors to the teacher's, fitted on a sample of the training text
(``DistillConfig.projection_fit_texts``). That start is most of what the student keeps: on SciFact's
dev queries, ridge on 2,048 texts started at 0.47 of the teacher and 1,500 training steps only
reached 0.50 (bench/results/transfer.json, rows ``minilm6-*``).

This probe fits the same closed form on the base model's own sentence vectors (cached by
bench/transfer_data.py; the student's pooled vectors before normalisation differ only in norm) for a
grid of sample sizes and ridge strengths, and scores SciFact's dev queries mapped into the teacher's
space against the teacher's documents. Dev only (SciFact train split + built-in test): it chooses.

    python bench/projection_start.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.transfer import first, judged, score  # noqa: E402
from bench.transfer_data import builtin, passages, scifact, spans, teacher_vectors  # noqa: E402
from tava_core.adapter.baselines import fit_ridge  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "projection_start.json"
BASE, TEACHER = "all-MiniLM-L6-v2", "all-mpnet-base-v2"


def main() -> None:
    generic = passages(20000)
    sets = [generic, first(spans(generic), 11500)]
    x = np.concatenate([teacher_vectors(BASE, s) for s in sets])
    y = np.concatenate([teacher_vectors(TEACHER, s) for s in sets])
    order = np.random.default_rng(0).permutation(len(x))
    sci = scifact()
    built, _ = builtin()
    dev = {"scifact/train": (sci, "train"), "builtin/test": (built, "test")}
    base_queries = {k: teacher_vectors(BASE, d.queries)[judged(d, split)] for k, (d, split) in dev.items()}
    teacher_docs = {k: teacher_vectors(TEACHER, d.docs) for k, (d, _) in dev.items()}
    teacher_ndcg = {k: float(score(teacher_vectors(TEACHER, d.queries)[judged(d, split)], d, split,
                                   teacher_docs[k]).mean())
                    for k, (d, split) in dev.items()}
    rows = []
    for count in (2048, 4096, 8192, 16384, len(x)):
        sample = order[:count]
        for ridge in (0.001, 0.01, 0.1, 0.3):
            linear = fit_ridge(x[sample], y[sample], alpha=ridge)   # fit_projection's closed form
            row = {"texts": int(count), "ridge": ridge}
            for key, (data, split) in dev.items():
                mapped = linear(base_queries[key])
                row[key] = round(float(score(mapped, data, split, teacher_docs[key]).mean()) / teacher_ndcg[key], 4)
            rows.append(row)
            print(row, flush=True)
    out = {"benchmark": "projection_start", "base": BASE, "teacher": TEACHER, "phase": "dev",
           "training_text": "passages20000 + 11,500 span views (the transfer bench's generic set)",
           "retention": "asymmetric nDCG@10 of mapped base-model queries / the teacher's own", "teacher_ndcg_at_10": teacher_ndcg,
           "rows": rows}
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
