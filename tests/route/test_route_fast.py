"""The compiled confidence (tava_core/route/fast.py) computes what calibrate.confidence computes."""
from __future__ import annotations

import numpy as np
import pytest
from route_helpers import TEXTS

from tava_core.route.calibrate import confidence, fit_calibration, true_agreement
from tava_core.route.fast import CompiledConfidence
from tava_core.route.signals import SIGNAL_NAMES, fit_signal_model

# texts the tiny routers never saw, with the edge cases of the word signals: no word at all,
# one word, repeated and unseen words, punctuation only
QUERIES = ["what regulates the immune response in mice", "", "!!! ???", "protein", "gene gene gene gene",
           "zyxwv quantum chromodynamics of the optimizer", "how does the cell change the memory rate"]


@pytest.fixture(scope="module")
def vectors(static_student):
    """Real student and teacher vectors (the teacher's token table as a static student)."""
    from tava_core.encoders import load_encoder

    student = load_encoder(str(static_student), cache=False)
    teacher = load_encoder("all-MiniLM-L6-v2")
    reference, calib = TEXTS, TEXTS[::-1] + QUERIES[:3]
    return {"student": student, "teacher": teacher,
            "reference": (reference, student.encode(reference), teacher.encode(reference)),
            "calibration": (calib, student.encode(calib, kind="query"), teacher.encode(calib, kind="query")),
            "queries": (QUERIES + TEXTS[:10], student.encode(QUERIES + TEXTS[:10], kind="query"))}


def _fitted(vectors, signals, vector_components=0, combiner="ridge", doc_pca_dim=0):
    texts, s, t = vectors["reference"]
    documents = vectors["teacher"].encode([f"{x}, a document about it" for x in TEXTS])
    model = fit_signal_model(texts, s, t, bank_size=32, pca_dim=8, documents=documents, doc_pca_dim=doc_pca_dim)
    c_texts, c_s, c_t = vectors["calibration"]
    agreement = true_agreement(c_s, c_t, documents)
    calibration = fit_calibration(model, c_texts, c_s, agreement, signals=signals, vector_components=vector_components,
                                  combiner=combiner)
    return model, calibration


SETS = {**{name: ([name], 0) for name in SIGNAL_NAMES},
        "default": (["knn_distance", "head_disagreement", "rare_word_share", "length"], 4),
        "vector only": ([], 4),
        "everything": (list(SIGNAL_NAMES), 6)}


@pytest.mark.parametrize("name", list(SETS))
def test_compiled_confidence_equals_the_reference_for_every_signal(vectors, name):
    signals, k = SETS[name]
    model, calibration = _fitted(vectors, signals, k)
    texts, s = vectors["queries"]
    expected = confidence(model, calibration, texts, s)
    got = CompiledConfidence(model, calibration)(texts, s)
    assert got.dtype == np.float32 and got.shape == (len(texts),)
    assert np.allclose(got, expected, rtol=0, atol=1e-5), np.abs(got - expected).max()
    # one query at a time gives the same numbers as the batch
    single = np.concatenate([CompiledConfidence(model, calibration)([t], s[i:i + 1]) for i, t in enumerate(texts)])
    assert np.allclose(single, got, rtol=0, atol=1e-5)
    if name in ("default", "everything", "retrieval_contrast"):
        assert expected.std() > 1e-3       # a score that varies, so the comparison means something


def test_compiled_confidence_with_a_pca_document_bank_and_a_ranking_combiner(vectors):
    model, calibration = _fitted(vectors, ["retrieval_entropy", "retrieval_map_change", "word_rarity"], 2,
                                 combiner="pairwise", doc_pca_dim=4)
    assert model.doc_pca.size
    texts, s = vectors["queries"]
    assert np.allclose(CompiledConfidence(model, calibration)(texts, s), confidence(model, calibration, texts, s),
                       rtol=0, atol=1e-5)


def test_compiled_confidence_refuses_retrieval_signals_without_documents(vectors):
    model, calibration = _fitted(vectors, ["retrieval_margin"])
    texts, s, t = vectors["reference"]
    bare = fit_signal_model(texts, s, t, bank_size=32, pca_dim=8)
    with pytest.raises(ValueError, match="documents="):
        CompiledConfidence(bare, calibration)


def test_router_fast_path_routes_exactly_like_the_reference_path(router_dir, static_student):
    from tava_core.encoders import load_encoder
    from tava_core.route.router import RoutedEncoder

    loaded = load_encoder(str(router_dir), cache=False)
    assert isinstance(loaded, RoutedEncoder) and loaded.fast_path
    queries = QUERIES + TEXTS

    def router(fast: bool) -> RoutedEncoder:
        return RoutedEncoder(loaded.student, loaded.teacher, loaded.signal_model, loaded.calibration,
                             loaded.threshold, weights_sha256=loaded.weights_sha256, name="r", routing=loaded.routing,
                             fast_path=fast)

    for batch in (1, 8, len(queries)):        # the adaptive window sees the same scores in the same order
        fast, ref = router(True), router(False)
        outs = [(fast.route(queries[i:i + batch]), ref.route(queries[i:i + batch]))
                for i in range(0, len(queries), batch)]
        got = {k: np.concatenate([a[k] for a, _ in outs]) for k in ("vectors", "routed", "confidence")}
        want = {k: np.concatenate([b[k] for _, b in outs]) for k in ("vectors", "routed", "confidence")}
        assert np.allclose(got["confidence"], want["confidence"], rtol=0, atol=1e-5)
        assert np.array_equal(got["routed"], want["routed"])
        assert 0 < got["routed"].sum() < len(queries)
        assert np.allclose(got["vectors"], want["vectors"], rtol=0, atol=1e-6)
        assert fast.routed_share == ref.routed_share
    assert router(True).with_budget(0.5).fast_path and not router(False).with_budget(0.5).fast_path


@pytest.mark.parametrize("name", ["default", "everything", "retrieval_entropy"])
def test_fused_static_path_gives_the_students_vectors_and_the_compiled_confidence(vectors, static_student, name):
    from tava_core.config import EncoderSpec
    from tava_core.encoders.static import StaticEncoder
    from tava_core.route.fused import FusedStatic

    signals, k = SETS[name]
    model, calibration = _fitted(vectors, signals, k, doc_pca_dim=4 if name == "retrieval_entropy" else 0)
    compiled = CompiledConfidence(model, calibration)
    texts, _ = vectors["queries"]
    for spec in (None, EncoderSpec(model=str(static_student), query_prefix="query: ", max_length=8)):
        student = StaticEncoder(static_student, spec)
        fused = FusedStatic(student, compiled)
        got_vectors, got_scores = fused(texts)
        want_vectors = student.encode(texts, kind="query")
        assert np.allclose(got_vectors, want_vectors, rtol=0, atol=1e-6)
        # the word signals read the query without its prefix, as the reference path does
        assert np.allclose(got_scores, confidence(model, calibration, texts, want_vectors), rtol=0, atol=1e-5)
        assert np.allclose(np.concatenate([fused([t])[1] for t in texts]), got_scores, rtol=0, atol=1e-5)


def test_fused_path_is_skipped_over_its_memory_cap(router_dir, monkeypatch):
    from tava_core.encoders import load_encoder
    from tava_core.route import fused

    router = load_encoder(str(router_dir), cache=False)
    router.route(["a query"])
    assert isinstance(router._fast()[1], fused.FusedStatic)
    monkeypatch.setattr(fused, "MAX_TABLE_BYTES", 1024)
    small = load_encoder(str(router_dir), cache=False)
    out = small.route(QUERIES)
    assert small._fast()[1] is None
    assert np.allclose(out["confidence"], router.route(QUERIES)["confidence"], rtol=0, atol=1e-5)
