"""The static encoder on several threads: a large input is split into chunks encoded in parallel,
and the vectors equal the one-thread path's exactly (each chunk writes its own rows)."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import synthetic_texts, write_static_model

from tava_core.encoders.static import StaticEncoder


@pytest.fixture(scope="module")
def static_dir(tmp_path_factory, teacher_path):
    return write_static_model(tmp_path_factory.mktemp("static"), teacher_path, 16, seed=0)


@pytest.mark.parametrize("workers, batch_size", [(2, 1024), (3, 1024), (2, 1500), (4, 2000)])
def test_threaded_chunks_equal_one_thread(static_dir, workers, batch_size):
    texts = synthetic_texts(5000, seed=1) + ["", "x"]
    serial = StaticEncoder(static_dir)
    serial.workers = 1
    threaded = StaticEncoder(static_dir)
    threaded.workers = workers
    expected = serial.encode(texts, batch_size=batch_size)
    got = threaded.encode(texts, batch_size=batch_size)
    assert np.array_equal(got, expected)
    # rows are the texts' own vectors, in order: a text encoded alone gives its row
    for i in (0, 1234, 4999, 5001):
        assert np.allclose(serial.encode([texts[i]])[0], got[i], atol=1e-6)


@pytest.mark.parametrize("normalize, max_length", [(None, None), (False, None), (None, 8)])
def test_one_text_numpy_path_equals_the_batch_path(static_dir, normalize, max_length):
    """A single text (a live query) skips torch: its vector is the batch path's row, prefix, cut and
    normalisation included; an empty text gives zeros, as an empty bag does."""
    from tava_core.config import EncoderSpec

    spec = EncoderSpec(model=str(static_dir), normalize=normalize, max_length=max_length, query_prefix="q: ")
    encoder = StaticEncoder(static_dir, spec)
    texts = synthetic_texts(300, seed=3) + ["", "x", "a much longer text " * 40]
    for kind in ("query", "document"):
        batch = encoder.encode(texts, kind=kind)
        alone = np.concatenate([encoder.encode([t], kind=kind) for t in texts])
        assert alone.shape == batch.shape and alone.dtype == np.float32
        np.testing.assert_allclose(alone, batch, rtol=0, atol=1e-6)
    assert not encoder.encode([""], kind="document").any()
    norms = np.linalg.norm(alone, axis=1)[:-3]
    if encoder.normalized:
        np.testing.assert_allclose(norms, 1.0, atol=1e-5)
    else:
        assert norms.std() > 0          # not normalised: the lengths vary
