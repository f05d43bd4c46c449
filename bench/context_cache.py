"""The static student's context start with and without its cache, side by side in one run.

A static student starts from the teacher's token vectors in context: one teacher pass over a seeded
sample of the training text (``static_context_tokens``, 400,000 tokens by default). Since session 43
that pass is kept in the teacher's cache directory per text, sample and window
(``context_table.cached_token_sums``), so a second static student of the same text -- another blend
partner, weight or learning rate -- starts from it. This times the first (cold) and a second (warm)
start of the same student on SciFact's documents, and checks the two tables are identical.

    python bench/context_cache.py [--teacher all-MiniLM-L6-v2] [--tokens 400000]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from shared_data import ROOT, SCIFACT, write_result  # noqa: E402  (sets sys.path)

OUT = ROOT / "bench" / "results" / "context_cache.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="all-MiniLM-L6-v2")
    parser.add_argument("--tokens", type=int, default=400_000)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    import torch

    from tava_core.distill.students import StaticStudent, _model2vec_table
    from tava_core.encoders import load_encoder, resolve_model_path

    teacher_dir = resolve_model_path(args.teacher)
    dim = load_encoder(args.teacher).dim
    corpus = [json.loads(line) for line in (SCIFACT / "corpus.jsonl").open()]
    texts = [(d.get("title", "") + " " + d["text"]).strip() for d in corpus]
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        _model2vec_table(teacher_dir, Path(cache), [])   # as in a tava home: model2vec's table already cached
        tables = []
        for label in ("cold", "warm"):
            start = time.perf_counter()
            student = StaticStudent.from_teacher(teacher_dir, static_dim=None, projection=True, teacher_dim=dim,
                                                 init="context", texts=texts, context_tokens=args.tokens,
                                                 cache_dir=Path(cache))
            seconds = time.perf_counter() - start
            tables.append(student.embeddings.detach().clone())
            rows.append({"start": label, "seconds": round(seconds, 2)})
            print(f"{label}: {seconds:.1f} s", flush=True)
        entry_bytes = sum(p.stat().st_size for p in Path(cache).rglob("*") if p.is_file())
    identical = bool(torch.equal(tables[0], tables[1]))
    report = {"benchmark": "context_cache", "teacher": args.teacher, "texts": len(texts), "tokens": args.tokens,
              "rows": rows, "speedup_warm_over_cold": round(rows[0]["seconds"] / max(rows[1]["seconds"], 1e-9), 1),
              "tables_identical": identical, "cache_bytes": entry_bytes,
              "note": "model2vec's table of the teacher is cached before both (as in a tava home after its first run)"}
    write_result(args.out, report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
