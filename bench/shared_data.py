"""Where the benchmarks find the project and ../shared/data, set up once for every bench script.

Importing it puts the project on ``sys.path`` (bench scripts run as ``python bench/NAME.py``) and
keeps Hugging Face offline: the benchmarks read local models and data only.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = Path(os.environ.get("TAVA_SHARED_DATA", ROOT.parent / "shared" / "data"))
SCIFACT = SHARED / "beir" / "scifact"
PASSAGES = SHARED / "corpus_passages_en.jsonl.gz"
MPNET_VECTORS = SHARED / "vectors" / "all-mpnet-base-v2"


def write_result(path: Path, report: dict, *, indent: int = 2) -> None:
    """Write a benchmark's JSON atomically (temp file, then rename): a killed run leaves the old one."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=indent) + "\n")
    os.replace(tmp, path)


def add_run(path: Path, benchmark: str, key: str, result: dict) -> dict:
    """Add (or replace) one run under ``runs[key]`` of a results file that keeps several, then write it
    atomically; returns the whole report."""
    import json

    report = json.loads(path.read_text()) if path.is_file() else {"benchmark": benchmark, "runs": {}}
    report["runs"][key] = result
    write_result(path, report)
    return report


def split_results(results: Path, split: str, out: "str | None" = None) -> Path:
    """Where a bench's JSON goes: ``out`` when given, else ``results`` for the test split and
    ``<stem>_dev.json`` beside it for the dev split (choosing and reporting stay in separate files)."""
    if out:
        return Path(out)
    return results if split == "test" else results.with_name(f"{results.stem}_dev.json")


def scifact_train_queries() -> list[str]:
    """SciFact's train queries (the dev split), in file order."""
    import json

    train = {line.split("\t")[0] for line in (SCIFACT / "qrels" / "train.tsv").read_text().splitlines()[1:]}
    return [q["text"] for q in map(json.loads, (SCIFACT / "queries.jsonl").open()) if q["_id"] in train]


def cpu_info() -> dict:
    """The CPU the ratios were measured on: speed-ups between runtimes depend on it (torch's x86 GEMM
    and ONNX Runtime's MLAS differ most between vendors, and int8 between CPUs with and without AMX)."""
    from tava_core.export.standalone import cpu_flags

    model, flags = "unknown", cpu_flags() or set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
                break
    except OSError:
        pass
    return {"model": model, "amx_int8": "amx_int8" in flags, "avx512_vnni": "avx512_vnni" in flags,
            "avx512f": "avx512f" in flags}


@contextlib.contextmanager
def busy_process_beside(active: bool = True) -> Iterator[None]:
    """One CPU-bound Python process running beside the block (none when ``active`` is false), started a
    second before it so the scheduler sees it, and killed after it: the "other work on the machine" of
    bench/route_threads.py and bench/serve_threads.py."""
    if not active:
        yield
        return
    busy = subprocess.Popen([sys.executable, "-c", "while True:\n    pass\n"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        yield
    finally:
        busy.kill()
        busy.wait()
