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
