"""Do tava's factorisations run faster on one BLAS thread than on numpy's default, idle and on a busy machine?

tava_core/linalg.py runs every SVD / solve / eigh / pinv on one BLAS thread. This bench is the
evidence: each factorisation at the shapes tava uses, timed on numpy's default BLAS threads and on
one, alternating, in the same process, first as the machine is, then beside ``--busy`` processes this
bench starts itself (each a one-thread matrix-product loop: "another job"), which it stops before it
writes. ``--end-to-end N``: also `tava adapt --mode unpaired`'s unsupervised start (``fit_unsupervised``,
random unit vectors of 384 and 768 dims, N a side; the method's speed, not its quality), both ways,
beside the busy processes.

The ratio (default threads / one thread) is the figure; absolute times depend on the machine.

``--torch-steps``: also torch training steps of an adapter-sized MLP on two threads and one, both conditions.

    python bench/linalg_threads.py [--rounds 7] [--busy 2] [--end-to-end 2000] [--torch-steps] [--out bench/results/linalg_threads.json]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tava_core import linalg  # noqa: E402

BUSY = "import numpy as np\na = np.random.rand(600, 600)\nwhile True:\n    a = a @ a.T\n    a /= np.abs(a).max()\n"


def cases(rng: np.random.Generator) -> dict[str, Callable[[], Any]]:
    """The factorisations at tava's shapes (MiniLM 384-d, mpnet 768-d)."""
    a = rng.standard_normal((5000, 384))
    b = rng.standard_normal((5000, 768))
    cross = a.T @ b                                  # Procrustes / the unsupervised start's refinement rounds
    gram = a.T @ a + np.eye(384)                     # ridge maps (Stage B's closed form, the router's maps)
    rhs = a.T @ b
    docs = rng.standard_normal((8192, 384)).astype(np.float32)   # the router's PCA of the documents
    weight = np.linalg.qr(rng.standard_normal((768, 384)))[0].T   # inverse of a 384 -> 768 map
    return {
        "procrustes svd 384x768": lambda: np.linalg.svd(cross, full_matrices=False),
        "ridge solve 384x384 (768 rhs)": lambda: np.linalg.solve(gram, rhs),
        "pca svd 8192x384 float32": lambda: np.linalg.svd(docs, full_matrices=False),
        "eigh 384x384": lambda: np.linalg.eigh(gram),
        "pinv 384x768": lambda: np.linalg.pinv(weight),
    }


def time_once(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(fn: Callable[[], Any], rounds: int) -> dict[str, Any]:
    """Alternating default / one-thread timings (the order swapped each round); medians and their ratio."""
    default, one = [], []
    fn()  # warm
    for r in range(rounds):
        order = ("default", "one") if r % 2 == 0 else ("one", "default")
        for which in order:
            if which == "default":
                default.append(time_once(fn))
            else:
                with linalg.one_blas_thread():
                    one.append(time_once(fn))
    med_d, med_o = statistics.median(default), statistics.median(one)
    return {"default_threads_ms": round(1000 * med_d, 2), "one_thread_ms": round(1000 * med_o, 2),
            "default_over_one": round(med_d / med_o, 2),
            "default_ms_all": [round(1000 * t, 2) for t in default], "one_ms_all": [round(1000 * t, 2) for t in one]}


@contextlib.contextmanager
def busy_processes(n: int):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", BUSY], env=env) for _ in range(n)]
    try:
        time.sleep(2.0)   # let them reach their loop
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def survey(rounds: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {name: compare(fn, rounds) for name, fn in cases(rng).items()}


def end_to_end(n: int) -> dict[str, Any]:
    """The unsupervised start with the factorisations on numpy's threads (as before session 61) and on one."""
    from unittest import mock

    from tava_core.adapter.unsupervised import fit_unsupervised

    rng = np.random.default_rng(1)
    source = rng.standard_normal((n, 384)).astype(np.float32)
    target = rng.standard_normal((n, 768)).astype(np.float32)
    out = {}
    for label in ("one_thread", "default_threads"):
        patch = (mock.patch.object(linalg, "one_blas_thread", contextlib.nullcontext) if label == "default_threads"
                 else contextlib.nullcontext())
        with patch:
            start = time.perf_counter()
            fit_unsupervised(source, target, seed=0)
            out[f"{label}_s"] = round(time.perf_counter() - start, 1)
    out["default_over_one"] = round(out["default_threads_s"] / out["one_thread_s"], 2)
    return out


def torch_steps(rounds: int) -> dict[str, Any]:
    """Training steps of an adapter-sized MLP (384 -> 1024 -> 768, batch 256, AdamW) on torch's two threads and
    on one: does torch's OpenMP pool suffer on a busy machine as OpenBLAS's factorisations do?"""
    import torch

    def step_ms(threads: int, steps: int = 40) -> float:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(384, 1024), torch.nn.GELU(), torch.nn.Linear(1024, 768))
        opt = torch.optim.AdamW(model.parameters(), 1e-3)
        x, y = torch.randn(256, 384), torch.randn(256, 768)

        def step() -> None:
            opt.zero_grad()
            ((model(x) - y) ** 2).mean().backward()
            opt.step()

        for _ in range(5):
            step()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        torch.set_num_threads(before)
        return 1000 * (time.perf_counter() - start) / steps

    two, one = [], []
    for _ in range(rounds):
        two.append(step_ms(2))
        one.append(step_ms(1))
    return {"two_threads_ms": round(statistics.median(two), 1), "one_thread_ms": round(statistics.median(one), 1),
            "two_over_one": round(statistics.median(two) / statistics.median(one), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--busy", type=int, default=2, help="busy one-thread processes for the loaded condition")
    parser.add_argument("--end-to-end", type=int, default=0, metavar="N",
                        help="also time the unsupervised start on N random vectors a side, beside the busy processes")
    parser.add_argument("--torch-steps", action="store_true",
                        help="also time adapter-sized torch training steps on two threads and one, in both conditions")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "linalg_threads.json"))
    args = parser.parse_args()
    from threadpoolctl import threadpool_info

    result: dict[str, Any] = {
        "cpus": os.cpu_count(), "blas": [{k: lib[k] for k in ("internal_api", "num_threads", "version")}
                                         for lib in threadpool_info() if lib["user_api"] == "blas"],
        "rounds": args.rounds, "load_before": os.getloadavg()[0]}
    result["as_is"] = survey(args.rounds)
    print(json.dumps({k: v["default_over_one"] for k, v in result["as_is"].items()}), flush=True)
    if args.torch_steps:
        result["torch_steps_as_is"] = torch_steps(3)
        print(json.dumps(result["torch_steps_as_is"]), flush=True)
    with busy_processes(args.busy):
        result[f"beside_{args.busy}_busy"] = survey(args.rounds)
        print(json.dumps({k: v["default_over_one"] for k, v in result[f"beside_{args.busy}_busy"].items()}), flush=True)
        if args.torch_steps:
            result[f"torch_steps_beside_{args.busy}_busy"] = torch_steps(3)
            print(json.dumps(result[f"torch_steps_beside_{args.busy}_busy"]), flush=True)
        if args.end_to_end:
            result["unsupervised_start"] = {"per_side": args.end_to_end, **end_to_end(args.end_to_end)}
            print(json.dumps(result["unsupervised_start"]), flush=True)
    result["load_after"] = os.getloadavg()[0]
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
