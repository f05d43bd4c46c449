"""Windowed reading (tava_core/encoders/windows.py): how texts are cut, how pieces are pooled, and that a
TransformerEncoder with a window encodes a long text as the token-weighted mean of its pieces' vectors."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tava_core.config import EncoderSpec
from tava_core.encoders import TransformerEncoder, load_encoder
from tava_core.encoders.windows import (
    MIN_WINDOW,
    WINDOW_FILE,
    pool_windows,
    read_window,
    split_windows,
    window_from_lengths,
    window_record,
)

LONG = ("Aspirin lowers the risk of a first heart attack in men over fifty, but it raises the risk of "
        "bleeding in the stomach, so doctors weigh the two before they advise a daily dose. ") * 3
SHORT = "the movie was great fun"


def word_offsets(text: str) -> list[tuple[int, int]]:
    """Whitespace 'tokens' as character offsets: enough to test the cutting without a tokenizer."""
    out, start = [], None
    for i, ch in enumerate(text + " "):
        if ch != " " and start is None:
            start = i
        elif ch == " " and start is not None:
            out.append((start, i))
            start = None
    return out


@pytest.mark.parametrize(("window", "prefix_tokens", "pieces"), [(7, 0, ["a b c d e", "f g h i j", "k"]),
                                                                  (7, 2, ["a b c", "d e f", "g h i", "j k"]),
                                                                  (13, 0, ["a b c d e f g h i j k"])])
def test_split_windows_cuts_consecutive_pieces_of_the_window_and_keeps_a_fitting_text_whole(
        window, prefix_tokens, pieces):
    texts = ["a b c d e f g h i j k", "x y"]
    cut, owner, weight = split_windows(texts, [word_offsets(t) for t in texts], window, prefix_tokens)
    assert cut == pieces + ["x y"]
    assert owner.tolist() == [0] * len(pieces) + [1]
    assert weight.tolist() == [len(p.split()) for p in pieces] + [2]


def test_pool_windows_is_the_token_weighted_mean_and_keeps_one_piece_texts_exactly():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(4, 6)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    owner, weight = np.array([0, 0, 0, 1]), np.array([5.0, 5.0, 1.0, 3.0], np.float32)
    pooled = pool_windows(vectors, owner, weight, 2)
    expected = (5 * vectors[0] + 5 * vectors[1] + vectors[2]) / 11
    np.testing.assert_allclose(pooled[0], expected / np.linalg.norm(expected), atol=1e-6)
    assert np.array_equal(pooled[1], vectors[3])
    raw = pool_windows(vectors, owner, weight, 2, normalize=False)
    np.testing.assert_allclose(raw[0], expected, atol=1e-6)


@pytest.mark.parametrize(("counts", "max_length", "window"), [([10] * 94 + [40] * 6, 128, 40),
                                                               ([10] * 100, 128, MIN_WINDOW),
                                                               ([300] * 100, 128, 128)])
def test_the_window_is_the_95th_percentile_of_training_lengths_as_trained(counts, max_length, window):
    assert window_from_lengths(counts, max_length) == window
    record = window_record(counts, max_length)
    assert record["window_tokens"] == window and record["training_texts"] == len(counts)


@pytest.fixture(scope="module")
def windowed_dir(tmp_path_factory, tiny_model_dir) -> Path:
    out = tmp_path_factory.mktemp("windowed") / "student"
    shutil.copytree(tiny_model_dir, out)
    (out / WINDOW_FILE).write_text(json.dumps({"window_tokens": 12}))
    return out


def test_a_windowed_encoder_encodes_a_long_text_as_the_weighted_mean_of_its_pieces(windowed_dir, tiny_model_dir):
    windowed = TransformerEncoder(windowed_dir)
    whole = TransformerEncoder(tiny_model_dir)
    assert windowed.window == 12 and read_window(windowed_dir) == 12 and whole.window is None
    vectors = windowed.encode([LONG, SHORT], kind="query")
    tokenizer = windowed.tokenizer
    offsets = tokenizer([LONG], add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"][0]
    pieces, _, weight = split_windows([LONG], [offsets[:windowed.max_length - 2]], 12)
    assert len(pieces) > 4 and weight.max() == 10       # 12 tokens less [CLS] and [SEP]
    expected = pool_windows(whole.encode(pieces, kind="query"), np.zeros(len(pieces), np.int64), weight, 1)
    np.testing.assert_allclose(vectors[0], expected[0], atol=1e-5)
    # a text that fits one window is read as before; a long one is not
    np.testing.assert_allclose(vectors[1], whole.encode([SHORT], kind="query")[0], atol=1e-6)
    assert float(vectors[0] @ whole.encode([LONG], kind="query")[0]) < 0.9999


def test_the_window_enters_the_fingerprint_and_the_spec_overrides_it(windowed_dir, tiny_model_dir):
    plain = TransformerEncoder(tiny_model_dir)
    windowed = TransformerEncoder(windowed_dir)
    off = load_encoder(EncoderSpec(model=str(windowed_dir), window=0), cache=False)
    assert off.window is None
    np.testing.assert_allclose(off.encode([LONG]), plain.encode([LONG]), atol=1e-6)
    # no window, no change: a teacher's fingerprint is what it was before windows existed
    assert load_encoder(EncoderSpec(model=str(tiny_model_dir), window=0), cache=False).fingerprint == plain.fingerprint
    fingerprints = {windowed.fingerprint, off.fingerprint,
                    load_encoder(EncoderSpec(model=str(windowed_dir), window=20), cache=False).fingerprint}
    assert len(fingerprints) == 3
    assert load_encoder(EncoderSpec(model=str(windowed_dir), window=12), cache=False).fingerprint == windowed.fingerprint
