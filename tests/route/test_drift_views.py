"""Drift scores a refresh batch the way the router's threshold was calibrated: one span view of each
sampled text (the calibration's span maker and seed), with the batch's documents in the router's
bank (the calibration views' documents were in it), and on a first night against the router's own
calibration share. Scored as whole passages against a bank without them, an in-domain batch read
far above the budget (the audit: 79% in-domain, 71.7% from another domain, at a 10% budget)."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

BUDGET = 0.1


def _passages(path: Path, n: int) -> list[dict]:
    """The first ``n`` movie-review passages of the shared passages file (~90 words each)."""
    rows: list[dict] = []
    with gzip.open(path, "rt") as f:
        for line in f:
            row = json.loads(line)
            if row["source"] == "movie_reviews":
                rows.append(row)
                if len(rows) == n:
                    break
    return rows


def _router(student_dir: Path, served: list[dict], signals: list[str]):
    """A router calibrated as ``calibrate_stored`` calibrates one: reference texts (the served texts and
    span views of them), calibration texts = ``calibration_views`` of the served corpus, whose
    teacher vectors are the document bank; threshold for a 10% budget."""
    from tava_core.distill.spans import make_spans
    from tava_core.encoders import load_encoder
    from tava_core.route.build import TextVectors, fit_router
    from tava_core.route.config import RouterSettings
    from tava_core.route.router import RoutedEncoder, threshold_from
    from tava_core.route.stored import calibration_views

    student, teacher = load_encoder(str(student_dir), cache=False), load_encoder("all-MiniLM-L6-v2")
    ids, texts = [r["_id"] for r in served], [r["text"] for r in served]
    reference = texts + make_spans(ids, texts, 1, 0)[1]
    views = calibration_views(ids, texts, 150)
    model, fitted = fit_router(
        TextVectors(reference, student.encode(reference), teacher.encode(reference)),
        TextVectors(views, student.encode(views, kind="query"), teacher.encode(views, kind="query")),
        teacher.encode(texts), RouterSettings(bank_size=256, pca_dim=16, signals=signals))
    return RoutedEncoder(student, teacher, model, fitted, threshold_from(fitted, teacher_budget=BUDGET),
                         weights_sha256="test", name="test-router"), teacher


def test_span_views_are_the_calibration_texts_with_their_documents():
    from tava_core.route.drift import span_views
    from tava_core.route.stored import calibration_views

    ids = [f"d{i}" for i in range(40)]
    # every word of text i names it, so any view (a sentence or a window) says which text it was cut from
    texts = [" ".join(f"t{i}w{k}" for k in range(12)) + ". " + " ".join(f"t{i}v{k}" for k in range(20))
             for i in range(40)]
    texts[3] = ""                                    # no view: it must not shift the documents' rows
    documents = np.arange(40, dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)
    views = span_views(ids, texts, 25, documents=documents)
    assert views.texts == calibration_views(ids, texts, 25) and len(views.texts) == 25
    assert views.what == "span views of 25 texts"
    assert views.documents is not None and len(views.documents) == 25
    for view, document in zip(views.texts, views.documents, strict=True):
        assert {word.split("w")[0].split("v")[0] for word in view.split()} == {f"t{int(document[0])}"}
    assert span_views(ids, texts, 25).texts == views.texts                       # seeded: the same again
    assert span_views(ids, texts, 25, seed=7).texts != views.texts


def test_bank_with_adds_documents_in_the_banks_own_form():
    from tava_core.route.drift import bank_with
    from tava_core.route.signals import fit_signal_model

    rng = np.random.default_rng(0)
    student, teacher, documents = rng.normal(size=(60, 8)), rng.normal(size=(60, 8)), rng.normal(size=(50, 8))
    new = rng.normal(size=(7, 8)).astype(np.float32)
    unit_new = new / np.linalg.norm(new, axis=1, keepdims=True)
    texts = [f"text {i}" for i in range(60)]
    plain = fit_signal_model(texts, student, teacher, pca_dim=4, documents=documents)
    grown = bank_with(plain, new)
    assert len(plain.documents) == 50 and np.allclose(grown.documents[:50], plain.documents)
    assert np.allclose(grown.documents[50:], unit_new, atol=1e-6)
    reduced = fit_signal_model(texts, student, teacher, pca_dim=4, documents=documents, doc_pca_dim=4, doc_rescore=5)
    grown = bank_with(reduced, new)
    assert np.allclose(grown.documents[50:], unit_new @ reduced.doc_pca, atol=1e-6)
    assert np.allclose(grown.doc_exact[50:], unit_new, atol=1e-6) and len(reduced.documents) == 50
    clustered = fit_signal_model(texts, student, teacher, pca_dim=4, documents=documents, doc_clusters=4, doc_probe=2)
    grown = bank_with(clustered, new)
    assert len(grown.documents) == 57 and grown.doc_offsets[-1] == 57 and np.all(np.diff(grown.doc_offsets) >= 0)
    cluster_of = np.repeat(np.arange(len(grown.doc_offsets) - 1), np.diff(grown.doc_offsets))
    for document in unit_new:       # each added document sits in its nearest cluster's rows
        row = int(np.flatnonzero(np.all(np.isclose(grown.documents, document, atol=1e-6), axis=1))[0])
        assert cluster_of[row] == int(np.argmax(clustered.doc_centroids @ document))
    bare = fit_signal_model(texts, student, teacher, pca_dim=4)
    assert bank_with(bare, new) is bare                        # no retrieval signal: nothing to add to


@pytest.mark.slow
def test_in_domain_passages_read_near_the_budget_as_span_views(static_student, passages_file):
    """A manifold router (knn_distance) of a static student over movie reviews: new movie-review
    passages scored whole read far above the 10% budget (what drift used to report), scored as
    its calibration texts were, near it."""
    from tava_core.route.drift import drift_report, low_confidence_share, span_views

    rows = _passages(passages_file, 400)
    router, _ = _router(static_student, rows[:250], ["knn_distance"])
    batch = rows[250:]
    ids, texts = [r["_id"] for r in batch], [r["text"] for r in batch]
    whole = low_confidence_share(router, texts)
    views = span_views(ids, texts, 150)
    share = low_confidence_share(router, views.texts)
    assert whole > 0.5, whole
    assert abs(share - BUDGET) <= 0.08, share
    # the first night: against the router's calibration share, and the record says what was scored
    first = drift_report(router, None, views, tolerance=0.1)
    assert first["baseline"] == "calibration" and first["previous_share"] == pytest.approx(BUDGET)
    assert first["new_share"] == pytest.approx(share) and not first["drifted"], first["message"]
    assert "span views of 150 texts" in first["message"] and "calibration share" in first["message"]
    assert first["previous_unseen_share"] is None
    # the same batch scored as drift used to score it: whole texts, flagged as drift
    old = drift_report(router, None, texts, tolerance=0.1)
    assert old["drifted"] and old["new_share"] == pytest.approx(whole)


@pytest.mark.slow
def test_new_documents_join_the_bank_as_the_calibration_views_documents_did(static_student, passages_file):
    """A retrieval router (the default cell margin): span views of passages whose documents are in
    the bank (the calibration's condition) read as the calibration views of the same passages do,
    whether the passages were served at calibration or arrive in a new batch."""
    from tava_core.route.drift import low_confidence_share, span_views

    rows = _passages(passages_file, 300)
    served, batch = rows[:150], rows[150:]
    router, teacher = _router(static_student, served, ["retrieval_cell_margin"])
    calibration = span_views([r["_id"] for r in served], [r["text"] for r in served], 150)
    assert low_confidence_share(router, calibration.texts) == pytest.approx(BUDGET, abs=0.01)
    new = span_views([r["_id"] for r in batch], [r["text"] for r in batch], 150,
                     documents=teacher.encode([r["text"] for r in batch]))
    assert new.documents is not None
    with_documents = low_confidence_share(router, new.texts, documents=new.documents)
    assert abs(with_documents - BUDGET) <= 0.08, with_documents


@pytest.mark.parametrize("previous, new_share, drifted", [
    (None, 0.18, False), (None, 0.27, True),        # a first night: against the calibration share, twice the margin
    (["p"], 0.18, True), (["p"], 0.14, False),     # against a previous batch (read 0.10): the tolerance itself
])
def test_a_first_night_needs_twice_the_rise_over_the_calibration_share(monkeypatch, previous, new_share, drifted):
    """The audit's first night: an in-domain batch read 18.0% and a SciFact one 27.3% against a 10% calibration
    share; at a 5-point margin both were drift."""
    from types import SimpleNamespace

    import tava_core.route.drift as drift

    monkeypatch.setattr(drift, "low_confidence_share",
                        lambda router, texts, documents=None: 0.10 if texts == ["p"] else new_share)
    monkeypatch.setattr(drift, "unseen_word_share", lambda router, texts: 0.0)
    router = SimpleNamespace(threshold=SimpleNamespace(expected_share=0.10, __dict__={"expected_share": 0.10}))
    report = drift.drift_report(router, previous, ["n"], tolerance=0.05)
    assert report["drifted"] is drifted and report["baseline"] == ("calibration" if previous is None else "previous batch")
