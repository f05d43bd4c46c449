"""Dense factorisations (SVD, solve, eigh, pinv) on one BLAS thread.

tava factorises matrices of a few hundred to a few thousand rows a side: Procrustes and ridge maps,
the router's calibration, PCA starts, tangent spaces. LAPACK runs each as a chain of small BLAS calls,
and OpenBLAS hands every call to all its threads and waits for the slowest. On an idle machine that
buys little at these sizes; on a machine running anything else a waiting thread is descheduled, each
call costs a scheduler time slice, and the factorisation slows ten-fold (bench/linalg_threads.py:
a 384 x 768 Procrustes SVD beside two busy processes on 2 cores, 5.0 s on numpy's two threads
against 0.51 s on one, session 61; `tava adapt --mode unpaired`'s start took 764 s instead of 65 s
for that reason in session 60). Large matrix products keep every thread: one call each, no chain.

Every factorisation in tava goes through this module (tests/test_linalg.py checks the source), so
the rule is kept in one place.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
from threadpoolctl import threadpool_limits

_depth = threading.local()


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """A context in which numpy's BLAS (and any other loaded BLAS) runs on one thread; restored on exit.

    Re-entrant and free when nested (limiting costs ~0.3 ms, which a loop of tiny factorisations,
    e.g. one per text in `tava diagnose`, pays once by wrapping the loop)."""
    depth = getattr(_depth, "value", 0)
    _depth.value = depth + 1
    try:
        if depth:
            yield
        else:
            with threadpool_limits(limits=1, user_api="blas"):
                yield
    finally:
        _depth.value = depth


def svd(a: np.ndarray, *, full_matrices: bool = False, compute_uv: bool = True) -> Any:
    """``np.linalg.svd`` on one BLAS thread (thin by default)."""
    with one_blas_thread():
        if compute_uv:
            return np.linalg.svd(a, full_matrices=full_matrices)
        return np.linalg.svd(a, compute_uv=False)


def solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.linalg.solve`` on one BLAS thread."""
    with one_blas_thread():
        return np.linalg.solve(a, b)


def eigh(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.linalg.eigh`` on one BLAS thread: (ascending eigenvalues, eigenvectors as columns)."""
    with one_blas_thread():
        values, vectors = np.linalg.eigh(a)
    return values, vectors


def pinv(a: np.ndarray) -> np.ndarray:
    """``np.linalg.pinv`` on one BLAS thread."""
    with one_blas_thread():
        return np.linalg.pinv(a)
