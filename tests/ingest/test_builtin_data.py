"""The built-in docstring corpus: cleaning, determinism, disjoint splits, caching, ingest."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tava_core.config import IngestConfig
from tava_core.datasets import builtin
from tava_core.datasets.builtin import (
    build_builtin_source,
    clean_docstring,
    ensure_builtin_source,
    split_summary,
    useful_summary,
)
from tava_core.home import TavaHome
from tava_core.ingest import ingest
from tava_core.manifest import load_dataset_manifest

FILES = ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv", "unlabeled.jsonl", "build.json")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("builtin") / "src"
    out.mkdir()
    build_builtin_source(out)
    return out


def test_clean_docstring_drops_doctests_and_markup():
    doc = '''Compute the :func:`~numpy.mean` of ``x`` along an axis.

    The result is a `float` when *x* is 1-d; see [the guide](https://example.org).

    Args:
        x: the input.

    Examples
    --------
    >>> mean([1, 2])
    1.5

    .. versionadded:: 1.2
        Extra words of the directive.

    Notes
    -----
    Returns the mean.
    '''
    import inspect

    cleaned = clean_docstring(inspect.cleandoc(doc))
    summary, body = split_summary(cleaned)
    assert summary == "Compute the mean of x along an axis."
    assert ">>>" not in cleaned and "1.5" not in cleaned and "versionadded" not in cleaned
    assert "Extra words" not in cleaned
    assert "the guide" in body and "https" not in body and "Args: x: the input." in body
    assert body.endswith("Notes Returns the mean.")  # the section after the dropped Examples stays
    assert useful_summary(summary)
    assert not useful_summary("add(x1, x2, /, out=None) adds things")
    assert not useful_summary("Alias of foo.")


def test_splits_are_consistent_and_disjoint(built):
    corpus = read_jsonl(built / "corpus.jsonl")
    queries = read_jsonl(built / "queries.jsonl")
    unlabeled = read_jsonl(built / "unlabeled.jsonl")
    qrels = [line.split("\t") for line in (built / "qrels" / "test.tsv").read_text().splitlines()[1:]]
    info = json.loads((built / "build.json").read_text())
    assert len(queries) == len(qrels) == builtin.N_QUERIES
    assert len(corpus) == builtin.N_QUERIES + builtin.N_DISTRACTORS
    assert len(unlabeled) >= 2000 and info["counts"]["unlabeled"] == len(unlabeled)
    corpus_ids = {d["_id"] for d in corpus}
    assert {q for q, _, _ in qrels} == {q["_id"] for q in queries}
    assert {c for _, c, _ in qrels} <= corpus_ids
    # no evaluation text leaks into the training text
    eval_texts = {d["text"] for d in corpus} | {q["text"] for q in queries}
    assert not any(u["text"] in eval_texts or u["_id"] in corpus_ids for u in unlabeled)
    # a query is its document's summary, not a copy of the document
    by_id = {d["_id"]: d["text"] for d in corpus}
    query_text = {q["_id"]: q["text"] for q in queries}
    assert all(query_text[q] not in by_id[c] for q, c, _ in qrels[:50])
    assert not any(">>>" in d["text"] for d in corpus + unlabeled)
    assert set(info["packages"]) >= {"numpy", "torch", "click", "pydantic"}


@pytest.mark.slow
def test_build_is_deterministic(built, tmp_path):
    again = tmp_path / "again"
    again.mkdir()
    build_builtin_source(again)
    for name in FILES:
        assert (again / name).read_bytes() == (built / name).read_bytes(), name


def test_cached_build_and_ingest(tava_home, monkeypatch, built):
    home = TavaHome(tava_home)
    calls = []

    def fake_build(out: Path) -> dict:  # reuse the module's build instead of walking packages again
        calls.append(out)
        import shutil

        for name in FILES:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(built / name, out / name)
        return json.loads((out / "build.json").read_text())

    monkeypatch.setattr(builtin, "build_builtin_source", fake_build)
    path, info = ensure_builtin_source(home)
    assert path == home.data / "builtin-src" and len(calls) == 1
    ensure_builtin_source(home)
    assert len(calls) == 1  # same package versions: not rebuilt
    monkeypatch.setattr(builtin, "BUILDER_VERSION", builtin.BUILDER_VERSION + 1)
    ensure_builtin_source(home)
    assert len(calls) == 2  # the signature changed: rebuilt
    monkeypatch.undo()
    monkeypatch.setattr(builtin, "build_builtin_source", fake_build)

    report = ingest(IngestConfig(source="builtin"), home)
    assert report.name == "builtin" and report.format == "beir"
    assert report.collections["corpus"] == info["counts"]["corpus"]
    assert report.collections["queries"] == info["counts"]["queries"]
    assert report.collections["unlabeled"] == info["counts"]["unlabeled"]
    assert report.qrels == {"test": info["counts"]["queries"]}
    manifest = load_dataset_manifest(report.path)
    assert manifest.source == "builtin" and manifest.info["builtin"]["packages"]["numpy"]
    assert set(manifest.collections) == {"corpus", "queries", "unlabeled"}


def test_cli_data_builtin(tava_home, monkeypatch, capsys, built):
    from flows.cli import main

    monkeypatch.setenv("TAVA_HOME", str(tava_home))
    target = Path(tava_home) / "data" / "builtin-src"
    target.mkdir(parents=True)
    import shutil

    for name in FILES:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(built / name, target / name)
    main(["--home", str(tava_home), "data", "builtin"])
    out = json.loads(capsys.readouterr().out)
    assert out["path"] == str(target) and out["counts"]["queries"] == builtin.N_QUERIES
