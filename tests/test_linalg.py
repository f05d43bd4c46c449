"""tava_core.linalg: factorisations run on one BLAS thread, and every factorisation goes through it."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from tava_core import linalg

PROJECT = Path(__file__).resolve().parents[1]


def _blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


@pytest.fixture()
def two_blas_threads():
    """numpy's BLAS on 2 threads for the test, whatever the machine set (so 'one thread' is observable)."""
    if not _blas_threads():
        pytest.skip("numpy here reports no BLAS thread pool to threadpoolctl")
    with threadpool_limits(limits=2, user_api="blas"):
        yield


def test_factorisations_see_one_blas_thread_and_the_caller_gets_its_threads_back(two_blas_threads, monkeypatch):
    seen: list[list[int]] = []
    real_svd = np.linalg.svd

    def recording_svd(*args, **kwargs):
        seen.append(_blas_threads())
        return real_svd(*args, **kwargs)

    monkeypatch.setattr(np.linalg, "svd", recording_svd)
    from tava_core.adapter.unsupervised import procrustes_weight

    rng = np.random.default_rng(0)
    weight = procrustes_weight(rng.standard_normal((50, 8)), rng.standard_normal((50, 16)))
    np.testing.assert_allclose(weight @ weight.T, np.eye(8), atol=1e-5)   # a semi-orthogonal map, computed
    assert seen == [[1] * len(seen[0])]
    assert set(_blas_threads()) == {2}


def test_nested_limits_restore_the_outer_limit_only_at_the_outer_exit(two_blas_threads):
    with linalg.one_blas_thread():
        with linalg.one_blas_thread():
            assert set(_blas_threads()) == {1}
        assert set(_blas_threads()) == {1}
    assert set(_blas_threads()) == {2}


@pytest.mark.parametrize("name, args", [
    ("svd", (np.arange(12.0).reshape(4, 3),)),
    ("solve", (np.eye(3) * 2, np.ones(3))),
    ("eigh", (np.diag([3.0, 1.0, 2.0]),)),
    ("pinv", (np.arange(6.0).reshape(2, 3),)),
])
def test_wrappers_return_what_numpy_returns(name, args):
    ours = getattr(linalg, name)(*args)
    theirs = (np.linalg.svd(*args, full_matrices=False) if name == "svd" else getattr(np.linalg, name)(*args))
    for a, b in zip(np.atleast_1d(ours) if not isinstance(ours, tuple) else ours,
                    np.atleast_1d(theirs) if not isinstance(theirs, tuple) else theirs, strict=True):
        np.testing.assert_allclose(np.abs(a), np.abs(b), atol=1e-12)


def test_no_factorisation_in_tava_core_bypasses_linalg():
    pattern = re.compile(r"np\.linalg\.(svd|solve|eigh|eig|pinv|inv|lstsq|qr|cholesky)\(")
    offenders = [f"{path.relative_to(PROJECT)}:{n}" for path in sorted((PROJECT / "tava_core").rglob("*.py"))
                 if path.name != "linalg.py"
                 for n, line in enumerate(path.read_text().splitlines(), start=1) if pattern.search(line)]
    assert not offenders, f"use tava_core.linalg (one BLAS thread) instead of np.linalg at {offenders}"
