"""`tava evaluate` steps: plan (checks + which encoder encodes what), embed the corpus, encode the
queries, score every mode and variant, report.

The flow (flows/evaluate.py) is the one place that chains them; ``encoding_plan`` is the one rule
for which encoders run (each document encoder's corpus once per fingerprint, each query role once,
in the order of the modes).
"""
from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..encoders import Encoder, load_encoder
from ..errors import ConfigError, TavaError
from ..home import TavaHome, slug
from ..io import atomic_directory, read_json, stable_hash
from ..manifest import now_iso
from ..records import EvaluationReport, EvaluationRow
from . import metrics as M
from .config import MODE_ROLES, EvalConfig
from .data import RetrievalData, load_retrieval_data
from .report import report_paths, write_report_files
from .vectors import load_corpus_vectors, load_query_vectors

log = logging.getLogger(__name__)
MAIN_METRICS = ("ndcg_at_10", "recall_at_100", "mrr_at_10")
# mteb rounds its scores to 5 decimals; agreement is therefore judged at that precision
MTEB_TOLERANCE = 1e-5


def load_encoders(config: EvalConfig) -> dict[str, Encoder]:
    """role -> Encoder for every encoder a selected mode uses."""
    roles = {role for mode in config.selected_modes() for role in MODE_ROLES[mode]}
    specs = config.encoder_specs()
    return {role: load_encoder(specs[role].model_copy(update={"batch_size": config.batch_size}))
            for role in specs if role in roles}


def check_pairs(config: EvalConfig, encoders: dict[str, Encoder]) -> None:
    """An asymmetric pair must share one vector space: same dim, else a ConfigError naming the model."""
    specs = config.encoder_specs()
    for mode in config.selected_modes():
        q_role, d_role = MODE_ROLES[mode]
        q, d = encoders[q_role], encoders[d_role]
        if q.dim != d.dim:
            raise ConfigError(
                f"mode {mode}: the {q_role} encoder gives {q.dim}-d vectors but the {d_role} encoder gives "
                f"{d.dim}-d; an asymmetric pair needs one vector space", path=specs[q_role].model,
                hint=f"give an adapted model that maps into the {d_role}'s {d.dim}-d space (tava adapt), "
                     f"or drop the mode with --modes")


def retrieval_data(config: EvalConfig, home: TavaHome) -> RetrievalData:
    """The data ``config`` scores: its dataset's documents, and the split's judged queries (or the
    label-free judgements')."""
    return load_retrieval_data(config.dataset, config.split, home, config.judgements)


def plan(config: EvalConfig, home: TavaHome) -> tuple[RetrievalData, dict[str, Encoder], list[str]]:
    """Everything checked before any encoding: data, ids, encoders, pair dims."""
    modes = config.selected_modes()
    data = retrieval_data(config, home)
    encoders = load_encoders(config)
    check_pairs(config, encoders)
    check_router(config, encoders)
    return data, encoders, modes


def check_router(config: EvalConfig, encoders: dict[str, Encoder]) -> None:
    """``--router`` is a router directory whose teacher is this evaluation's teacher; checked before any
    encoding (an adapter given as a router failed only after the teacher's evaluation, and a router of
    another teacher was scored beside it as if the two were one)."""
    if not config.router:
        return
    from ..route.config import router_meta_path

    meta_path = router_meta_path(config.router)
    routed_to = read_json(meta_path).get("teacher") or {}
    teacher = encoders.get("teacher")
    if teacher is not None and routed_to.get("fingerprint") not in (None, teacher.fingerprint):
        spec = routed_to.get("spec") or {}
        raise ConfigError(
            f"the router sends queries to teacher {spec.get('model', '?')!r} (fingerprint "
            f"{str(routed_to['fingerprint'])[:12]}), but this evaluation's teacher is {teacher.name!r} (fingerprint "
            f"{teacher.fingerprint[:12]}): its rows would be scored against another teacher's documents",
            path=meta_path, hint=f"evaluate with the router's teacher (--teacher {spec.get('model', 'MODEL')}), or "
                                 "calibrate a router for this teacher (tava calibrate-router --teacher MODEL ...)")


def _settings(config: EvalConfig) -> dict[str, Any]:
    """The config minus ``reuse`` (which decides whether to evaluate, not what), and minus ``judgements``
    when unset (the field came in session 37: earlier reports keep their keys; when set, the judgements'
    content is in the key through the queries and qrels)."""
    return config.model_dump(mode="json", exclude={"reuse"} | ({"judgements"} if config.judgements is None else set()))


def run_name(config: EvalConfig, data: RetrievalData) -> str:
    return slug(config.run) if config.run else f"{data.name}-{data.split}-{stable_hash(_settings(config), 8)}"


def evaluation_key(config: EvalConfig, data: RetrievalData, encoders: dict[str, Encoder]) -> str:
    """Everything an evaluation's result depends on: settings, the dataset's content (corpus,
    queries, qrels) and the weights of every encoder (their fingerprints, not their paths)."""
    return stable_hash({
        # reports from before identical ids were left out (session 35) scored those queries otherwise
        **({"identical_ids_left_out": data.same_id_queries} if data.same_id_queries else {}),
        "settings": _settings(config),
        "corpus": data.corpus_checksum,
        "queries": stable_hash([data.query_ids, data.query_texts]),
        "qrels": stable_hash(sorted((q, sorted(docs.items())) for q, docs in data.qrels.items())),
        "encoders": {role: encoder.fingerprint for role, encoder in sorted(encoders.items())}}, 24)


def earlier_report(config: EvalConfig, home: TavaHome, data: RetrievalData,
                   encoders: dict[str, Encoder]) -> dict[str, Any] | None:
    """The report of an identical earlier evaluation (``config.reuse``), else None."""
    if not config.reuse:
        return None
    paths = report_paths(home.reports / "evaluate" / run_name(config, data))
    try:
        report = read_json(paths["json"])
    except (TavaError, OSError, ValueError):   # missing or unreadable: evaluate (and write it) again
        return None
    if report.get("evaluation_key") != evaluation_key(config, data, encoders):
        return None
    return {**report, "files": {k: str(p) for k, p in paths.items() if p.is_file()}, "reused": True}


def encoding_plan(modes: list[str], fingerprints: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """Which encoder encodes what: ``(corpus, queries)`` where ``corpus`` maps each document role to
    the role whose corpus vectors it uses (the first document role, in mode order, with the same
    encoder fingerprint: each encoder embeds the corpus once) and ``queries`` lists the query roles
    in mode order (each encoded once, one after another: the timing is the throughput figure)."""
    first: dict[str, str] = {}
    corpus = {role: first.setdefault(fingerprints[role], role)
              for role in dict.fromkeys(MODE_ROLES[m][1] for m in modes)}
    return corpus, list(dict.fromkeys(MODE_ROLES[m][0] for m in modes))


def variant_rows(mode: str, queries: np.ndarray, documents: np.ndarray, data: RetrievalData,
                 config: EvalConfig) -> list[dict[str, Any]]:
    """Full-dim, Matryoshka and quantised scores of one mode, in numpy; each score matrix is built a
    block of queries at a time (`metrics.ScoreMatrix`), so memory does not grow with queries x documents."""
    dim = documents.shape[1]
    variants: list[tuple[str, int, Callable[[], M.ScoreMatrix]]] = [
        ("full", dim, lambda: M.ScoreMatrix.cosine(queries, documents))]

    def matryoshka(d: int) -> M.ScoreMatrix:
        return M.ScoreMatrix.cosine(M.truncate(queries, d), M.truncate(documents, d))

    for d in config.matryoshka_dims:
        if d < dim:
            variants.append((f"mrl-{d}", d, partial(matryoshka, d)))
    if "int8" in config.quantization:
        variants.append(("int8", dim, lambda: M.ScoreMatrix.int8(M.truncate(queries, dim), documents)))
    if "binary" in config.quantization:
        variants.append(("binary", dim, lambda: M.ScoreMatrix.hamming(queries, documents)))
    rows = []
    for variant, d, scores in variants:
        values = M.retrieval_metrics(scores(), data.query_ids, data.corpus_ids, data.qrels)
        rows.append({"mode": mode, "variant": variant, "dim": d, **values, "source": "numpy"})
    return rows


def score_and_report(config: EvalConfig, home: TavaHome, data: RetrievalData, encoders: dict[str, Encoder],
                     corpus_dirs: dict[str, str], query_records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Score every mode (mteb + numpy) and variant; write the report directory atomically.

    ``corpus_dirs`` / ``query_records`` are keyed by role (as from `embed_corpus` / `encode_queries`).
    """
    import mteb

    from .mteb_adapter import make_routing_encoder, make_task, run_mteb

    modes = config.selected_modes()
    run = run_name(config, data)
    report_dir = home.reports / "evaluate" / run
    doc_vectors = {role: load_corpus_vectors(data, path) for role, path in corpus_dirs.items()}
    query_vectors = {role: load_query_vectors(data, rec["path"]) for role, rec in query_records.items()}
    texts = data.document_texts
    rows: list[dict[str, Any]] = []
    mteb_check: dict[str, Any] = {}
    with atomic_directory(report_dir) as staging:
        for mode in modes:
            q_role, d_role = MODE_ROLES[mode]
            q_vecs, d_vecs = query_vectors[q_role], doc_vectors[d_role]
            mode_rows = variant_rows(mode, q_vecs, d_vecs, data, config)
            if config.run_mteb:
                model = make_routing_encoder(
                    encoders[q_role], encoders[d_role], name=mode.replace("/", "__"), batch_size=config.batch_size,
                    query_vectors=dict(zip(data.query_texts, q_vecs, strict=False)), document_vectors=dict(zip(texts, d_vecs, strict=False)))
                scores = run_mteb(make_task(data), model, staging / "mteb", config.batch_size)
                numpy_full = mode_rows[0]
                diffs = {k: abs(float(scores[k]) - numpy_full[k]) for k in MAIN_METRICS}
                mteb_check[mode] = {"mteb": {k: float(scores[k]) for k in MAIN_METRICS},
                                    "numpy": {k: numpy_full[k] for k in MAIN_METRICS},
                                    "max_abs_diff": max(diffs.values()), "agree": max(diffs.values()) <= MTEB_TOLERANCE,
                                    "encoded_by_mteb": sum(c[2] - c[3] for c in model.calls),
                                    "model_name": model.mteb_model_meta.name,
                                    "revision": model.mteb_model_meta.revision}
                if not mteb_check[mode]["agree"]:
                    log.warning("mteb and numpy metrics differ for %s: %s", mode, diffs)
                mode_rows[0] = {**numpy_full, **{k: float(scores[k]) for k in MAIN_METRICS}, "source": "mteb"}
            q, d = encoders[q_role], encoders[d_role]
            for row in mode_rows:
                row.update(query_encoder=q.name, document_encoder=d.name)
            rows.extend(mode_rows)
        teacher_full = next((r["ndcg_at_10"] for r in rows if r["mode"] == "teacher/teacher" and r["variant"] == "full"),
                            None)
        for row in rows:
            row["retention"] = row["ndcg_at_10"] / teacher_full if teacher_full else None
        report = {
            "kind": "tava-evaluate", "run": run, "created": now_iso(), "directory": str(report_dir),
            "evaluation_key": evaluation_key(config, data, encoders), "reused": False,
            "config": config.model_dump(mode="json"), "dataset": data.summary(),
            "encoders": {role: enc.info() for role, enc in encoders.items()},
            "throughput": {role: {k: v for k, v in rec.items() if k != "path"} for role, rec in query_records.items()},
            "rows": rows, "teacher_ndcg_at_10": teacher_full, "mteb_check": mteb_check,
            "mteb_version": mteb.__version__ if config.run_mteb else None,
            "mteb_results": "mteb/results" if config.run_mteb else None,
            "scoring": {"search": f"exact (every document scored; queries in blocks of at most {M.SCORE_BLOCK_BYTES >> 20} "
                                  "MB of scores)", "similarity": "cosine",
                        "int8": "per-dim min/max from the corpus; float query · dequantised document",
                        "binary": "sign bits; similarity = dim - 2*hamming; ties by doc id desc"},
        }
        files = write_report_files(report, staging)
    report["files"] = {k: str(report_dir / Path(v).name) for k, v in files.items()}
    return report


def evaluation_record(report: dict[str, Any]) -> EvaluationReport:
    """The small record of a report (what the flow returns and the CLI prints): rows rounded to 4 places."""
    keys = ("mode", "variant", "dim", "ndcg_at_10", "recall_at_100", "mrr_at_10", "retention")
    rows = [EvaluationRow.model_validate({k: (round(v, 4) if isinstance(v, float) else v)
                                          for k, v in row.items() if k in keys})
            for row in report["rows"]]
    checks = report.get("mteb_check") or {}
    return EvaluationReport(run=report["run"], directory=report["directory"], files=report["files"],
                            teacher_ndcg_at_10=report["teacher_ndcg_at_10"], rows=rows,
                            throughput={role: rec["queries_per_second"] for role, rec in report["throughput"].items()},
                            mteb_agrees=all(c["agree"] for c in checks.values()) if checks else None,
                            reused=bool(report.get("reused")))
