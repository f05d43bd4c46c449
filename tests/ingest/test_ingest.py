"""Ingestion: every reader, normalisation / ids / dedupe, bad input errors with file and line,
skip mode, atomicity, SciFact, and the CLI."""
from __future__ import annotations

import gzip
import json
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tava_core.config import IngestConfig
from tava_core.errors import InputError
from tava_core.home import TavaHome
from tava_core.ingest import content_id, ingest, normalize_text
from tava_core.io import read_text_shard, sha256_file
from tava_core.manifest import load_dataset_manifest


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def rows_of(dataset_dir: Path, collection: str) -> list[dict]:
    manifest = load_dataset_manifest(dataset_dir)
    out = []
    for shard in manifest.collections[collection].shards:
        out.extend(read_text_shard(dataset_dir / shard.path).to_pylist())
    return out


def run(source, home, **options):
    return ingest(IngestConfig(source=str(source), **options), TavaHome(home))


def make_beir(root: Path, *, qrels_rows: list[str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_jsonl(root / "corpus.jsonl", [
        {"_id": "d1", "title": "Cats", "text": "Cats  purr\nwhen content."},
        {"_id": "d2", "title": "", "text": "Dogs bark at strangers."},
        {"_id": "d3", "title": "Fish", "text": "Fish swim in schools."},
    ])
    write_jsonl(root / "queries.jsonl", [{"_id": "q1", "text": "why do cats purr"},
                                         {"_id": "q2", "text": "do dogs bark"}])
    (root / "qrels").mkdir(exist_ok=True)
    rows = qrels_rows if qrels_rows is not None else ["q1\td1\t1", "q2\td2\t1"]
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(rows) + "\n")
    return root


# ------------------------------------------------------------------------------ readers

def test_jsonl_normalises_ids_and_dedupes(tmp_path, tava_home):
    src = write_jsonl(tmp_path / "docs.jsonl", [
        {"_id": "a", "text": "  Hello \n\t world  ", "title": " T "},
        {"id": 7, "text": "numeric id"},
        {"text": "no id here"},
        {"_id": "a", "text": "Hello world", "title": "T"},          # same id + same text: dropped
        {"_id": "e", "text": "   \n "},                              # empty after normalising
        {"_id": "f", "text": "no   id here"},                        # same text as line 3: deduped
        "",                                                          # blank line: ignored
        {"_id": "g", "text": "last one", "source": "web"},
    ])
    report = run(src, tava_home, shard_size=2)
    assert report.name == "docs" and report.format == "jsonl"
    assert report.collections == {"texts": 4}
    assert report.skipped.by_reason == {"duplicate record": 1, "empty text": 1, "duplicate text": 1}
    assert report.skipped.examples[0].startswith(f"{src}:4:")
    rows = rows_of(Path(report.path), "texts")
    assert [r["id"] for r in rows] == ["a", "7", content_id("", "no id here"), "g"]
    assert rows[0]["text"] == "Hello world" and rows[0]["title"] == "T"
    assert rows[3]["source"] == "web" and rows[1]["source"] == "docs.jsonl"
    manifest = load_dataset_manifest(report.path)
    assert [s.rows for s in manifest.collections["texts"].shards] == [2, 2]
    for shard in manifest.collections["texts"].shards:
        assert sha256_file(Path(report.path) / shard.path) == shard.sha256
        assert shard.path.startswith("texts/shard-")
    assert manifest.skipped.count == 3 and manifest.config["shard_size"] == 2
    assert manifest.source == str(src.resolve())


def test_normalize_and_content_id_are_stable():
    assert normalize_text("\u00a0a \r\n b\t") == "a b"
    assert content_id("", "x") == content_id("", "x") != content_id("t", "x")
    assert len(content_id("", "x")) == 16


def test_jsonl_gz_and_custom_fields(tmp_path, tava_home):
    path = tmp_path / "p.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        for i in range(5):
            handle.write(json.dumps({"key": f"k{i}", "body": f"passage number {i}"}) + "\n")
    report = run(path, tava_home, text_field="body", id_field="key", name="passages")
    assert report.name == "passages" and report.collections == {"texts": 5}
    assert [r["id"] for r in rows_of(Path(report.path), "texts")] == [f"k{i}" for i in range(5)]


def test_parquet_reader_rows_are_lines(tmp_path, tava_home):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"doc_id": ["x", "y", "z"], "content": ["one", "", "three"]}), path)
    with pytest.raises(InputError, match="no column 'text'"):
        run(path, tava_home)
    report = run(path, tava_home, text_field="content", id_field="doc_id")
    assert [r["id"] for r in rows_of(Path(report.path), "texts")] == ["x", "z"]
    assert report.skipped.by_reason == {"empty text": 1}
    assert report.skipped.examples[0].startswith(f"{path.resolve()}:2:")     # a row's number is its line


def test_a_null_text_is_an_empty_text_and_an_absent_field_is_an_error(tmp_path, tava_home):
    """JSON null and a null table cell mean "no text" (skipped as empty, as "" is); only a record
    without the field at all points at the wrong --text-field, and the message says which."""
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"doc_id": ["x", "y", "z"], "content": ["one", None, "three"]}), path)
    report = run(path, tava_home, text_field="content", id_field="doc_id")
    assert [r["id"] for r in rows_of(Path(report.path), "texts")] == ["x", "z"]
    assert report.skipped.by_reason == {"empty text": 1}
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(json.dumps({"_id": "a", "text": "fine"}) + "\n" + json.dumps({"_id": "b", "body": "x"}) + "\n")
    with pytest.raises(InputError, match="text field 'text' is missing") as err:
        run(jsonl, tava_home, name="d")
    assert err.value.line == 2 and "fields present: _id, body" in str(err.value)


def test_csv_and_tsv_with_multiline_fields(tmp_path, tava_home):
    csv_path = tmp_path / "a.csv"
    csv_path.write_text('id,text,title\n1,"first, with comma",T1\n2,"spans\ntwo lines",\n3,third,T3\n')
    report = run(csv_path, tava_home)
    rows = rows_of(Path(report.path), "texts")
    assert [(r["id"], r["text"], r["title"]) for r in rows] == [
        ("1", "first, with comma", "T1"), ("2", "spans two lines", ""), ("3", "third", "T3")]
    tsv_path = tmp_path / "b.tsv"
    tsv_path.write_text("text\nalpha beta\ngamma\n")
    report = run(tsv_path, tava_home, id_field="")
    assert [r["id"] for r in rows_of(Path(report.path), "texts")] == [content_id("", "alpha beta"),
                                                                      content_id("", "gamma")]
    # A row with the wrong number of fields is reported at the line it starts on (after a 2-line row).
    bad = tmp_path / "c.csv"
    bad.write_text('id,text\n1,"two\nlines"\n2,ok,extra\n')
    with pytest.raises(InputError) as err:
        run(bad, tava_home)
    assert err.value.path == str(bad.resolve()) and err.value.line == 4 and "3 fields" in err.value.message
    latin = tmp_path / "d.csv"
    latin.write_bytes(b"id,text\n1,fine\n2,caf\xe9\n3,also fine\n")
    with pytest.raises(InputError) as err:
        run(latin, tava_home)
    assert err.value.line == 3 and "UTF-8" in err.value.message
    report = run(latin, tava_home, on_bad_record="skip")
    assert report.collections == {"texts": 2} and report.skipped.by_reason == {"wrong encoding": 1}


def test_txt_folder(tmp_path, tava_home):
    root = tmp_path / "notes"
    (root / "sub").mkdir(parents=True)
    (root / "b.txt").write_text("second\nfile")
    (root / "sub" / "a.txt").write_text("nested file")
    (root / "ignored.md").write_text("not a txt")
    report = run(root, tava_home)
    assert report.format == "txt"
    rows = rows_of(Path(report.path), "texts")
    assert [(r["id"], r["text"]) for r in rows] == [("b.txt", "second file"), ("sub/a.txt", "nested file")]
    (root / "sub" / "c.txt").write_bytes(b"good line\nbad \xff byte\n")
    with pytest.raises(InputError) as err:
        run(root, tava_home)
    assert err.value.path.endswith("sub/c.txt") and err.value.line == 2


def test_beir_directory(tmp_path, tava_home):
    root = make_beir(tmp_path / "mini")
    report = run(root, tava_home)
    assert report.format == "beir" and report.collections == {"corpus": 3, "queries": 2}
    assert report.qrels == {"test": 2}
    rows = rows_of(Path(report.path), "corpus")
    assert rows[0] == {"id": "d1", "text": "Cats purr when content.", "title": "Cats", "source": "corpus.jsonl"}
    qrels = (Path(report.path) / "qrels" / "test.tsv").read_text().splitlines()
    assert qrels == ["query-id\tcorpus-id\tscore", "q1\td1\t1", "q2\td2\t1"]
    manifest = load_dataset_manifest(report.path)
    assert manifest.qrels["test"].pairs == 2 and manifest.qrels["test"].queries == 2
    # --max-records cuts collections short; qrels naming ids cut away are skipped, not errors
    report = run(root, tava_home, max_records=1, name="cut")
    assert report.collections == {"corpus": 1, "queries": 1} and report.qrels == {"test": 1}
    assert report.skipped.by_reason == {"qrels outside --max-records / --sample-records": 1}


@pytest.mark.parametrize("seed", [0, 1])
def test_sample_records_is_a_seeded_uniform_sample_in_source_order(tmp_path, tava_home, seed):
    # a source grouped by origin: --max-records would keep the first group only
    path = tmp_path / "grouped.jsonl"
    path.write_text("".join(json.dumps({"_id": f"{group}{i:03d}", "text": f"{group} passage number {i}"}) + "\n"
                            for group in "abcd" for i in range(100)))
    report = run(path, tava_home, sample_records=40, sample_seed=seed)
    ids = [row["id"] for row in rows_of(Path(report.path), "texts")]
    assert report.collections == {"texts": 40} and ids == sorted(ids)       # source order kept
    assert {i[0] for i in ids} == set("abcd")                                # every group is represented
    again = run(path, tava_home, sample_records=40, sample_seed=seed, name="again")
    assert [row["id"] for row in rows_of(Path(again.path), "texts")] == ids   # deterministic per seed
    other = run(path, tava_home, sample_records=40, sample_seed=seed + 7, name="other")
    assert [row["id"] for row in rows_of(Path(other.path), "texts")] != ids
    whole = run(path, tava_home, sample_records=1000, name="whole")            # more than there are: all
    assert whole.collections == {"texts": 400}


# --------------------------------------------------------------------- bad input: file + line

@pytest.mark.parametrize("case", ["malformed json", "control character", "missing text", "encoding", "duplicate id",
                                  "not object"])
def test_bad_records_name_file_and_line(tmp_path, tava_home, case):
    good = [json.dumps({"_id": "a", "text": "fine"}), json.dumps({"_id": "b", "text": "also fine"})]
    bad_line = {"malformed json": '{"_id": "c", "text": "oops"', "control character": '{"_id": "c", "text": "a\tb"}',
                "missing text": json.dumps({"_id": "c", "body": "x"}),
                "encoding": None, "duplicate id": json.dumps({"_id": "a", "text": "different"}),
                "not object": "[1, 2]"}[case]
    path = tmp_path / "in.jsonl"
    content = ("\n".join(good) + "\n").encode()
    content += (b'{"_id": "c", "text": "caf\xe9"}' if bad_line is None else bad_line.encode()) + b"\n"
    content += json.dumps({"_id": "d", "text": "after"}).encode() + b"\n"
    path.write_bytes(content)
    with pytest.raises(InputError) as err:
        run(path, tava_home)
    assert err.value.path == str(path.resolve()) and err.value.line == 3
    assert err.value.hint and "--on-bad-record skip" in err.value.hint
    if case == "control character":   # json's own message ends in "at": said once
        assert "(Invalid control character at column 24)" in err.value.message
    assert not (Path(tava_home) / "data" / "in").exists()
    report = run(path, tava_home, on_bad_record="skip")
    assert report.collections == {"texts": 3} and report.skipped.count == 1
    assert report.skipped.examples[0].startswith(f"{path.resolve()}:3:")
    assert load_dataset_manifest(report.path).skipped == report.skipped


def test_qrels_with_unknown_ids(tmp_path, tava_home):
    root = make_beir(tmp_path / "mini", qrels_rows=["q1\td1\t1", "q2\tnope\t1", "q9\td2\t1"])
    with pytest.raises(InputError) as err:
        run(root, tava_home)
    assert err.value.path.endswith("qrels/test.tsv") and err.value.line == 3 and "'nope'" in err.value.message
    report = run(root, tava_home, on_bad_record="skip")
    assert report.qrels == {"test": 1} and report.skipped.by_reason == {"qrels unknown id": 2}


def test_unknown_type_missing_and_empty(tmp_path, tava_home):
    odd = tmp_path / "data.xml"
    odd.write_text("<x/>")
    with pytest.raises(InputError, match="unknown file type '.xml'"):
        run(odd, tava_home)
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(InputError, match="neither a BEIR dataset"):
        run(tmp_path / "emptydir", tava_home)
    with pytest.raises(InputError, match="source not found"):
        run(tmp_path / "absent.jsonl", tava_home)
    empty = write_jsonl(tmp_path / "empty.jsonl", [{"text": " "}, {"text": ""}])
    with pytest.raises(InputError, match="no usable records"):
        run(empty, tava_home)
    assert not (Path(tava_home) / "data" / "empty").exists()


# -------------------------------------------------------------------------------- atomicity

def test_failed_ingest_leaves_nothing_and_keeps_old_version(tmp_path, tava_home):
    path = tmp_path / "docs.jsonl"
    write_jsonl(path, [{"_id": str(i), "text": f"text {i}"} for i in range(10)])
    first = run(path, tava_home, shard_size=2)
    manifest_before = (Path(first.path) / "manifest.json").read_bytes()
    # A new version that fails after several shards were already written.
    write_jsonl(path, [{"_id": str(i), "text": f"new text {i}"} for i in range(9)] + ["{broken"])
    with pytest.raises(InputError) as err:
        run(path, tava_home, shard_size=2)
    assert err.value.line == 10
    assert (Path(first.path) / "manifest.json").read_bytes() == manifest_before
    assert [r["text"] for r in rows_of(Path(first.path), "texts")][:1] == ["text 0"]
    data = Path(tava_home) / "data"
    assert sorted(p.name for p in data.iterdir()) == ["docs"]  # no temporary leftovers
    # A dataset that never existed is not created at all.
    with pytest.raises(InputError):
        run(path, tava_home, shard_size=2, name="fresh")
    assert not (data / "fresh").exists()


def test_memory_stays_bounded(tmp_path, tava_home):
    """10x the input needs far less than 10x the memory: only the per-id entries grow."""
    def peak(n: int, trace: bool = True) -> int:
        path = tmp_path / f"n{n}.jsonl"
        filler = "lorem ipsum dolor sit amet " * 80
        with open(path, "w") as handle:
            for i in range(n):
                handle.write(json.dumps({"_id": f"id{i}", "text": f"{i} {filler}"}) + "\n")
        if trace:
            tracemalloc.start()
        run(path, tava_home, shard_size=200)
        top = tracemalloc.get_traced_memory()[1] if trace else 0
        tracemalloc.stop()
        return top

    peak(10, trace=False)  # imports (pyarrow pulls in pandas lazily) are not what is measured
    small, large = peak(300), peak(3000)
    assert large < 3 * small, (small, large)


# ------------------------------------------------------------------------------ real data

@pytest.mark.shared_data
def test_scifact(scifact_dir, tava_home):
    report = run(scifact_dir, tava_home)
    assert report.collections == {"corpus": 5183, "queries": 1109}
    assert report.qrels["test"] == 339 and report.skipped.count == 0
    manifest = load_dataset_manifest(report.path)
    assert manifest.qrels["test"].queries == 300
    assert sum(s.rows for s in manifest.collections["corpus"].shards) == 5183


# ------------------------------------------------------------------------------------- CLI

def test_cli_ingest(tmp_path, tava_home, monkeypatch, capsys, prefect_harness):
    from flows.cli import main

    monkeypatch.setenv("TAVA_HOME", str(tava_home))
    root = make_beir(tmp_path / "mini")
    main(["--home", str(tava_home), "ingest", str(root), "--shard-size", "2", "--name", "cli-mini"])
    out = json.loads(capsys.readouterr().out)
    assert out["collections"] == {"corpus": 3, "queries": 2} and out["shards"] == 3
    manifest = load_dataset_manifest(Path(tava_home) / "data" / "cli-mini")
    assert manifest.config["shard_size"] == 2
    # Unchanged source + options: the cached report comes back (same timing figure, no re-write).
    argv = ["--home", str(tava_home), "ingest", str(root), "--shard-size", "2", "--name", "cli-mini"]
    main(argv)
    assert json.loads(capsys.readouterr().out) == out
    assert load_dataset_manifest(Path(tava_home) / "data" / "cli-mini").created == manifest.created
    # A deleted dataset is rebuilt: the reuse check reads the disk, not a remembered report.
    import shutil

    shutil.rmtree(Path(tava_home) / "data" / "cli-mini")
    main(argv)
    capsys.readouterr()
    assert load_dataset_manifest(Path(tava_home) / "data" / "cli-mini").collections["corpus"].rows == 3
    # Bad input: tava's error naming file and line (after Prefect's own task log), exit code 2.
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"_id": "a", "text": "ok"}, "{nope"])
    with pytest.raises(SystemExit) as exit_info:
        main(["--home", str(tava_home), "ingest", str(bad)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"error: {bad.resolve()}:2: malformed JSON" in err
