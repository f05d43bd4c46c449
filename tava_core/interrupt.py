"""A process-wide stop request for work running on worker threads.

A signal (Ctrl-C, ``kill``, ``timeout``) interrupts only the main thread. Work a flow handed to a
thread pool (a shard being embedded) runs on, and the process cannot end until it is done: a
`tava embed` busy on a shard of 1,200 long texts ended 56 s after SIGTERM (session 38,
bench/results/cli_signals.json; 1.6 s now). So the code that
waits on workers marks an interrupt with ``stop_workers_on_interrupt``, and long loops call
``raise_if_stop_requested`` between batches: the worker ends within one batch, and nothing it was
writing is kept (every output is written to a temporary file and renamed when whole).
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator

_STOP = threading.Event()


class StopRequested(BaseException):
    """Raised in a worker thread after the process was interrupted. A ``BaseException``, like
    ``KeyboardInterrupt``: no ``except Exception`` (and no task retry) may swallow it."""


def request_stop() -> None:
    _STOP.set()


def stop_requested() -> bool:
    return _STOP.is_set()


def raise_if_stop_requested() -> None:
    """Call between batches of long work that may run on a worker thread. On the main thread it does
    nothing: a signal interrupts that thread by itself, and the request may outlive the run it stopped
    (in a notebook, an encoder used directly after an interrupted flow must still work)."""
    if _STOP.is_set() and threading.current_thread() is not threading.main_thread():
        raise StopRequested("the process was interrupted; this work stops here")


@contextlib.contextmanager
def stop_workers_on_interrupt() -> Iterator[None]:
    """Around code that waits on worker threads: an interrupt (any ``BaseException`` that is not an
    ``Exception``: ``KeyboardInterrupt``, Prefect's ``TerminationSignal``, ``SystemExit``) asks the
    workers to stop before it propagates. Entering clears an earlier request: a new run starts."""
    _STOP.clear()
    try:
        yield
    except Exception:
        raise
    except BaseException:
        _STOP.set()
        raise
