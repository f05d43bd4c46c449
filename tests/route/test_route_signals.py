"""Retrieval signals, word rarity and the ranking combiners of the confidence router."""
from __future__ import annotations

import numpy as np
import pytest

from tava_core.route.calibrate import combiner_weights, confidence, fit_calibration, spearman, true_agreement
from tava_core.route.signals import RETRIEVAL_SIGNALS, SignalModel, compute_signals, fit_signal_model


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _model(documents=None, texts=None, d=16, seed=0, **kwargs) -> SignalModel:
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(120, d))
    texts = texts or ["common words here"] * 120
    return fit_signal_model(texts, s, s, bank_size=64, pca_dim=4, documents=documents, **kwargs)


def test_retrieval_signals_separate_a_query_on_a_document_from_one_between_documents():
    rng = np.random.default_rng(0)
    docs = _unit(rng.normal(size=(300, 16)))
    model = _model(documents=docs)
    near = _unit(docs[:40] + 0.05 * rng.normal(size=(40, 16)))          # each sits on one document
    between = _unit(rng.normal(size=(40, 16)))                          # no document stands out
    a = compute_signals(model, ["q"] * 40, near, RETRIEVAL_SIGNALS)
    b = compute_signals(model, ["q"] * 40, between, RETRIEVAL_SIGNALS)
    # every signal is "higher = less trustworthy": larger between documents than on one
    for name in ("retrieval_top_score", "retrieval_margin", "retrieval_contrast", "retrieval_entropy",
                 "retrieval_cell_margin"):
        assert b[name].mean() > a[name].mean(), name
    assert np.allclose(a["retrieval_top_score"], 1.0 - np.max(near @ docs.T, axis=1), atol=1e-5)
    assert 0.0 < a["retrieval_entropy"].min() and b["retrieval_entropy"].max() <= 1.0 + 1e-6


def test_cell_margin_is_the_distance_to_the_best_documents_cell_walls():
    rng = np.random.default_rng(3)
    docs = _unit(rng.normal(size=(60, 16)))
    model = _model(documents=docs)
    queries = _unit(rng.normal(size=(25, 16)))
    got = compute_signals(model, ["q"] * 25, queries, ["retrieval_cell_margin"])["retrieval_cell_margin"]
    for q, value in zip(queries, got, strict=True):          # brute force: the hyperplanes bisecting d_1 and each of d_2..d_11
        order = np.argsort(-(docs @ q))
        walls = [(q @ docs[order[0]] - q @ docs[k]) / np.linalg.norm(docs[order[0]] - docs[k]) for k in order[1:11]]
        assert value == pytest.approx(-np.mean(walls), abs=1e-5)


def test_reduced_document_bank_approximates_the_full_scores_and_survives_a_save():
    rng = np.random.default_rng(1)
    basis = np.linalg.qr(rng.normal(size=(32, 32)))[0]
    docs = _unit(rng.normal(size=(500, 6)) @ basis[:6] + 0.02 * rng.normal(size=(500, 32)))  # low-rank corpus
    queries = _unit(rng.normal(size=(30, 6)) @ basis[:6])
    full = compute_signals(_model(documents=docs, d=32), ["q"] * 30, queries, ["retrieval_top_score"])
    small = _model(documents=docs, d=32, doc_pca_dim=8)
    assert small.documents.shape == (500, 8) and small.doc_pca.shape == (32, 8)
    reduced = compute_signals(small, ["q"] * 30, queries, ["retrieval_top_score"])
    assert np.allclose(full["retrieval_top_score"], reduced["retrieval_top_score"], atol=0.01)
    assert _model(documents=docs, d=32, doc_bank_size=400).documents.shape == (400, 32)   # a sample
    loaded = SignalModel.from_arrays(small.arrays(), knn=small.knn, rare_below=small.rare_below, info=small.info)
    again = compute_signals(loaded, ["q"] * 30, queries, ["retrieval_top_score"])
    assert np.array_equal(again["retrieval_top_score"], reduced["retrieval_top_score"])


def test_retrieval_signals_without_documents_say_how_to_get_them():
    model = _model()
    assert "documents" not in model.arrays()
    with pytest.raises(ValueError, match="documents="):
        compute_signals(model, ["q"], np.ones((1, 16)), ["retrieval_margin"])


def test_word_rarity_grades_words_by_training_frequency_and_handles_empty_texts():
    texts = ["the cell grows"] * 100 + ["the protein folds"] * 10 + ["the"] * 10
    model = _model(texts=texts, d=8)
    out = compute_signals(model, ["the cell", "the protein", "quasar", ""], np.ones((4, 8)),
                          ["word_rarity", "rare_word_share", "length"])
    rarity = out["word_rarity"]
    assert rarity[0] < rarity[1] < rarity[2]                # seen 100x < seen 10x < never seen
    assert rarity[2] == pytest.approx(np.log(121.0), rel=1e-5)  # log((N + 1) / (0 + 1)), N = 120 texts
    assert out["rare_word_share"].tolist() == [0.0, 0.0, 1.0, 0.0]
    assert out["length"].tolist() == [2, 2, 1, 0] and rarity[3] == 0.0


def _noisy_problem(seed=3, n=600):
    """Agreement depends on two features non-linearly at the bottom, with many ties (like overlap)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3))
    latent = z[:, 0] + 0.5 * z[:, 1] + 0.3 * rng.normal(size=n)
    y = np.round(np.clip(1 / (1 + np.exp(-2 * latent)), 0, 1) * 10) / 10
    return z, y


@pytest.mark.parametrize("combiner", ["ridge", "rank", "pairwise", "low"])
def test_every_combiner_orders_by_agreement_and_ignores_noise(combiner):
    z, y = _noisy_problem()
    w = combiner_weights(z, y, combiner, alpha=1.0)
    assert w[0] > w[1] > abs(w[2])                          # the real features, in order; the noise ~0
    assert spearman(z @ w, y) > 0.7


def test_equal_combiner_weighs_signals_alike_and_components_not_at_all():
    z, y = _noisy_problem()
    # two named signals (defined "higher = less trustworthy"), then one vector component
    w = combiner_weights(-z, y, "equal", alpha=1.0, signals=2)
    assert w.tolist() == [-0.5, -0.5, 0.0]
    # nothing is fitted: a signal that a fit would drop (or flip) keeps its weight and sign
    assert np.array_equal(combiner_weights(-z, -y, "equal", alpha=1.0, signals=2), w)
    assert spearman(-z @ w, y) > 0.7
    with pytest.raises(ValueError, match="at least one signal"):
        combiner_weights(z, y, "equal", alpha=1.0, signals=0)


def test_equal_combiner_keeps_each_signals_sign_where_ridge_flips_one():
    """Two signals that each rank the agreement the right way, the second mostly carrying the first's
    noise (a suppressor): ridge gives the second the wrong sign (it subtracts the noise); equal
    weights keep both the way each signal is defined."""
    rng = np.random.default_rng(7)
    latent = rng.normal(size=2000)
    noise = rng.normal(size=2000)
    first = latent + noise
    second = noise + 0.3 * latent
    z = -np.stack([first, second], axis=1)                       # signals: higher = less trustworthy
    z = (z - z.mean(axis=0)) / z.std(axis=0)
    assert spearman(-z[:, 1], latent) > 0.2                      # alone, the second ranks it the right way
    ridge = combiner_weights(z, latent, "ridge", alpha=1.0)
    equal = combiner_weights(z, latent, "equal", alpha=1.0, signals=2)
    assert ridge[0] < 0 < ridge[1]                               # ridge: the second signal's sign flipped
    assert (equal < 0).all()


def test_non_ridge_calibration_stays_in_agreement_units():
    rng = np.random.default_rng(4)
    docs = _unit(rng.normal(size=(200, 16)))
    teacher = _unit(rng.normal(size=(300, 16)))
    noise = np.linspace(0.0, 3.0, 300)[:, None] * rng.normal(size=(300, 16))
    student = _unit(teacher + noise)                         # agreement falls along the rows
    agreement = true_agreement(student, teacher, docs)
    # the longer the text, the noisier its student vector: length is the informative signal here
    texts = [" ".join(["w"] * (1 + row // 20)) for row in range(300)]
    model = fit_signal_model(texts, student, teacher, bank_size=64, pca_dim=8, documents=docs)
    for combiner in ("rank", "pairwise", "low", "equal"):
        cal = fit_calibration(model, texts, student, agreement, signals=["retrieval_top_score", "length"],
                              combiner=combiner)
        scores = confidence(model, cal, texts, student)
        assert cal.info["combiner"] == combiner
        # least squares onto the target: same mean, and a budget is still a quantile of the scores
        assert scores.mean() == pytest.approx(agreement["overlap"].mean(), abs=1e-4)
        assert abs(float((scores < cal.threshold_for_budget(0.2)).mean()) - 0.2) < 0.02
        assert spearman(scores, agreement["overlap"]) > 0.3


def test_unknown_combiner_is_refused():
    with pytest.raises(ValueError, match="known: ridge"):
        combiner_weights(np.ones((4, 1)), np.arange(4.0), "forest", 1.0)  # type: ignore[arg-type]


def test_calibration_spans_can_leave_their_source_document_out():
    from tava_core.route.calibrate import top_k_sets

    rng = np.random.default_rng(5)
    docs = _unit(rng.normal(size=(100, 16)))
    spans = docs[:6].copy()                     # verbatim views of documents 0..5
    model = _model(documents=docs)
    source = np.array([0, 1, 2, 3, 4, -1])      # the last one: no source (a real query)
    plain = compute_signals(model, ["q"] * 6, spans, ["retrieval_top_score"])["retrieval_top_score"]
    left_out = compute_signals(model, ["q"] * 6, spans, ["retrieval_top_score"], exclude=source)["retrieval_top_score"]
    assert np.allclose(plain, 0.0, atol=1e-5)                           # each finds itself
    assert (left_out[:5] > 0.2).all() and left_out[5] == pytest.approx(0.0, abs=1e-5)
    assert np.allclose(left_out[:5], 1.0 - np.sort(spans[:5] @ docs.T, axis=1)[:, -2], atol=1e-5)   # the runner-up
    assert not (top_k_sets(spans, docs, 10, source)[:5] == np.arange(5)[:, None]).any()
    # a sampled bank maps corpus rows to its own rows; a source outside the bank changes nothing
    sampled = _model(documents=docs, doc_bank_size=50)
    outside = np.setdiff1d(np.arange(100), sampled.doc_rows)[:1]
    q = docs[outside]
    assert np.array_equal(compute_signals(sampled, ["q"], q, ["retrieval_top_score"], exclude=outside)["retrieval_top_score"],
                          compute_signals(sampled, ["q"], q, ["retrieval_top_score"])["retrieval_top_score"])
    inside = sampled.doc_rows[:1]
    assert compute_signals(sampled, ["q"], docs[inside], ["retrieval_top_score"], exclude=inside)[
        "retrieval_top_score"][0] > 0.2
    agreement = true_agreement(spans, spans, docs, exclude=source)
    assert np.all(agreement["overlap"] == 1.0)


def test_map_change_is_zero_when_the_forward_map_keeps_the_ranking_and_high_when_it_scrambles_it():
    rng = np.random.default_rng(6)
    docs = _unit(rng.normal(size=(200, 16)))
    queries = _unit(rng.normal(size=(30, 16)))
    model = _model(documents=docs)
    model.forward = 3.0 * np.eye(16, dtype=np.float32)            # same direction: same top-10
    keep = compute_signals(model, ["q"] * 30, queries, ["retrieval_map_change"])["retrieval_map_change"]
    assert np.all(keep == 0.0)
    model.forward = np.linalg.qr(rng.normal(size=(16, 16)))[0].astype(np.float32)   # a random rotation
    moved = compute_signals(model, ["q"] * 30, queries, ["retrieval_map_change"])["retrieval_map_change"]
    assert moved.mean() > 0.6 and moved.max() <= 1.0


def test_fit_router_keeps_a_document_bank_only_for_retrieval_signals():
    from tava_core.route.build import TextVectors, fit_router
    from tava_core.route.config import RouterSettings

    rng = np.random.default_rng(7)
    vectors = _unit(rng.normal(size=(80, 16)))
    docs = _unit(rng.normal(size=(120, 16)))
    texts = [f"text {i}" for i in range(80)]
    pairs = TextVectors(texts, vectors, vectors)
    plain, _ = fit_router(pairs, pairs, docs, RouterSettings(bank_size=16, pca_dim=4, vector_components=0,
                                                             signals=["knn_distance", "length"]))
    assert "documents" not in plain.arrays()
    default, _ = fit_router(pairs, pairs, docs, RouterSettings(bank_size=16, pca_dim=4))   # retrieval_entropy
    assert default.arrays()["documents"].shape == (120, 16)
    routed, cal = fit_router(pairs, pairs, docs, RouterSettings(bank_size=16, pca_dim=4, vector_components=0,
                                                                signals=["retrieval_entropy", "length"],
                                                                combiner="rank"))
    assert routed.arrays()["documents"].shape == (120, 16) and cal.info["combiner"] == "rank"
