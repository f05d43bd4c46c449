"""Retrieval data for evaluation: a raw BEIR directory or an ingested BEIR dataset, checked.

Either way the result is one `RetrievalData`: the corpus, the split's queries (those the qrels
judge, as BEIR and mteb do) and the qrels, with every id the qrels name checked to exist.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Optional

from ..errors import InputError
from ..home import TavaHome, slug
from ..ingest.readers import beir_file, beir_subsets_hint, open_text
from ..io import read_text_shard, sha256_file
from ..manifest import (
    ABSENT_DOCUMENTS_HINT,
    absent_documents_tolerated,
    load_dataset_manifest,
    warn_absent_documents,
)
from .metrics import identical_id_rows

Qrels = dict[str, dict[str, int]]


@dataclass
class RetrievalData:
    """One split of a retrieval set, ready to score."""

    name: str                     # dataset name (file-name safe)
    source: Path                  # the BEIR or ingested dataset directory
    split: str
    corpus_ids: list[str]
    corpus_titles: list[str]
    corpus_texts: list[str]
    query_ids: list[str]          # the split's judged queries, in file order
    query_texts: list[str]
    qrels: Qrels
    qrels_path: Path
    corpus_checksum: str          # identifies the corpus texts (vector cache key)
    ingested: bool = False
    document_collection: str = "corpus"   # an ingested plain source's documents are its ``texts``
    info: dict = field(default_factory=dict)

    @property
    def document_texts(self) -> list[str]:
        """``title + " " + text`` (BEIR's and mteb's document string), stripped as mteb does."""
        return [(f"{t} {x}" if t else x).strip() for t, x in zip(self.corpus_titles, self.corpus_texts, strict=False)]

    @cached_property
    def same_id_queries(self) -> int:
        """Queries with a document of their own id, left out of their rankings (metrics: identical ids)."""
        return int((identical_id_rows(self.query_ids, self.corpus_ids, self.qrels) >= 0).sum())

    def summary(self) -> dict:
        return {"name": self.name, "source": str(self.source), "split": self.split,
                "documents": len(self.corpus_ids), "queries": len(self.query_ids),
                "qrels_pairs": sum(len(v) for v in self.qrels.values()),
                "queries_with_same_id_document": self.same_id_queries,
                # judged, never retrieved (a few are tolerated: _check_ids)
                "judged_documents_not_in_corpus": int(self.info.get("absent_documents", 0)),
                "corpus_checksum": self.corpus_checksum, "ingested": self.ingested}


def _read_jsonl(directory: Path, stem: str) -> tuple[Path, list[tuple[int, dict]]]:
    """``directory/<stem>.jsonl`` (or ``.jsonl.gz``): its path and (line, record) pairs."""
    path = beir_file(directory, stem)
    if path is None:
        raise InputError(f"BEIR {stem} file not found", path=directory / f"{stem}.jsonl",
                         hint=beir_subsets_hint(directory)
                         or "a BEIR directory holds corpus.jsonl, queries.jsonl and qrels/<split>.tsv")
    rows: list[tuple[int, dict]] = []
    first_line: dict[str, tuple[int, int]] = {}   # id -> (line, index in rows)
    with open_text(path) as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"not valid JSON ({exc.msg})", path=path, line=line_no) from None
            if not isinstance(record, dict) or "_id" not in record or "text" not in record:
                raise InputError("record needs '_id' and 'text'", path=path, line=line_no)
            record_id = str(record["_id"])
            if record_id in first_line:
                # a repeated id would be ranked twice and its gain counted twice: the same record
                # again is dropped (as `tava ingest` does), a different one is an error
                earlier = rows[first_line[record_id][1]][1]
                if (earlier.get("title"), earlier["text"]) == (record.get("title"), record["text"]):
                    continue
                raise InputError(f"id {record_id!r} was already used at line {first_line[record_id][0]} with a "
                                 "different text", path=path, line=line_no,
                                 hint="ids must be unique in a BEIR file; fix the file or ingest it with "
                                      "`tava ingest DIR --on-bad-record skip`")
            first_line[record_id] = (line_no, len(rows))
            rows.append((line_no, record))
    return path, rows


def read_qrels(path: Path) -> tuple[Qrels, dict[tuple[str, str], int]]:
    """qrels TSV (``query-id  corpus-id  score``, header optional) -> (qrels, line of each pair)."""
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.tsv")) if path.parent.is_dir() else []
        raise InputError("qrels file for this split not found", path=path,
                         hint=f"splits present: {', '.join(available) or 'none'}")
    qrels: Qrels = {}
    lines: dict[tuple[str, str], int] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        for line_no, row in enumerate(csv.reader(handle, delimiter="\t"), 1):
            if not row or not "".join(row).strip():
                continue
            if line_no == 1 and row[0].strip().lower() in {"query-id", "query_id", "qid"}:
                continue
            if len(row) < 3:
                raise InputError(f"expected 3 tab-separated columns, got {len(row)}", path=path, line=line_no,
                                 hint="each line is: query-id<TAB>corpus-id<TAB>score")
            try:
                score = int(float(row[2]))
            except ValueError:
                raise InputError(f"score {row[2]!r} is not a number", path=path, line=line_no) from None
            qid, did = row[0].strip(), row[1].strip()
            qrels.setdefault(qid, {})[did] = score
            lines.setdefault((qid, did), line_no)
    if not qrels:
        raise InputError("the split is empty: its qrels file names no query-document pairs", path=path,
                         hint="evaluate a split that has judgements (e.g. --split test)")
    return qrels, lines


def _check_ids(qrels: Qrels, lines: dict[tuple[str, str], int], corpus_ids: set[str], query_ids: set[str],
               path: Path) -> list[str]:
    """Every id the qrels name must exist (a silent miss would skew every score), but for a few judged
    documents the corpus lacks (``absent_documents_tolerated``): those are returned, scored as relevant
    and never retrieved, as trec_eval and mteb score them."""
    absent_pairs = {pair: line for pair, line in lines.items() if pair[0] in query_ids and pair[1] not in corpus_ids}
    tolerated = absent_documents_tolerated(len(absent_pairs), len(lines))
    for (qid, did), line_no in sorted(lines.items(), key=lambda item: item[1]):
        if qid not in query_ids:
            raise InputError(f"qrels name query id {qid!r}, which is not among the queries", path=path,
                             line=line_no, hint="the qrels and the queries file come from different datasets?")
        if did not in corpus_ids and not tolerated:
            raise InputError(f"qrels name document id {did!r}, which is not in the corpus ({len(absent_pairs)} of "
                             f"{len(lines)} pairs name documents the corpus lacks)", path=path, line=line_no,
                             hint=f"the qrels and the corpus come from different datasets? ({ABSENT_DOCUMENTS_HINT})")
    absent: dict[str, int] = {}
    for (_, did), line_no in sorted(absent_pairs.items(), key=lambda item: item[1]):
        absent.setdefault(did, line_no)
    warn_absent_documents(path, absent)
    return sorted(absent)


def _judged_queries(directory: Path, split: str, judgements: Optional[Path]
                    ) -> tuple[Path, Qrels, dict[tuple[str, str], int], dict[str, str]]:
    """(qrels path, qrels, line of each pair, query texts) of a BEIR-layout directory: ``directory``
    itself, or the label-free ``judgements`` (queries.jsonl + qrels/, `judgements.py`) when given."""
    source = Path(judgements).resolve() if judgements is not None else directory
    qrels_path = source / "qrels" / f"{split}.tsv"
    qrels, lines = read_qrels(qrels_path)   # first: cheap, and names the split problem at once
    queries = {str(r["_id"]): r["text"] for _, r in _read_jsonl(source, "queries")[1]}
    return qrels_path, qrels, lines, queries


def _no_judgements(where: Path) -> tuple[Path, Qrels, dict[tuple[str, str], int], dict[str, str]]:
    """What ``_judged_queries`` returns for a documents-only read: no qrels, no lines, no queries."""
    return where, {}, {}, {}


def load_beir_directory(directory: Path, split: str, judgements: Optional[Path] = None, *,
                        documents_only: bool = False) -> RetrievalData:
    """Read a raw BEIR directory (corpus.jsonl, queries.jsonl, qrels/<split>.tsv; the two .jsonl
    may be gzipped); ``judgements``: queries and qrels from there instead; ``documents_only``: the corpus
    alone (no queries or qrels read or needed)."""
    directory = Path(directory).resolve()
    if documents_only:
        qrels_path, qrels, lines, queries = _no_judgements(directory)
    else:
        qrels_path, qrels, lines, queries = _judged_queries(directory, split, judgements)
    corpus_path, corpus = _read_jsonl(directory, "corpus")
    corpus_ids = [str(r["_id"]) for _, r in corpus]
    absent = _check_ids(qrels, lines, set(corpus_ids), set(queries), qrels_path)   # nothing to check when documents_only
    query_ids = [qid for qid in queries if qid in qrels]
    return RetrievalData(
        name=slug(directory.name), source=directory, split=split, corpus_ids=corpus_ids,
        corpus_titles=[str(r.get("title") or "") for _, r in corpus],
        corpus_texts=[str(r["text"]) for _, r in corpus],
        query_ids=query_ids, query_texts=[queries[q] for q in query_ids], qrels=qrels, qrels_path=qrels_path,
        corpus_checksum=sha256_file(corpus_path), info={"absent_documents": len(absent)} if absent else {})


def load_ingested_dataset(directory: Path, split: str, judgements: Optional[Path] = None, *,
                          documents_only: bool = False) -> RetrievalData:
    """Read an ingested dataset: its documents (``corpus``, or a plain source's ``texts``) and, from its
    ``queries`` collection and qrels or from ``judgements``, the judged queries (none with ``documents_only``)."""
    manifest = load_dataset_manifest(directory)
    manifest_path = directory / "manifest.json"
    documents = manifest.document_collection
    if documents is None:
        raise InputError("dataset has no corpus or texts collection: nothing to search", path=manifest_path)
    if judgements is None and not documents_only:
        if "queries" not in manifest.collections or "corpus" not in manifest.collections:
            raise InputError("dataset has no queries with judgements: it is not a retrieval (BEIR) set",
                             path=manifest_path, hint="ingest a BEIR directory to evaluate on it, or let the "
                             "teacher judge its documents: `tava judge`, then `--judgements` (`tava run` does both "
                             "when there are no qrels)")
        if split not in manifest.qrels:
            raise InputError(f"dataset has no qrels for split {split!r}", path=manifest_path,
                             hint=f"splits present: {', '.join(sorted(manifest.qrels)) or 'none'}")

    def read(collection: str) -> tuple[list[str], list[str], list[str]]:
        ids, titles, texts = [], [], []
        for shard in manifest.collections[collection].shards:
            table = read_text_shard(directory / shard.path)
            ids += table.column("id").to_pylist()
            titles += [t or "" for t in table.column("title").to_pylist()]
            texts += table.column("text").to_pylist()
        return ids, titles, texts

    corpus_ids, titles, texts = read(documents)
    # empty documents are judged but never retrieved: known ids, yet no row to score
    empty = manifest.empty_documents.get(documents, [])
    if documents_only:
        qrels_path, qrels, lines, queries = _no_judgements(manifest_path)
        absent_documents = []
    elif judgements is None:
        qrels_path = directory / manifest.qrels[split].path
        qrels, lines = read_qrels(qrels_path)
        q_ids, _, q_texts = read("queries")
        queries = dict(zip(q_ids, q_texts, strict=False))
        absent_documents = manifest.qrels[split].absent_documents
    else:
        qrels_path, qrels, lines, queries = _judged_queries(directory, split, judgements)
        absent_documents = []
    _check_ids(qrels, lines, set(corpus_ids) | set(empty) | set(absent_documents), set(queries), qrels_path)
    query_ids = [qid for qid in queries if qid in qrels]
    return RetrievalData(
        name=slug(manifest.name), source=directory, split=split, corpus_ids=corpus_ids, corpus_titles=titles,
        corpus_texts=texts, query_ids=query_ids, query_texts=[queries[q] for q in query_ids], qrels=qrels,
        qrels_path=qrels_path, corpus_checksum=manifest.collection_checksum(documents), ingested=True, document_collection=documents,
        info={**({"empty_documents": len(empty)} if empty else {}),
              **({"absent_documents": len(absent_documents)} if absent_documents else {}),
              **({"judgements": str(judgements)} if judgements is not None else {})})


def load_retrieval_data(dataset: str | Path, split: str, home: TavaHome | None = None,
                        judgements: str | Path | None = None, *, documents_only: bool = False) -> RetrievalData:
    """An ingested dataset (name or directory with manifest.json) or a raw BEIR directory; with
    ``judgements`` (a directory `judgements.py` writes), its documents judged by the teacher; with
    ``documents_only``, its documents alone (a corpus without qrels serves, e.g. to calibrate a router)."""
    home = home or TavaHome()
    judged = Path(judgements).expanduser() if judgements else None
    candidate = Path(dataset).expanduser()
    if (candidate / "manifest.json").is_file():
        return load_ingested_dataset(candidate.resolve(), split, judged, documents_only=documents_only)
    named = home.dataset_dir(str(dataset))
    if (named / "manifest.json").is_file():
        return load_ingested_dataset(named, split, judged, documents_only=documents_only)
    if candidate.is_dir() and beir_file(candidate, "corpus"):
        return load_beir_directory(candidate, split, judged, documents_only=documents_only)
    raise InputError(f"no retrieval dataset {str(dataset)!r}: neither an ingested dataset nor a BEIR directory",
                     path=candidate, hint=beir_subsets_hint(candidate) or "give a BEIR directory (corpus.jsonl, "
                     f"queries.jsonl, qrels/) or run `tava ingest DIR --name {dataset}` first")
