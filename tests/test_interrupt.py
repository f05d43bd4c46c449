"""The process-wide stop request: set when an interrupt passes the code that waits on workers, and
obeyed by the encoders between batches (the command-level behaviour is in
tests/flows/test_cli_manners.py::test_a_signalled_embed_ends_within_a_batch_and_reports)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from helpers import synthetic_texts, write_static_model

from tava_core import interrupt
from tava_core.encoders.static import StaticEncoder
from tava_core.encoders.transformer import TransformerEncoder


@pytest.fixture(autouse=True)
def no_stop_left_behind():
    yield
    with interrupt.stop_workers_on_interrupt():   # entering clears: later tests start without a request
        pass


class TerminationSignalLike(BaseException):
    """Stands in for prefect.exceptions.TerminationSignal (a BaseException), without importing Prefect."""


@pytest.mark.parametrize("raised, stops", [(KeyboardInterrupt, True), (TerminationSignalLike, True),
                                           (SystemExit, True), (ValueError, False)])
def test_only_an_interrupt_asks_the_workers_to_stop(raised, stops):
    with pytest.raises(raised):
        with interrupt.stop_workers_on_interrupt():
            raise raised()
    assert interrupt.stop_requested() is stops
    with interrupt.stop_workers_on_interrupt():   # the next run starts clear
        assert not interrupt.stop_requested()


def _stop_after(calls: int, original):
    """Wraps one batch's work: the stop is requested during call number ``calls``."""
    seen = []

    def wrapped(*args, **kwargs):
        seen.append(1)
        if len(seen) == calls:
            interrupt.request_stop()
        return original(*args, **kwargs)

    return wrapped, seen


def _on_a_worker(call):
    """Run ``call`` on a worker thread, as a flow's task runner does; its result or exception."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call).result()


def test_the_transformer_encoder_stops_at_the_next_batch(tiny_model_dir, monkeypatch):
    encoder = TransformerEncoder(tiny_model_dir)
    texts = synthetic_texts(200, seed=4)
    full = encoder.encode(texts, batch_size=16)               # 13 batches when nobody asks it to stop
    wrapped, seen = _stop_after(3, encoder._forward_with_oom_retry)
    monkeypatch.setattr(encoder, "_forward_with_oom_retry", wrapped)
    with pytest.raises(interrupt.StopRequested):
        _on_a_worker(lambda: encoder.encode(texts, batch_size=16))
    assert len(seen) == 3
    # The request outlives the run it stopped (a notebook after an interrupted flow): the main thread, which a
    # signal interrupts by itself, still encodes, and the vectors are the same.
    monkeypatch.undo()
    assert interrupt.stop_requested() and np.allclose(encoder.encode(texts, batch_size=16), full, atol=1e-6)


@pytest.mark.parametrize("workers", [1, 2])
def test_the_static_encoder_stops_at_the_next_chunk(tmp_path, teacher_path, monkeypatch, workers):
    encoder = StaticEncoder(write_static_model(tmp_path, teacher_path, 16, seed=0))
    encoder.workers = workers
    texts = synthetic_texts(5000, seed=4)                     # 5 chunks of 1,024
    full = encoder.encode(texts)
    wrapped, seen = _stop_after(2, encoder.token_bags)
    monkeypatch.setattr(encoder, "token_bags", wrapped)
    if workers == 1:                                          # serial: read between chunks
        with pytest.raises(interrupt.StopRequested):
            _on_a_worker(lambda: encoder.encode(texts))
        assert len(seen) == 2
    interrupt.request_stop()
    with pytest.raises(interrupt.StopRequested):              # threaded: read once, before the chunks start
        _on_a_worker(lambda: encoder.encode(texts))
    monkeypatch.undo()
    assert np.array_equal(encoder.encode(texts), full)        # the main thread still encodes
