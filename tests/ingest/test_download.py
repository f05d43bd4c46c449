"""`tava data download`: against a local HTTP server on 127.0.0.1 serving a zip made here."""
from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
import zipfile
from pathlib import Path

import pytest

from tava_core.datasets.download import BEIR_MD5, download_beir
from tava_core.errors import InputError


@pytest.fixture()
def archive_server(tmp_path):
    """Serve tmp_path/served over HTTP on 127.0.0.1 (a random free port) for one test."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


def make_zip(path: Path, name: str = "tiny") -> str:
    """A BEIR-shaped zip (one top folder, as the real archives); returns its md5."""
    with zipfile.ZipFile(path, "w") as zipped:
        zipped.writestr(f"{name}/corpus.jsonl", json.dumps({"_id": "d1", "title": "", "text": "a doc"}) + "\n")
        zipped.writestr(f"{name}/queries.jsonl", json.dumps({"_id": "q1", "text": "a query"}) + "\n")
        zipped.writestr(f"{name}/qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_known_checksums_cover_the_common_sets():
    for name in ("scifact", "nfcorpus", "fiqa", "arguana", "scidocs", "trec-covid", "quora"):
        assert len(BEIR_MD5[name]) == 32
    assert BEIR_MD5["scifact"] == "5f7d1de60b170fc8027bb7898e2efca1"


def test_download_verifies_and_unpacks(archive_server, tmp_path):
    served, url = archive_server
    md5 = make_zip(served / "tiny.zip")
    out = tmp_path / "out"
    path = download_beir("tiny", out, base_url=url, known_md5={"tiny": md5}, show_progress=False)
    assert path == out.resolve() / "tiny"
    assert (path / "corpus.jsonl").is_file() and (path / "qrels" / "test.tsv").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["tiny"]  # no temporary files left
    with pytest.raises(InputError, match="already downloaded"):
        download_beir("tiny", out, base_url=url, known_md5={"tiny": md5}, show_progress=False)
    # sha256 given explicitly is checked instead of the table
    sha = hashlib.sha256((served / "tiny.zip").read_bytes()).hexdigest()
    download_beir("tiny", out, base_url=url, sha256=sha, known_md5={}, force=True, show_progress=False)


def test_checksum_mismatch_leaves_nothing(archive_server, tmp_path):
    served, url = archive_server
    make_zip(served / "tiny.zip")
    out = tmp_path / "out"
    with pytest.raises(InputError, match="md5 mismatch") as err:
        download_beir("tiny", out, base_url=url, known_md5={"tiny": "0" * 32}, show_progress=False)
    assert "nothing was unpacked" in err.value.hint
    assert list(out.iterdir()) == []


def test_http_error_and_unknown_checksum(archive_server, tmp_path):
    _, url = archive_server
    out = tmp_path / "out"
    with pytest.raises(InputError, match="HTTP 404"):
        download_beir("missing", out, base_url=url, md5="0" * 32, show_progress=False)
    assert list(out.iterdir()) == []
    with pytest.raises(InputError, match="no known checksum"):
        download_beir("not-in-table", out, base_url=url, show_progress=False)


def test_bad_zip_is_refused(archive_server, tmp_path):
    served, url = archive_server
    (served / "junk.zip").write_bytes(b"this is not a zip")
    md5 = hashlib.md5(b"this is not a zip").hexdigest()
    out = tmp_path / "out"
    with pytest.raises(InputError, match="not a valid zip"):
        download_beir("junk", out, base_url=url, md5=md5, show_progress=False)
    assert list(out.iterdir()) == []


def test_cli_download(archive_server, tmp_path, tava_home, monkeypatch, capsys):
    from flows.cli import main

    monkeypatch.setenv("TAVA_HOME", str(tava_home))
    served, url = archive_server
    md5 = make_zip(served / "tiny.zip")
    main(["data", "download", "tiny", "--base-url", url, "--md5", md5, "--out", str(tmp_path / "dl")])
    out = json.loads(capsys.readouterr().out)
    assert out["path"] == str((tmp_path / "dl" / "tiny").resolve())
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "download", "tiny2", "--base-url", url, "--md5", md5, "--out", str(tmp_path / "dl")])
    assert exit_info.value.code == 2 and "HTTP 404" in capsys.readouterr().err
