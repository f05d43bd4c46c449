"""Ingestion: read a source, normalise and de-duplicate its records, write text shards + manifest.

The whole dataset directory is built in a temporary sibling and swapped into place at the end
(``io.atomic_directory``): a failed ingest leaves no partial shard or manifest, and the previous
version of the dataset stays as it was until the new one is complete.

Memory stays bounded: records stream from the readers into shard buffers of ``shard_size``
rows; what grows with the input is one small entry per record id (to catch duplicates).
"""
from __future__ import annotations

import hashlib
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional

from pydantic import BaseModel, Field

from ..config import IngestConfig
from ..errors import InputError, TavaError
from ..home import TavaHome, slug
from ..io import atomic_directory, sha256_file, stable_hash, write_text_shard
from ..locks import file_lock
from ..manifest import (
    ABSENT_DOCUMENTS_HINT,
    DUPLICATE_RECORD,
    DUPLICATE_TEXT,
    Collection,
    DatasetManifest,
    QrelsRecord,
    ShardRecord,
    SkipReport,
    absent_documents_tolerated,
    save_manifest,
    warn_absent_documents,
)
from ..progress import progress_bar
from .readers import (
    JSONL_SUFFIXES,
    TABLE_SUFFIXES,
    BadRecords,
    Fields,
    RawRecord,
    beir_file,
    beir_subsets_hint,
    read_csv,
    read_jsonl,
    read_parquet,
    read_table,
    read_txt_folder,
)

BEIR_FIELDS = Fields(text="text", id="_id", title="title", source="source")
BEIR_QUERY_FIELDS = Fields(text="text", id="_id", title=None)
FORMATS = ("beir", "jsonl", "parquet", "csv", "tsv", "txt")


class IngestReport(BaseModel):
    """What an ingest produced: the small record a flow returns and the CLI prints."""

    name: str = Field(description="Dataset name under <home>/data.")
    path: str = Field(description="Dataset directory (holds manifest.json).")
    source: str
    format: str
    collections: dict[str, int] = Field(description="Rows per collection.")
    shards: int = Field(description="Text shards written, all collections.")
    qrels: dict[str, int] = Field(default_factory=dict, description="Relevance pairs per split.")
    empty_documents: dict[str, int] = Field(default_factory=dict, description=(
        "Documents with no text per collection: kept for the qrels (judged, never retrieved), as BEIR does."))
    skipped: SkipReport = Field(default_factory=SkipReport)
    seconds: float = 0.0


def normalize_text(text: str) -> str:
    """Strip and collapse every run of whitespace (newlines, tabs, NBSP, ...) to one space."""
    return " ".join(text.split())


def content_id(title: str, text: str) -> str:
    """Stable id of a record that has none: a hash of its normalised title and text."""
    payload = f"{title}\x1f{text}" if title else text
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def _digest(title: str, text: str) -> bytes:
    return hashlib.blake2b(f"{title}\x1f{text}".encode("utf-8"), digest_size=8).digest()


# ------------------------------------------------------------------------------ source plans

@dataclass
class CollectionSource:
    """One collection and the files (with field names) it is read from."""

    name: str
    files: list[Path]
    fields: Fields
    reader: str  # jsonl | parquet | csv | txt
    dedupe_texts: bool = False
    # A BEIR corpus: a document with no text is kept for evaluation (see CollectionWriter.add)
    keep_empty: bool = False


@dataclass
class SourcePlan:
    """What an ingest will read, found (and checked) before any work starts."""

    source: str
    format: str
    root: Path
    default_name: str
    collections: list[CollectionSource]
    qrels: dict[str, Path] = field(default_factory=dict)
    info: dict = field(default_factory=dict)


def detect_format(path: Path) -> str:
    """The source format from what ``path`` is (BEIR dir, .txt folder) or its suffix."""
    name = path.name.lower()
    if path.is_dir():
        if beir_file(path, "corpus"):
            return "beir"
        if any(p.is_file() for p in path.rglob("*.txt")):
            return "txt"
        raise InputError("directory is neither a BEIR dataset (no corpus.jsonl) nor a folder of .txt files",
                         path=path, hint=beir_subsets_hint(path)
                         or "give a BEIR directory, a folder of .txt files, or a single file")
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if path.suffix.lower() in TABLE_SUFFIXES:
        return path.suffix.lower()[1:]
    raise InputError(f"unknown file type {path.suffix or '(no suffix)'!r}", path=path,
                     hint="supported: a BEIR directory, .jsonl, .jsonl.gz, .parquet, .csv, .tsv, a folder of "
                          ".txt files; or set --format")


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (*JSONL_SUFFIXES, ".parquet", ".pq", ".csv", ".tsv"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def dataset_name(config: IngestConfig) -> str:
    """The dataset an ingest of ``config`` writes: --name, else 'builtin', else from the source path."""
    if config.name:
        return slug(config.name)
    if config.source == "builtin":
        return "builtin"
    return slug(_stem(Path(config.source).expanduser().resolve()))


def plan_source(config: IngestConfig, home: TavaHome) -> SourcePlan:
    """Resolve and check the source: format, files, required columns (cheap, before any work)."""
    info: dict = {}
    if config.source == "builtin":
        from ..datasets.builtin import ensure_builtin_source

        root, info = ensure_builtin_source(home)
        plan = _plan_beir(root, config)
        plan.source, plan.default_name, plan.info = "builtin", "builtin", {"builtin": info}
        return plan
    path = Path(config.source).expanduser()
    if not path.exists():
        raise InputError("source not found", path=path,
                         hint="give an existing file or directory, or 'builtin' for the built-in corpus")
    path = path.resolve()
    fmt = detect_format(path) if config.format == "auto" else config.format
    fields = Fields(text=config.text_field, id=config.id_field or None, title=config.title_field or None,
                    source=config.source_field or None)
    if fmt == "beir":
        if not path.is_dir():
            raise InputError("format 'beir' needs a directory with corpus.jsonl, queries.jsonl and qrels/",
                             path=path)
        return _plan_beir(path, config)
    if fmt == "txt":
        if not path.is_dir():
            raise InputError("format 'txt' needs a folder of .txt files", path=path)
        return SourcePlan(source=str(path), format="txt", root=path, default_name=path.name,
                          collections=[CollectionSource("texts", [path], fields, "txt", config.dedupe_texts)])
    if path.is_dir():
        raise InputError(f"format {fmt!r} needs a file, this is a directory", path=path)
    reader = {"jsonl": "jsonl", "parquet": "parquet", "csv": "csv", "tsv": "csv"}[fmt]
    if reader == "csv":
        from .readers import _peek_header

        header = _peek_header(path)
        if fields.text not in header:
            raise InputError(f"no column {fields.text!r} in the header (columns: {', '.join(header)})", path=path,
                             line=1, hint="choose the text column with --text-field")
    return SourcePlan(source=str(path), format=fmt, root=path.parent, default_name=_stem(path),
                      collections=[CollectionSource("texts", [path], fields, reader, config.dedupe_texts)], info=info)


def _plan_beir(root: Path, config: IngestConfig) -> SourcePlan:
    corpus = beir_file(root, "corpus")
    queries = beir_file(root, "queries")
    if corpus is None:
        raise InputError("BEIR directory has no corpus.jsonl", path=root, hint=beir_subsets_hint(root))
    collections = [CollectionSource("corpus", [corpus], BEIR_FIELDS, "jsonl", keep_empty=True)]
    if queries is not None:
        collections.append(CollectionSource("queries", [queries], BEIR_QUERY_FIELDS, "jsonl"))
    unlabeled = beir_file(root, "unlabeled")
    if unlabeled is not None:  # the built-in corpus's training text (any BEIR dir may carry one)
        collections.append(CollectionSource("unlabeled", [unlabeled], BEIR_FIELDS, "jsonl", dedupe_texts=True))
    qrels_dir = root / "qrels"
    qrels = {p.stem: p for p in sorted(qrels_dir.glob("*.tsv"))} if qrels_dir.is_dir() else {}
    if qrels and queries is None:
        raise InputError("BEIR directory has qrels/ but no queries.jsonl", path=root)
    return SourcePlan(source=str(root), format="beir", root=root, default_name=root.name,
                      collections=collections, qrels=qrels)


def source_signature(config: IngestConfig) -> str:
    """Cheap fingerprint of the source (paths, sizes, mtimes; package versions for 'builtin')."""
    if config.source == "builtin":
        from ..datasets.builtin import builtin_signature

        return builtin_signature()
    path = Path(config.source).expanduser().resolve()
    if not path.exists():
        return f"missing:{path}"
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    stats = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return stable_hash(stats, length=32)


# ------------------------------------------------------------------------------- writing

class CollectionWriter:
    """Normalises, de-duplicates and shards the records of one collection."""

    def __init__(self, root: Path, name: str, *, shard_size: int, bad: BadRecords, dedupe_texts: bool,
                 keep_empty: bool = False) -> None:
        self.root, self.name, self.shard_size, self.bad = root, name, shard_size, bad
        self.ids: dict[str, tuple[bytes, int]] = {}  # id -> (content digest, line first seen)
        self.keep_empty = keep_empty
        self.empty_ids: list[str] = []  # documents with no text, kept for the qrels (keep_empty only)
        self.texts: Optional[set[bytes]] = set() if dedupe_texts else None
        self.buffer: dict[str, list[str]] = {"id": [], "text": [], "title": [], "source": []}
        self.shards: list[ShardRecord] = []
        self.rows = 0

    def add(self, record: RawRecord) -> bool:
        text, title = normalize_text(record.text), normalize_text(record.title)
        if not text and self.keep_empty and title:
            # BEIR embeds "title text": a title-only document is that title, retrievable as such.
            text, title = title, ""
        if not text:
            if self.keep_empty and record.id is not None and record.id.strip():
                return self._add_empty(record.id.strip(), record)
            self.bad.skip("empty text", "text is empty after normalisation", path=record.path, line=record.line)
            return False
        digest = _digest(title, text)
        record_id = record.id.strip() if record.id is not None else ""
        record_id = record_id or content_id(title, text)
        if self._repeats(record_id, digest, record,
                         hint="ids must be unique: fix the source, or use --id-field '' for content-hash ids"):
            return False
        if self.texts is not None:
            if digest in self.texts:
                self.bad.skip(DUPLICATE_TEXT, "same text as an earlier record", path=record.path, line=record.line)
                return False
            self.texts.add(digest)
        self.ids[record_id] = (digest, record.line)
        for key, value in (("id", record_id), ("text", text), ("title", title), ("source", record.source)):
            self.buffer[key].append(value)
        self.rows += 1
        if len(self.buffer["id"]) >= self.shard_size:
            self.flush()
        return True

    def _repeats(self, record_id: str, digest: bytes, record: RawRecord, *, hint: str) -> bool:
        """An id seen before: the same record again is skipped, another text under it is bad input."""
        first = self.ids.get(record_id)
        if first is None:
            return False
        if first[0] == digest:
            self.bad.skip(DUPLICATE_RECORD, f"id {record_id!r} repeats the record at line {first[1]}",
                          path=record.path, line=record.line)
        else:
            self.bad.bad("duplicate id", f"id {record_id!r} was already used at line {first[1]} with a different text",
                         path=record.path, line=record.line, hint=hint)
        return True

    def _add_empty(self, record_id: str, record: RawRecord) -> bool:
        """A BEIR corpus keeps its empty documents as BEIR does: judged (the qrels may name them) but
        never retrieved. They get no shard row (an encoder has nothing to embed), only their id."""
        digest = _digest("", "")
        if self._repeats(record_id, digest, record, hint="ids must be unique: fix the source"):
            return False
        self.ids[record_id] = (digest, record.line)
        self.empty_ids.append(record_id)
        return False

    def flush(self) -> None:
        if not self.buffer["id"]:
            return
        relative = f"{self.name}/shard-{len(self.shards):05d}.parquet"
        written = write_text_shard(self.root / relative, self.buffer)
        self.shards.append(ShardRecord(path=relative, rows=written["rows"], sha256=written["sha256"]))
        self.buffer = {key: [] for key in self.buffer}


def _records(source: CollectionSource, bad: BadRecords) -> Iterator[RawRecord]:
    for path in source.files:
        if source.reader == "jsonl":
            yield from read_jsonl(path, source.fields, bad)
        elif source.reader == "parquet":
            yield from read_parquet(path, source.fields, bad)
        elif source.reader == "csv":
            yield from read_csv(path, source.fields, bad)
        elif source.reader == "txt":
            yield from read_txt_folder(path, bad)
        else:  # pragma: no cover - plans only name the readers above
            raise ValueError(source.reader)


def _sample(records: Iterable[RawRecord], size: int, seed: int) -> tuple[list[RawRecord], bool]:
    """A uniform random sample of ``size`` records (reservoir sampling: one pass, ``size`` records
    in memory), back in source order; and whether any record was left out."""
    rng = random.Random(seed)
    reservoir: list[tuple[int, RawRecord]] = []
    seen = 0
    for seen, record in enumerate(records, start=1):
        if len(reservoir) < size:
            reservoir.append((seen, record))
        else:
            slot = rng.randrange(seen)
            if slot < size:
                reservoir[slot] = (seen, record)
    reservoir.sort(key=lambda item: item[0])
    return [record for _, record in reservoir], seen > size


def write_collection(root: Path, source: CollectionSource, config: IngestConfig, bad: BadRecords, *,
                     show_progress: bool = False) -> tuple[CollectionWriter, bool]:
    """Stream one collection into shards; returns the writer and whether --max-records or
    --sample-records left records out."""
    writer = CollectionWriter(root, source.name, shard_size=config.shard_size, bad=bad,
                              dedupe_texts=source.dedupe_texts, keep_empty=source.keep_empty)
    truncated = False
    records: Iterable[RawRecord] = _records(source, bad)
    if config.sample_records is not None:
        records, truncated = _sample(records, config.sample_records, config.sample_seed)
    with progress_bar(desc=f"ingest {source.name}", unit=" rec", disable=not show_progress, leave=False) as bar:
        for record in records:
            if config.max_records is not None and writer.rows >= config.max_records:
                truncated = True
                break
            if writer.add(record):
                bar.update(1)
    writer.flush()
    if writer.rows == 0:
        files = ", ".join(str(p) for p in source.files)
        raise InputError(f"no usable records for collection {source.name!r}", path=files,
                         hint="check the text field (--text-field) and that the records are not all empty"
                              + (f"; skipped: {dict(bad.by_reason)}" if bad.by_reason else ""))
    return writer, truncated


def write_qrels(root: Path, split: str, path: Path, query_ids: dict, corpus_ids: dict, bad: BadRecords, *,
                lenient_ids: bool) -> QrelsRecord:
    """Check a BEIR qrels file against the ingested ids and write ``qrels/<split>.tsv``.

    A pair naming a document the corpus lacks is kept (relevant, never retrieved, as trec_eval and
    mteb score it) when such pairs are at most ``ABSENT_DOCUMENTS_MAX_SHARE`` of the file; more is
    an error, as is a pair naming an unknown query."""
    rows: list[tuple[int, str, str, str]] = []
    for row in read_table(path, bad, delimiter="\t"):
        missing = [] if rows else [c for c in ("query-id", "corpus-id", "score") if c not in row]
        if missing:
            raise InputError(f"qrels header lacks {', '.join(missing)} (has: {', '.join(k for k in row if k != '__line__')})",
                             path=path, line=1,
                             hint="BEIR qrels start with the header 'query-id<TAB>corpus-id<TAB>score'")
        rows.append((row["__line__"], row["query-id"].strip(), row["corpus-id"].strip(), row["score"]))
    # counted first, so the file's first bad line is still the one reported
    absent_pairs = sum(1 for _, qid, cid, _ in rows if qid in query_ids and cid not in corpus_ids)
    keep_absent = not lenient_ids and absent_documents_tolerated(absent_pairs, len(rows))
    pairs: dict[tuple[str, str], int] = {}
    absent: dict[str, int] = {}     # document id -> first line naming it
    for line, qid, cid, raw_score in rows:
        try:
            score = int(float(raw_score))
        except ValueError:
            bad.bad("malformed qrels", f"score {raw_score!r} is not a number", path=path, line=line)
            continue
        query_known = qid in query_ids
        document_known = cid in corpus_ids or (keep_absent and query_known)
        unknown = ([] if query_known else [f"query id {qid!r}"]) + ([] if document_known else [f"corpus id {cid!r}"])
        if unknown:
            message = f"qrels name unknown {' and '.join(unknown)}"
            if lenient_ids:
                bad.skip("qrels outside --max-records / --sample-records", message, path=path, line=line)
            else:
                if not document_known and absent_pairs:
                    message += f" ({absent_pairs} of {len(rows)} pairs name documents the corpus lacks)"
                hint = "the qrels must only name ids in queries.jsonl and corpus.jsonl"
                if not document_known:
                    hint += f" ({ABSENT_DOCUMENTS_HINT})"
                bad.bad("qrels unknown id", message, path=path, line=line, hint=hint)
            continue
        if (qid, cid) in pairs:
            if pairs[(qid, cid)] != score:
                bad.bad("malformed qrels", f"pair ({qid}, {cid}) repeated with a different score", path=path,
                        line=line)
            else:
                bad.skip("duplicate qrels pair", f"pair ({qid}, {cid}) repeated", path=path, line=line)
            continue
        if cid not in corpus_ids:
            absent.setdefault(cid, line)
        pairs[(qid, cid)] = score
    if not pairs:
        raise InputError("qrels file has no usable pairs", path=path,
                         hint="a BEIR qrels file is a header then 'query-id<TAB>corpus-id<TAB>score' rows")
    warn_absent_documents(path, absent)
    out = root / "qrels" / f"{split}.tsv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8", newline="") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        for (qid, cid), score in pairs.items():
            handle.write(f"{qid}\t{cid}\t{score}\n")
    return QrelsRecord(path=f"qrels/{split}.tsv", pairs=len(pairs), queries=len({q for q, _ in pairs}),
                       sha256=sha256_file(out), absent_documents=sorted(absent))


def ingest_run_key(config: IngestConfig) -> str:
    """What an ingest's dataset depends on: the source's signature and the config (tava_core.reuse)."""
    from ..reuse import run_key

    return run_key({"source": source_signature(config), "config": config.model_dump(mode="json")})


def reused_ingest(config: IngestConfig, home: TavaHome, name: str, key: str) -> Optional[IngestReport]:
    """The report of the dataset ``name`` when an identical ingest made it (same source signature and
    config, recorded in its manifest), else None."""
    from ..manifest import load_dataset_manifest

    directory = home.dataset_dir(name)
    if not (directory / "manifest.json").is_file():
        return None
    try:
        manifest = load_dataset_manifest(directory)
    except TavaError:  # an unreadable manifest simply means "ingest again"
        return None
    if manifest.info.get("run_key") != key:
        return None
    return IngestReport(name=name, path=str(directory), source=manifest.source, format=manifest.info.get("format", ""),
                        collections={k: c.rows for k, c in manifest.collections.items()},
                        shards=sum(len(c.shards) for c in manifest.collections.values()),
                        qrels={split: record.pairs for split, record in manifest.qrels.items()},
                        empty_documents={key: len(ids) for key, ids in manifest.empty_documents.items()},
                        skipped=manifest.skipped, seconds=manifest.info.get("ingest_seconds", 0.0))


def ingest(config: IngestConfig, home: TavaHome | str | Path | None = None, *,
           show_progress: bool = False, lock_timeout: float = 0.0) -> IngestReport:
    """Ingest ``config.source`` into ``<home>/data/<name>/`` (atomically) and return the report.

    One ingest per dataset directory at a time (a second one waits ``lock_timeout`` seconds, or
    stops naming the first); readers keep reading the old dataset until the new one is swapped in.
    An unchanged source ingested with the same config is not read again (tava_core.reuse).
    """
    started = time.perf_counter()
    home = home if isinstance(home, TavaHome) else TavaHome(home)
    plan = plan_source(config, home)
    name = slug(config.name or plan.default_name)
    key = ingest_run_key(config)
    if (done := reused_ingest(config, home, name, key)) is not None:
        return done
    bad = BadRecords(config.on_bad_record)
    with file_lock(home.lock_file("datasets", name), what=f"dataset {name}", timeout=lock_timeout), \
            atomic_directory(home.dataset_dir(name)) as tmp:
        writers: dict[str, CollectionWriter] = {}
        truncated = False
        for source in plan.collections:
            writer, cut = write_collection(tmp, source, config, bad, show_progress=show_progress)
            writers[source.name] = writer
            truncated = truncated or cut
        qrels: dict[str, QrelsRecord] = {}
        for split, path in plan.qrels.items():
            qrels[split] = write_qrels(tmp, split, path, writers["queries"].ids, writers["corpus"].ids, bad,
                                       lenient_ids=truncated)
        skipped = bad.report()
        seconds = round(time.perf_counter() - started, 3)  # recorded, so a reused ingest reports it too
        empty = {key: w.empty_ids for key, w in writers.items() if w.empty_ids}
        manifest = DatasetManifest(
            name=name, source=plan.source,
            collections={key: Collection(shards=w.shards) for key, w in writers.items()},
            qrels=qrels, skipped=skipped, empty_documents=empty, config=config.model_dump(mode="json"),
            info={"format": plan.format, "truncated": truncated, **plan.info, "run_key": key,
                  "ingest_seconds": seconds})
        save_manifest(tmp, manifest)
    final = home.dataset_dir(name)
    return IngestReport(name=name, path=str(final), source=plan.source, format=plan.format,
                        collections={key: w.rows for key, w in writers.items()},
                        shards=sum(len(w.shards) for w in writers.values()),
                        qrels={split: record.pairs for split, record in qrels.items()},
                        empty_documents={key: len(ids) for key, ids in empty.items()}, skipped=skipped,
                        seconds=seconds)


def dataset_exists(home: TavaHome, name: str) -> bool:
    return (home.dataset_dir(name) / "manifest.json").is_file()


__all__ = ["IngestReport", "ingest", "plan_source", "source_signature", "normalize_text", "content_id",
           "detect_format", "FORMATS", "dataset_exists", "dataset_name"]
