"""Stage B's selection rules on a generic-text student (the nightly-refresh case), dev splits only.

A Stage A student trained on generic text (saved by ``bench/transfer.py --keep-student DIR``) is
adapted on each corpus's label-free text as bench/transfer.py's fit_adapters does (SciFact: its
documents + a span view of each; built-in data: its documents, its unlabeled text + spans of that
text). Question: which label-free rule picks the start (identity / Procrustes / ridge), stops the
learned adapter, and decides whether the learned part is kept at all, so that Stage B never makes a
good student worse and keeps its gains on a weak one?

For each corpus:
- the held-out split is tava's (``split_paired``, seed 0); held-out rows are tagged document or span;
- every closed form is fitted on the training rows and scored: label-free signals (retrieval
  overlap@10 of mapped held-out vectors among teacher vectors, on all / span / document held-out
  rows; a pool of mixed training vectors as the trainer uses, or of training documents only) and dev
  nDCG@10 (student queries mapped, against the teacher's documents; bench/transfer.py's ``score``);
- the learned adapter is trained from each start for the full ``max_steps`` with every evaluation
  logging all signals (and dev nDCG, for this table only); early stopping with patience and the
  final "keep the learned part only if it beats its start" gate are then replayed from that log
  for every candidate rule (training is deterministic, so a run that stops earlier follows the
  same path up to its stop).
No rule reads qrels. Dev splits: SciFact train (809 queries), built-in test. Nothing here scores
SciFact test. Results: bench/results/adapt_selection.json (one row per student); per-query dev scores
of every map go to .tava/adapt-selection/per_query/ (outside git), from which each rule's shipped map
gets 95% paired intervals against the student alone and against its start. ``--table`` prints the rows.
On a CPU shared with other jobs add ``--threads 1`` to transfer.py (this script uses one thread).

    python bench/transfer.py --phase dev --teacher all-MiniLM-L6-v2 --student static --train generic \
        --generic 20000 --steps 2000 --lr 0.001 --tag keep-static \
        --keep-student .tava/adapt-selection/students/minilm-static \
        --results bench/results/adapt_selection_students.json
    python bench/adapt_selection.py --student .tava/adapt-selection/students/minilm-static --starts ridge \
        --max-steps 1000
    # the transformer student (the case the rules are for; the identity start needs its own run):
    python bench/transfer.py --phase dev --teacher all-MiniLM-L6-v2 --student transformer --layers 0 2 5 \
        --train generic --generic 20000 --steps 1000 --batch-size 32 --lr 0.0002 --tag keep-3layers-1000 \
        --keep-student .tava/adapt-selection/students/minilm-3layers-1000 \
        --results bench/results/adapt_selection_students.json
    python bench/adapt_selection.py --student .tava/adapt-selection/students/minilm-3layers-1000 \
        --starts identity procrustes ridge --max-steps 1000

Each row's "rules" holds every start rule (all / span / span_docpool) x stop metric (all / span /
span_docpool / span_cosine) x gate margin (none, 0, 0.005, 0.01), per corpus on its own dev queries.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench.transfer import DEV_SPLIT, adaptation_texts, judged, score  # noqa: E402
from bench.transfer_data import Retrieval, TextSet, builtin, scifact, teacher_vectors  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "adapt_selection.json"
VECTORS = ROOT / ".tava" / "adapt-selection" / "vectors"
# per-query dev nDCG@10 of every map a rule can ship (one .npy per array, outside git): the rules table's
# 95% paired intervals against the student alone and against the start come from these
PER_QUERY = ROOT / ".tava" / "adapt-selection" / "per_query"


# ----------------------------------------------------------------------------- student vectors

def student_vectors(encoder: Any, student_name: str, texts: TextSet, kind: str, tag: str = "") -> np.ndarray:
    """The student's vectors of ``texts`` (cached as one .npy per set: re-running a rule costs no encoding)."""
    path = VECTORS / student_name / f"{texts.name}{tag}.npy"
    if path.is_file():
        cached = np.load(path)
        if len(cached) == len(texts.texts):
            return cached
    path.parent.mkdir(parents=True, exist_ok=True)
    vectors = encoder.encode(texts.texts, kind=kind, batch_size=64).astype(np.float32)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vectors)
    os.replace(tmp, path)
    return vectors


def corpus_pairs(teacher: str, data_name: str, encoder: Any, student_name: str
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(student x, teacher y, is_span mask, set names) of a corpus's adaptation text (fit_adapters' sets,
    encoded as fit_adapters does: kind 'document')."""
    sets, y = adaptation_texts(teacher, data_name)
    x = np.concatenate([student_vectors(encoder, student_name, s, "document") for s in sets])
    is_span = np.concatenate([np.full(len(s.ids), ".spans" in s.name) for s in sets])
    return x, y, is_span, [s.name for s in sets]


# ----------------------------------------------------------------------------- label-free signals

def signals(mapped: np.ndarray, target: np.ndarray, is_span: np.ndarray, pool_mixed: np.ndarray,
            pool_docs: np.ndarray, k: int = 10) -> dict[str, float]:
    """Held-out agreement of mapped vectors with their teacher vectors: retrieval overlap@k on all / span /
    document rows (mixed pool as the trainer's, or documents only) and mean cosine."""
    from tava_core.adapter.metrics import retrieval_overlap

    unit = mapped / np.linalg.norm(mapped, axis=1, keepdims=True)
    cos = (unit * target).sum(1) / np.linalg.norm(target, axis=1)
    out = {"overlap_all": retrieval_overlap(mapped, target, pool_mixed, k),
           "cosine_all": float(cos.mean())}
    for part, rows in (("span", is_span), ("doc", ~is_span)):
        if rows.sum() > k:
            out[f"overlap_{part}"] = retrieval_overlap(mapped[rows], target[rows], pool_mixed, k)
            out[f"overlap_{part}_docpool"] = retrieval_overlap(mapped[rows], target[rows], pool_docs, k)
            out[f"cosine_{part}"] = float(cos[rows].mean())
    return out


def start_overlaps_on_spans(x: np.ndarray, y: np.ndarray, is_span: np.ndarray, k: int = 10, pool_size: int = 5000,
                            heldout: int = 2000, seed: int = 0) -> dict[str, dict[str, float]]:
    """``closed_form_overlaps`` (tava's 'auto' start evidence) with the check slice drawn from span rows only:
    maps fitted on all other rows, pool = mixed other rows (as today) or their documents only."""
    from tava_core.adapter.baselines import fit_baselines
    from tava_core.adapter.metrics import retrieval_overlap

    order = np.random.default_rng(seed).permutation(len(x))
    spans = order[is_span[order]]
    n_check = min(heldout, max(int(is_span.sum()) // 10, 1))
    check = spans[:n_check]
    fit = np.setdiff1d(order, check, assume_unique=True)
    fit = order[np.isin(order, fit)]  # keep the permutation's order
    pool_mixed = y[fit[:pool_size]]
    pool_docs = y[fit[~is_span[fit]][:pool_size]]
    out: dict[str, dict[str, float]] = {}
    for name, linear_map in fit_baselines(x[fit], y[fit]).items():
        mapped = linear_map(x[check])
        out[name] = {"span_overlap": retrieval_overlap(mapped, y[check], pool_mixed, k),
                     "span_overlap_docpool": retrieval_overlap(mapped, y[check], pool_docs, k),
                     "span_cosine": float((mapped * y[check]).sum(1).mean())}
    return out


# ----------------------------------------------------------------------------- learned adapter, logged

def train_logged(x_tr: np.ndarray, y_tr: np.ndarray, x_ho: np.ndarray, y_ho: np.ndarray, ho_span: np.ndarray,
                 pool_docs: np.ndarray, start: str, dev: dict[str, Any], max_steps: int, own: list[str],
                 student_name: str = "") -> dict[str, Any]:
    """Train from ``start`` for ``max_steps`` (no early stop); every evaluation logs tava's held-out metrics,
    this bench's signals, and dev nDCG@10 of the ``own`` corpora (for the table only: no rule reads it).
    The per-query dev nDCG@10 of every evaluation is saved under PER_QUERY (``save_per_query``)."""
    import torch

    from tava_core.adapter.config import AdapterConfig
    from tava_core.adapter.data import AdapterData
    from tava_core.adapter.start import fit_start, init_from_closed_form
    from tava_core.adapter.trainer import AdapterTrainer, build_adapter

    config = AdapterConfig(mode="paired", init=start, max_steps=max_steps, patience=10_000)  # type: ignore[arg-type]
    data = AdapterData(x_tr, y_tr, x_ho, y_ho, paired=True)
    torch.manual_seed(config.seeds[0])
    adapter = build_adapter(config, x_tr.shape[1], y_tr.shape[1])
    init_from_closed_form(adapter, fit_start(x_tr, y_tr, start))

    class Logged(AdapterTrainer):
        def validate(self) -> dict[str, float]:
            metrics = super().validate()
            pool = self._pool(data)
            mapped = self.generator.map_numpy(x_ho)
            metrics.update({f"sig_{k}": v for k, v in signals(mapped, y_ho, ho_span, pool, pool_docs).items()})
            for name, (queries, retrieval, docs) in own_dev.items():
                per_query = score(self.generator.map_numpy(queries), retrieval, DEV_SPLIT[name], docs)
                logged.setdefault(name, []).append(per_query)
                metrics[f"dev_{name}"] = float(per_query.mean())
            return metrics

    logged: dict[str, list[np.ndarray]] = {}
    own_dev = {name: dev[name] for name in own}
    began = time.perf_counter()
    result = Logged(adapter, config=config).fit(data, seed=config.seeds[0])
    for name, rows in logged.items():
        if len(rows) == len(result.evals):  # one validation per evaluation (no rollback re-validated)
            save_per_query(student_name, f"{name}-learned-{start}", np.stack(rows))
    return {"start": start, "seconds": round(time.perf_counter() - began, 1), "steps": result.steps,
            "evals": result.evals}


def replay(evals: list[dict[str, Any]], metric: str, patience: int = 8, decimals: int = 4) -> int:
    """Index of the evaluation early stopping on ``metric`` keeps (tava's rule: greater is better, rounded
    to ``decimals``, ties broken by mean cosine, stop after ``patience`` evaluations without gain)."""
    from tava_core.training import Selection

    selection = Selection(metric, greater_is_better=True, decimals=decimals, tie_break="mean_cosine")
    best, bad = 0, 0
    for i in range(1, len(evals)):
        if selection.is_better(evals[i], evals[best]):
            best, bad = i, 0
        else:
            bad += 1
            if bad >= patience:
                break
    return best


# ----------------------------------------------------------------------------- one corpus

def study_corpus(teacher: str, data: Retrieval, encoder: Any, student_name: str, starts: list[str],
                 max_steps: int, dev_all: dict[str, Any]) -> dict[str, Any]:
    from tava_core.adapter.baselines import fit_baselines
    from tava_core.adapter.config import AdapterConfig
    from tava_core.adapter.start import resolve_init

    x, y, is_span, set_names = corpus_pairs(teacher, data.name, encoder, student_name)
    config = AdapterConfig(mode="paired")
    order = np.random.default_rng(config.seeds[0]).permutation(len(x))  # split_paired's split
    n_hold = int(min(config.holdout_max, max(2, round(len(x) * config.holdout_fraction))))
    hold, train = order[:n_hold], order[n_hold:]
    x_tr, y_tr, x_ho, y_ho, ho_span = x[train], y[train], x[hold], y[hold], is_span[hold]
    pool_rows = np.sort(np.random.default_rng(0).choice(len(y_tr), min(config.retrieval_pool, len(y_tr)),
                                                        replace=False))
    pool_mixed = y_tr[pool_rows]   # the trainer's retrieval-overlap pool (AdapterTrainer._pool)
    pool_docs = y_tr[~is_span[train]][:config.retrieval_pool]

    old_start, old_evidence = resolve_init(config, x_tr, y_tr, paired=True)
    out: dict[str, Any] = {"sets": set_names, "pairs": len(x), "train": len(train), "heldout": n_hold,
                           "heldout_spans": int(ho_span.sum()), "old_auto_start": old_start,
                           "old_auto_evidence": old_evidence,
                           "span_start_evidence": start_overlaps_on_spans(x_tr, y_tr, is_span[train])}
    closed: dict[str, Any] = {}
    for name, linear_map in fit_baselines(x_tr, y_tr).items():
        per_query = score(linear_map(dev_all[data.name][0]), data, DEV_SPLIT[data.name], dev_all[data.name][2])
        save_per_query(student_name, f"{data.name}-closed-{name}", per_query)
        closed[name] = {"signals": signals(linear_map(x_ho), y_ho, ho_span, pool_mixed, pool_docs),
                        "dev_ndcg_at_10": {n: round(float(score(linear_map(q), r, DEV_SPLIT[n], d).mean()), 4)
                                           for n, (q, r, d) in dev_all.items()}}
    out["closed_forms"] = closed
    out["learned"] = {}
    for start in starts:
        if start not in closed:
            continue
        print(f"  {data.name}: learned from {start}", flush=True)
        out["learned"][start] = train_logged(x_tr, y_tr, x_ho, y_ho, ho_span, pool_docs, start, dev_all, max_steps,
                                             [data.name], student_name)
    return out


def dev_sets(teacher: str, encoder: Any, student_name: str) -> dict[str, tuple[np.ndarray, Retrieval, np.ndarray]]:
    """Per corpus: the student's vectors of its dev queries (judged rows), the data, the teacher's documents."""
    out = {}
    for data in (scifact(), builtin()[0]):
        split = DEV_SPLIT[data.name]
        rows = judged(data, split)
        queries = TextSet(data.queries.name, [data.queries.ids[k] for k in rows],
                          [data.queries.texts[k] for k in rows], "query")
        docs = teacher_vectors(teacher, data.docs, log=False, compute=False)
        if docs is None:
            raise SystemExit(f"the teacher's vectors of {data.docs.name} are not cached: python bench/transfer_data.py")
        out[data.name] = (student_vectors(encoder, student_name, queries, "query", f"-{split}"), data, docs)
    return out


def teacher_and_alone(teacher: str, dev: dict[str, Any], student_name: str = "") -> dict[str, Any]:
    out = {}
    for name, (queries, data, docs) in dev.items():
        split = DEV_SPLIT[name]
        tq = teacher_vectors(teacher, data.queries, log=False, compute=False)
        assert tq is not None
        alone = score(queries, data, split, docs)
        save_per_query(student_name, f"{name}-alone", alone)
        out[name] = {"teacher": round(float(score(tq[judged(data, split)], data, split, docs).mean()), 4),
                     "student_alone": round(float(alone.mean()), 4),
                     "split": split, "queries": len(queries)}
    return out


# ----------------------------------------------------------------------------- per-query scores

def save_per_query(student_name: str, key: str, values: np.ndarray) -> None:
    path = PER_QUERY / student_name / f"{key}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, values.astype(np.float32))


def load_per_query(student_name: str, key: str) -> np.ndarray | None:
    path = PER_QUERY / student_name / f"{key}.npy"
    return np.load(path) if path.is_file() else None


def interval(a: np.ndarray, b: np.ndarray) -> list[float]:
    """[mean, low, high] of a - b over the same queries (95% paired bootstrap)."""
    from tava_core.evaluate.metrics import paired_bootstrap

    gap = paired_bootstrap(a, b)
    return [round(gap["mean"], 4), round(gap["low"], 4), round(gap["high"], 4)]


# ----------------------------------------------------------------------------- rules, replayed

AUTO_ORDER = ("identity", "procrustes", "ridge")


def pick_start(evidence: dict[str, float], margin: float) -> str:
    """tava's 'auto' procedure on any evidence: the simplest start unless a fitted one gains ``margin``."""
    order = [name for name in AUTO_ORDER if name in evidence]
    start = order[0]
    for name in order[1:]:
        if evidence[name] >= evidence[start] + margin:
            start = name
    return start


START_RULES = {
    # old: tava's resolve_init (check slice of all training pairs, mixed pool)
    "all": lambda c, m: c["old_auto_start"],
    "span": lambda c, m: pick_start({k: v["span_overlap"] for k, v in c["span_start_evidence"].items()}, m),
    "span_docpool": lambda c, m: pick_start({k: v["span_overlap_docpool"] for k, v in c["span_start_evidence"].items()}, m),
}
STOP_METRICS = {"all": "retrieval_overlap@10", "span": "sig_overlap_span", "span_docpool": "sig_overlap_span_docpool",
                "span_cosine": "sig_cosine_span"}
GATE_MARGINS = (None, 0.0, 0.005, 0.01)


def rule_outcome(corpus: dict[str, Any], start_rule: str, stop: str, gate: float | None, dev_name: str,
                 start_margin: float = 0.03, student_name: str = "") -> dict[str, Any] | None:
    """What a rule ships: its start, the evaluation early stopping keeps, and (with a gate) whether the
    learned part beats the start by ``gate`` on the stop metric (else the start itself); dev nDCG@10, and
    (when the per-query scores were saved) shipped - student alone and shipped - start, 95% paired."""
    start = START_RULES[start_rule](corpus, start_margin)
    if start not in corpus["learned"]:
        return None
    evals = corpus["learned"][start]["evals"]
    metric = STOP_METRICS[stop]
    best = replay(evals, metric)
    kept = gate is None or best == 0 or evals[best][metric] > evals[0][metric] + gate
    chosen = evals[best] if kept else evals[0]
    out = {"start": start, "best_step": evals[best]["step"], "learned_kept": bool(kept and best > 0),
           "dev_ndcg_at_10": round(chosen[f"dev_{dev_name}"], 4),
           "start_dev_ndcg_at_10": round(evals[0][f"dev_{dev_name}"], 4)}
    logged = load_per_query(student_name, f"{dev_name}-learned-{start}")
    alone = load_per_query(student_name, f"{dev_name}-alone")
    if logged is not None and alone is not None and len(logged) == len(evals):
        shipped = logged[best] if kept else logged[0]
        out["minus_alone_95"] = interval(shipped, alone)
        out["minus_start_95"] = interval(shipped, logged[0])
    return out


def rules_table(row: dict[str, Any], student_name: str = "") -> dict[str, Any]:
    """Every start rule x stop metric x gate, per corpus, scored on that corpus's own dev queries."""
    out: dict[str, Any] = {}
    for corpus_name, corpus in row["corpora"].items():
        for start_rule in START_RULES:
            for stop in STOP_METRICS:
                for gate in GATE_MARGINS:
                    key = f"start={start_rule}|stop={stop}|gate={gate}"
                    result = rule_outcome(corpus, start_rule, stop, gate, corpus_name, student_name=student_name)
                    out.setdefault(key, {})[corpus_name] = result if result is not None else {
                        "not_run": f"no learned run from {START_RULES[start_rule](corpus, 0.03)}"}
    return out


def save(name: str, row: dict[str, Any]) -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"rows": {}}
    results["rows"][name] = row
    results["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count()}
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, RESULTS)


def table() -> str:
    """Markdown of every row: per corpus, the student alone, each closed form and each rule's shipped adapter
    as a share of the teacher's dev nDCG@10 (with shipped - alone, 95% paired, where saved)."""
    rows = json.loads(RESULTS.read_text())["rows"]
    lines = []
    for name, row in rows.items():
        corpora = list(row["corpora"])
        lines += [f"\n{name}", "| map | " + " | ".join(corpora) + " |", "|---|" + "---:|" * len(corpora)]

        def share(value: float, corpus: str, alone: dict[str, Any] = row["alone"]) -> str:
            return f"{value:.4f} ({value / alone[corpus]['teacher']:.3f})"

        lines.append("| teacher | " + " | ".join(f"{row['alone'][c]['teacher']:.4f}" for c in corpora) + " |")
        lines.append("| student alone | " + " | ".join(share(row["alone"][c]["student_alone"], c) for c in corpora) + " |")
        for form in ("identity", "procrustes", "ridge"):
            lines.append(f"| {form} (closed form) | " + " | ".join(
                share(row["corpora"][c]["closed_forms"][form]["dev_ndcg_at_10"][c], c) for c in corpora) + " |")
        for rule, cells in row["rules"].items():
            texts = []
            for c in corpora:
                cell = cells[c]
                if "not_run" in cell:
                    texts.append("not run")
                    continue
                kept = f"step {cell['best_step']}" if cell["learned_kept"] else "start kept"
                vs = f", {cell['minus_alone_95']} vs alone" if "minus_alone_95" in cell else ""
                texts.append(f"{share(cell['dev_ndcg_at_10'], c)} {cell['start']}, {kept}{vs}")
            lines.append(f"| {rule.replace('|', ', ')} | " + " | ".join(texts) + " |")
    return "\n".join(lines)


def main() -> None:
    import torch

    if "--table" in sys.argv:
        print(table())
        return

    from tava_core.encoders import load_encoder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", type=Path, required=True, help="a student directory (--keep-student)")
    parser.add_argument("--teacher", default="all-MiniLM-L6-v2")
    parser.add_argument("--starts", nargs="*", default=["identity", "procrustes", "ridge"])
    parser.add_argument("--corpora", nargs="*", default=["scifact", "builtin"])
    parser.add_argument("--max-steps", type=int, default=3000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    name = args.student.name
    encoder = load_encoder(str(args.student), cache=False)
    began = time.perf_counter()
    dev = dev_sets(args.teacher, encoder, name)
    row: dict[str, Any] = {"student": str(args.student), "teacher": args.teacher, "alone": teacher_and_alone(args.teacher, dev, name),
                           "corpora": {}, "uptime_at_start": os.getloadavg()}
    training = args.student / "bench_training.json"
    if training.is_file():
        row["student_training"] = json.loads(training.read_text())
    for data_name in args.corpora:
        data = dev[data_name][1]
        row["corpora"][data_name] = study_corpus(args.teacher, data, encoder, name, args.starts, args.max_steps, dev)
        row["rules"] = rules_table(row, name)
        save(name, {**row, "seconds": round(time.perf_counter() - began, 1)})
    print(json.dumps(row["alone"], indent=1))


if __name__ == "__main__":
    main()
