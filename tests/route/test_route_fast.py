"""The compiled confidence (tava_core/route/fast.py) computes what calibrate.confidence computes."""
from __future__ import annotations

import os

import numpy as np
import pytest
from route_helpers import TEXTS

from tava_core.route.build import TextVectors, fit_router
from tava_core.route.calibrate import confidence
from tava_core.route.config import RouterSettings
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


def _fitted(vectors, signals, vector_components=0, combiner="ridge", doc_pca_dim=0, doc_rescore=0, documents=None,
            doc_clusters=0, doc_probe=0):
    """A router's signal model and calibration, fitted as the product fits them (fit_router: the
    document bank whenever a retrieval signal is named, the word trust table when word_trust is)."""
    if documents is None:
        documents = vectors["teacher"].encode([f"{x}, a document about it" for x in TEXTS])
    settings = RouterSettings(signals=signals, vector_components=vector_components, combiner=combiner, bank_size=32,
                              pca_dim=8, doc_pca_dim=doc_pca_dim, doc_rescore=doc_rescore, doc_clusters=doc_clusters,
                              doc_probe=doc_probe)
    return fit_router(TextVectors(*vectors["reference"]), TextVectors(*vectors["calibration"]), documents, settings)


@pytest.fixture(scope="module")
def many_documents(vectors):
    """~220 documents: enough that 64 candidates of an 8-d PCA bank are a real first stage."""
    texts = [f"{a}, and {b}" for i, a in enumerate(TEXTS) for b in TEXTS[i + 1:i + 7]]
    return vectors["teacher"].encode(texts)


RETRIEVAL_SET = ["retrieval_contrast", "retrieval_entropy", "retrieval_map_change", "retrieval_margin",
                 "retrieval_cell_margin", "retrieval_boundary", "retrieval_top_score"]


def test_two_stage_scoring_with_every_document_a_candidate_is_the_full_bank(vectors, many_documents):
    from tava_core.route.signals import compute_signals

    texts, s = vectors["queries"]
    full, _ = _fitted(vectors, RETRIEVAL_SET, documents=many_documents)
    two_stage, _ = _fitted(vectors, RETRIEVAL_SET, doc_pca_dim=8, doc_rescore=len(many_documents),
                           documents=many_documents)
    pca_only, _ = _fitted(vectors, RETRIEVAL_SET, doc_pca_dim=8, documents=many_documents)
    want = compute_signals(full, texts, s, RETRIEVAL_SET)
    got = compute_signals(two_stage, texts, s, RETRIEVAL_SET)
    rough = compute_signals(pca_only, texts, s, RETRIEVAL_SET)
    for name in RETRIEVAL_SET:
        np.testing.assert_allclose(got[name], want[name], atol=2e-5, err_msg=name)
    # ... while the 8-d PCA scores alone are a different signal (what the second stage repairs)
    assert np.abs(rough["retrieval_entropy"] - want["retrieval_entropy"]).max() > 1e-2


def test_two_stage_scoring_keeps_the_full_banks_top_list_when_the_candidates_hold_it(vectors, many_documents):
    """64 of ~220 documents by an 8-d PCA: the exact top-10 is among them for most queries, and
    where it is the margin and boundary (read off the top-11 exact cosines) are the full bank's."""
    from tava_core.route.signals import compute_signals

    texts, s = vectors["queries"]
    full, _ = _fitted(vectors, RETRIEVAL_SET, documents=many_documents)
    two_stage, _ = _fitted(vectors, RETRIEVAL_SET, doc_pca_dim=8, doc_rescore=64, documents=many_documents)
    assert two_stage.doc_rescore == 64 and two_stage.doc_exact.shape == many_documents.shape
    want = compute_signals(full, texts, s, RETRIEVAL_SET)
    got = compute_signals(two_stage, texts, s, RETRIEVAL_SET)
    same = np.isclose(got["retrieval_boundary"], want["retrieval_boundary"], atol=1e-6)
    assert same.mean() > 0.5
    np.testing.assert_allclose(got["retrieval_margin"][same], want["retrieval_margin"][same], atol=1e-6)
    # the corpus profile of retrieval_contrast is exact whatever the candidates
    assert np.corrcoef(got["retrieval_contrast"], want["retrieval_contrast"])[0, 1] > 0.95


BANKS = {"two-stage": dict(doc_pca_dim=8, doc_rescore=64), "clustered": dict(doc_clusters=8, doc_probe=3)}


@pytest.mark.parametrize("bank", list(BANKS))
@pytest.mark.parametrize("vector_components", [0, 3])
def test_compiled_confidence_over_a_partial_bank_equals_the_reference(vectors, many_documents, vector_components,
                                                                      bank):
    model, calibration = _fitted(vectors, RETRIEVAL_SET + ["word_rarity"], vector_components,
                                 documents=many_documents, **BANKS[bank])
    texts, s = vectors["queries"]
    expected = confidence(model, calibration, texts, s)
    compiled = CompiledConfidence(model, calibration)
    assert np.allclose(compiled(texts, s), expected, rtol=0, atol=1e-5)
    single = np.concatenate([compiled([t], s[i:i + 1]) for i, t in enumerate(texts)])
    assert np.allclose(single, expected, rtol=0, atol=1e-5)
    assert expected.std() > 1e-3


def test_a_clustered_bank_probing_every_cluster_is_the_full_bank(vectors, many_documents):
    from tava_core.route.signals import compute_signals

    texts, s = vectors["queries"]
    full, _ = _fitted(vectors, RETRIEVAL_SET, documents=many_documents)
    every, _ = _fitted(vectors, RETRIEVAL_SET, documents=many_documents, doc_clusters=8, doc_probe=8)
    some, _ = _fitted(vectors, RETRIEVAL_SET, documents=many_documents, doc_clusters=8, doc_probe=2)
    # the bank is the same documents, sorted by cluster; offsets partition it
    assert every.documents.shape == full.documents.shape and every.doc_offsets[-1] == len(many_documents)
    assert np.allclose(np.sort(every.documents, axis=0), np.sort(full.documents, axis=0))
    want = compute_signals(full, texts, s, RETRIEVAL_SET)
    got = compute_signals(every, texts, s, RETRIEVAL_SET)
    for name in RETRIEVAL_SET:
        np.testing.assert_allclose(got[name], want[name], atol=2e-5, err_msg=name)
    # two of eight clusters: the best document is found for most queries, yet the list is shorter
    part = compute_signals(some, texts, s, RETRIEVAL_SET)
    assert np.isclose(part["retrieval_top_score"], want["retrieval_top_score"], atol=1e-6).mean() > 0.7
    assert np.abs(part["retrieval_entropy"] - want["retrieval_entropy"]).max() > 1e-3


def test_cluster_documents_sorts_the_bank_by_nearest_centroid(many_documents):
    from tava_core.route.signals import _unit, cluster_documents

    docs = _unit(many_documents.astype(np.float32))
    order, centroids, offsets = cluster_documents(docs, 8, seed=3)
    assert sorted(order.tolist()) == list(range(len(docs)))
    assert offsets[0] == 0 and offsets[-1] == len(docs) and np.all(np.diff(offsets) >= 0)
    assert np.allclose(np.linalg.norm(centroids, axis=1), 1.0, atol=1e-5)
    nearest = np.argmax(docs[order] @ centroids.T, axis=1)
    assert np.array_equal(nearest, np.repeat(np.arange(8), np.diff(offsets)))
    again = cluster_documents(docs, 8, seed=3)
    assert np.array_equal(again[0], order) and np.array_equal(again[2], offsets)


def test_clustered_settings_name_what_they_need():
    with pytest.raises(ValueError, match="go together"):
        RouterSettings(doc_clusters=64)
    with pytest.raises(ValueError, match="doc_probe <= doc_clusters"):
        RouterSettings(doc_clusters=4, doc_probe=8)
    with pytest.raises(ValueError, match="full-dimension"):
        RouterSettings(doc_clusters=64, doc_probe=4, doc_pca_dim=64)
    assert RouterSettings(doc_clusters=64, doc_probe=6).doc_probe == 6


def test_two_stage_settings_name_what_they_need():
    with pytest.raises(ValueError, match="doc_pca_dim > 0"):
        RouterSettings(doc_rescore=200)
    with pytest.raises(ValueError, match="at least 50"):
        RouterSettings(doc_pca_dim=64, doc_rescore=20)
    assert RouterSettings(doc_pca_dim=64, doc_rescore=200).doc_rescore == 200


SETS = {**{name: ([name], 0) for name in SIGNAL_NAMES},
        "default": (["knn_distance", "head_disagreement", "rare_word_share", "length", "word_trust"], 4),
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
    if name in ("default", "everything", "retrieval_contrast", "word_trust"):
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


@pytest.mark.parametrize("name", ["default", "everything", "retrieval_entropy", "word_trust", "two-stage",
                                  "clustered"])
def test_fused_static_path_gives_the_students_vectors_and_the_compiled_confidence(vectors, static_student, name,
                                                                                 many_documents):
    from tava_core.config import EncoderSpec
    from tava_core.encoders.static import StaticEncoder
    from tava_core.route.fused import FusedStatic

    if name == "two-stage":
        model, calibration = _fitted(vectors, RETRIEVAL_SET, 2, doc_pca_dim=8, doc_rescore=64,
                                     documents=many_documents)
    elif name == "clustered":
        model, calibration = _fitted(vectors, RETRIEVAL_SET, 2, doc_clusters=8, doc_probe=3, documents=many_documents)
    else:
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
        # one query at a time (the live case: a numpy path of its own) gives the batch's rows
        alone = [fused([t]) for t in texts]
        assert np.allclose(np.concatenate([v for v, _ in alone]), want_vectors, rtol=0, atol=1e-6)
        assert np.allclose(np.concatenate([c for _, c in alone]), got_scores, rtol=0, atol=1e-5)


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


@pytest.mark.parametrize("bank", list(BANKS))
def test_a_saved_router_loads_with_its_document_bank(vectors, many_documents, tmp_path, bank):
    from tava_core.config import EncoderSpec
    from tava_core.route.router import load_router, save_router, threshold_from

    model, calibration = _fitted(vectors, RETRIEVAL_SET, 2, documents=many_documents, **BANKS[bank])
    student, teacher = vectors["student"], vectors["teacher"]
    out = save_router(tmp_path / "r", student=EncoderSpec(model=student.spec.model),
                      student_fingerprint=student.fingerprint, teacher=EncoderSpec(model="all-MiniLM-L6-v2"),
                      teacher_fingerprint=teacher.fingerprint, signal_model=model, calibration=calibration,
                      threshold=threshold_from(calibration, teacher_budget=0.25))
    loaded = load_router(out)
    assert loaded.signal_model.doc_rescore == model.doc_rescore and loaded.signal_model.doc_probe == model.doc_probe
    for name in ("doc_exact", "doc_centroids", "doc_offsets"):
        np.testing.assert_array_equal(getattr(loaded.signal_model, name), getattr(model, name))
    texts, s = vectors["queries"]
    assert np.allclose(loaded.confidence(texts, s), confidence(model, calibration, texts, s), rtol=0, atol=1e-5)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores for a second BLAS thread to show")
@pytest.mark.parametrize("signals", [["retrieval_cell_margin"], ["retrieval_entropy", "knn_distance"]])
def test_a_live_query_computes_on_the_calling_thread(vectors, signals):
    """One query's products run on the thread that asked (torch), not split over numpy's BLAS threads,
    whose worker then busy-waits and took the core the query needed (bench/route_threads.py). Measured
    as CPU accounting, not time: the process's CPU over the calling thread's stays ~1, where numpy's two
    OpenBLAS threads made it ~2."""
    import time

    from threadpoolctl import threadpool_limits

    # a bank of a real corpus's size (random unit vectors: the question is threads, not quality), big
    # enough that numpy's OpenBLAS splits the product with it over two threads
    bank = np.random.default_rng(0).standard_normal((5000, vectors["reference"][2].shape[1])).astype(np.float32)
    model, calibration = _fitted(vectors, signals, documents=bank / np.linalg.norm(bank, axis=1, keepdims=True))
    compiled = CompiledConfidence(model, calibration)
    texts, s = vectors["queries"]
    rows = [(t, s[i:i + 1]) for i, t in enumerate(texts)]
    with threadpool_limits(limits=2, user_api="blas"):   # two BLAS threads on offer, on any machine
        for text, row in rows:
            compiled([text], row)
        time.sleep(0.5)       # fitting's own threaded products left BLAS workers spinning: let them stop

        def cpu_ratio(work) -> float:
            thread, process = time.thread_time(), time.process_time()
            work()
            return (time.process_time() - process) / (time.thread_time() - thread)

        def plain_python() -> None:
            end = time.perf_counter() + 0.3
            while time.perf_counter() < end:
                pass

        def queries() -> None:
            for _ in range(40):
                for text, row in rows:
                    compiled([text], row)

        # first the same accounting over plain Python work: what other threads of this process (a test
        # harness's, a server's) spend anyway
        baseline = cpu_ratio(plain_python)
        ratio = cpu_ratio(queries) - (baseline - 1.0)
    assert ratio < 1.3, f"CPU of the process / of the calling thread = {ratio:.2f}: another thread worked"


RESULT_SET = ["retrieval_cell_margin", "retrieval_entropy", "retrieval_margin", "retrieval_boundary",
              "retrieval_top_score", "word_rarity"]


def _search(s: np.ndarray, documents: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """An exact search (what a serving stack's index returns): the k best cosines and the documents'
    vectors, in a shuffled order so the router cannot rely on the caller's sorting."""
    unit = documents / np.linalg.norm(documents, axis=1, keepdims=True)
    q = s / np.maximum(np.linalg.norm(s, axis=1, keepdims=True), 1e-12)
    scores = q @ unit.T
    ids = np.argsort(-scores, axis=1)[:, :k]
    ids = np.random.default_rng(0).permuted(ids, axis=1)
    return np.take_along_axis(scores, ids, axis=1), documents[ids]


@pytest.mark.parametrize("signals, components, pca", [
    (["retrieval_cell_margin"], 0, 0), (RESULT_SET, 0, 0), (RESULT_SET, 0, 8),
    (["retrieval_cell_margin", "head_disagreement", "knn_distance", "cycle_error"], 3, 8)])
def test_confidence_from_the_callers_search_equals_the_routers_own_bank(vectors, many_documents, signals, components,
                                                                       pca):
    """Exact cosines from the caller's search give the full bank's confidence (a two-stage bank's,
    ``pca``, up to the candidates it would miss: none here, all 220 documents are rescored)."""
    bank = dict(doc_pca_dim=pca, doc_rescore=len(many_documents)) if pca else {}
    model, calibration = _fitted(vectors, signals, components, documents=many_documents, **bank)
    compiled = CompiledConfidence(model, calibration)
    texts, s = vectors["queries"]
    need = compiled.results_needed()
    assert need == (50 if "retrieval_entropy" in signals else 11)
    scores, docs = _search(s, many_documents, need + 3)
    want = compiled(texts, s)
    assert want.std() > 1e-3
    np.testing.assert_allclose(compiled.from_results(texts, s, scores, docs), want, rtol=0, atol=1e-5)
    one = np.concatenate([compiled.from_results([t], s[i:i + 1], scores[i:i + 1], docs[i:i + 1])
                          for i, t in enumerate(texts)])
    np.testing.assert_allclose(one, want, rtol=0, atol=1e-5)
    # too short a list is refused with the k it needs
    with pytest.raises(ValueError, match=f"top {need} results"):
        compiled.from_results(texts, s, scores[:, :need - 1], docs[:, :need - 1])


def test_confidence_from_results_refuses_signals_one_list_cannot_give(vectors, many_documents):
    model, calibration = _fitted(vectors, ["retrieval_contrast", "retrieval_cell_margin"], documents=many_documents)
    texts, s = vectors["queries"]
    scores, docs = _search(s, many_documents, 60)
    with pytest.raises(ValueError, match="retrieval_contrast"):
        CompiledConfidence(model, calibration).from_results(texts, s, scores, docs)


def test_route_searched_routes_like_route(router_dir):
    """The saved router (default score) routes the same queries, and gives the same vectors,
    from the caller's search as from its own bank."""
    from tava_core.encoders import load_encoder

    router = load_encoder(str(router_dir), cache=False).with_budget(0.3)
    other = router.with_budget(0.3)
    queries = QUERIES + TEXTS
    student = router.student.encode(queries, kind="query")
    documents = router.signal_model.documents
    scores, docs = _search(student, documents, router.compiled.results_needed())
    want = router.route(queries)
    got = other.route_searched(queries, student, scores, docs)
    assert want["routed"].any() and not want["routed"].all()
    assert np.array_equal(got["routed"], want["routed"])
    np.testing.assert_allclose(got["confidence"], want["confidence"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(got["vectors"], want["vectors"], rtol=0, atol=1e-5)
    assert other.routed_share == router.routed_share
    with pytest.raises(ValueError, match="student vectors"):
        other.route_searched(queries, student[:2], scores, docs)
