"""Label-free judgements: the teacher's own top ``k`` documents stand in for relevance labels.

A user's corpus rarely comes with qrels, yet "how much of the teacher does the student keep on *my*
documents?" is the question a run must answer. The documents are the teacher's anyway, so the
teacher's own ranking is the target the student must reproduce: for each query-like text, the
teacher's top ``k`` documents are written as relevant (grade 1), and every evaluation, router curve
and report then runs unchanged. nDCG@10 against them is a rank-weighted top-10 agreement with the
teacher (the teacher itself scores 1.0), recall@100 the share of the teacher's top 10 a system finds
in its top 100.

The query-like texts are, by preference, the dataset's own unjudged queries (a query log), else one
short span view (`distill.spans.make_span`, a seed of its own) of each of a seeded sample of the
documents. A span's id is its document's id, so that document is left out of every ranking
(`metrics.identical_id_rows`, as BEIR leaves out a query's own id) and out of the judgements: the
span must find the documents *around* its source, not the source itself, which any encoder does.

The output is a directory read by `load_retrieval_data(..., judgements=DIR)`: ``queries.jsonl``,
``qrels/<split>.tsv`` and ``judgements.json`` (what made it, written last: its presence means done).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..config import EncoderSpec
from ..errors import InputError, IntegrityError
from ..home import slug
from ..io import atomic_directory, write_json
from ..manifest import load_dataset_manifest, load_vector_manifest, read_vector_dir
from ..reuse import RUN_KEY, finished_record, run_key
from . import metrics as M

JUDGEMENTS_JSON = "judgements.json"
JUDGED_SPLIT = "teacher-top10"
SPAN_SEED = 9_173   # not a seed Stage A's span views use: these spans are not training texts


def query_like_texts(dataset_dir: Path, count: int, seed: int, *, spans: bool = False) -> tuple[list[str], list[str], str]:
    """(ids, texts, what they are) of ``count`` query-like texts of an ingested dataset: a seeded sample of
    its ``queries`` collection if it has one (and not ``spans``), else one span view each of a seeded
    sample of its documents (the span carries its document's id)."""
    from ..distill.data import read_collection_texts
    from ..distill.spans import span_view

    manifest = load_dataset_manifest(dataset_dir)
    rng = np.random.default_rng(seed)
    if "queries" in manifest.collections and not spans:
        ids, texts, _ = read_collection_texts(dataset_dir, manifest.collections["queries"].shards)
        keep = np.sort(rng.permutation(len(ids))[:count])
        return [ids[i] for i in keep], [texts[i] for i in keep], f"{len(keep)} of the dataset's {len(ids)} queries"
    collection = manifest.document_collection
    if collection is None:
        raise InputError("dataset has no documents (no corpus or texts collection)", path=dataset_dir / "manifest.json")
    ids, texts, _ = read_collection_texts(dataset_dir, manifest.collections[collection].shards)
    chosen = np.sort(rng.permutation(len(ids))[:count])
    span_ids, span_texts = [], []
    for i in chosen:
        span = span_view(ids[i], texts[i], 0, SPAN_SEED)
        if span:
            span_ids.append(ids[i])
            span_texts.append(span)
    return span_ids, span_texts, f"span views of {len(span_texts)} of the {len(ids)} documents"


def teacher_top_k(query_ids: Sequence[str], queries: np.ndarray, doc_ids: Sequence[str], documents: np.ndarray,
                  k: int) -> list[list[str]]:
    """The teacher's top ``k`` document ids per query, a document with the query's own id left out."""
    own = M.identical_id_rows(query_ids, doc_ids, {})
    ranked = M.top_k(M.ScoreMatrix.cosine(queries, documents), doc_ids, k, own)
    return [[doc_ids[i] for i in row] for row in ranked]


def judgements_key(corpus_checksum: str, teacher_fingerprint: str, query_ids: Sequence[str],
                   query_texts: Sequence[str], k: int) -> str:
    return run_key({"corpus": corpus_checksum, "teacher": teacher_fingerprint, "k": k,
                    "queries": run_key([list(query_ids), list(query_texts)])})


def write_judgements(out_dir: Path, *, query_ids: Sequence[str], query_texts: Sequence[str], judged: list[list[str]],
                     split: str, key: str, info: dict) -> Path:
    """``queries.jsonl``, ``qrels/<split>.tsv`` (the judged documents, grade 1) and ``judgements.json``,
    swapped into place whole."""
    with atomic_directory(out_dir) as tmp:
        with open(tmp / "queries.jsonl", "w", encoding="utf-8") as handle:
            for qid, text in zip(query_ids, query_texts, strict=True):
                handle.write(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n")
        (tmp / "qrels").mkdir()
        with open(tmp / "qrels" / f"{split}.tsv", "w", encoding="utf-8") as handle:
            handle.write("query-id\tcorpus-id\tscore\n")
            for qid, docs in zip(query_ids, judged, strict=True):
                handle.writelines(f"{qid}\t{doc}\t1\n" for doc in docs)
        write_json(tmp / JUDGEMENTS_JSON, {**info, "split": split, "queries": len(query_ids), RUN_KEY: key})
    return out_dir


def judged_by_teacher(out_dir: str | Path, key: str) -> Optional[dict]:
    """The record of identical judgements already in ``out_dir``, else None."""
    return finished_record(Path(out_dir) / JUDGEMENTS_JSON, key, ["queries.jsonl"])


def judgements_dir(artifacts: Path, dataset_name: str, teacher_name: str, teacher_fingerprint: str) -> Path:
    """Where a dataset's judgements by one teacher live: ``<artifacts>/judgements/<dataset>/<teacher>-<fp>``."""
    return artifacts / "judgements" / slug(dataset_name) / f"{slug(teacher_name)[-40:]}-{teacher_fingerprint[:12]}"


def judge_with_teacher(dataset_dir: str | Path, document_vectors: str | Path, teacher: EncoderSpec,
                       out_dir: str | Path | None = None, *, artifacts: Path | None = None, queries: int = 300,
                       seed: int = 0, spans: bool = False, k: int = 10, split: str = JUDGED_SPLIT) -> dict:
    """Judgements of ``dataset_dir``'s documents by ``teacher``: ``queries`` query-like texts
    (`query_like_texts`) and the teacher's top ``k`` for each, searched over its document vectors
    (``document_vectors``, the directory `tava embed` wrote). Reused when the same (corpus, teacher,
    queries, k) were judged into ``out_dir`` before. Returns judgements.json's record + ``reused``."""
    from ..encoders import load_encoder

    dataset_dir = Path(dataset_dir)
    manifest = load_dataset_manifest(dataset_dir)
    collection = manifest.document_collection
    if collection is None:
        raise InputError("dataset has no documents (no corpus or texts collection)", path=dataset_dir / "manifest.json")
    encoder = load_encoder(teacher)
    # the manifest only: the vectors themselves are read when there is judging to do
    if load_vector_manifest(document_vectors).encoder.get("fingerprint") != encoder.fingerprint:
        raise IntegrityError("the document vectors are not the teacher's (fingerprints differ)", path=document_vectors,
                             hint="embed the dataset with the teacher first (`tava embed`)")
    if out_dir is None:
        if artifacts is None:
            raise ValueError("judge_with_teacher needs out_dir or artifacts")
        out_dir = judgements_dir(artifacts, manifest.name, encoder.name, encoder.fingerprint)
    out_dir = Path(out_dir)
    query_ids, texts, what = query_like_texts(dataset_dir, queries, seed, spans=spans)
    if not query_ids:
        raise InputError("no query-like text to judge: the documents are empty", path=dataset_dir)
    key = judgements_key(manifest.collection_checksum(collection), encoder.fingerprint, query_ids, texts, k)
    earlier = judged_by_teacher(out_dir, key)
    if earlier is not None:
        return {**earlier, "directory": str(out_dir), "reused": True}
    doc_ids, documents, _ = read_vector_dir(document_vectors)
    judged = teacher_top_k(query_ids, encoder.encode(texts, kind="query"), doc_ids, documents, k)
    info = {"dataset": str(dataset_dir), "documents": collection, "teacher": encoder.name,
            "teacher_fingerprint": encoder.fingerprint, "k": k, "queries_from": what, "seed": seed}
    write_judgements(out_dir, query_ids=query_ids, query_texts=texts, judged=judged, split=split, key=key, info=info)
    return {**info, "directory": str(out_dir), "split": split, "queries": len(query_ids), RUN_KEY: key,
            "reused": False}
