"""Which int8 quantisation the exported query encoder ships (issue 18), chosen on the dev split.

The trained speed pair (bench/make_speed_models.py) is exported fp32 once; each variant quantises
that graph with ONNX Runtime's dynamic quantisation and is scored on SciFact's 809 *train* queries
(the dev split) against teacher document vectors of their relevant documents + 300 distractors:
asymmetric nDCG@10 change against the fp32 torch student, mean cosine to it, and the time to
encode 256 queries (one run, load recorded). Test queries are not touched here; bench/speed.py
reports the shipped variant on test once.

    .venv/bin/python bench/int8_variants.py [--adapter DIR]   # -> bench/results/int8_variants.json
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import speed  # noqa: E402  (bench/ is on sys.path when run as a script)
from shared_data import ROOT, SCIFACT, cpu_info, write_result  # noqa: E402

VARIANTS: dict[str, dict[str, Any]] = {
    "shipped: MatMul+Attention, per-channel, reduced range": {},
    "adapter and projection left fp32": {"exclude_tail": True},
    "full int8 range": {"reduce_range": False},
    "attention left fp32": {"op_types_to_quantize": ["MatMul"]},
    "uint8 weights": {"weight_type": "QUInt8"},
    # what ONNX Runtime's quantiser asks for in its warning ("consider to run pre-processing"): symbolic
    # shape inference + its graph optimisation written into the graph before quantising (session 59)
    "pre-processed first (quant_pre_process)": {"pre_process": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", default=str(ROOT / ".tava" / "artifacts" / "adapters" / "speed-adapter"))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "int8_variants.json")
    parser.add_argument("--rounds", type=int, default=0, help=(
        "also time every variant and the fp32 torch student in this many interleaved rounds (rotating order, "
        "batch 64, one thread each; median of per-round ratios, bench/route_cost.py) -- 0: one pass each"))
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="tava-bench-int8-"))
    os.environ.update({"TAVA_HOME": str(home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from tava_core.config import EncoderSpec
    from tava_core.encoders import load_encoder
    from tava_core.export.config import ExportConfig
    from tava_core.export.query_encoder import export_query_encoder
    from tava_core.export.standalone import ExportedQueryEncoder
    from tava_core.home import TavaHome

    corpus, queries, _ = speed.scifact()
    qrels: dict[str, dict[str, int]] = {}
    for line in list(open(SCIFACT / "qrels" / "train.tsv"))[1:]:
        qid, did, score = line.split("\t")
        qrels.setdefault(qid, {})[did] = int(score)
    qids = sorted(qrels)
    relevant = {d for rel in qrels.values() for d in rel}
    others = [i for i in sorted(corpus) if i not in relevant]
    dids = sorted(relevant | set(random.Random(0).sample(others, 300)))
    teacher = load_encoder(EncoderSpec(model=speed.TEACHER), cache=False)
    docs = teacher.encode([corpus[d] for d in dids])
    texts = [queries[q] for q in qids]
    student = load_encoder(EncoderSpec(model=args.adapter, backend="torch"), cache=False)
    reference = student.encode(texts, kind="query")
    base = speed.ndcg_at_10(reference, qids, docs, dids, qrels)
    card = export_query_encoder(ExportConfig(model=args.adapter, precision="fp32", out=str(home / "fp32")),
                                TavaHome(home))
    fp32 = Path(card["path"]) / "model.onnx"
    nodes = [n.name for n in onnx.load(str(fp32)).graph.node if n.op_type in ("MatMul", "Attention", "Gemm")]
    tail = [n for n in nodes if not n.startswith("/model/")]
    result: dict[str, Any] = {
        "benchmark": "int8_variants", "split": "SciFact train queries (dev)", "queries": len(qids),
        "documents": len(dids), "adapter": args.adapter, "load_before": [round(x, 2) for x in os.getloadavg()],
        "torch_student_ndcg_at_10": round(base, 4),
        "teacher_ndcg_at_10": round(speed.ndcg_at_10(teacher.encode(texts, kind="query"), qids, docs, dids, qrels), 4),
        "variants": {}}
    for name, change in VARIANTS.items():
        directory = home / f"v{len(result['variants'])}"
        shutil.copytree(card["path"], directory)
        options: dict[str, Any] = {"weight_type": QuantType.QInt8, "op_types_to_quantize": ["MatMul", "Attention"],
                                   "per_channel": True, "reduce_range": True,
                                   "extra_options": {"MatMulConstBOnly": True,
                                                     "DefaultTensorType": onnx.TensorProto.FLOAT}}
        if change.get("exclude_tail"):
            options["nodes_to_exclude"] = tail
        if "weight_type" in change:
            options["weight_type"] = getattr(QuantType, change["weight_type"])
        options.update({k: v for k, v in change.items() if k in ("reduce_range", "op_types_to_quantize")})
        source = fp32
        if change.get("pre_process"):
            from onnxruntime.quantization.shape_inference import quant_pre_process

            source = directory / "pre.onnx"
            quant_pre_process(str(fp32), str(source), auto_merge=True)
        quantize_dynamic(str(source), str(directory / "model.onnx"), **options)
        if source != fp32:
            source.unlink()   # the pre-processed graph: only its quantised copy is kept
        encoder = ExportedQueryEncoder(directory)
        vectors = encoder.encode(texts)
        start = time.perf_counter()
        encoder.encode(texts[:256])
        result["variants"][name] = {
            "ndcg_delta": round(speed.ndcg_at_10(vectors, qids, docs, dids, qrels) - base, 4),
            "mean_cosine": round(float((vectors * reference).sum(1).mean()), 4),
            "seconds_256_queries": round(time.perf_counter() - start, 2)}
        print(name, result["variants"][name], flush=True)
    if args.rounds:
        import torch
        from route_cost import interleaved_seconds, ratio

        torch.set_num_threads(1)
        calls = {"torch fp32": lambda batch: student.encode(batch, kind="query")}
        calls.update({name: ExportedQueryEncoder(home / f"v{i}", threads=1).encode
                      for i, name in enumerate(result["variants"])})
        measured = interleaved_seconds(calls, texts, batch_size=64, rounds=args.rounds)
        shipped = next(iter(result["variants"]))
        result["timing"] = {"measured": measured, "cpu": cpu_info(), "threads": 1, "ratios": {
            name: {"speedup_vs_torch": ratio(measured, "torch fp32", name),
                   "shipped_time_over_this": ratio(measured, shipped, name)} for name in result["variants"]}}
        for name, r in result["timing"]["ratios"].items():
            print(f"{name}: {r['speedup_vs_torch']['median_of_round_ratios']:.2f}x torch, "
                  f"{r['shipped_time_over_this']['median_of_round_ratios']:.2f}x the shipped variant's speed")
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    write_result(args.out, result)
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
