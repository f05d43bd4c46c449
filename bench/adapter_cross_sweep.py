"""Dev-only sweep behind bench/adapter_cross.py's variants: every held-out evaluation of a training run,
with SciFact dev nDCG@10 and two label-free retrieval proxies beside the metric the trainer selects on.

Each run trains exactly as ``adapter_cross.py`` does (its ``fit``, same split, same cache key: the
``--phase dev/test`` runs of a variant reuse the adapter trained here) and records, at each evaluation
(every ``eval_every`` steps, step 0 = the closed-form start):
- the trainer's held-out metrics (retrieval overlap@10 of held-out pairs, the selection metric);
- ``dev_ndcg``: SciFact nDCG@10 of the 809 train (dev) queries -- read for the study, never by training;
- ``proxy_generic_*``: label-free retrieval with span views as queries and their SOURCE passage as the one
  relevant document: MiniLM span views of passages 12,500-15,499 (never trained on) against mpnet's vectors
  of passages 12,500-19,999 (7,500 documents, never trained on); nDCG@10 and MRR@10;
- ``proxy_scifact_*``: the same with SciFact documents' span views against mpnet's 5,183 SciFact documents
  (label-free): in a, 2,000 of them (no SciFact text is trained on); in b, those among the adapter's
  held-out pairs (the rest are training rows). ``proxy_scifact_overlap``: retrieval overlap@10 of the same
  rows (mapped vs mpnet's own span vector, top-10 among the SciFact documents), the trainer's existing
  metric on in-domain rows and documents.
Output: bench/results/adapter_cross_sweep.json (one entry per run, merged). Dev only: no test query is read.

    python bench/adapter_cross_sweep.py --setting a+spans --variant prox3
    python bench/adapter_cross_sweep.py --setting b+spans --variant patient --selection scifact
    python bench/adapter_cross_sweep.py --summarise      # Spearman of each candidate with dev, per run
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.adapter_cross import (  # noqa: E402
    STUDENT,
    TEACHER,
    VARIANTS,
    closed_forms,
    fit,
    load,
    score,
    selection_set,
    training_pairs,
)
from bench.transfer import judged  # noqa: E402
from bench.transfer_data import CACHE, passages, scifact, spans, teacher_vectors  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "adapter_cross_sweep.json"
TRAINED_PASSAGES = 12500   # adapter_cross.py's --passages: passages from here on were never trained on


def source_retrieval(mapped: np.ndarray, docs: np.ndarray, relevant: np.ndarray) -> dict[str, float]:
    """nDCG@10 and MRR@10 of mapped queries whose one relevant document is ``docs[relevant[i]]``."""
    q = mapped / np.linalg.norm(mapped, axis=1, keepdims=True)
    d = docs / np.linalg.norm(docs, axis=1, keepdims=True)
    sims = q @ d.T
    own = sims[np.arange(len(q)), relevant]
    rank = (sims > own[:, None]).sum(1) + 1
    hit = rank <= 10
    return {"ndcg": float(np.where(hit, 1 / np.log2(rank + 1), 0).mean()),
            "mrr": float(np.where(hit, 1 / rank, 0).mean())}


def proxies(setting: str) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(student queries, teacher documents, relevant document row, teacher vectors of the queries) of each
    label-free proxy."""
    generic = passages(20000)
    span_set = spans(generic)
    span_vectors = teacher_vectors(STUDENT, span_set)
    doc_vectors = teacher_vectors(TEACHER, generic)[TRAINED_PASSAGES:]
    row = {pid: k for k, pid in enumerate(generic.ids[TRAINED_PASSAGES:])}
    picks = [k for k, sid in enumerate(span_set.ids) if sid.split("#span")[0] in row][:3000]
    out = {"generic": (span_vectors[picks], doc_vectors,
                       np.array([row[span_set.ids[k].split("#span")[0]] for k in picks]), np.zeros((0, 0)))}
    sci = scifact()
    sci_spans = spans(sci.docs)
    sci_rows = {pid: k for k, pid in enumerate(sci.docs.ids)}
    student_spans, teacher_spans = teacher_vectors(STUDENT, sci_spans), teacher_vectors(TEACHER, sci_spans)
    if setting == "a+spans":  # no SciFact row is trained on: a fixed sample of 2,000 span views
        pick = np.random.default_rng(0).choice(len(sci_spans.ids), 2000, replace=False)
    else:  # b: the SciFact span views among the adapter's held-out pairs (never trained on)
        from tava_core.adapter.config import AdapterConfig
        from tava_core.adapter.data import split_paired

        data = load(12500, 10000, [setting])
        x, y, mask = training_pairs(data, setting)
        first_span = len(x) - len(sci_spans.ids)  # b+spans rows: passages, passage spans, docs, doc spans
        is_doc_span = np.arange(len(x)) >= first_span
        held = split_paired(np.arange(len(x))[:, None].astype(np.float32), y[:, :1], AdapterConfig(mode="paired"),
                            0, is_doc_span)
        rows = held.heldout_student[:, 0].astype(int)
        pick = rows[rows >= first_span] - first_span
    out["scifact"] = (student_spans[pick], teacher_vectors(TEACHER, sci.docs),
                      np.array([sci_rows[sci_spans.ids[k].split("#span")[0]] for k in pick]), teacher_spans[pick])
    return out


def summarise(path: Path) -> dict[str, Any]:
    """Per run and pooled over runs: Spearman of each selection candidate with dev nDCG@10 across the
    checkpoints, and the dev nDCG@10 of the checkpoint each candidate would pick (first of equals)."""
    from scipy.stats import spearmanr

    results = json.loads(path.read_text())
    candidates = ["retrieval_overlap@10", "selection_retrieval_overlap@10", "proxy_generic_ndcg", "proxy_generic_mrr",
                  "proxy_scifact_ndcg", "proxy_scifact_mrr", "proxy_scifact_overlap"]
    out: dict[str, Any] = {}
    for key, run in results["runs"].items():
        evals = run["evals"]
        dev = [e["dev_ndcg"] for e in evals]
        row: dict[str, Any] = {"checkpoints": len(evals), "dev_start": dev[0], "dev_max": max(dev),
                               "dev_chosen_by_trainer": run["chosen_by_trainer"]["dev_ndcg"]}
        for name in candidates:
            if all(name in e for e in evals):
                values = [e[name] for e in evals]
                pick = int(np.argmax(values))
                row[name] = {"spearman_with_dev": round(float(spearmanr(values, dev).correlation), 3),
                             "picks_eval": pick, "dev_at_pick": dev[pick]}
        out[key] = row
    results["summary"] = out
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, path)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", choices=["a+spans", "b+spans"])
    parser.add_argument("--variant", choices=list(VARIANTS))
    parser.add_argument("--summarise", action="store_true", help="only add the summary of the stored runs")
    parser.add_argument("--selection", choices=["scifact"], default=None,
                        help="as adapter_cross.py's: choose on in-domain rows (stored as '<variant>+select')")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--adapter-cache", type=Path, default=CACHE / "adapter-cross",
                        help="adapter_cross.py's cache (a cached adapter is loaded, not retrained: no evals)")
    args = parser.parse_args()
    if args.summarise:
        print(json.dumps(summarise(args.results), indent=1))
        return
    if args.setting is None or args.variant is None:
        parser.error("give --setting and --variant (or --summarise)")
    import torch

    from tava_core.adapter import trainer as trainer_module
    from tava_core.adapter.metrics import retrieval_overlap

    torch.set_num_threads(1)
    data = load(12500, 10000, [args.setting])
    split = "train"
    dev_rows = judged(data["scifact"], split)
    dev_queries = data["queries"]["student"][dev_rows]
    probes = proxies(args.setting)
    print({name: len(p[0]) for name, p in probes.items()}, flush=True)
    x, y, mask = training_pairs(data, args.setting)
    procrustes = closed_forms(x, y, mask)["procrustes"]
    evals: list[dict[str, Any]] = []

    def record(adapter: Any, metrics: dict[str, float]) -> None:
        row = {"eval": len(evals), **{k: round(v, 5) for k, v in metrics.items()},
               "dev_ndcg": round(float(score(adapter.map_numpy(dev_queries), data, split).mean()), 5)}
        for name, (queries, docs, relevant, targets) in probes.items():
            mapped = adapter.map_numpy(queries)
            for metric, value in source_retrieval(mapped, docs, relevant).items():
                row[f"proxy_{name}_{metric}"] = round(value, 5)
            if len(targets):
                row[f"proxy_{name}_overlap"] = round(retrieval_overlap(mapped, targets, docs, 10), 5)
        evals.append(row)
        print(json.dumps(row), flush=True)

    original = trainer_module.AdapterTrainer.validate

    def validate(self: Any) -> dict[str, float]:
        metrics = original(self)
        record(self.generator, metrics)
        return metrics

    trainer_module.AdapterTrainer.validate = validate  # type: ignore[method-assign]
    began = time.perf_counter()
    chooser = selection_set(data, args.setting) if args.selection == "scifact" else None
    adapter, info = fit(x, y, mask, VARIANTS[args.variant], args.adapter_cache, chooser)
    reference = {"dev_ndcg": round(float(score(procrustes(dev_queries), data, split).mean()), 5)}
    for name, (queries, docs, relevant, _) in probes.items():
        reference.update({f"proxy_{name}_{k}": round(v, 5)
                          for k, v in source_retrieval(procrustes(queries), docs, relevant).items()})
    final = round(float(score(adapter.map_numpy(dev_queries), data, split).mean()), 4)
    name = args.variant if chooser is None else f"{args.variant}+select"
    entry = {"setting": args.setting, "variant": name, "config": VARIANTS[args.variant],
             "procrustes": reference, "chosen_by_trainer": {"dev_ndcg": final, **info},
             "evals": evals, "seconds": round(time.perf_counter() - began, 1)}
    results = json.loads(args.results.read_text()) if args.results.is_file() else {"benchmark": "adapter_cross_sweep"}
    results.setdefault("runs", {})[f"{args.setting}/{name}"] = entry
    tmp = args.results.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, args.results)
    print(f"{args.setting}/{name}: dev {final} (Procrustes {reference['dev_ndcg']}); wrote {args.results}")


if __name__ == "__main__":
    main()
