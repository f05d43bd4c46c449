"""Quality that transfers: students of both teachers, generic text vs + the target corpus,
scored on SciFact and the built-in data against the same teacher in the same run.

Every row: teacher (all-MiniLM-L6-v2 / all-mpnet-base-v2) x student (transformer / static) x
training text ("generic": shuffled passages of ../shared/data/corpus_passages_en + one short span
view each; "+target": the same plus the target corpus's documents and a span view of each, never
its queries). Scores are asymmetric nDCG@10 (student queries against the teacher's documents, no
adapter, no routing) next to the teacher's own, with 95% paired bootstrap intervals of the
per-query difference (tava_core.evaluate.metrics.paired_bootstrap), and query speed-up measured
against the same teacher on the same queries in the same run.

Phases keep choosing and reporting apart:
- ``--phase dev``: scored on SciFact's train split (809 queries) and the built-in data; prints
  only those. Settings are chosen here.
- ``--phase test``: the chosen settings, scored once on SciFact test (300 queries) and the
  built-in data.

Teacher vectors come from bench/transfer_data.py's cache (mpnet: ../shared/data's vectors where
they exist). Results accumulate by row name in bench/results/transfer.json.

    python bench/transfer.py --phase dev --teacher all-mpnet-base-v2 --student static --train generic
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, get_args

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.transfer_data import BENCH_HOME, Retrieval, TextSet, builtin, passages, scifact, spans, teacher_vectors  # noqa: E402
from tava_core.adapter.config import AdapterConfig  # noqa: E402
from tava_core.distill.config import DistillConfig  # noqa: E402
from tava_core.evaluate.metrics import cosine_scores, paired_bootstrap, retrieval_metrics  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "transfer.json"
DEV_SPLIT = {"scifact": "train", "builtin": "test"}
TEST_SPLIT = {"scifact": "test", "builtin": "test"}


# ------------------------------------------------------------------------------- training data

def first(text_set: TextSet, count: int | None) -> TextSet:
    """The first ``count`` rows, under the same name (cached chunks are positional, so a prefix of a
    set reuses the chunks computed for the whole)."""
    if count is None or count >= len(text_set.ids):
        return text_set
    return TextSet(text_set.name, text_set.ids[:count], text_set.texts[:count], text_set.kind)


def vocab_set(teacher: str, generic: TextSet, trained_on: list[TextSet], views: int, fraction: float) -> TextSet:
    """``views`` vocabulary views of each generic passage (bench/vocab_views.py): spans with
    ``fraction`` of their words replaced by words carrying the tokens ``trained_on`` rarely contains."""
    from tokenizers import Tokenizer

    from bench.vocab_views import make_vocab_views, rare_words
    from tava_core.encoders import resolve_model_path

    tokenizer = Tokenizer.from_file(str(resolve_model_path(teacher) / "tokenizer.json"))
    words = rare_words([t for s in trained_on for t in s.texts], tokenizer)
    ids, texts = make_vocab_views(generic.ids, generic.texts, words, views, 0, fraction=fraction)
    return TextSet(f"{generic.name}.vocab{views}-f{fraction:g}-{len(words)}w", ids, texts)


def training_sets(train: str, target: str, generic_count: int, with_spans: bool,
                  span_count: int | None = None, span_views: int = 1, *, teacher: str = "",
                  vocab_views: int = 0, vocab_fraction: float = 0.25) -> list[TextSet]:
    """Label-free training text: generic passages (+ ``span_views`` span views of each, or of the first
    ``span_count`` views); '+target' adds the target's documents (+ spans). mpnet embeds a short span at
    ~15 texts/s on this CPU, so its rows take a prefix of the spans (``--span-texts``)."""
    generic = passages(generic_count)
    sets = [generic] + ([first(spans(generic, span_views), span_count)] if with_spans else [])
    if train == "target":
        if target == "scifact":
            docs = scifact().docs
            sets += [docs] + ([spans(docs, span_views)] if with_spans else [])
        else:
            built, unlabeled = builtin()
            sets += [built.docs, unlabeled] + ([spans(unlabeled, span_views)] if with_spans else [])
    if vocab_views:
        sets.append(vocab_set(teacher, generic, list(sets), vocab_views, vocab_fraction))
    return sets


def load_pairs(teacher: str, sets: list[TextSet]) -> tuple[list[str], np.ndarray, list[dict]]:
    texts, blocks, sources = [], [], []
    for text_set in sets:
        vectors = teacher_vectors(teacher, text_set)
        texts += text_set.texts
        blocks.append(vectors)
        sources.append({"dataset": text_set.name, "collection": "texts", "rows": len(text_set.ids),
                        "text_sha256": "", "fingerprint": teacher})
    return texts, np.concatenate(blocks).astype(np.float32), sources


# ------------------------------------------------------------------------------------ training

def train_student(teacher: str, kind: str, texts: list[str], vectors: np.ndarray, options: dict[str, Any],
                  work: Path) -> tuple[Path, dict[str, Any]]:
    """Stage A as tava runs it (build, ridge start of the projection, trainer), saved to ``work``."""
    from tava_core.distill import DistillConfig
    from tava_core.distill.run import build_student, start_projection
    from tava_core.distill.trainer import Trainer, check_corpus_size
    from tava_core.encoders import resolve_model_path

    config = DistillConfig(teacher=teacher, student=kind, span_views=0, **options)
    teacher_dir = resolve_model_path(teacher)
    split = check_corpus_size(len(texts), config)
    cache = BENCH_HOME / "cache" / "model2vec" / teacher
    student = build_student(config, teacher_dir, vectors.shape[1], cache_dir=cache,
                            texts=[texts[i] for i in split.train], progress=True)
    trainer = Trainer(student, texts, vectors, config, work / "checkpoints", split=split, progress=True)
    start_cosine = start_projection(student, texts, vectors, split.train, config)
    began = time.perf_counter()
    result = trainer.train()
    out = student.save(work / "student")
    return out, {"train_seconds": round(time.perf_counter() - began, 1), "start_cosine_ridge": start_cosine,
                 "best_validation_cosine": result.best_validation_cosine, "best_step": result.best_step,
                 "initial_validation_cosine": result.initial_validation_cosine, "texts": len(texts),
                 "config": config.model_dump(mode="json", exclude={"teacher_vectors", "output", "name"})}


def residual_targets(member: Path, texts: list[str], teacher: np.ndarray, weight: float) -> np.ndarray:
    """Targets for a student meant to sit beside ``member`` in a blend: what `tava distill
    --blend-partner` trains towards, computed from this bench's cached teacher vectors."""
    from tava_core.distill.data import TrainingData
    from tava_core.distill.residual import towards_residual
    from tava_core.encoders import load_encoder

    data = TrainingData(texts=texts, vectors=teacher)
    return towards_residual(data, load_encoder(str(member), cache=False), weight, spec=str(member),
                            progress=True).vectors


# ---------------------------------------------------------------------------------- evaluation

def judged(data: Retrieval, split: str) -> list[int]:
    """Rows of data.queries that the split's qrels judge (file order)."""
    return [k for k, qid in enumerate(data.queries.ids) if qid in data.qrels[split]]


def score(query_vectors: np.ndarray, data: Retrieval, split: str, doc_vectors: np.ndarray) -> np.ndarray:
    """Per-query nDCG@10 over the split's judged queries (rows of ``query_vectors`` follow judged())."""
    ids = [data.queries.ids[k] for k in judged(data, split)]
    metrics = retrieval_metrics(cosine_scores(query_vectors, doc_vectors), ids, data.docs.ids, data.qrels[split],
                                per_query=True)
    return metrics["ndcg_at_10_per_query"]


def queries_per_second(encoder, texts: list[str], repeats: int = 2) -> float:
    """Best of ``repeats`` (the CPU is shared: the least disturbed run is the closest to the truth)."""
    encoder.encode(texts[:8], kind="query", batch_size=64)
    best = 0.0
    for _ in range(repeats):
        began = time.perf_counter()
        encoder.encode(texts, kind="query", batch_size=64)
        best = max(best, len(texts) / (time.perf_counter() - began))
    return best


def evaluate_student(student_dir: Path, teacher: str, splits: dict[str, str], speed_texts: list[str] | None,
                     adapters: dict[str, dict[str, Any]] | None = None) -> dict:
    from tava_core.encoders import load_encoder

    student = load_encoder(str(student_dir), cache=False)
    teacher_encoder = load_encoder(teacher)
    out: dict[str, Any] = {}
    for data in (scifact(), builtin()[0]):
        split = splits[data.name]
        docs = teacher_vectors(teacher, data.docs, log=False, compute=False)
        teacher_q = teacher_vectors(teacher, data.queries, log=False, compute=False)
        if docs is None or teacher_q is None:
            out[f"{data.name}/{split}"] = {"not_run": "the teacher's vectors of this set are not cached yet "
                                                      "(python bench/transfer_data.py)"}
            continue
        rows = judged(data, split)
        student_q = student.encode([data.queries.texts[k] for k in rows], kind="query", batch_size=64)
        t, s = score(teacher_q[rows], data, split, docs), score(student_q, data, split, docs)
        gap = paired_bootstrap(s, t)
        out[f"{data.name}/{split}"] = {
            "teacher_ndcg_at_10": round(float(t.mean()), 4), "student_ndcg_at_10": round(float(s.mean()), 4),
            "retention": round(float(s.mean() / t.mean()), 4),
            "retention_95": [round(1 + gap["low"] / float(t.mean()), 4), round(1 + gap["high"] / float(t.mean()), 4)],
            "difference_95": [round(gap["low"], 4), round(gap["high"], 4)], "queries": gap["queries"]}
        if adapters and data.name in adapters:
            out[f"{data.name}/{split}"]["adapted"] = adapted_scores(student_q, adapters[data.name], data, split,
                                                                    docs, t, s)
    if speed_texts is None:
        return out
    # speed: the same queries, teacher then student, in this process
    teacher_qps = queries_per_second(teacher_encoder, speed_texts)
    student_qps = queries_per_second(student, speed_texts)
    out["speed"] = {"teacher_qps": round(teacher_qps, 1), "student_qps": round(student_qps, 1),
                    "speedup": round(student_qps / teacher_qps, 2), "queries": len(speed_texts), "batch_size": 64}
    return out


def adaptation_texts(teacher: str, data_name: str) -> tuple[list[TextSet], np.ndarray]:
    """Label-free text of a corpus that Stage B adapts on, and its teacher vectors: its documents and
    their span views (the built-in data: its documents, its unlabeled text and that text's spans), never
    its queries. Sets whose teacher vectors are not cached are left out (mpnet's built-in unlabeled text)."""
    if data_name == "scifact":
        docs = scifact().docs
        sets = [docs, spans(docs)]
    else:
        built, unlabeled = builtin()
        sets = [built.docs, unlabeled, spans(unlabeled)]
    cached = [(s, teacher_vectors(teacher, s, log=False, compute=False)) for s in sets]
    kept = [(s, v) for s, v in cached if v is not None]
    return [s for s, _ in kept], np.concatenate([v for _, v in kept]).astype(np.float32)


def fit_stage_b(student, teacher: str, data_name: str, config: AdapterConfig) -> tuple[Any, dict[str, Any]]:
    """Stage B (``config``) on one corpus's label-free text (adaptation_texts) on top of ``student``: the
    training run, and what it trained on and started from (as the run's report records it per seed)."""
    from tava_core.adapter.run import train_adapter_from_arrays

    sets, y = adaptation_texts(teacher, data_name)
    texts = [t for s in sets for t in s.texts]
    began = time.perf_counter()
    x = student.encode(texts, kind="document", batch_size=64).astype(np.float32)
    run = train_adapter_from_arrays(x, y, config, name=f"adapt-{data_name}")
    seed_run = next(r for r in run.report["seed_runs"] if "start" in r)
    return run, {"texts": len(texts), "sets": [s.name for s in sets], "start": seed_run["start"],
                 "start_evidence": seed_run["start_evidence"], "best_step": run.result.best_step,
                 "steps": run.result.steps, "stopped": run.result.stopped,
                 "seconds": round(time.perf_counter() - began, 1)}


def fit_adapters(student_dir: Path, teacher: str, config: AdapterConfig) -> dict[str, dict[str, Any]]:
    """Stage B (``config``: paired, tava's defaults but for the start) on each corpus's label-free text
    (the nightly-refresh case: a generic student, new documents): the learned adapter and every closed
    form fitted on the same training pairs, so the learned part is measured against its own start."""
    from tava_core.adapter.baselines import fit_baselines
    from tava_core.encoders import load_encoder

    student = load_encoder(str(student_dir), cache=False)
    fitted: dict[str, dict[str, Any]] = {}
    for data_name in ("scifact", "builtin"):
        run, info = fit_stage_b(student, teacher, data_name, config)
        fitted[data_name] = {"adapter": run.result.adapter, "start": info["start"], "info": info,
                             "closed_forms": fit_baselines(run.data.student, run.data.teacher)}
    return fitted


def adapted_scores(student_q: np.ndarray, fitted: dict[str, Any], data: Retrieval, split: str,
                   docs: np.ndarray, teacher_scores: np.ndarray, student_scores: np.ndarray) -> dict[str, Any]:
    """nDCG@10 of the student's queries through each closed form and the learned adapter; share of the
    student's gap to the teacher each recovers; the learned adapter against its own start (95% paired)."""
    gap = float(teacher_scores.mean() - student_scores.mean())
    out: dict[str, Any] = {"training": fitted["info"]}
    per_map: dict[str, np.ndarray] = {name: score(m(student_q), data, split, docs)
                                      for name, m in fitted["closed_forms"].items()}
    per_map["learned"] = score(fitted["adapter"].map_numpy(student_q), data, split, docs)
    for name, values in per_map.items():
        out[name] = {"ndcg_at_10": round(float(values.mean()), 4),
                     "retention": round(float(values.mean() / teacher_scores.mean()), 4),
                     "gap_recovered": round(float(values.mean() - student_scores.mean()) / gap, 4) if gap > 0 else None}
    versus = paired_bootstrap(per_map["learned"], per_map[fitted["start"]])
    out["learned_minus_start_95"] = [round(versus["low"], 4), round(versus["high"], 4)]
    return out


def save_row(name: str, row: dict, path: Path = RESULTS) -> None:
    results = json.loads(path.read_text()) if path.is_file() else {"rows": {}}
    results["rows"][name] = row
    results["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "note": "2 CPU cores shared with other jobs: speeds are best-of-2, ratios in one process"}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, path)


def keep_student(student_dir: Path, keep: Path, training: dict[str, Any], command: str) -> None:
    """Copy the trained student to ``keep`` (replacing an older copy only once the new one is complete),
    with its training record, so later benches (bench/adapt_selection.py) reuse it without retraining."""
    import shutil

    keep.parent.mkdir(parents=True, exist_ok=True)
    staging = keep.with_name(keep.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(student_dir, staging)
    (staging / "bench_training.json").write_text(json.dumps({"training": training, "command": command}, indent=1))
    if keep.exists():
        shutil.rmtree(keep)
    os.replace(staging, keep)


def table(phase: str) -> str:
    """Markdown of one phase's rows (never dev beside test: choosing and reporting stay apart)."""
    rows = json.loads(RESULTS.read_text())["rows"] if RESULTS.is_file() else {}
    lines = ["| row | set | teacher nDCG@10 | student nDCG@10 | of teacher (95%) | speed-up |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for name, row in rows.items():
        if row["phase"] != phase:
            continue
        speed = row["scores"].get("speed", {}).get("speedup")
        for key, cell in row["scores"].items():
            if key == "speed":
                continue
            if "not_run" in cell:
                lines.append(f"| {name} | {key} | not run | | | |")
                continue
            low, high = cell["retention_95"]
            lines.append(f"| {name} | {key} | {cell['teacher_ndcg_at_10']:.4f} | {cell['student_ndcg_at_10']:.4f} | "
                         f"{cell['retention']:.3f} ({low:.3f}-{high:.3f}) | {speed}x |")
            adapted = cell.get("adapted", {})
            for map_name, result in adapted.items():
                if isinstance(result, dict) and "ndcg_at_10" in result:
                    start = " (start)" if map_name == adapted["training"]["start"] else ""
                    versus = f", learned - start {adapted['learned_minus_start_95']}" if map_name == "learned" else ""
                    lines.append(f"| + adapter {map_name}{start} | {key} | | {result['ndcg_at_10']:.4f} | "
                                 f"{result['retention']:.3f} (gap recovered {result['gap_recovered']}{versus}) | |")
    return "\n".join(lines)


def main() -> None:
    import torch

    if "--table" in sys.argv:
        print(table(sys.argv[sys.argv.index("--table") + 1]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="--table dev|test prints one phase's rows as markdown")
    parser.add_argument("--phase", choices=["dev", "test", "both"], required=True,
                        help="both: one training (fixed settings, nothing chosen), dev and test saved as separate "
                             "rows; only dev is printed")
    parser.add_argument("--teacher", choices=["all-MiniLM-L6-v2", "all-mpnet-base-v2"], required=True)
    parser.add_argument("--student", choices=["transformer", "static"], required=True)
    parser.add_argument("--train", choices=["generic", "target"], default="generic")
    parser.add_argument("--target", choices=["scifact", "builtin"], default="scifact",
                        help="with --train target: whose documents join the generic text")
    parser.add_argument("--generic", type=int, default=8000, help="generic passages (<= 20000 for mpnet's cache)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--layers", type=int, nargs="*", default=None)
    parser.add_argument("--student-base", default=None,
                        help="transformer student: start from this encoder's layers (e.g. all-MiniLM-L6-v2) instead of the teacher's")
    parser.add_argument("--alpha-sim", type=float, default=0.0, help="relational term: in-batch similarity KL")
    parser.add_argument("--alpha-cross", type=float, default=0.0,
                        help="cross term: KL of student-to-teacher in-batch similarities")
    parser.add_argument("--alpha-rank", type=float, default=0.0,
                        help="neighbour-ranking term: KL over each text's nearest training texts under the teacher")
    parser.add_argument("--rank-candidates", type=int, default=32, help="candidates per text of that term")
    parser.add_argument("--temperature", type=float, default=0.05, help="softmax temperature of the KL terms")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--spans", choices=["auto", "on", "off"], default="auto",
                        help="span views of the training text; auto = on for MiniLM, off for mpnet")
    parser.add_argument("--span-views", type=int, default=1,
                        help="span views per training text (the pipeline's span_views; 1 in the rows so far)")
    parser.add_argument("--span-texts", type=int, default=None,
                        help="use only the first N span views of the generic passages (mpnet's are costly)")
    parser.add_argument("--vocab-views", type=int, default=0,
                        help="vocabulary views per generic passage: spans with words carrying rare tokens swapped in")
    parser.add_argument("--vocab-fraction", type=float, default=0.25, help="share of a vocabulary view's words replaced")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default: DistillConfig's)")
    parser.add_argument("--static-init", choices=["model2vec", "context", "token_embeddings"], default="model2vec")
    parser.add_argument("--context-tokens", type=int, default=None,
                        help="--static-init context: tokens the teacher reads for the token means (default: "
                             "DistillConfig's; 0 = all of the training text)")
    parser.add_argument("--static-vocabulary", type=int, default=0,
                        help="static student: whole-word tokens added for the training text's frequent split words")
    parser.add_argument("--speed-queries", type=int, default=64,
                        help="SciFact test queries timed (mpnet runs ~1 query/s on this shared CPU)")
    parser.add_argument("--ridge-texts", type=int, default=16384,
                        help="texts the transformer student's projection is ridge-fitted on before training")
    parser.add_argument("--adapt", action="store_true",
                        help="also fit Stage B on each corpus's documents (+ spans) and score the closed forms and "
                             "the learned adapter (the generic student + nightly adapter case)")
    parser.add_argument("--adapt-init", choices=get_args(AdapterConfig.model_fields["init"].annotation), default="auto",
                        help="the learned adapter's start under --adapt (default: Stage B's 'auto' rule)")
    parser.add_argument("--time-budget-minutes", type=float, default=None,
                        help="stop training after this long (the learning rate anneals with the clock)")
    parser.add_argument("--keep-student", type=Path, default=None,
                        help="also save the trained student here (e.g. for bench/adapt_selection.py)")
    parser.add_argument("--score-kept", type=Path, default=None,
                        help="score a student saved by --keep-student (its bench_training.json records how it "
                             "was trained) instead of training one: e.g. the test read of a chosen dev row")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="JSON file the rows accumulate in (default bench/results/transfer.json)")
    parser.add_argument("--residual-of", type=Path, default=None,
                        help="train towards the teacher minus --residual-weight times this encoder's vectors "
                             "(a second blend member that learns what the first misses; bench/blend.py scores it)")
    parser.add_argument("--residual-weight", type=float,
                        default=DistillConfig.model_fields["blend_partner_weight"].default)
    parser.add_argument("--tag", default="")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads (1 when the CPU is shared with other jobs)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    phases = ["dev", "test"] if args.phase == "both" else [args.phase]
    options: dict[str, Any] = {"steps": args.steps, "batch_size": args.batch_size,
                               "eval_every": max(25, args.steps // 6), "patience": 3, "alpha_sim": args.alpha_sim,
                               "alpha_cross": args.alpha_cross, "temperature": args.temperature,
                               "alpha_rank": args.alpha_rank, "rank_candidates": args.rank_candidates,
                               "warmup_steps": min(100, args.steps // 10), "max_length": args.max_length,
                               "threads": args.threads, "validation_fraction": 0.02, "checkpoint_every": args.steps}
    options["projection_fit_texts"] = args.ridge_texts
    options["time_budget_minutes"] = args.time_budget_minutes
    if args.layers is not None:
        options["layers"] = args.layers
    if args.lr is not None:
        options["lr"] = args.lr
    if args.student_base:
        options["student_base"] = args.student_base
    if args.student == "static":
        options["static_init"] = args.static_init
        options["static_vocabulary"] = args.static_vocabulary
        if args.context_tokens is not None:
            options["static_context_tokens"] = args.context_tokens or None
    with_spans = args.spans == "on" or (args.spans == "auto" and args.teacher == "all-MiniLM-L6-v2")
    texts, vectors, sources = load_pairs(args.teacher, training_sets(args.train, args.target, args.generic,
                                                                     with_spans, args.span_texts, args.span_views,
                                                                     teacher=args.teacher, vocab_views=args.vocab_views,
                                                                     vocab_fraction=args.vocab_fraction))
    if args.residual_of is not None:
        vectors = residual_targets(args.residual_of, texts, vectors, args.residual_weight)
    label = "/".join([args.teacher, args.student, args.train if args.train == "generic" else f"+{args.target}"]) \
        + (f"/{args.tag}" if args.tag else "")
    with tempfile.TemporaryDirectory(prefix="tava-transfer-", dir=BENCH_HOME if BENCH_HOME.is_dir() else None) as tmp:
        if args.score_kept is not None:
            student_dir = args.score_kept
            training = json.loads((student_dir / "bench_training.json").read_text())["training"]
        else:
            student_dir, training = train_student(args.teacher, args.student, texts, vectors, options, Path(tmp))
        if args.keep_student is not None and args.score_kept is None:
            keep_student(student_dir, args.keep_student, training, " ".join(sys.argv[1:]))
        sci = scifact()
        speed_texts = [sci.queries.texts[k] for k, q in enumerate(sci.queries.ids) if q in sci.qrels["test"]][:args.speed_queries]
        speed = None   # measured once, with the first phase's scoring
        adapters = (fit_adapters(student_dir, args.teacher, AdapterConfig(mode="paired", init=args.adapt_init))
                    if args.adapt else None)
        for phase in phases:
            scores = evaluate_student(student_dir, args.teacher, DEV_SPLIT if phase == "dev" else TEST_SPLIT,
                                      speed_texts if speed is None else None, adapters)
            speed = scores.get("speed", speed)
            scores["speed"] = speed
            row = {"phase": phase, "teacher": args.teacher, "student": args.student, "train": args.train,
                   "target": args.target if args.train == "target" else None, "sources": sources,
                   "training": training, "scores": scores, "command": " ".join(sys.argv[1:])}
            save_row(f"{phase}/{label}", row, args.results)
            if phase == phases[0]:
                print(json.dumps({f"{phase}/{label}": scores}, indent=1))


if __name__ == "__main__":
    main()
