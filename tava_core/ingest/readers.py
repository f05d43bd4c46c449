"""Readers: turn one input file into a stream of raw records, each tagged with file and line.

Every reader streams (one line, row batch or file at a time) so memory does not grow with the
input. Problems with a single record go through :class:`BadRecords`, which raises an
:class:`InputError` naming file and line (``on_bad_record="error"``) or counts and skips it
(``"skip"``). Problems with a whole file (unknown type, missing column) always raise.
"""
from __future__ import annotations

import csv
import gzip
import json
import sys
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator, Literal, Optional

from ..errors import InputError
from ..manifest import SkipReport

MAX_EXAMPLES = 10
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")
TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t"}


def beir_file(root: Path, stem: str) -> Optional[Path]:
    """``root/<stem>.jsonl``, or ``.jsonl.gz`` (BEIR's exports come both ways), if either exists."""
    for suffix in (".jsonl", ".jsonl.gz"):
        if (root / f"{stem}{suffix}").is_file():
            return root / f"{stem}{suffix}"
    return None


def open_text(path: Path) -> IO[str]:
    """A UTF-8 text file, gunzipped on the fly when its name ends in .gz."""
    return gzip.open(path, "rt", encoding="utf-8") if path.name.endswith(".gz") else open(path, encoding="utf-8")


def beir_subsets_hint(root: Path) -> Optional[str]:
    """When ``root`` is not a BEIR set but its subfolders are (CQADupStack's twelve forums, or a zip
    unpacked one level too high), the hint that names them; else None."""
    if not root.is_dir():
        return None
    subsets = sorted(p.name for p in root.iterdir() if p.is_dir() and beir_file(p, "corpus"))
    if not subsets:
        return None
    shown = ", ".join(subsets[:6]) + (f", ... ({len(subsets)} in all)" if len(subsets) > 6 else "")
    return f"this folder holds BEIR sets in subfolders ({shown}): pass one of them, e.g. {root / subsets[0]}"


@dataclass
class RawRecord:
    """One record as read, before normalisation. ``line`` is 1-based (a row number for Parquet)."""

    id: Optional[str]
    text: str
    title: str
    source: str
    path: str
    line: int


class BadRecords:
    """Collects what was skipped, or raises at the first bad record (``mode="error"``).

    ``bad`` is for broken input (an error unless skipping); ``skip`` is for records that are
    dropped by design (empty text, exact duplicates) and is always only counted.
    """

    def __init__(self, mode: Literal["error", "skip"] = "error") -> None:
        self.mode = mode
        self.by_reason: Counter[str] = Counter()
        self.examples: list[str] = []

    def bad(self, reason: str, message: str, *, path: str | Path, line: int | None,
            hint: str | None = None) -> None:
        if self.mode == "error":
            raise InputError(message, path=path, line=line,
                             hint=(hint + "; " if hint else "") + "or pass --on-bad-record skip to skip such records")
        self.skip(reason, message, path=path, line=line)

    def skip(self, reason: str, message: str, *, path: str | Path, line: int | None) -> None:
        self.by_reason[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            where = f"{path}:{line}" if line is not None else str(path)
            self.examples.append(f"{where}: {message}")

    def report(self) -> SkipReport:
        return SkipReport(count=sum(self.by_reason.values()), by_reason=dict(sorted(self.by_reason.items())),
                          examples=list(self.examples))


@dataclass(frozen=True)
class Fields:
    """Which field of a record holds what. ``id`` ``"_id"`` also accepts ``"id"`` (and back)."""

    text: str = "text"
    id: Optional[str] = "_id"
    title: Optional[str] = "title"
    source: Optional[str] = None

    def id_candidates(self) -> tuple[str, ...]:
        if self.id is None:
            return ()
        if self.id in ("_id", "id"):
            return ("_id", "id")
        return (self.id,)


def _as_text(value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, bool)):
        return str(value)
    return None


def record_from_mapping(obj: dict, fields: Fields, *, path: str, line: int, default_source: str,
                        bad: BadRecords) -> Optional[RawRecord]:
    """A RawRecord from one JSON object / table row, or None (reported to ``bad``)."""
    text = _as_text(obj.get(fields.text))
    if text is None and fields.text in obj and obj[fields.text] is None:
        # JSON null (or a null cell of a table): an empty text, which the writer skips or keeps as an
        # empty BEIR document; only an absent field is the wrong field
        text = ""
    if text is None:
        present = ", ".join(sorted(map(str, obj))[:12]) or "none"
        what = "missing" if fields.text not in obj else f"not a string ({type(obj[fields.text]).__name__})"
        bad.bad("missing text field", f"text field {fields.text!r} is {what}", path=path, line=line,
                hint=f"fields present: {present}; choose the text field with --text-field")
        return None
    record_id = None
    for key in fields.id_candidates():
        if obj.get(key) is not None:
            record_id = _as_text(obj[key])
            if record_id is None:
                bad.bad("bad id", f"id field {key!r} is a {type(obj[key]).__name__}, not a string or number",
                        path=path, line=line, hint="ids must be strings or numbers")
                return None
            break
    title = _as_text(obj.get(fields.title)) if fields.title else None
    source = _as_text(obj.get(fields.source)) if fields.source else None
    return RawRecord(id=record_id, text=text, title=title or "", source=source or default_source,
                     path=path, line=line)


# ------------------------------------------------------------------------------ line decoding

def _binary_lines(path: Path) -> Iterator[bytes]:
    """Raw lines of a file, gunzipped when it ends in .gz; a damaged archive is an InputError."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            yield from handle
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise InputError(f"not a readable gzip file ({exc})", path=path,
                         hint="the file is truncated or not gzip; re-download it or drop the .gz suffix") from None


def decoded_lines(path: Path, bad: BadRecords, *, reason_path: str | None = None) -> Iterator[tuple[int, Optional[str]]]:
    """``(line_number, text)`` per line; text is None for a line that is not UTF-8 (reported)."""
    shown = reason_path or str(path)
    for number, raw in enumerate(_binary_lines(path), start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad.bad("wrong encoding", f"line is not UTF-8 (byte {raw[exc.start]:#04x} at column {exc.start + 1})",
                    path=shown, line=number, hint="convert the file to UTF-8 (e.g. `iconv -f latin1 -t utf-8`)")
            text = None
        if number == 1 and text is not None and text.startswith("\ufeff"):
            text = text[1:]  # a UTF-8 byte-order mark is not part of the first record
        yield number, text


# ---------------------------------------------------------------------------------- readers

def read_jsonl(path: Path, fields: Fields, bad: BadRecords, *, shown: str | None = None) -> Iterator[RawRecord]:
    """One JSON object per line (plain or .gz); blank lines are ignored."""
    shown = shown or str(path)
    for number, line in decoded_lines(path, bad, reason_path=shown):
        if line is None or not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.bad("malformed JSON", f"malformed JSON ({exc.msg.removesuffix(' at')} at column {exc.colno})", path=shown, line=number,
                    hint="each line must be one complete JSON object")
            continue
        if not isinstance(obj, dict):
            bad.bad("malformed JSON", f"expected a JSON object, got {type(obj).__name__}", path=shown, line=number,
                    hint="each line must be one JSON object like {\"_id\": ..., \"text\": ...}")
            continue
        record = record_from_mapping(obj, fields, path=shown, line=number, default_source=Path(shown).name, bad=bad)
        if record is not None:
            yield record


def read_parquet(path: Path, fields: Fields, bad: BadRecords, *, batch_size: int = 4096) -> Iterator[RawRecord]:
    """Row batches of a Parquet file; ``line`` is the 1-based row number."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"not a readable Parquet file ({exc})", path=path) from None
    names = parquet.schema_arrow.names
    if fields.text not in names:
        raise InputError(f"no column {fields.text!r} (columns: {', '.join(names)})", path=path,
                         hint="choose the text column with --text-field")
    wanted = [name for name in {fields.text, *fields.id_candidates(), fields.title, fields.source}
              if name and name in names]
    row = 0
    for batch in parquet.iter_batches(batch_size=batch_size, columns=sorted(wanted)):
        for obj in batch.to_pylist():
            row += 1
            record = record_from_mapping(obj, fields, path=str(path), line=row, default_source=path.name, bad=bad)
            if record is not None:
                yield record


def _raise_field_limit() -> None:
    # csv refuses fields over 128 KiB by default; long documents are legitimate.
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:
            limit //= 10


def read_table(path: Path, bad: BadRecords, *, delimiter: str | None = None,
               shown: str | None = None) -> Iterator[dict]:
    """Rows of a CSV/TSV file with a header, as dicts carrying ``__line__`` (where the row starts).

    Lines are decoded here (not by ``open``) so a bad byte is reported with its line number.
    """
    shown = shown or str(path)
    delimiter = delimiter or TABLE_SUFFIXES.get(path.suffix.lower(), ",")
    _raise_field_limit()
    bad_lines: set[int] = set()
    state = {"line": 0}

    def lines() -> Iterator[str]:
        for number, text in decoded_lines(path, bad_lines_collector, reason_path=shown):
            state["line"] = number
            if text is None:
                bad_lines.add(number)
                text = "\n"
            yield text

    # Encoding errors are reported per row below (after csv has found where the row ends).
    bad_lines_collector = BadRecords("skip")
    reader = csv.reader(lines(), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise InputError("file is empty (expected a header row)", path=shown) from None
    except csv.Error as exc:
        raise InputError(f"cannot parse header ({exc})", path=shown, line=1) from None
    if 1 in bad_lines:
        raise InputError("header line is not UTF-8", path=shown, line=1, hint="convert the file to UTF-8")
    header = [name.strip() for name in header]
    start = state["line"] + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            bad.bad("malformed row", f"cannot parse row ({exc})", path=shown, line=start)
            start = state["line"] + 1
            continue
        end = state["line"]
        row_start, start = start, end + 1
        if any(row_start <= n <= end for n in bad_lines):
            bad.bad("wrong encoding", "row is not UTF-8", path=shown, line=row_start,
                    hint="convert the file to UTF-8 (e.g. `iconv -f latin1 -t utf-8`)")
            continue
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != len(header):
            bad.bad("malformed row", f"row has {len(row)} fields, the header has {len(header)}", path=shown,
                    line=row_start, hint="check quoting and the delimiter (.tsv = tab, .csv = comma)")
            continue
        obj: dict[str, Any] = dict(zip(header, row, strict=False))
        obj["__line__"] = row_start
        yield obj


def read_csv(path: Path, fields: Fields, bad: BadRecords) -> Iterator[RawRecord]:
    """CSV (comma) or TSV (tab) with a header row; quoted fields may span lines."""
    header = _peek_header(path)
    if fields.text not in header:
        raise InputError(f"no column {fields.text!r} in the header (columns: {', '.join(header)})", path=path,
                         line=1, hint="choose the text column with --text-field")
    for obj in read_table(path, bad):
        line = obj.pop("__line__")
        record = record_from_mapping(obj, fields, path=str(path), line=line, default_source=path.name, bad=bad)
        if record is not None:
            yield record


def _peek_header(path: Path) -> list[str]:
    """The header row of a CSV/TSV, read before any work starts."""
    delimiter = TABLE_SUFFIXES.get(path.suffix.lower(), ",")
    for _, text in decoded_lines(path, BadRecords("skip")):
        if text is None:
            raise InputError("header line is not UTF-8", path=path, line=1, hint="convert the file to UTF-8")
        return [name.strip() for name in next(csv.reader([text], delimiter=delimiter), [])]
    raise InputError("file is empty (expected a header row)", path=path)


def read_txt_folder(root: Path, bad: BadRecords) -> Iterator[RawRecord]:
    """One document per .txt file under ``root`` (sorted walk); id = path relative to ``root``."""
    for path in sorted(p for p in root.rglob("*.txt") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            bad.bad("wrong encoding", f"not UTF-8 (byte {raw[exc.start]:#04x})", path=str(path), line=line,
                    hint="convert the file to UTF-8 (e.g. `iconv -f latin1 -t utf-8`)")
            continue
        yield RawRecord(id=relative, text=text, title="", source=relative, path=str(path), line=1)
