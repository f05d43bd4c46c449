"""Paired Stage B across model families, with the second model's vectors of short span views.

MiniLM (all-MiniLM-L6-v2) queries mapped into all-mpnet-base-v2's space, scored on SciFact with
mpnet's own document vectors. ../shared/data has mpnet vectors of long passages only, so
bench/adapter.py's cross-model adapter never sees a short, query-like text; here mpnet's vectors of
one span view (tava's span maker, ``tava_core/distill/spans.py``) of the first ``--span-texts``
shared passages and of every SciFact document are computed once and cached as chunks outside git
(bench/transfer_data.py's cache, $TAVA_TRANSFER_CACHE), MiniLM's of the same texts too.

Training settings, label-free (never SciFact queries or qrels), each with and without the spans so
the spans' effect is isolated in one run:
- a: generic passages (+ their span view);
- b: a + SciFact documents (+ their span view).
For each: tava's paired adapter (``AdapterConfig(mode="paired")``, 'auto' start, plus the variants
below) and the closed forms (ridge, Procrustes) fitted on the same training pairs (the adapter's
held-out pairs excluded), as bench/transfer.py's fit_adapters does.

Phases keep choosing and reporting apart:
- ``--phase dev``: SciFact train queries (809); prints and stores only dev. Trained adapters are
  cached (``--adapter-cache``) so the test phase scores the very adapters chosen on dev.
- ``--phase test``: SciFact test queries (300) for the variants named by ``--variants`` (the one
  chosen on dev, plus the defaults), read once.
Each cell: nDCG@10 of every map and the 95% paired bootstrap interval of learned - best closed form.

``--selection scifact``: the variants choose (early stopping, keep-learned gate) on label-free in-domain
rows instead of held-out generic pairs (``selection_set``; ``AdapterConfig.selection_*_vectors``), stored as
'<variant>+select'. bench/adapter_cross_sweep.py records every checkpoint of such runs beside dev nDCG.

Choosing rule (dev): the variant with the best mean learned - best closed form over the two span
settings. The reported run (one thread, nice 10; each training 6-19 min on the shared CPU):

    python bench/adapter_cross.py --prepare                       # cache the span vectors (mpnet: ~30 min)
    python bench/adapter_cross.py --phase dev --settings a b --variants default
    python bench/adapter_cross.py --phase dev --settings a+spans b+spans --variants default gate small_lr ranking_only
    python bench/adapter_cross.py --phase test --settings a b --variants default
    python bench/adapter_cross.py --phase test --settings a+spans b+spans --variants default small_lr
    # session 13 (adapters trained by bench/adapter_cross_sweep.py, same cache keys):
    python bench/adapter_cross.py --phase dev --settings a+spans --variants prox3
    python bench/adapter_cross.py --phase dev --settings a+spans b+spans --variants patient --selection scifact
    python bench/adapter_cross.py --phase test --settings a+spans b+spans --variants patient --selection scifact
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

from bench.transfer import first, judged  # noqa: E402
from bench.transfer import score as transfer_score  # noqa: E402
from bench.transfer_data import CACHE, TextSet, passages, scifact, spans, teacher_vectors  # noqa: E402

STUDENT, TEACHER = "all-MiniLM-L6-v2", "all-mpnet-base-v2"
RESULTS = ROOT / "bench" / "results" / "adapter_cross_spans.json"
SPLITS = {"dev": "train", "test": "test"}   # phase -> SciFact qrels split
# The paired defaults these rows were measured with: since then (bench/adapt_selection.py) paired mode
# selects on span rows with a keep-learned gate of 0.005 by default; pinned so the JSON's rows reproduce.
MEASURED_WITH: dict[str, Any] = {"selection_rows": "all", "keep_learned_margin": None}
# Adapter candidates (AdapterConfig overrides on top of mode="paired" and MEASURED_WITH); chosen on dev only.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    # do-no-harm gate judged on the span rows: keep the learned part only if its held-out span
    # retrieval overlap beats the closed-form start's
    "gate": {"selection_rows": "query_like", "keep_learned_margin": 0.0},
    # a tenth of the learning rate: a smaller step away from the linear start
    "small_lr": {"lr": 5e-6},
    # only the ranking term (the teacher's retrieval order over in-batch documents), no pointwise terms
    "ranking_only": {"paired_cosine_weight": 0.0, "contrastive_weight": 0.0},
    # weight decay towards the closed-form start (AdapterConfig.proximal_weight), at three strengths
    "prox0.3": {"proximal_weight": 0.3},
    "prox3": {"proximal_weight": 3.0},
    "prox30": {"proximal_weight": 30.0},
    # the skip path frozen at its closed-form start: only the non-linear correction learns
    "frozen_skip": {"train_skip": False},
    # no early stopping (patience past max_steps / eval_every): every checkpoint is compared on the selection
    # metric -- with --selection scifact the in-domain rows, whose gains in b come late (after step 1,000)
    "patient": {"patience": 31},
}


def text_sets(n_passages: int, n_spans: int) -> dict[str, TextSet]:
    """The training collections (cached chunks are positional: prefixes of the 20,000-passage shuffle)."""
    generic = passages(20000)
    docs = scifact().docs
    return {"passages": first(generic, n_passages), "passage_spans": first(spans(generic), n_spans),
            "docs": docs, "doc_spans": spans(docs)}


SETTINGS = {"a": ["passages"], "a+spans": ["passages", "passage_spans"],
            "b": ["passages", "docs"], "b+spans": ["passages", "passage_spans", "docs", "doc_spans"]}


def load(n_passages: int, n_spans: int, settings: list[str]) -> dict[str, Any]:
    """Both models' vectors of the settings' training collections, and of SciFact's documents and queries."""
    needed = {name for setting in settings for name in SETTINGS[setting]}
    sets = {name: s for name, s in text_sets(n_passages, n_spans).items() if name in needed}
    pairs = {name: (teacher_vectors(STUDENT, s), teacher_vectors(TEACHER, s)) for name, s in sets.items()}
    sci = scifact()
    return {"pairs": pairs, "sizes": {name: len(s.ids) for name, s in sets.items()}, "scifact": sci,
            "queries": {"student": teacher_vectors(STUDENT, sci.queries), "teacher": teacher_vectors(TEACHER, sci.queries)},
            "docs_teacher": teacher_vectors(TEACHER, sci.docs)}


def training_pairs(data: dict[str, Any], setting: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(student, teacher, query_like) rows of one setting; query_like marks the span views."""
    names = SETTINGS[setting]
    x = np.concatenate([data["pairs"][n][0] for n in names]).astype(np.float32)
    y = np.concatenate([data["pairs"][n][1] for n in names]).astype(np.float32)
    mask = np.concatenate([np.full(len(data["pairs"][n][0]), n.endswith("spans")) for n in names])
    return x, y, mask


def selection_set(data: dict[str, Any], setting: str) -> Any:
    """``--selection scifact``: label-free in-domain rows that only choose (``AdapterConfig.selection_*``):
    SciFact documents' span views as queries, mpnet's vectors of the 5,183 documents as the pool. In a no
    SciFact text is trained on, so every span view is a query; in b the span views are training rows, so only
    those among the adapter's held-out pairs (the same split for every variant) are."""
    from tava_core.adapter.config import AdapterConfig
    from tava_core.adapter.data import split_paired
    from tava_core.adapter.selection import SelectionSet

    sci_spans = spans(data["scifact"].docs)
    student, teacher = teacher_vectors(STUDENT, sci_spans), teacher_vectors(TEACHER, sci_spans)
    rows = np.arange(len(student))
    if "doc_spans" in SETTINGS[setting]:
        x, _, mask = training_pairs(data, setting)
        first_span = len(x) - len(student)  # doc spans are the setting's last rows
        held = split_paired(np.arange(len(x), dtype=np.float32)[:, None], x[:, :1], AdapterConfig(mode="paired"),
                            0, mask).heldout_student[:, 0].astype(int)
        rows = np.sort(held[held >= first_span] - first_span)
    return SelectionSet(student[rows], teacher[rows], data["docs_teacher"])


def closed_forms(x: np.ndarray, y: np.ndarray, query_like: np.ndarray) -> dict[str, Any]:
    """Ridge and Procrustes on the adapter's training rows (its held-out pairs excluded; every variant
    keeps AdapterConfig's split, so they are the same rows for all)."""
    from tava_core.adapter.baselines import fit_baselines
    from tava_core.adapter.config import AdapterConfig
    from tava_core.adapter.data import split_paired

    config = AdapterConfig(mode="paired")
    split = split_paired(x, y, config, config.seeds[0], query_like)
    return fit_baselines(split.student, split.teacher)


def fit(x: np.ndarray, y: np.ndarray, query_like: np.ndarray, overrides: dict[str, Any], cache: Path,
        selection: Any = None) -> tuple[Any, dict[str, Any]]:
    """The learned adapter, cached by its inputs, config and selection rows (the test phase scores the adapter
    dev chose)."""
    import torch

    from tava_core.adapter.config import AdapterConfig
    from tava_core.adapter.run import train_adapter_from_arrays
    from tava_core.io import stable_hash

    config = AdapterConfig(mode="paired", **{**MEASURED_WITH, **overrides})
    identity = {"x": stable_hash(x[::97].round(4).tolist(), 16), "n": len(x), "mask": int(query_like.sum()),
                "config": config.model_dump(mode="json")}
    if selection is not None:  # keys of runs without selection rows stay as they were
        identity["selection"] = [len(selection.queries), stable_hash(selection.queries[::37].round(4).tolist(), 16)]
    key = stable_hash(identity, 16)
    path = cache / f"{key}.pt"
    if path.is_file():
        saved = torch.load(path, weights_only=False)
        adapter, info = saved["adapter"], saved["info"]
    else:
        began = time.perf_counter()
        run = train_adapter_from_arrays(x, y, config, query_like=query_like, selection=selection)
        adapter = run.result.adapter
        seed_run = run.report["seed_runs"][0]
        info = {"start": seed_run.get("start"), "start_evidence": seed_run.get("start_evidence"),
                "best_step": run.result.best_step, "steps": run.result.steps, "stopped": run.result.stopped,
                "keep": getattr(run.result, "keep", None), "seconds": round(time.perf_counter() - began, 1)}
        cache.mkdir(parents=True, exist_ok=True)
        torch.save({"adapter": adapter, "info": info}, path)
    adapter.eval()
    return adapter, info


def score(query_vectors: np.ndarray, data: dict[str, Any], split: str) -> np.ndarray:
    """Per-query nDCG@10 of the split's judged SciFact queries against mpnet's documents."""
    return transfer_score(query_vectors, data["scifact"], split, data["docs_teacher"])


def cell(data: dict[str, Any], setting: str, variants: list[str], split: str, cache: Path,
         selection: str | None = None) -> dict[str, Any]:
    """One setting on one split: closed forms and each adapter variant, learned - best closed form (95%);
    with ``selection`` ('scifact'), each variant chooses on in-domain rows (``selection_set``), stored as
    '<variant>+select'."""
    from tava_core.evaluate.metrics import paired_bootstrap

    x, y, mask = training_pairs(data, setting)
    rows = judged(data["scifact"], split)
    queries = data["queries"]["student"][rows]
    closed = {name: score(m(queries), data, split) for name, m in closed_forms(x, y, mask).items()}
    best = max(closed, key=lambda name: float(closed[name].mean()))
    out: dict[str, Any] = {"training_rows": len(x), "span_rows": int(mask.sum()), "best_closed_form": best,
                           "maps": {name: round(float(v.mean()), 4) for name, v in closed.items()}, "learned": {}}
    chooser = selection_set(data, setting) if selection == "scifact" else None
    for variant in variants:
        adapter, info = fit(x, y, mask, VARIANTS[variant], cache, chooser)
        learned = score(adapter.map_numpy(queries), data, split)
        gap = paired_bootstrap(learned, closed[best])
        name = variant if chooser is None else f"{variant}+select"
        chosen_on = None if chooser is None else {"rows": selection, "queries": len(chooser.queries),
                                                  "documents": len(chooser.documents)}
        out["learned"][name] = {"ndcg_at_10": round(float(learned.mean()), 4), "config": VARIANTS[variant],
                                "selection": chosen_on, "minus_best_closed_form": round(gap["mean"], 4),
                                "minus_best_closed_form_95": [round(gap["low"], 4), round(gap["high"], 4)],
                                "ahead": bool(gap["mean"] > 0), "training": info}
    return out


def save(phase: str, report: dict[str, Any], path: Path) -> None:
    """Merge one run into ``path``: per phase, per setting, per variant (runs of other variants or
    settings of the same phase are kept; the closed forms of a setting are deterministic)."""
    results = json.loads(path.read_text()) if path.is_file() else {"benchmark": "adapter_cross_spans"}
    previous = results.get(phase, {}).get("settings", {})
    for setting, new in report["settings"].items():
        new["learned"] = {**previous.get(setting, {}).get("learned", {}), **new["learned"]}
    commands = results.get(phase, {}).get("commands", []) + [report.pop("command")]
    results[phase] = {**report, "settings": {**previous, **report["settings"]}, "commands": commands}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", choices=["dev", "test"], default=None)
    parser.add_argument("--prepare", action="store_true", help="only compute and cache the vectors")
    parser.add_argument("--passages", type=int, default=12500, help="generic passages (<= 20000: shared mpnet vectors)")
    parser.add_argument("--span-texts", type=int, default=10000, help="span views of the first N passages")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--variants", nargs="+", default=["default"], choices=list(VARIANTS))
    parser.add_argument("--selection", choices=["scifact"], default=None,
                        help="choose on label-free in-domain rows (SciFact documents' span views against the "
                             "documents; AdapterConfig.selection_*_vectors) instead of held-out generic pairs")
    parser.add_argument("--adapter-cache", type=Path, default=CACHE / "adapter-cross")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if not args.prepare and args.phase is None:
        parser.error("give --phase dev|test (or --prepare)")
    data = load(args.passages, args.span_texts, args.settings)
    if args.prepare:
        print(json.dumps(data["sizes"]))
        return
    began = time.perf_counter()
    split = SPLITS[args.phase]
    teacher = score(data["queries"]["teacher"][judged(data["scifact"], split)], data, split)
    report = {"phase": args.phase, "split": f"scifact/{split}", "queries": len(teacher),
              "student": STUDENT, "teacher": TEACHER, "teacher_ndcg_at_10": round(float(teacher.mean()), 4),
              "sizes": data["sizes"], "settings": {}}
    for setting in args.settings:
        report["settings"][setting] = cell(data, setting, args.variants, split, args.adapter_cache, args.selection)
        print(f"[{args.phase}] {setting}: " + json.dumps({k: v for k, v in report["settings"][setting].items()
                                                          if k in ("maps", "best_closed_form")})
              + " " + json.dumps({v: (r["ndcg_at_10"], r["minus_best_closed_form_95"], r["training"]["best_step"])
                                  for v, r in report["settings"][setting]["learned"].items()}), flush=True)
    report["seconds"] = round(time.perf_counter() - began, 1)
    report["command"] = " ".join(sys.argv[1:])
    save(args.phase, report, args.results)
    print(f"wrote {args.results} ({args.phase} only)")


if __name__ == "__main__":
    main()
