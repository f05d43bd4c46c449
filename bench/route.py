"""Confidence routing benchmark (issue 16): the student answers most queries, the teacher only
those the router scores as least confident.

Students: Stage A students of all-MiniLM-L6-v2 trained by bench/distill.py's configuration
(static and transformer; setting (a) generic passages only, setting (b) passages + SciFact's
corpus documents), cached under $TAVA_BENCH_HOME (default: .tava/bench-home in the checkout).
Train them first, e.g.:

    python bench/distill.py --only static-a,static-b,transformer-a,transformer-b --passages 5000 \
        --minutes 6 --home .tava/bench-home --out .tava/route-students.json --no-alone

Router per student and dataset: signals fitted on a sample of the student's own training texts
(texts + span views, as Stage A saw them) and on the served corpus' teacher document vectors
(the retrieval signals read the student's own result list), combiner calibrated on held-out span
views of the served corpus (seed 1234: not the training spans) against the TRUE agreement with
the teacher (top-10 overlap over the corpus) -- no labels anywhere. The candidate (signal set,
combiner, document bank size) is chosen per student on SciFact's 809 train queries (dev): the
best gap recovered whose cost meets the issue's target, checked best-first (static: a query not
sent to the teacher, through the real router encoder, <= 2x the student alone; transformer:
confidence <= 10% of the student), each cost measured by bench/route_cost.py (interleaved rounds,
median of per-round ratios, at batch 1 and 64, load recorded);
SciFact test and the built-in data are then scored once with each student's choice. Baselines at every share: random (exact expectation),
longest-queries-first, label-free oracle (lowest true top-10 overlap), labelled oracle.

    python bench/route.py                 # -> bench/results/route.json (+ PNGs beside it)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM"):
    os.environ.setdefault(key, "1" if key != "TOKENIZERS_PARALLELISM" else "false")
os.environ.setdefault("TAVA_BENCH_HOME", str(ROOT / ".tava" / "bench-home"))

from bench.distill_data import SCIFACT  # noqa: E402
from tava_core.datasets.builtin import ensure_builtin_source  # noqa: E402
from tava_core.distill.spans import make_spans  # noqa: E402
from tava_core.encoders import load_encoder  # noqa: E402
from tava_core.evaluate.data import RetrievalData, load_beir_directory  # noqa: E402
from tava_core.home import TavaHome  # noqa: E402
from tava_core.manifest import read_vector_dir  # noqa: E402
from tava_core.route.calibrate import (  # noqa: E402
    features_from_signals,
    fit_calibration,
    spearman,
    true_agreement,
)
from tava_core.route.curves import SHARES, curves_from_vectors, per_query_ndcg, routing_curves  # noqa: E402
from tava_core.route.signals import (  # noqa: E402
    DEFAULT_SIGNALS,
    RETRIEVAL_SIGNALS,
    SIGNAL_NAMES,
    SignalModel,
    compute_signals,
    fit_signal_model,
)
from tava_core.route.trust import cross_fitted_trust, word_trust_signal  # noqa: E402

HOME = Path(os.environ["TAVA_BENCH_HOME"])
RESULTS = ROOT / "bench" / "results" / "route.json"
CACHE = HOME / "route-cache"
PASSAGES = 5000
CALIBRATION_SPANS = 2000
REFERENCE_TEXTS = 3000

# Candidate confidence scores, chosen between on the dev split (SciFact train queries).
# Keys: signals, vector_components, combiner (calibrate.Combiner), bank (documents kept, PCA size;
# 0 = full 384-d: the retrieval signals' cost per query is about documents x size), exclude_source.
TEXT = list(DEFAULT_SIGNALS) + ["word_rarity"]
WORDS = ["rare_word_share", "word_rarity", "length"]          # no matrix product at all
RETRIEVAL = list(RETRIEVAL_SIGNALS)


FULL_BANK = (8192, 0, 0, 0, 0)   # every SciFact document (5,183), full dimension, no second stage
TWO_STAGE = (8192, 64, 200, 0, 0)    # a 64-d PCA bank picks 200 candidates, rescored exactly


def _candidate(signals: list[str], vec: int = 0, combiner: str = "ridge", bank: tuple[int, ...] = FULL_BANK,
               exclude_source: bool = False) -> dict[str, Any]:
    """``bank``: (documents kept, PCA size, candidates rescored exactly, k-means clusters, clusters
    probed; missing = 0)."""
    return {"signals": signals, "vector_components": vec, "combiner": combiner,
            "bank": tuple(bank) + (0,) * (5 - len(bank)), "exclude_source": exclude_source}


CANDIDATES: dict[str, dict[str, Any]] = {
    **{f"only:{name}": _candidate([name]) for name in SIGNAL_NAMES},
    "signals": _candidate(list(DEFAULT_SIGNALS)),                 # last session's sets
    "signals+vec16": _candidate(list(DEFAULT_SIGNALS), 16),
    "vec16": _candidate([], 16),
    "text": _candidate(TEXT),
    "retrieval": _candidate(RETRIEVAL),
    "words+retrieval": _candidate(WORDS + RETRIEVAL),
    "all": _candidate(TEXT + RETRIEVAL),
    "all+vec16": _candidate(TEXT + RETRIEVAL, 16),
    **{f"{name}:{combiner}": _candidate(signals, vec, combiner)
       for name, signals, vec in (("retrieval", RETRIEVAL, 0), ("words+retrieval", WORDS + RETRIEVAL, 0),
                                  ("all", TEXT + RETRIEVAL, 0), ("all+vec16", TEXT + RETRIEVAL, 16))
       for combiner in ("rank", "pairwise", "low")},
    # calibration spans without their source document (in the signals and the true agreement alike):
    # a span's verbatim source tops its list, a real query's list holds no copy of what it asks
    **{f"{name}:{combiner}/loo": _candidate(signals, vec, combiner, FULL_BANK, True)
       for name, signals, vec in (("retrieval", RETRIEVAL, 0), ("words+retrieval", WORDS + RETRIEVAL, 0),
                                  ("all", TEXT + RETRIEVAL, 0), ("all+vec16", TEXT + RETRIEVAL, 16))
       for combiner in ("ridge", "rank")},
    # the single retrieval signals on cheaper document banks (fewer documents and/or PCA components):
    # their cost per query is about documents x size, against the full bank's 5,183 x 384
    **{f"only:{name}@{size}x{k}": _candidate([name], 0, "ridge", (size, k))
       for name in ("retrieval_entropy", "retrieval_contrast")
       for size, k in ((8192, 64), (8192, 32), (2048, 64), (2048, 0), (1024, 0))},
    # the cheap variants: the document bank reduced to PCA components and/or a sample of documents
    **{f"{name}@{size}x{k}{suffix}": _candidate(signals, 0, combiner, (size, k), loo)
       for name, signals in (("words+retrieval", WORDS + RETRIEVAL), ("retrieval", RETRIEVAL))
       for size, k in ((8192, 64), (8192, 32), (2048, 32), (1024, 32))
       for suffix, combiner, loo in (("", "ridge", False), (":rank", "rank", False), (":rank/loo", "rank", True))},
    # two-stage scoring: a PCA bank's candidates rescored with exact cosines (the full bank's signal
    # up to the candidates it misses, at about the PCA bank's cost)
    **{f"only:{name}@{size}x{k}r{rescore}": _candidate([name], 0, "ridge", (size, k, rescore))
       for name in ("retrieval_entropy", "retrieval_contrast", "retrieval_cell_margin")
       for size, k, rescore in ((8192, 64, 200), (8192, 64, 100), (8192, 32, 200), (8192, 96, 200))},
    "retrieval@8192x64r200": _candidate(RETRIEVAL, 0, "ridge", TWO_STAGE),
    # the best document's cell depth beside the list's flatness (bench/route_stability.py: the cell
    # margin routed better than the entropy on both dev corpora for both static students)
    "retrieval_entropy+retrieval_cell_margin": _candidate(["retrieval_entropy", "retrieval_cell_margin"]),
    **{f"retrieval_entropy+retrieval_cell_margin@8192x64r{rescore}": _candidate(
        ["retrieval_entropy", "retrieval_cell_margin"], 0, "ridge", (8192, 64, rescore)) for rescore in (100, 200)},
    # clustered banks: each query scores exactly the documents of its nearest k-means clusters only
    # (a few hundred rows instead of the bank: what a static query's cost at batch 1 hinged on)
    **{f"only:{name}@c{clusters}p{probe}": _candidate([name], 0, "ridge", (8192, 0, 0, clusters, probe))
       for name in ("retrieval_entropy", "retrieval_contrast")
       for clusters, probe in ((32, 4), (64, 4), (64, 8), (128, 4), (128, 8), (256, 8))},
    # word_trust (a table lookup per word: no cost beyond the word signals' pass)
    "signals+word_trust": _candidate(list(DEFAULT_SIGNALS) + ["word_trust"]),
    "signals+vec16+word_trust": _candidate(list(DEFAULT_SIGNALS) + ["word_trust"], 16),
    "words+word_trust": _candidate(WORDS + ["word_trust"]),
    **{f"only:{name}+word_trust@8192x64r200": _candidate([name, "word_trust"], 0, "ridge", TWO_STAGE)
       for name in ("retrieval_entropy", "retrieval_contrast")},
}


def teacher_vectors(teacher, texts: Sequence[str], tag: str, kind: str = "query") -> np.ndarray:
    """The teacher's vectors of ``texts``, cached on disk by content (the teacher is the slow part)."""
    digest = hashlib.sha256(("\x1f".join(texts) + kind).encode()).hexdigest()[:16]
    path = CACHE / f"{tag}-{len(texts)}-{digest}.npy"
    if path.is_file():
        return np.load(path)
    vectors = teacher.encode(list(texts), kind=kind, show_progress=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vectors)
    os.replace(tmp, path)
    return vectors


def per_query_seconds(fn, texts: Sequence[str], repeats: int = 2) -> float:
    """Best-of-``repeats`` seconds per query of ``fn(texts)`` (the CPU is shared: best = least disturbed)."""
    fn(texts[:32])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(texts)
        best = min(best, time.perf_counter() - start)
    return best / len(texts)


class Dataset:
    """Corpus + queries of one split with the teacher's vectors, plus calibration spans of the corpus."""

    def __init__(self, name: str, data: RetrievalData, teacher, doc_vectors: np.ndarray, query_vectors: np.ndarray,
                 span_source: RetrievalData | None = None):
        self.name, self.data = name, data
        self.docs = doc_vectors
        self.queries = query_vectors
        source = span_source or data   # spans of the whole corpus, even when scoring a part of it
        ids, texts = make_spans(source.corpus_ids, source.document_texts, 1, seed=1234)
        pick = np.random.default_rng(1234).choice(len(texts), size=min(CALIBRATION_SPANS, len(texts)), replace=False)
        self.calibration_texts = [texts[i] for i in sorted(pick)]
        # the corpus row each span was cut from (-1 if that document is not in the scored corpus)
        row = {d: k for k, d in enumerate(data.corpus_ids)}
        self.calibration_source = np.array([row.get(ids[i].rsplit("#span", 1)[0], -1) for i in sorted(pick)])
        self.calibration_teacher = teacher_vectors(teacher, self.calibration_texts, f"{name}-calibration")


def teacher_corpus_vectors(teacher) -> tuple[list[str], np.ndarray]:
    """The teacher's SciFact corpus vectors: every shard file present (on a loaded machine only
    part of the corpus may have been embedded; the run then says so and uses that part)."""
    from tava_core.io import read_vector_shard

    out_dir = HOME / "vectors" / "scifact" / "corpus" / f"{teacher.name}-{teacher.fingerprint[:12]}"
    ids: list[str] = []
    blocks = []
    for shard in sorted(out_dir.glob("shard-*.parquet")):
        shard_ids, vectors = read_vector_shard(shard)
        ids.extend(shard_ids)
        blocks.append(vectors)
    if not ids:
        raise SystemExit(f"no teacher vectors of the SciFact corpus under {out_dir}: run bench/distill_data.py")
    return ids, np.concatenate(blocks)


def restrict(data: RetrievalData, keep_ids: list[str]) -> RetrievalData:
    """The split on a sub-corpus: only the documents in ``keep_ids``, only the queries whose judged
    documents are all in it (so every query can still reach its relevant documents)."""
    keep = set(keep_ids)
    rows = [i for i, d in enumerate(data.corpus_ids) if d in keep]
    queries = [i for i, q in enumerate(data.query_ids) if set(data.qrels[q]) <= keep]
    return RetrievalData(name=data.name, source=data.source, split=data.split,
                         corpus_ids=[data.corpus_ids[i] for i in rows], corpus_titles=[data.corpus_titles[i] for i in rows],
                         corpus_texts=[data.corpus_texts[i] for i in rows],
                         query_ids=[data.query_ids[i] for i in queries], query_texts=[data.query_texts[i] for i in queries],
                         qrels={data.query_ids[i]: data.qrels[data.query_ids[i]] for i in queries},
                         qrels_path=data.qrels_path, corpus_checksum=data.corpus_checksum,
                         info={"sub_corpus": len(rows), "full_corpus": len(data.corpus_ids),
                               "queries_kept": len(queries), "queries_in_split": len(data.query_ids)})


def scifact_split(split: str, paths: dict[str, Path], teacher) -> tuple[RetrievalData, np.ndarray, np.ndarray]:
    data = load_beir_directory(SCIFACT, split)
    ids, vectors = teacher_corpus_vectors(teacher)
    if len(ids) < len(data.corpus_ids):
        data = restrict(data, ids)
    pos = {i: k for k, i in enumerate(ids)}
    docs = vectors[[pos[i] for i in data.corpus_ids]]
    ids, vectors, _ = read_vector_dir(paths["scifact_queries_vectors"])
    pos = {i: k for k, i in enumerate(ids)}
    return data, docs, vectors[[pos[i] for i in data.query_ids]]


def bench_paths(home: TavaHome, teacher) -> dict[str, Path]:
    """Where the route benches read SciFact, the passages and the teacher's SciFact query vectors."""
    return {"scifact": home.dataset_dir("scifact"), "passages": home.dataset_dir("passages"),
            "scifact_queries_vectors": home.vector_dir("scifact", "queries", teacher.name, teacher.fingerprint)}


def dev_bench_inputs(labels: Sequence[str]) -> tuple[Any, dict[str, Path], dict[str, Dataset], dict[str, Path]]:
    """(teacher, paths, datasets, students named in ``labels``): what the dev-only route benches start from."""
    teacher = load_encoder("all-MiniLM-L6-v2")
    paths = bench_paths(TavaHome(HOME), teacher)
    students = {k: v for k, v in find_students().items() if k in labels}
    return teacher, paths, load_datasets(paths, teacher), students


def load_datasets(paths: dict[str, Path], teacher) -> dict[str, Dataset]:
    out = {}
    for split, label in (("train", "scifact-dev"), ("test", "scifact-test")):
        data, docs, queries = scifact_split(split, paths, teacher)
        out[label] = Dataset("scifact", data, teacher, docs, queries, span_source=load_beir_directory(SCIFACT, split))
    source, _ = ensure_builtin_source(TavaHome(HOME))
    data = load_beir_directory(source, "test")
    docs = teacher_vectors(teacher, data.document_texts, "builtin-corpus", kind="document")
    queries = teacher_vectors(teacher, data.query_texts, "builtin-queries")
    out["builtin-test"] = Dataset("builtin", data, teacher, docs, queries)
    return out


def find_students() -> dict[str, Path]:
    root = HOME / "artifacts" / "students"
    found = {}
    for kind in ("static", "transformer"):
        for setting in ("a", "b"):
            dirs = sorted(root.glob(f"bench-{kind}-{setting}-{PASSAGES}-*")) + sorted(root.glob(f"bench-{kind}-{setting}-sub"))
            dirs = [d for d in dirs if (d / "model_card.json").is_file() and "quick" not in d.name]
            if dirs:
                found[f"{kind}-{setting}"] = dirs[-1]
        # Stage A's starting point with no training step (model2vec table / teacher layers 0 and 5):
        # what a run on a machine too loaded to embed training passages in time can still measure.
        # Static "te0": the teacher's input token embeddings as the table (Stage A's other start).
        for tag in ("a0", "te0"):
            start = root / f"route-{kind}-{tag}"
            if (start / "modules.json").is_file() or (start / "config.json").is_file():
                found[f"{kind}-{tag}"] = start
    return found


def reference_texts(student_dir: Path, paths: dict[str, Path], teacher) -> tuple[list[str], np.ndarray] | None:
    """A sample of the exact texts (and teacher vectors) the student was trained on; None for a
    student that was never trained on any."""
    from tava_core.distill import DistillConfig
    from tava_core.distill.run import prepare_training

    if not (student_dir / "model_card.json").is_file():
        return None
    card = json.loads((student_dir / "model_card.json").read_text())
    config = DistillConfig.model_validate(card["training"]["config"])   # exactly what it trained on
    training = prepare_training(config, TavaHome(HOME), teacher)
    pick = np.random.default_rng(0).choice(len(training.texts), size=min(REFERENCE_TEXTS, len(training.texts)),
                                           replace=False)
    return [training.texts[i] for i in pick], training.vectors[pick]


def model_for(st: dict[str, Any], dataset: str, candidate: dict[str, Any]) -> SignalModel:
    """The student's signal model for ``dataset`` with the candidate's document bank."""
    return st["models"][dataset][candidate["bank"]]


# every signal a signal model computes by itself (word_trust needs a table fitted on calibration spans)
FIXED_SIGNALS = [name for name in SIGNAL_NAMES if name != "word_trust"]


def cached_features(model: SignalModel, candidate: dict[str, Any], enc: dict[str, Any], part: str,
                    texts: Sequence[str], trust: np.ndarray | None = None) -> np.ndarray:
    """Every signal computed once per (texts, document bank, exclusion), then each candidate takes
    its columns (the same numbers ``confidence`` computes, without recomputing). ``trust``: the
    calibration spans' out-of-fold word trust (what fit_router gives the combiner); the queries'
    comes from the table in ``model``."""
    exclude = enc["calibration_source"] if part == "calibration" and candidate["exclude_source"] else None
    key = (part, candidate["bank"], exclude is not None)
    cache = enc.setdefault("_signals", {})
    if key not in cache:
        cache[key] = compute_signals(model, texts, enc[part], FIXED_SIGNALS, exclude=exclude)
    values = cache[key]
    if "word_trust" in candidate["signals"]:
        values = {**values, "word_trust": trust if trust is not None else word_trust_signal(model.word_trust, texts)}
    return features_from_signals(model, values, enc[part], candidate["signals"], candidate["vector_components"])


def fast_curves(dataset: Dataset, enc: dict[str, Any], scores: np.ndarray) -> dict[str, Any]:
    """curves_from_vectors with the per-query nDCG and agreement computed once per student and
    split (dev selection scores dozens of candidates on the same queries)."""
    if "_base" not in enc:
        data, q = dataset.data, enc["queries"]
        enc["_base"] = {
            "student": per_query_ndcg(q, dataset.docs, data.query_ids, data.corpus_ids, data.qrels),
            "teacher": per_query_ndcg(dataset.queries, dataset.docs, data.query_ids, data.corpus_ids, data.qrels),
            "agreement": true_agreement(q, dataset.queries, dataset.docs),
            "lengths": np.array([len(t.split()) for t in data.query_texts])}
    base = enc["_base"]
    curves = routing_curves(student_ndcg=base["student"], teacher_ndcg=base["teacher"],
                            student_overlap=base["agreement"]["overlap"], confidence=scores, lengths=base["lengths"],
                            agreement=base["agreement"]["overlap"] + 1e-3 * base["agreement"]["cosine"],
                            bootstrap_resamples=200)
    curves["confidence_spearman"] = {"overlap": spearman(scores, base["agreement"]["overlap"])}
    return curves


def evaluate_candidate(model: SignalModel, candidate: dict[str, Any], dataset: Dataset, enc: dict[str, Any],
                       costs: dict[str, float] | None = None, *, fast: bool = False) -> dict[str, Any]:
    """Calibrate ``candidate`` on the calibration spans, score the split's queries, draw the curves
    (``fast``: from cached signals and per-query scores, 200 bootstrap resamples -- dev selection)."""
    calib_student, query_student = enc["calibration"], enc["queries"]
    exclude = enc["calibration_source"] if candidate["exclude_source"] else None
    key = f"calibration_agreement_{candidate['exclude_source']}"
    if key not in enc:    # the same for every candidate: computed once
        enc[key] = true_agreement(calib_student, enc["calibration_teacher"], dataset.docs, exclude=exclude)
    trust = None
    if "word_trust" in candidate["signals"]:    # fitted as fit_router fits it: cross-fitted on the spans
        if f"trust_{key}" not in enc:
            enc[f"trust_{key}"] = cross_fitted_trust(enc["calibration_texts"], enc[key]["overlap"])
        trust, model.word_trust = enc[f"trust_{key}"]
    features = cached_features(model, candidate, enc, "calibration", enc["calibration_texts"], trust)
    calibration = fit_calibration(model, enc["calibration_texts"], calib_student, enc[key],
                                  signals=candidate["signals"], vector_components=candidate["vector_components"],
                                  target="overlap", combiner=candidate["combiner"], exclude=exclude, features=features)
    from tava_core.route.calibrate import confidence

    if fast:
        scores = calibration.confidence_from_features(
            cached_features(model, candidate, enc, "queries", dataset.data.query_texts))
        curves = fast_curves(dataset, enc, scores)
    else:
        scores = confidence(model, calibration, dataset.data.query_texts, query_student)
        curves = curves_from_vectors(student_queries=query_student, teacher_queries=dataset.queries,
                                     documents=dataset.docs, query_ids=dataset.data.query_ids,
                                     query_texts=dataset.data.query_texts, doc_ids=dataset.data.corpus_ids,
                                     qrels=dataset.data.qrels, confidence=scores, costs=costs)
    curves["calibration"] = calibration.info
    curves["threshold_10pct"] = calibration.threshold_for_budget(0.1)
    curves["routed_share_at_10pct_threshold"] = float((scores < calibration.threshold_for_budget(0.1)).mean())
    curves["_scores"] = scores
    curves["_calibration"] = calibration
    return curves


def gap_at(curves: dict[str, Any], share: float, method: str = "router") -> float:
    return next(r[method]["gap_recovered"] for r in curves["rows"] if abs(r["share"] - share) < 1e-9)


def strip(curves: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in curves.items() if not k.startswith("_")}


def plot_frontier(name: str, points: dict[str, list[tuple[float, float]]], teacher: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for label, xy in points.items():
        xs, ys = zip(*xy, strict=True)
        ax.plot(xs, ys, marker="o", label=label)
    ax.scatter([1.0], [teacher], marker="*", s=160, color="black", label="teacher", zorder=5)
    ax.set_xscale("log")
    ax.set_xlabel("cost per query (teacher = 1, log)")
    ax.set_ylabel("nDCG@10")
    ax.set_title(f"{name}: routed students, 0-50% of queries to the teacher")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--students", default=None, help="comma list, e.g. static-a,transformer-a")
    parser.add_argument("--smoke", action="store_true", help="120 calibration spans: a quick check of the script")
    parser.add_argument("--dev-only", action="store_true",
                        help="stop after the dev selection (SciFact train queries) and write it to --out: "
                             "for designing candidates without looking at test")
    parser.add_argument("--prepare", action="store_true",
                        help="only compute (and cache) the teacher's vectors of the built-in data and of the "
                             "calibration spans (can run while the students train)")
    parser.add_argument("--costs-only", default=None, metavar="CANDIDATES",
                        help="comma list of candidates (or 'static'): only their dev quality and their cost, "
                             "measured interleaved at batch 1 and 64 (bench/route_cost.py), for --student-dir")
    parser.add_argument("--student-dir", default=None,
                        help="with --costs-only: a static student directory (label static-DIRNAME); the cost "
                             "of a static student does not depend on its training")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)   # the machine is shared: one thread each, and steadier timings
    if args.prepare:
        teacher = load_encoder("all-MiniLM-L6-v2")
        source, _ = ensure_builtin_source(TavaHome(HOME))
        data = load_beir_directory(source, "test")
        Dataset("builtin", data, teacher, teacher_vectors(teacher, data.document_texts, "builtin-corpus", kind="document"),
                teacher_vectors(teacher, data.query_texts, "builtin-queries"))
        Dataset("scifact", load_beir_directory(SCIFACT, "test"), teacher, np.zeros((0, 0)), np.zeros((0, 0)))
        return
    started = time.time()
    teacher = load_encoder("all-MiniLM-L6-v2")
    home = TavaHome(HOME)
    # What bench/distill_data.py prepared (never re-run here: it would embed the whole corpus).
    paths = bench_paths(home, teacher)
    if args.smoke:
        global CALIBRATION_SPANS
        CALIBRATION_SPANS = 120
    datasets = load_datasets(paths, teacher)
    students = find_students()
    if args.student_dir:
        students = {f"static-{Path(args.student_dir).name}": Path(args.student_dir)}
    if args.students:
        students = {k: v for k, v in students.items() if k in args.students.split(",")}
    if not students:
        raise SystemExit(f"no students under {HOME}/artifacts/students: train them first (see --help)")
    report: dict[str, Any] = {
        "benchmark": "confidence routing (issue 16): student answers, teacher takes the least confident queries",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average_at_start": os.getloadavg()},
        "teacher": "all-MiniLM-L6-v2", "shares": list(SHARES), "passages": PASSAGES,
        "calibration": {"texts": "1 span view (seed 1234) of up to 2,000 corpus documents of the served dataset",
                        "target": "top-10 overlap of student and teacher results over the corpus",
                        "reference": f"{REFERENCE_TEXTS} of the student's own training texts + spans"},
        "students": {}, "dev_selection": {}, "results": {}, "costs": {}, "drift": {},
        "datasets": {name: {**ds.data.summary(), **ds.data.info, "calibration_spans": len(ds.calibration_texts)}
                     for name, ds in datasets.items()}}
    state = encode_students(students, datasets, paths, teacher, report)
    if args.costs_only:
        names = COST_SURVEY if args.costs_only == "static" else args.costs_only.split(",")
        report["cost_survey"] = cost_survey(state, datasets, teacher, names)
        report["machine"]["load_average_at_end"] = os.getloadavg()
        report["total_seconds"] = time.time() - started
        save_json(Path(args.out), report)
        print(json.dumps({label: {c: {"not_routed_over_student": v["not_routed_over_student"],
                                      "gap10": v["dev_gap_recovered_10"], "gap20": v["dev_gap_recovered_20"]}
                                  for c, v in per.items()} for label, per in report["cost_survey"].items()},
                         indent=1))
        return
    # ---- dev: which signals carry information, which combination to keep
    for label, chosen in choose_on_dev(state, datasets, report, teacher).items():
        state[label]["chosen"] = chosen
    if args.dev_only:
        report["total_seconds"] = time.time() - started
        save_json(Path(args.out), report)
        return
    measure_costs(state, datasets, teacher, report)
    # ---- test, once, with the chosen candidate
    out_path = Path(args.out).resolve()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    frontier: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for name in ("scifact-dev", "scifact-test", "builtin-test"):
        for label, st in state.items():
            enc = st["encoded"][name]
            candidate = CANDIDATES[st["chosen"]]
            curves = evaluate_candidate(model_for(st, datasets[name].name, candidate), candidate, datasets[name], enc,
                                        costs=st["costs"])
            curves["candidate"] = st["chosen"]
            st.setdefault("scores", {})[name] = curves["_scores"]
            st.setdefault("calibrations", {})[name] = curves["_calibration"]
            report["results"].setdefault(name, {})[label] = strip(curves)
            if name != "scifact-dev":
                frontier.setdefault(name, {})[f"{label} routed"] = [
                    (r["cost_per_query_teacher_units"], r["router"]["ndcg10"]) for r in curves["rows"]]
    for name, points in frontier.items():
        teacher_ndcg = next(iter(report["results"][name].values()))["teacher_ndcg10"]
        png = out_path.with_name(f"{out_path.stem}-frontier-{name}.png")
        plot_frontier(name, points, teacher_ndcg, png)
        report.setdefault("pngs", []).append(str(png.relative_to(ROOT)) if png.is_relative_to(ROOT) else str(png))
    # ---- drift: SciFact-calibrated router, SciFact test traffic then the built-in docstrings
    report["drift"] = drift_shares(state, datasets)
    report["targets"] = targets(report)
    report["machine"]["load_average_at_end"] = os.getloadavg()
    report["total_seconds"] = time.time() - started
    save_json(out_path, report)
    print(json.dumps(report["targets"], indent=1))


COST_ROUNDS = 15
COST_BATCHES = {1: 64, 64: 256}     # batch size -> queries per round


def routed_path(st: dict[str, Any], model: SignalModel, calibration, teacher) -> Any:
    """The real router encoder of a student with a budget of 0 (fixed policy): every query takes
    the path of a query NOT sent to the teacher (student, confidence, routing decision)."""
    from tava_core.route.config import ThresholdPolicy
    from tava_core.route.router import RoutedEncoder, threshold_from

    return RoutedEncoder(st["encoder"], teacher, model, calibration, threshold_from(calibration, teacher_budget=0.0),
                         weights_sha256="bench", name="bench", routing=ThresholdPolicy(mode="fixed"))


def not_routed_costs(st: dict[str, Any], model: SignalModel, calibration, teacher, texts: Sequence[str], *,
                     rounds: int = COST_ROUNDS) -> dict[str, Any]:
    """Student alone, confidence alone (on the student's vectors) and a query through the router
    that is not sent to the teacher, interleaved (bench/route_cost.py), at batch 1 and 64."""
    from bench.route_cost import interleaved_seconds, ratio
    from tava_core.route.calibrate import confidence
    from tava_core.route.config import ThresholdPolicy
    from tava_core.route.threshold import LiveThreshold

    enc, router = st["encoder"], routed_path(st, model, calibration, teacher)
    vectors = {t: v for t, v in zip(texts, enc.encode(list(texts), kind="query"), strict=True)}
    scores = dict(zip(texts, router.confidence(list(texts), np.stack([vectors[t] for t in texts])), strict=True))
    out: dict[str, Any] = {}
    for batch, n in COST_BATCHES.items():
        part = list(texts[:n])
        # the adaptive policy's decision, on top of the fixed path: a window already full
        live = LiveThreshold(ThresholdPolicy(), 0.1, calibration.quantiles)
        live.decide(np.resize(np.array(list(scores.values())), ThresholdPolicy().window))
        calls = {"student": lambda t: enc.encode(t, kind="query", batch_size=len(t)),
                 "confidence": lambda t: confidence(model, calibration, t, np.stack([vectors[x] for x in t])),
                 "not_routed": lambda t: router.route(t, batch_size=len(t)),
                 "live_threshold": lambda t, live=live: live.decide(np.array([scores[x] for x in t]))}
        measured = interleaved_seconds(calls, part, batch_size=batch, rounds=rounds)
        measured["not_routed_over_student"] = ratio(measured, "not_routed", "student")
        measured["confidence_over_student"] = ratio(measured, "confidence", "student")
        sec = measured["seconds_per_query"]
        per_round = ((np.array(sec["not_routed"]["rounds"]) + np.array(sec["live_threshold"]["rounds"]))
                     / np.array(sec["student"]["rounds"]))
        measured["not_routed_adaptive_over_student"] = float(np.median(per_round))
        out[str(batch)] = measured
    return out


def cost_ok(label: str, costs: dict[str, Any]) -> bool:
    """The issue's cost targets at batch 1 AND 64 (median of interleaved round ratios): static, a
    query not sent to the teacher <= 2x the student alone; transformer, confidence <= 10% of the
    student's encoding."""
    if label.startswith("transformer"):
        return all(c["confidence_over_student"]["median_of_round_ratios"] <= 0.10 for c in costs.values())
    return all(c["not_routed_over_student"]["median_of_round_ratios"] <= 2.0 for c in costs.values())


def measure_costs(state: dict, datasets: dict, teacher, report: dict[str, Any]) -> None:
    """Seconds per query of each student, its confidence score and the teacher, side by side."""
    # ---- costs on SciFact test queries; the teacher once (96 queries, best of 2: it is slow and
    # its timing only scales the cost axis), the cheap parts interleaved at batch 1 and 64
    test_texts = datasets["scifact-test"].data.query_texts
    teacher_s = per_query_seconds(lambda t: teacher.encode(t, kind="query"), test_texts[:96])
    for label, st in state.items():
        model = model_for(st, "scifact", CANDIDATES[st["chosen"]])
        calibration = evaluate_candidate(model, CANDIDATES[st["chosen"]], datasets["scifact-test"],
                                         st["encoded"]["scifact-test"])["_calibration"]
        costs = not_routed_costs(st, model, calibration, teacher, test_texts)
        bulk = costs["64"]["seconds_per_query"]
        st["costs"] = {"student": bulk["student"]["median"], "confidence": bulk["confidence"]["median"],
                       "teacher": teacher_s}
        report["costs"][label] = {
            "seconds_per_query": st["costs"], "measured": costs,
            "confidence_over_student": costs["64"]["confidence_over_student"]["median_of_round_ratios"],
            "not_routed_over_student_alone": {b: c["not_routed_over_student"]["median_of_round_ratios"]
                                              for b, c in costs.items()},
            "cost_ok": cost_ok(label, costs), "student_speedup_vs_teacher": teacher_s / st["costs"]["student"]}
    for label in state:
        if label.startswith("transformer"):
            report["costs"][label]["confidence_over_transformer_student"] = (
                report["costs"][label]["measured"]["1"]["confidence_over_student"]["median_of_round_ratios"])


def save_json(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=float) + "\n")
    os.replace(tmp, path)


def encode_students(students: dict[str, Path], datasets: dict, paths: dict, teacher, report: dict[str, Any]
                    ) -> dict[str, dict[str, Any]]:
    """Each student's signal models, calibration-span and query vectors (and its card in the report)."""
    state: dict[str, dict[str, Any]] = {}
    for label, student_dir in students.items():
        print(f"== {label}: {student_dir}", flush=True)
        encoder = load_encoder(str(student_dir), cache=False)
        reference = reference_texts(student_dir, paths, teacher)
        models: dict[str, dict[tuple[int, int], SignalModel]] = {}
        if reference is not None:
            ref_texts, ref_teacher = reference
            ref_student = encoder.encode(ref_texts, kind="document", show_progress=True)
        encoded: dict[str, dict[str, Any]] = {}
        calib_cache: dict[str, np.ndarray] = {}
        for name, dataset in datasets.items():
            if dataset.name not in calib_cache:
                calib_cache[dataset.name] = encoder.encode(dataset.calibration_texts, kind="query")
            calib = calib_cache[dataset.name]
            texts, truth, source = dataset.calibration_texts, dataset.calibration_teacher, dataset.calibration_source
            if reference is None:
                # Never trained on any text: the "seen" manifold is half of the corpus' span views
                # (even rows), the combiner is calibrated on the other half (odd rows).
                fit_on = (texts[0::2], calib[0::2], truth[0::2])
                encoded[name] = {"calibration": calib[1::2], "calibration_texts": texts[1::2],
                                 "calibration_teacher": truth[1::2], "calibration_source": source[1::2]}
            else:
                fit_on = (ref_texts, ref_student, ref_teacher)
                encoded[name] = {"calibration": calib, "calibration_texts": texts, "calibration_teacher": truth,
                                 "calibration_source": source}
            if dataset.name not in models:   # the document bank is the served corpus' (full, or PCA-reduced)
                models[dataset.name] = {
                    (size, k, rescore, clusters, probe): fit_signal_model(
                        *fit_on, documents=dataset.docs, doc_bank_size=size, doc_pca_dim=k, doc_rescore=rescore,
                        doc_clusters=clusters, doc_probe=probe)
                    for size, k, rescore, clusters, probe in sorted({c["bank"] for c in CANDIDATES.values()})}
            encoded[name]["queries"] = encoder.encode(dataset.data.query_texts, kind="query")
        state[label] = {"encoder": encoder, "models": models, "encoded": encoded}
        card_path = student_dir / "model_card.json"
        card = json.loads(card_path.read_text()) if card_path.is_file() else None
        report["students"][label] = {"dir": str(student_dir), "trained": card is not None,
                                     "reference": "own training texts + spans" if card else
                                     "even half of the served corpus' calibration spans (no training texts)"}
        if card:
            report["students"][label].update(held_out_cosine=card["validation"]["best_cosine"],
                                             steps=card["training"]["steps_done"],
                                             training_texts=card["corpus"]["texts"])
    return state


# The candidates whose cost decides a static student's choice: last session's picks (retrieval_contrast for
# static-a; retrieval_entropy, rejected on a noisy timing), their cheaper document banks, the default signals.
COST_SURVEY = ["signals+vec16", "only:retrieval_contrast", "only:retrieval_entropy",
               *[f"only:{name}@{size}x{k}" for name in ("retrieval_entropy", "retrieval_contrast")
                 for size, k in ((8192, 64), (8192, 32), (2048, 64), (2048, 0), (1024, 0))]]


def cost_survey(state: dict, datasets: dict, teacher, names: Sequence[str]) -> dict[str, Any]:
    """Dev quality (SciFact train queries) and the robust cost of each named candidate."""
    dev = datasets["scifact-dev"]
    out: dict[str, Any] = {}
    for label, st in state.items():
        enc = st["encoded"]["scifact-dev"]
        for name in names:
            candidate = CANDIDATES[name]
            model = model_for(st, "scifact", candidate)
            curves = evaluate_candidate(model, candidate, dev, enc, fast=True)
            costs = not_routed_costs(st, model, curves["_calibration"], teacher, dev.data.query_texts)
            out.setdefault(label, {})[name] = {
                "dev_gap_recovered_10": gap_at(curves, 0.1), "dev_gap_recovered_20": gap_at(curves, 0.2),
                "dev_label_free_oracle_10": gap_at(curves, 0.1, "label_free_oracle"),
                "dev_label_free_oracle_20": gap_at(curves, 0.2, "label_free_oracle"),
                "dev_random_10": gap_at(curves, 0.1, "random"), "dev_random_20": gap_at(curves, 0.2, "random"),
                "not_routed_over_student": {b: c["not_routed_over_student"]["median_of_round_ratios"]
                                            for b, c in costs.items()},
                "not_routed_adaptive_over_student": {b: c["not_routed_adaptive_over_student"]
                                                     for b, c in costs.items()},
                "cost_ok": cost_ok(label, costs), "measured": costs}
            print(f"  {label} {name:36s} gap10 {out[label][name]['dev_gap_recovered_10']:.3f} gap20 "
                  f"{out[label][name]['dev_gap_recovered_20']:.3f} not routed / student "
                  f"{out[label][name]['not_routed_over_student']}", flush=True)
    return out


COST_CHECKS = 12     # candidates (best dev quality first) whose cost is measured before giving up


def choose_on_dev(state: dict, datasets: dict, report: dict[str, Any], teacher) -> dict[str, str]:
    """Dev (SciFact train queries): which signals carry information, which candidate each student
    keeps -- the best gap recovered at 10% + 20% among the candidates that meet its cost target
    (measured interleaved at batch 1 and 64 on dev queries, best quality first, up to
    COST_CHECKS of them; the best overall if none does)."""
    dev = datasets["scifact-dev"]
    texts = dev.data.query_texts
    chosen: dict[str, str] = {}
    for label, st in state.items():
        per: dict[str, Any] = {}
        enc = st["encoded"]["scifact-dev"]
        signals = compute_signals(st["models"]["scifact"][FULL_BANK], dev.data.query_texts, enc["queries"], FIXED_SIGNALS)
        agreement = true_agreement(enc["queries"], dev.queries, dev.docs)
        per["signal_spearman_with_true_overlap"] = {k: spearman(-v, agreement["overlap"]) for k, v in signals.items()}
        calibrations = {}
        for cname, candidate in CANDIDATES.items():
            model = model_for(st, "scifact", candidate)
            curves = evaluate_candidate(model, candidate, dev, enc, fast=True)
            calibrations[cname] = curves["_calibration"]
            per[cname] = {"gap_recovered_10": gap_at(curves, 0.1), "gap_recovered_20": gap_at(curves, 0.2),
                          "label_free_oracle_10": gap_at(curves, 0.1, "label_free_oracle"),
                          "label_free_oracle_20": gap_at(curves, 0.2, "label_free_oracle"),
                          "spearman_overlap": curves["confidence_spearman"]["overlap"]}
            print(f"  {label} {cname:40s} gap10 {per[cname]['gap_recovered_10']:.3f} "
                  f"gap20 {per[cname]['gap_recovered_20']:.3f}", flush=True)
        score = {c: per[c]["gap_recovered_10"] + per[c]["gap_recovered_20"] for c in CANDIDATES}
        best_first = sorted(CANDIDATES, key=score.__getitem__, reverse=True)
        chosen[label] = best_first[0]
        for cname in best_first[:COST_CHECKS]:
            costs = not_routed_costs(st, model_for(st, "scifact", CANDIDATES[cname]), calibrations[cname], teacher,
                                     texts, rounds=9)
            per[cname]["costs"] = {b: {"not_routed_over_student": c["not_routed_over_student"],
                                       "confidence_over_student": c["confidence_over_student"],
                                       "load_average": c["load_average_after"]} for b, c in costs.items()}
            per[cname]["cost_ok"] = cost_ok(label, costs)
            print(f"  {label} {cname:40s} cost: not routed / student "
                  f"{ {b: round(c['not_routed_over_student']['median_of_round_ratios'], 2) for b, c in costs.items()} } "
                  f"ok={per[cname]['cost_ok']}", flush=True)
            if per[cname]["cost_ok"]:
                chosen[label] = cname
                break
        per["chosen"] = {"candidate": chosen[label], **CANDIDATES[chosen[label]],
                         "best_regardless_of_cost": best_first[0],
                         "cost_checked": [c for c in best_first[:COST_CHECKS] if "cost_ok" in per[c]],
                         "met_cost_target": bool(per[chosen[label]].get("cost_ok"))}
        report["dev_selection"][label] = per
        print(f"chosen on dev for {label}: {chosen[label]} (regardless of cost: {best_first[0]})", flush=True)
    report["chosen"] = {label: {"candidate": c, **CANDIDATES[c]} for label, c in chosen.items()}
    return chosen


def drift_shares(state: dict, datasets: dict) -> dict[str, Any]:
    """A SciFact-calibrated router fed SciFact test traffic, then the built-in docstrings."""
    from tava_core.route.calibrate import confidence

    drift: dict[str, Any] = {}
    for label, st in state.items():
        calibration = st["calibrations"]["scifact-test"]
        model = model_for(st, "scifact", CANDIDATES[st["chosen"]])
        threshold = calibration.threshold_for_budget(0.1)
        shares = {}
        for name in ("scifact-test", "builtin-test"):
            texts = datasets[name].data.query_texts
            scores = confidence(model, calibration, texts, st["encoded"][name]["queries"])
            shares[name] = float((scores < threshold).mean())
        drift[label] = {"threshold_at_10pct_budget": threshold, "low_confidence_share": shares,
                                  "rises": shares["builtin-test"] > shares["scifact-test"]}
    return drift


def targets(report: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("scifact-dev", "scifact-test", "builtin-test"):
        for label, curves in report["results"].get(name, {}).items():
            rows = {r["share"]: r for r in curves["rows"]}
            entry = {}
            for share, need in ((0.1, 1.8), (0.2, 1.6)):
                r = rows[share]
                entry[f"{int(share * 100)}pct"] = {
                    "router": r["router"]["gap_recovered"], "random": r["random"]["gap_recovered"],
                    "label_free_oracle": r["label_free_oracle"]["gap_recovered"],
                    "labelled_oracle": r["labelled_oracle"]["gap_recovered"],
                    "ratio_to_random": r["router_over_random_gap_ratio"], "ratio_needed": need,
                    "ratio_met": (r["router_over_random_gap_ratio"] or 0) >= need,
                    "within_0.05_of_label_free_oracle": r["router_minus_label_free_oracle_gap"] >= -0.05,
                    "router_minus_random_ndcg_ci": r["router_vs_random"]}
            out.setdefault(name, {})[label] = entry
    for label, cost in report["costs"].items():
        if label.startswith("transformer"):
            out.setdefault("costs", {})[label] = {
                "confidence_over_student": cost["confidence_over_student"], "needed": "<= 0.10 at batch 1 and 64",
                "met": cost["cost_ok"]}
        else:
            out.setdefault("costs", {})[label] = {
                "not_routed_over_student_alone": cost["not_routed_over_student_alone"],
                "needed": "<= 2.0 at batch 1 and 64 (median of interleaved round ratios)", "met": cost["cost_ok"]}
    out["drift"] = {k: v["rises"] for k, v in report["drift"].items()}
    return out


if __name__ == "__main__":
    main()
