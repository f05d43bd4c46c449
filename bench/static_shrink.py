"""Dev probe: does a static student from generic text transfer better when each token's learned change is
shrunk by how often training saw it?

A static student is a table of token vectors. Trained on generic text, a token the text shows often gets a
well-estimated new vector; a rare one gets a few noisy steps; an unseen one keeps its model2vec start -- while
the shared projection moved on with the others. Domain queries (SciFact claims) lean on exactly the rare
tokens. The probe trains the student once (the transfer.py recipe: 20,000 generic passages + a span view
each, 2,000 steps, lr 1e-3) and then rewrites the folded table (weights and projection folded in) per
variant:

- ``trained``: as trained (the baseline, transfer.json's m2v-spans-lr001 row);
- ``start``: the model2vec start, untrained;
- ``shrink-k``: ``start + n/(n+k) * (trained - start)``, n = the token's count in the training text;
- ``mapped-k``: the same blend, but towards a linear map of the start (ridge, fitted on the frequent
  tokens' start -> trained rows) instead of the start itself, so rare tokens move the way frequent ones did.

Dev only (SciFact's 809 train queries, the built-in data); writes bench/results/static_shrink_dev.json.

    python bench/static_shrink.py
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.transfer import DEV_SPLIT, judged, load_pairs, score, training_sets  # noqa: E402
from bench.transfer_data import BENCH_HOME, builtin, scifact, teacher_vectors  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "static_shrink_dev.json"


def token_counts(student, texts: list[str]) -> np.ndarray:
    """How often each table row appears in the training texts (as the student tokenises them)."""
    counts = np.zeros(student.embeddings.shape[0], dtype=np.int64)
    for start in range(0, len(texts), 4096):
        ids = student.prepare(texts[start:start + 4096])["input_ids"].numpy()
        counts += np.bincount(ids, minlength=len(counts))
    return counts


def encode(student, table: np.ndarray, texts: list[str]) -> np.ndarray:
    """Mean of the folded rows of each text's tokens, unit length (what the saved model2vec encoder does)."""
    features = student.prepare(texts)
    ids, offsets = features["input_ids"].numpy(), features["offsets"].numpy()
    sums = np.add.reduceat(table[ids], offsets, axis=0) if len(ids) else np.zeros((len(texts), table.shape[1]))
    lengths = np.diff(np.append(offsets, len(ids)))
    sums[lengths == 0] = 0.0
    return sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)


def ridge_map(x: np.ndarray, y: np.ndarray, alpha: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """y ~ x @ w + b, closed form."""
    mx, my = x.mean(0), y.mean(0)
    xc = x - mx
    w = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - my))
    return w, my - mx @ w


def main() -> None:
    import argparse

    import torch

    from tava_core.distill import DistillConfig
    from tava_core.distill.run import build_student
    from tava_core.distill.trainer import Trainer, check_corpus_size
    from tava_core.encoders import resolve_model_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="all-MiniLM-L6-v2", choices=["all-MiniLM-L6-v2", "all-mpnet-base-v2"])
    parser.add_argument("--spans", action=argparse.BooleanOptionalAction, default=True,
                        help="a span view of each passage in the training text (mpnet's are not cached by default)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    teacher = args.teacher
    torch.set_num_threads(args.threads)
    texts, vectors, _ = load_pairs(teacher, training_sets("generic", "scifact", 20000, args.spans))
    config = DistillConfig(teacher=teacher, student="static", span_views=0, steps=2000, batch_size=64, lr=1e-3,
                           eval_every=333, patience=3, warmup_steps=100, max_length=128, threads=2,
                           validation_fraction=0.02, checkpoint_every=2000)
    split = check_corpus_size(len(texts), config)
    student = build_student(config, resolve_model_path(teacher), vectors.shape[1],
                            cache_dir=BENCH_HOME / "cache" / "model2vec" / teacher, texts=texts)
    start_table = student.folded_table()
    counts = token_counts(student, [texts[i] for i in split.train])
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tava-shrink-") as tmp:
        Trainer(student, texts, vectors, config, Path(tmp) / "checkpoints", split=split, progress=True).train()
    seconds = time.perf_counter() - began
    trained_table = student.folded_table()

    frequent = counts >= 50
    w, b = ridge_map(start_table[frequent], trained_table[frequent])
    mapped_start = start_table @ w + b
    variants: dict[str, np.ndarray] = {"trained": trained_table, "start": start_table,
                                       "start-mapped": mapped_start}
    for k in (1, 5, 20, 100):
        keep = (counts / (counts + k))[:, None]
        variants[f"shrink-{k}"] = start_table + keep * (trained_table - start_table)
        variants[f"mapped-{k}"] = mapped_start + keep * (trained_table - mapped_start)

    sets = [(scifact(), DEV_SPLIT["scifact"]), (builtin()[0], DEV_SPLIT["builtin"])]
    prepared = []
    for data, split_name in sets:
        docs = teacher_vectors(teacher, data.docs, log=False, compute=False)
        all_teacher_q = teacher_vectors(teacher, data.queries, log=False, compute=False)
        if docs is None or all_teacher_q is None:
            print(f"{data.name}: the teacher's vectors are not cached (bench/transfer_data.py); left out")
            continue
        rows = judged(data, split_name)
        teacher_q = all_teacher_q[rows]
        query_texts = [data.queries.texts[k] for k in rows]
        teacher_score = float(score(teacher_q, data, split_name, docs).mean())
        query_counts = np.concatenate([counts[student.prepare([t])["input_ids"].numpy()] for t in query_texts])
        prepared.append((data, split_name, docs, query_texts, teacher_score, query_counts))

    out: dict = {"benchmark": "static_shrink", "phase": "dev", "teacher": teacher, "spans": args.spans, "train_seconds": round(seconds, 1),
                 "training_texts": len(texts), "frequent_tokens_for_map": int(frequent.sum()), "sets": {}, "variants": {}}
    for data, split_name, _, _, teacher_score, query_counts in prepared:
        out["sets"][f"{data.name}/{split_name}"] = {
            "teacher_ndcg_at_10": round(teacher_score, 4),
            "query_tokens_unseen": round(float((query_counts == 0).mean()), 4),
            "query_tokens_seen_under_20": round(float((query_counts < 20).mean()), 4)}
    for name, table in variants.items():
        cells = {}
        for data, split_name, docs, query_texts, teacher_score, _ in prepared:
            value = float(score(encode(student, table, query_texts), data, split_name, docs).mean())
            cells[f"{data.name}/{split_name}"] = {"ndcg_at_10": round(value, 4),
                                                  "retention": round(value / teacher_score, 4)}
        out["variants"][name] = cells
        print(name, {key: cell["retention"] for key, cell in cells.items()}, flush=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results[f"{teacher}/{'spans' if args.spans else 'passages'}"] = out
    RESULTS.write_text(json.dumps(results, indent=1))
    print(json.dumps(out["sets"], indent=1))


if __name__ == "__main__":
    main()
