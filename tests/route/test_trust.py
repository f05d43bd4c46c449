"""Word trust (tava_core/route/trust.py): a ridge regression of agreement on hashed word bags."""
from __future__ import annotations

import numpy as np
import pytest

from tava_core.route.calibrate import spearman
from tava_core.route.signals import word_buckets
from tava_core.route.trust import cross_fitted_trust, fit_word_trust, word_trust_signal
from tava_core.route.words import WordBags

GOOD = [f"good{i}" for i in range(40)]
BAD = [f"bad{i}" for i in range(10)]


def corpus(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Texts of 6-12 words; each bad word a text holds costs it 0.3 of agreement (plus noise)."""
    rng = np.random.default_rng(seed)
    texts, agreement = [], []
    for _ in range(n):
        words = list(rng.choice(GOOD, size=rng.integers(6, 13)))
        bad = int(rng.integers(0, 3))
        words += list(rng.choice(BAD, size=bad))
        rng.shuffle(words)
        texts.append(" ".join(words))
        agreement.append(0.9 - 0.3 * bad + rng.normal(0, 0.05))
    return texts, np.clip(np.array(agreement), 0, 1)


def test_predict_is_the_mean_of_the_words_trust_and_adjoint_is_its_transpose():
    texts = ["alpha beta", "beta beta gamma", "", "!!!"]
    bags = WordBags(texts)
    table = np.random.default_rng(0).normal(size=bags.adjoint(np.zeros(len(texts))).shape)
    by_hand = [np.mean(table[word_buckets(t)]) if len(word_buckets(t)) else 0.0 for t in texts]
    np.testing.assert_allclose(bags.predict(table), by_hand, atol=1e-12)
    y = np.array([0.3, -1.0, 2.0, 0.5])
    # <X t, y> == <t, X' y>: the conjugate gradient relies on it
    assert bags.predict(table) @ y == pytest.approx(table @ bags.adjoint(y), rel=1e-9)


def test_fitted_trust_ranks_unseen_texts_with_bad_words_as_less_trustworthy():
    texts, agreement = corpus(600, seed=0)
    table = fit_word_trust(texts, agreement)
    held_texts, held_agreement = corpus(300, seed=1)
    signal = word_trust_signal(table, held_texts)
    assert spearman(-signal, held_agreement) > 0.8
    bad = np.mean([table[word_buckets(w)[0]] for w in BAD])
    good = np.mean([table[word_buckets(w)[0]] for w in GOOD])
    assert bad < 0 < good


def test_unseen_words_carry_no_trust_and_a_wordless_text_scores_zero():
    texts, agreement = corpus(200, seed=2)
    table = fit_word_trust(texts, agreement)
    assert np.count_nonzero(table) <= len(GOOD) + len(BAD)
    assert word_trust_signal(table, ["neverseen words here", ""]).tolist() == [0.0, 0.0]


def test_more_ridge_shrinks_the_table():
    texts, agreement = corpus(200, seed=3)
    loose, tight = (np.abs(fit_word_trust(texts, agreement, ridge=r)).sum() for r in (0.1, 100.0))
    assert tight < 0.5 * loose


def test_cross_fitted_values_never_see_their_own_text():
    """Pure noise agreement: in-sample trust fits the noise, out-of-fold trust cannot."""
    texts, _ = corpus(300, seed=4)
    noise = np.random.default_rng(5).uniform(size=len(texts))
    in_sample = word_trust_signal(fit_word_trust(texts, noise, ridge=0.01), texts)
    out_of_fold, table = cross_fitted_trust(texts, noise, ridge=0.01)
    assert spearman(-in_sample, noise) > 0.3
    assert abs(spearman(-out_of_fold, noise)) < 0.15
    np.testing.assert_array_equal(table, fit_word_trust(texts, noise, ridge=0.01))


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="2 texts but 3"):
        fit_word_trust(["a", "b"], np.zeros(3))


@pytest.fixture(scope="module")
def trust_router(static_student):
    """fit_router with word_trust, on real student (the teacher's token table) and teacher vectors."""
    from route_helpers import TEXTS

    from tava_core.encoders import load_encoder
    from tava_core.route.build import TextVectors, fit_router
    from tava_core.route.config import RouterSettings

    student = load_encoder(str(static_student), cache=False)
    teacher = load_encoder("all-MiniLM-L6-v2")
    reference = TextVectors(TEXTS, student.encode(TEXTS), teacher.encode(TEXTS))
    calib = TEXTS[::-1]
    calibration = TextVectors(calib, student.encode(calib, kind="query"), teacher.encode(calib, kind="query"))
    settings = RouterSettings(signals=["word_trust", "length"], vector_components=0, bank_size=32, pca_dim=8)
    model, fitted = fit_router(reference, calibration, reference.teacher, settings)
    return {"student": student, "teacher": teacher, "calibration": calibration, "settings": settings,
            "model": model, "fitted": fitted, "documents": reference.teacher}


def test_fit_router_gives_the_combiner_out_of_fold_trust_and_saves_the_full_table(trust_router):
    from tava_core.route.calibrate import true_agreement

    cal, settings, model, fitted = (trust_router[k] for k in ("calibration", "settings", "model", "fitted"))
    agreement = true_agreement(cal.student, cal.teacher, trust_router["documents"])["overlap"]
    out_of_fold, table = cross_fitted_trust(cal.texts, agreement, ridge=settings.word_trust_ridge, seed=settings.seed)
    np.testing.assert_array_equal(model.word_trust, table)
    assert np.count_nonzero(table) > 10
    in_sample = word_trust_signal(table, cal.texts)
    column = fitted.signals.index("word_trust")
    # the combiner standardised the out-of-fold values, not the (overfitted) in-sample ones
    assert fitted.mean[column] == pytest.approx(out_of_fold.mean(), abs=1e-6)
    assert fitted.scale[column] == pytest.approx(out_of_fold.std(), rel=1e-5)
    assert fitted.scale[column] != pytest.approx(in_sample.std(), rel=1e-2)


def test_a_saved_router_keeps_its_trust_table(trust_router, tmp_path):
    from tava_core.config import EncoderSpec
    from tava_core.route.router import load_router, save_router, threshold_from

    model, fitted, student, teacher = (trust_router[k] for k in ("model", "fitted", "student", "teacher"))
    out = save_router(tmp_path / "r", student=EncoderSpec(model=student.spec.model),
                      student_fingerprint=student.fingerprint, teacher=EncoderSpec(model="all-MiniLM-L6-v2"),
                      teacher_fingerprint=teacher.fingerprint, signal_model=model, calibration=fitted,
                      threshold=threshold_from(fitted, teacher_budget=0.25))
    loaded = load_router(out)
    np.testing.assert_array_equal(loaded.signal_model.word_trust, model.word_trust)
    queries = ["how do cells respond to stress", "a query of words never seen zzqx", ""]
    vectors = student.encode(queries, kind="query")
    from tava_core.route.calibrate import confidence

    np.testing.assert_allclose(loaded.confidence(queries, vectors), confidence(model, fitted, queries, vectors),
                               atol=1e-5)


def test_word_trust_without_a_table_names_the_fix(trust_router):
    from dataclasses import replace

    from tava_core.route.fast import CompiledConfidence
    from tava_core.route.signals import compute_signals

    bare = replace(trust_router["model"], word_trust=np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="fit_router"):
        compute_signals(bare, ["a query"], trust_router["calibration"].student[:1], ["word_trust"])
    with pytest.raises(ValueError, match="calibrate-router"):
        CompiledConfidence(bare, trust_router["fitted"])
