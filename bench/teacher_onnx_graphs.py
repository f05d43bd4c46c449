"""Would another graph recipe speed up the ONNX backend's teacher (issue 18)? all-mpnet-base-v2's
backend graph keeps its attention unfused (its relative position bias defeats ONNX Runtime's BERT
attention fusion) but gets the fused SkipLayerNormalization whose CPU kernel ran ~5x slower than
Add + LayerNormalization on the query encoder (bench/int8_amx.py).

Sides, on generic passages (texts where the non-matmul share is largest) at batch 64: torch; the
backend's graph (offline fusions, ORT defaults); the same fusions without SkipLayerNorm, with the
export card's session settings; the plain graph with the card's settings. Wall rate interleaved
best-of-N, plus process CPU seconds per pass for the ONNX sides (the ranking that survives a
machine loaded past its cores), and max |diff| to torch (the backend's gate: 1e-4).

    .venv/bin/python bench/teacher_onnx_graphs.py --teacher all-mpnet-base-v2   # -> bench/results/teacher_onnx_graphs.json
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import int8_amx  # noqa: E402  (bench/ is on sys.path when run as a script)
import int8_speedups  # noqa: E402
import numpy as np
import speed  # noqa: E402
from shared_data import ROOT, write_result  # noqa: E402

GRAPHS = {"backend graph (offline fusions), default session": ("fused", "default"),
          "fusions without SkipLayerNorm, card session": ("fused_no_skip_ln", "tuned"),
          "plain graph, card session": ("plain", "tuned")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default=speed.TEACHER)
    parser.add_argument("--texts", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "teacher_onnx_graphs.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tava-bench-tgraphs-"))
    os.environ.update({"TAVA_HOME": str(work), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    import onnxruntime as ort
    import torch

    from tava_core.config import EncoderSpec
    from tava_core.encoders import load_encoder
    from tava_core.encoders.base import length_sorted_order
    from tava_core.export.graph import EncoderGraph
    from tava_core.export.standalone import SESSION_SETTINGS, session_options

    torch.set_num_threads(2)
    result: dict[str, Any] = {"benchmark": "teacher_onnx_graphs", "teacher": args.teacher, "batch_size": 64,
                              "command": f".venv/bin/python bench/teacher_onnx_graphs.py --teacher {args.teacher}",
                              "load_average_start": speed.load_avg()}
    texts = speed.passages(args.texts, seed=3)
    teacher = load_encoder(EncoderSpec(model=args.teacher, backend="torch", batch_size=64), cache=False)
    module = EncoderGraph(teacher.model, teacher.dense, pooling=teacher.pooling, normalize=teacher.normalized)
    graphs = {name: int8_amx.build_graph(module, work / f"{name}.onnx", len(teacher.tokenizer), int8_amx.FUSIONS[name])
              for name in ("fused", "fused_no_skip_ln", "plain")}
    order = length_sorted_order(texts)
    batches = []
    for start in range(0, len(order), 64):
        features = teacher.tokenize([texts[i] for i in order[start:start + 64]])
        batches.append((order[start:start + 64], {"input_ids": features["input_ids"].astype(np.int64),
                                                   "attention_mask": features["attention_mask"].astype(np.int64)}))

    def runner(path: Path, settings: dict[str, Any]) -> Callable[[], np.ndarray]:
        options, disabled = session_options({"session": settings}, threads=2)
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"],
                                       disabled_optimizers=disabled)

        def run() -> np.ndarray:
            out = np.zeros((len(texts), teacher.dim), dtype=np.float32)
            for idx, feeds in batches:
                out[idx] = session.run(None, feeds)[0]
            return out
        return run

    sessions = {"default": int8_amx.DEFAULT_SESSION, "tuned": SESSION_SETTINGS}
    candidates = {name: runner(graphs[graph], sessions[session]) for name, (graph, session) in GRAPHS.items()}
    sides: dict[str, Callable[[], Any]] = {"torch": lambda: teacher.encode(texts)}
    sides.update(candidates)
    started = time.perf_counter()
    result["texts"] = len(texts)
    result["timing"] = int8_amx.timed(sides, args.repeats, len(texts), "torch")
    result["cpu_time"] = int8_speedups.cpu_seconds(candidates, args.repeats)
    reference_cpu = result["cpu_time"]["backend graph (offline fusions), default session"]["best_cpu_seconds"]
    for side in result["cpu_time"].values():
        side["backend_cpu_over_this"] = round(reference_cpu / side["best_cpu_seconds"], 3)
    reference = teacher.encode(texts)
    result["max_abs_diff_to_torch"] = {name: float(np.abs(fn() - reference).max()) for name, fn in candidates.items()}
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["load_average_end"] = speed.load_avg()
    write_result(args.out, result)
    for name in candidates:
        print(name, result["timing"]["sides"][name]["vs_torch"], result["cpu_time"][name]["backend_cpu_over_this"],
              result["max_abs_diff_to_torch"][name], flush=True)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
