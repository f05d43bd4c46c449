"""What is left to speed up in the int8 query encoder after its matmuls run on AMX (issue 18): one
lever at a time against the shipped int8 export, on the dev split (SciFact train queries).

The shipped file (`tava export --precision int8`: unfused graph, the card's session settings,
dynamic U8S8 per-channel reduced-range MatMuls, attention's activation products in fp32) spends
under half its batch-64 time in the int8 products (bench/int8_amx.py's profile); the rest is fp32
GELU, Softmax, LayerNorm, attention's products and transposes. Each variant changes one thing:

- ``mha``: ONNX Runtime's MultiHeadAttention contrib op (onnxruntime.transformers' BERT fusion with
  ``use_multi_head_attention``; SkipLayerNorm fusion off: its CPU kernel was slow) in place of the
  MatMul / Softmax / Transpose chain;
- ``fast_gelu``: GELU's tanh approximation (FastGelu contrib op) instead of the exact erf GELU;
- ``attention_int8``: attention's activation x activation MatMuls quantised too (dynamic);
- ``static_qdq``: static (calibrated, QDQ) quantisation of the MatMuls instead of dynamic: no
  per-call activation range pass. Calibrated on 256 generic passages cut to query length (not dev).

All share the shipped card's session settings. Timed against the torch fp32 student on 256 dev
queries at batch 64, all sides interleaved, best-of-N with the spread, and (ONNX sides only) the
process CPU seconds a pass costs, best of N: the ranking that survives a machine loaded past its
cores. Mean cosine to the fp32 torch student and asymmetric nDCG@10 change (student queries vs
teacher documents: the relevant documents + 300 distractors) on all 809 dev queries, as
bench/int8_amx.py does. Timings need only the shapes: ``--adapter`` may be the untrained pair of
``bench/make_speed_models.py --untrained`` (then the agreement rows describe no real student).

    .venv/bin/python bench/int8_speedups.py [--adapter DIR]   # -> bench/results/int8_speedups.json
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

import int8_amx  # noqa: E402  (bench/ is on sys.path when run as a script)
import numpy as np
import speed  # noqa: E402
from shared_data import ROOT, write_result  # noqa: E402

SHIPPED = "tava export int8 (shipped)"
# fp32 graph variants: None = the plain export; else onnxruntime.transformers FusionOptions changes.
NO_FUSION = {"enable_attention": False, "enable_skip_layer_norm": False, "enable_bias_skip_layer_norm": False,
             "enable_embed_layer_norm": False, "enable_layer_norm": False}
GRAPHS: dict[str, Optional[dict[str, Any]]] = {
    "plain": None,
    "mha": {"use_multi_head_attention": True, "enable_skip_layer_norm": False,
            "enable_bias_skip_layer_norm": False, "enable_embed_layer_norm": False},
    "fast_gelu": {**NO_FUSION, "enable_gelu_approximation": True},
    "mha_fast_gelu": {"use_multi_head_attention": True, "enable_skip_layer_norm": False,
                      "enable_bias_skip_layer_norm": False, "enable_embed_layer_norm": False,
                      "enable_gelu_approximation": True},
}
# name -> (graph, quantisation): "dynamic" = the shipped recipe; "attention_int8" = the shipped
# recipe with attention's activation products quantised too; "static_qdq" = calibrated QDQ; "fp32" =
# not quantised (against the shipped fp32 export).
VARIANTS: dict[str, tuple[str, str]] = {
    "plain graph, dynamic (= shipped recipe, rebuilt)": ("plain", "dynamic"),
    "mha": ("mha", "dynamic"),
    "fast_gelu": ("fast_gelu", "dynamic"),
    "mha + fast_gelu": ("mha_fast_gelu", "dynamic"),
    "attention_int8": ("plain", "attention_int8"),
    "static_qdq": ("plain", "static_qdq"),
    "fast_gelu + attention_int8": ("fast_gelu", "attention_int8"),
    "fp32 mha": ("mha", "fp32"),
    "fp32 mha + fast_gelu": ("mha_fast_gelu", "fp32"),
}
SHIPPED_FP32 = "tava export fp32 (shipped)"


def fused_graph(source: Path, out: Path, change: dict[str, Any], heads: int, hidden: int) -> Path:
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    options = FusionOptions("bert")
    for key, value in change.items():
        setattr(options, key, value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = optimizer.optimize_model(str(source), model_type="bert", num_heads=heads, hidden_size=hidden,
                                         opt_level=1, optimization_options=options)
    model.save_model_to_file(str(out), use_external_data_format=False)
    return out


def calibration_texts(count: int) -> list[str]:
    """Query-length pieces of generic passages (never the dev or test queries)."""
    return [" ".join(text.split()[:12]) for text in speed.passages(count, seed=7)]


def calibration_feeds(graph: Path, encoder: Any, texts: list[str], batch_size: int = 32) -> list[dict[str, np.ndarray]]:
    """``texts`` in batches as the graph at ``graph`` takes them: every input its session declares (a windowed
    graph's ``piece_weights``, a blend's ``static_ids`` too), built as the export's runner builds them
    (``encoder``: an ``ExportedQueryEncoder`` over a card of the same graph)."""
    import onnxruntime as ort

    names = [i.name for i in ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"]).get_inputs()]
    batches = []
    for start in range(0, len(texts), batch_size):
        feeds = encoder.feeds(texts[start:start + batch_size])
        missing = [name for name in names if name not in feeds]
        if missing:
            raise ValueError(f"{graph} takes {missing}, which the export's runner does not build for its card")
        batches.append({name: feeds[name] for name in names})
    return batches


def quantize_static_qdq(fp32: Path, out: Path, encoder: Any, texts: list[str]) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calibration_feeds(fp32, encoder, texts))

        def get_next(self) -> Optional[dict[str, np.ndarray]]:
            return next(self.batches, None)

    quantize_static(str(fp32), str(out), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"],
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                    reduce_range=True, extra_options={"MatMulConstBOnly": True})


def make_variants(dev: int8_amx.Dev, adapter: str, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    from tava_core.export.config import ExportConfig
    from tava_core.export.query_encoder import QUANTIZATION, _split_encoder, export_query_encoder, quantize_graph
    from tava_core.export.standalone import ExportedQueryEncoder
    from tava_core.home import TavaHome

    int8 = export_query_encoder(ExportConfig(model=adapter, precision="int8", out=str(work / "int8")), TavaHome(work))
    fp32 = export_query_encoder(ExportConfig(model=adapter, precision="fp32", out=str(work / "fp32")), TavaHome(work))
    # the plain graph is the fp32 export's own (unfused, the graph the int8 file quantises): the inputs the
    # shipped card's runner feeds (a windowed student's piece_weights too)
    plain = Path(shutil.copy(Path(fp32["path"]) / "model.onnx", work / "plain.onnx"))
    config = _split_encoder(dev.student).student.model.config
    graphs = {name: plain if change is None else
              fused_graph(plain, work / f"{name}.onnx", change, int(config.num_attention_heads), int(config.hidden_size))
              for name, change in GRAPHS.items()}
    shipped = ExportedQueryEncoder(int8["path"], threads=2)
    encoders: dict[str, Any] = {SHIPPED: shipped, SHIPPED_FP32: ExportedQueryEncoder(fp32["path"], threads=2)}
    for index, (name, (graph, quantization)) in enumerate(VARIANTS.items()):
        log(f"variant {name}")
        directory = work / f"v{index}"
        shutil.copytree(int8["path"], directory)
        target = directory / "model.onnx"
        if quantization == "fp32":
            shutil.copy(graphs[graph], target)
        elif quantization == "dynamic":
            quantize_graph(graphs[graph], target, QUANTIZATION)
        elif quantization == "attention_int8":
            quantize_graph(graphs[graph], target, {**QUANTIZATION, "weights_only": False})
        else:
            quantize_static_qdq(graphs[graph], target, shipped, calibration_texts(256))
        encoders[name] = ExportedQueryEncoder(directory, threads=2)
    return encoders


def cpu_seconds(sides: dict[str, Callable[[], Any]], repeats: int) -> dict[str, dict[str, Any]]:
    """Process CPU seconds per call (all threads), sides interleaved, best (least) of ``repeats``.

    On a machine loaded far past its cores, wall-clock best-of-N of ONNX Runtime's non-spinning
    threads spreads +-30% between identical graphs; the CPU time a call costs does not depend on
    how long its threads waited for a core, so it ranks ONNX Runtime variants against each other.
    (Not against torch: its OpenMP threads spin while waiting, which counts as CPU time.)"""
    runs: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, fn in sides.items():
            start = time.process_time()
            fn()
            runs[name].append(time.process_time() - start)
    return {name: {"best_cpu_seconds": round(min(r), 4), "runs_cpu_seconds": [round(x, 4) for x in r]}
            for name, r in runs.items()}


def op_types(path: Path) -> dict[str, int]:
    import collections

    import onnx

    return dict(collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node).most_common())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", default=str(ROOT / ".tava" / "artifacts" / "adapters" / "speed-adapter"))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--timing-queries", type=int, default=256)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "int8_speedups.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tava-bench-int8s-"))
    os.environ.update({"TAVA_HOME": str(work), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    import onnxruntime
    import torch

    torch.set_num_threads(2)
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s load {speed.load_avg()[0]:4.1f}] {message}", flush=True)

    result: dict[str, Any] = {
        "benchmark": "int8_speedups", "split": "SciFact train queries (dev)", "adapter": args.adapter,
        "machine": {"cpus": os.cpu_count(), "threads": 2, "torch": torch.__version__,
                    "onnxruntime": onnxruntime.__version__, "load_average_start": speed.load_avg()},
        "protocol": "warm; best-of-N with all sides interleaved in one run; ratios of best rates; runs = spread",
        "command": ".venv/bin/python bench/int8_speedups.py" + (f" --adapter {args.adapter}" if "--adapter" in
                                                                sys.argv else "")}
    log("dev: SciFact train queries, teacher documents, torch student reference")
    dev = int8_amx.Dev(args.adapter, args.timing_queries)
    result["dev"] = {"queries": len(dev.qids), "documents": len(dev.dids), "timing_queries": len(dev.timing_texts),
                     "torch_student_ndcg_at_10": round(dev.base_ndcg, 4)}
    encoders = make_variants(dev, args.adapter, work, log)
    result["settings"] = {"graphs": GRAPHS, "variants": {name: {"graph": g, "quantization": q}
                                                         for name, (g, q) in VARIANTS.items()},
                          "op_types": {name: op_types(e.directory / "model.onnx") for name, e in encoders.items()}}
    texts = dev.timing_texts
    sides: dict[str, Callable[[], Any]] = {"torch fp32 student": lambda: dev.student.encode(texts, kind="query")}
    sides.update({name: (lambda e=e: e.encode(texts, batch_size=64)) for name, e in encoders.items()})
    log("timing")
    result["timing"] = int8_amx.timed(sides, args.repeats, len(texts), "torch fp32 student")
    best = result["timing"]["sides"]
    log("cpu time")
    cpu = cpu_seconds({name: side for name, side in sides.items() if name != "torch fp32 student"}, args.repeats)
    result["cpu_time"] = {"load_before": result["timing"]["load_after"], "texts": len(texts), "sides": cpu,
                          "load_after": speed.load_avg()}
    for name in best:
        fp32 = name == SHIPPED_FP32 or VARIANTS.get(name, ("", ""))[1] == "fp32"
        reference = SHIPPED_FP32 if fp32 else SHIPPED
        best[name]["vs_shipped"] = speed.ratio(best, name, reference)
        if name in cpu:
            cpu[name]["shipped_cpu_over_this"] = round(cpu[reference]["best_cpu_seconds"] / cpu[name]["best_cpu_seconds"], 3)
    log("agreement")
    result["agreement"] = {name: dev.agreement(e.encode(dev.texts)) for name, e in encoders.items()}
    result["machine"]["load_average_end"] = speed.load_avg()
    result["seconds"] = round(time.perf_counter() - started, 1)
    write_result(args.out, result)
    for name, side in best.items():
        log(f"{name}: {side['vs_torch fp32 student']}x torch, {side['vs_shipped']}x shipped "
            f"(cpu {cpu.get(name, {}).get('shipped_cpu_over_this')}x), "
            f"{result['agreement'].get(name)}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
