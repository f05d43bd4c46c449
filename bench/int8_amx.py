"""Does the int8 query encoder use this CPU's AMX / VNNI, and what lifts its end-to-end speed (issue 18)?

One run, sections in order (each records the machine load before and after):

- ``amx``: evidence of which int8 kernels ONNX Runtime can pick here: the CPU flags, and whether
  importing onnxruntime (MLAS's platform init) asks Linux for the AMX tile state (XTILEDATA
  permission, arch_prctl) -- checked in fresh subprocesses against numpy / torch baselines.
- ``gemm``: bare products at the student's shapes (M = 64 queries x the padded length of real
  length-sorted batches; K x N of the QKV, FFN-in and FFN-out weights): fp32 MatMul, MatMulInteger
  u8s8 / u8u8 / s8s8 / s8u8 (which MLAS dispatches to different kernels), DynamicQuantizeMatMul,
  and torch fp32 / bf16 (oneDNN) / int8 ``_int_mm``, interleaved, best-of-N: the attainable ratio.
- ``variants``: exported encoders (fp32 and int8, three graph fusions x quantisation settings)
  against the torch student, interleaved best-of-N at batch 64 on SciFact *train* (dev) queries,
  with mean cosine to the fp32 torch student and asymmetric nDCG@10 change (student queries against
  teacher documents: the relevant documents + 300 distractors), as bench/int8_variants.py does.
- ``torch``: the alternatives a user might compare against on the same queries: torch bf16
  (autocast, and bf16 weights) and torch dynamic int8 (``quantize_dynamic``, x86 and onednn engines).
- ``profile``: ORT's per-op-type time for the shipped and the chosen int8 graph at batch 64 / 1.
- ``teacher_bf16``: the teacher's document throughput in torch fp32 vs bf16 (autocast / bf16
  weights) on SciFact documents, agreement with fp32 and nDCG@10 on the dev queries.
- ``teacher_onnx``: whether the export's unfused graph / session settings also help the fp32 ONNX
  backend on documents (torch vs the backend's fused graph vs the unfused, tuned one; max |diff|).

Settings are chosen on the dev split only; bench/speed.py reports the shipped variant on test.

    .venv/bin/python bench/int8_amx.py [--only gemm variants ...]   # -> bench/results/int8_amx.json
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import speed  # noqa: E402  (bench/ is on sys.path when run as a script)
from shared_data import ROOT, SCIFACT, write_result  # noqa: E402

SECTIONS = ("amx", "gemm", "kernels", "variants", "torch", "profile", "teacher_bf16", "teacher_onnx")

# Graph fusions (onnxruntime.transformers optimizer options switched off; None = no offline fusion).
FUSIONS: dict[str, Optional[dict[str, bool]]] = {
    "fused": {},
    "fused_no_skip_ln": {"enable_skip_layer_norm": False, "enable_bias_skip_layer_norm": False},
    "plain": None,
}
# The int8 recipe before this bench (fused graph: Attention ops quantised too).
BEFORE_QUANT: dict[str, Any] = {"weight_type": "QInt8", "op_types": ["MatMul", "Attention"], "per_channel": True,
                                "reduce_range": True}
# Session settings: "default" = ONNX Runtime's; "tuned" = the card's SESSION_SETTINGS (subnormals
# flushed in ORT's threads, no SkipLayerNormFusion); "+caller FTZ" also sets FTZ/DAZ on the calling
# thread (glibc fenv via ctypes; measured only, not shipped); "noskip" = only SkipLayerNormFusion off.
DEFAULT_SESSION: dict[str, Any] = {"config": {}, "disabled_optimizers": []}
# name -> (fusion, quantisation changes vs BEFORE_QUANT or None for fp32, session)
VARIANTS: dict[str, tuple[str, Optional[dict[str, Any]], str]] = {
    "fp32 fused, default session (fp32 before)": ("fused", None, "default"),
    "fp32 plain, default session": ("plain", None, "default"),
    "int8 fused, default session (int8 before)": ("fused", {}, "default"),
    "int8 fused, tuned session": ("fused", {}, "tuned"),
    "int8 fused, uint8 weights (U8U8)": ("fused", {"weight_type": "QUInt8"}, "default"),
    "int8 fused, full range": ("fused", {"reduce_range": False}, "default"),
    "int8 fused without SkipLayerNorm, tuned session": ("fused_no_skip_ln", {}, "tuned"),
    "int8 plain, default session": ("plain", {}, "default"),
    "int8 plain, only SkipLayerNormFusion off": ("plain", {}, "noskip"),
    "int8 plain, tuned session, full range": ("plain", {"reduce_range": False}, "tuned"),
    "int8 plain, tuned session, per-tensor": ("plain", {"per_channel": False}, "tuned"),
    "int8 plain, tuned session + caller FTZ": ("plain", {}, "tuned+ftz"),
}
# The real `tava export` outputs (tava_core.export.query_encoder, card settings) are timed beside.
SHIPPED_FP32 = "tava export fp32 (shipped: plain graph, tuned session)"
SHIPPED_INT8 = "tava export int8 (shipped: plain graph, tuned session, U8S8 per-channel reduced range)"
BEFORE_INT8 = "int8 fused, default session (int8 before)"


class CallerFlushToZero:
    """FTZ + DAZ on the calling thread for the duration (x86-64 glibc: MXCSR sits at byte 28 of fenv_t)."""

    def __init__(self) -> None:
        import ctypes

        self.ctypes = ctypes
        self.libc = ctypes.CDLL(None)

    def __enter__(self) -> None:
        ctypes = self.ctypes
        self.saved = ctypes.create_string_buffer(32)
        self.libc.fegetenv(self.saved)
        flushed = ctypes.create_string_buffer(self.saved.raw, 32)
        mxcsr = int.from_bytes(flushed.raw[28:32], "little") | 0x8040  # FTZ | DAZ
        ctypes.memmove(ctypes.addressof(flushed) + 28, mxcsr.to_bytes(4, "little"), 4)
        self.libc.fesetenv(flushed)

    def __exit__(self, *exc: object) -> None:
        self.libc.fesetenv(self.saved)


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def timed(sides: dict[str, Callable[[], Any]], repeats: int, count: int, reference: str) -> dict[str, Any]:
    """speed.interleaved (warm, sides in turn, best-of-N), plus each side's ratio to ``reference``."""
    start = load_avg()
    res = speed.interleaved(sides, repeats, count)
    for name in res:
        res[name]["vs_" + reference] = speed.ratio(res, name, reference)
    return {"load_before": start, "load_after": load_avg(), "repeats": repeats, "items": count, "sides": res}


# ----------------------------------------------------------------------------------- amx

def amx_section() -> dict[str, Any]:
    flags = set()
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    probe = ("import ctypes, {mod}\n{pre}\nv = ctypes.c_ulong(0)\n"
             "ctypes.CDLL(None).syscall(158, 0x1022, ctypes.byref(v))  # arch_prctl(ARCH_GET_XCOMP_PERM)\n"
             "print(bool(v.value >> 18 & 1))  # XFEATURE_XTILEDATA\n")
    checks = {"numpy imported": ("numpy", ""), "torch imported": ("torch", ""),
              "torch after a bf16 matmul": ("torch", "x = torch.randn(64, 64).bfloat16(); x @ x"),
              "onnxruntime imported": ("onnxruntime", "")}
    permission = {}
    for name, (mod, pre) in checks.items():
        out = subprocess.run([sys.executable, "-c", probe.format(mod=mod, pre=pre)], capture_output=True, text=True)
        permission[name] = out.stdout.strip() == "True"
    return {"cpu_flags": sorted(f for f in flags if f.startswith(("amx", "avx512_vnni", "avx_vnni", "avx512_bf16",
                                                                   "avx512_fp16"))),
            "xtiledata_permission_requested": permission,
            "note": "Linux grants the AMX tile state only to a process that asks (arch_prctl ARCH_REQ_XCOMP_PERM); "
                    "MLAS asks in MlasInitAMX when the CPU has AMX-TILE + AMX-INT8, and then dispatches U8S8 "
                    "QGEMM (uint8 activations x int8 weights) to its AMX kernel; U8U8 and S8S8 go elsewhere"}


# ----------------------------------------------------------------------------------- gemm

def gemm_section(m_rows: int, threads: int, repeats: int) -> dict[str, Any]:
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper, numpy_helper

    def session(node: Any, x_type: int, inits: list[Any], out_type: int) -> Any:
        graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", x_type, [None, None])],
                                  [helper.make_tensor_value_info("y", out_type, None)], initializer=inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                        helper.make_opsetid("com.microsoft", 1)])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])

    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"m_rows": m_rows, "threads": threads, "shapes": {}}
    for label, (k, n) in {"qkv 384x1152": (384, 1152), "ffn_in 384x1536": (384, 1536),
                          "ffn_out 1536x384": (1536, 384)}.items():
        x = rng.standard_normal((m_rows, k)).astype(np.float32)
        w = rng.standard_normal((k, n)).astype(np.float32)
        ws = np.clip(np.round(w / np.abs(w).max() * 127), -127, 127).astype(np.int8)
        wu = (ws.astype(np.int16) + 128).astype(np.uint8)
        xu = rng.integers(0, 256, (m_rows, k)).astype(np.uint8)
        xs = (xu.astype(np.int16) - 128).astype(np.int8)
        scale = numpy_helper.from_array(np.array(np.abs(w).max() / 127, np.float32), "scale")
        fp32 = session(helper.make_node("MatMul", ["x", "w"], ["y"]), TensorProto.FLOAT,
                       [numpy_helper.from_array(w, "w")], TensorProto.FLOAT)
        dyn = session(helper.make_node("DynamicQuantizeMatMul", ["x", "w", "scale"], ["y"], domain="com.microsoft"),
                      TensorProto.FLOAT, [numpy_helper.from_array(ws, "w"), scale], TensorProto.FLOAT)
        integer = {}
        for name, a, b in (("u8s8", xu, ws), ("u8u8", xu, wu), ("s8s8", xs, ws), ("s8u8", xs, wu)):
            a_type = TensorProto.UINT8 if a.dtype == np.uint8 else TensorProto.INT8
            integer[name] = (session(helper.make_node("MatMulInteger", ["x", "w"], ["y"]), a_type,
                                     [numpy_helper.from_array(b, "w")], TensorProto.INT32), a)
        tx, tw = torch.from_numpy(x), torch.from_numpy(w)
        bx, bw = tx.bfloat16(), tw.bfloat16()
        ix, iw = torch.from_numpy(xs), torch.from_numpy(ws)
        sides: dict[str, Callable[[], Any]] = {
            "ort fp32 MatMul": lambda s=fp32, a=x: s.run(None, {"x": a}),
            "ort DynamicQuantizeMatMul (fp32 in, u8s8)": lambda s=dyn, a=x: s.run(None, {"x": a}),
            **{f"ort MatMulInteger {name}": (lambda s=s, a=a: s.run(None, {"x": a}))
               for name, (s, a) in integer.items()},
            "torch fp32 mm": lambda a=tx, b=tw: torch.mm(a, b), "torch bf16 mm": lambda a=bx, b=bw: torch.mm(a, b),
            "torch _int_mm s8s8": lambda a=ix, b=iw: torch._int_mm(a, b)}
        flops = 2.0 * m_rows * k * n
        with torch.inference_mode():
            res = timed(sides, repeats, 1, "ort fp32 MatMul")
        for side in res["sides"].values():
            side["gop_per_second"] = round(side["best_per_second"] * flops / 1e9, 1)
            del side["runs_per_second"]
        out["shapes"][label] = res
    return out


# ----------------------------------------------------------------------------------- kernels

def kernels_section(m_rows: int, repeats: int) -> dict[str, Any]:
    """Why the session settings: single ops at the student's activation shapes (1 thread).
    SkipLayerNormalization (what ORT fuses Add + LayerNormalization into) against the two ops it
    replaces; Softmax over attention scores with and without masked (very negative) entries,
    whose exp underflows into subnormal floats, with ORT's denormal-as-zero setting and with FTZ
    on the calling thread."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    hidden, heads, seq = 384, 12, 34
    batch = max(1, m_rows // seq)
    rng = np.random.default_rng(0)

    def session(nodes: list[Any], names: list[str], shape: list[Optional[int]], inits: list[Any],
                config: Optional[dict[str, str]] = None) -> Any:
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in names],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        for key, value in (config or {}).items():
            options.add_session_config_entry(key, value)
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])

    x = rng.standard_normal((batch, seq, hidden)).astype(np.float32)
    skip = rng.standard_normal((batch, seq, hidden)).astype(np.float32)
    gamma = numpy_helper.from_array(np.ones(hidden, np.float32), "gamma")
    beta = numpy_helper.from_array(np.zeros(hidden, np.float32), "beta")
    fused = session([helper.make_node("SkipLayerNormalization", ["x", "s", "gamma", "beta"], ["y"],
                                      domain="com.microsoft", epsilon=1e-12)], ["x", "s"], [None, None, hidden],
                    [gamma, beta])
    split = session([helper.make_node("Add", ["x", "s"], ["t"]),
                     helper.make_node("LayerNormalization", ["t", "gamma", "beta"], ["y"], epsilon=1e-12, axis=-1)],
                    ["x", "s"], [None, None, hidden], [gamma, beta])
    scores = rng.standard_normal((batch, heads, seq, seq)).astype(np.float32)
    masked = scores.copy()
    masked[..., seq // 2:] = np.finfo(np.float32).min  # what BERT adds at padded positions
    softmax = [helper.make_node("Softmax", ["x"], ["y"], axis=-1)]
    plain = session(softmax, ["x"], [None, None, None, None], [])
    daz = session(softmax, ["x"], [None, None, None, None], [], {"session.set_denormal_as_zero": "1"})
    ftz = CallerFlushToZero()

    def with_ftz(fn: Callable[[], Any]) -> Any:
        with ftz:
            return fn()

    sides: dict[str, Callable[[], Any]] = {
        "SkipLayerNormalization": lambda: fused.run(None, {"x": x, "s": skip}),
        "Add + LayerNormalization": lambda: split.run(None, {"x": x, "s": skip}),
        "Softmax": lambda: plain.run(None, {"x": scores}),
        "Softmax, half the keys masked": lambda: plain.run(None, {"x": masked}),
        "Softmax, masked, set_denormal_as_zero": lambda: daz.run(None, {"x": masked}),
        "Softmax, masked, FTZ on the calling thread": lambda: with_ftz(lambda: plain.run(None, {"x": masked})),
    }
    res = timed(sides, repeats, 1, "Add + LayerNormalization")
    for side in res["sides"].values():
        side["best_ms"] = round(1000 / side["best_per_second"], 3)
        del side["runs_per_second"]
    res["shapes"] = {"layer_norm": [batch, seq, hidden], "softmax": [batch, heads, seq, seq]}
    res["threads"] = 1
    res["note"] = ("set_denormal_as_zero applies to ORT's pool threads; with one thread the work runs on the caller, "
                   "so the masked Softmax needs FTZ on the calling thread to avoid the subnormal slow path")
    return res


# ----------------------------------------------------------------------------------- variants

def build_graph(module: Any, path: Path, vocab_size: int, fusion: Optional[dict[str, bool]]) -> Path:
    """The fp32 graph with one of the offline fusion settings (``export_graph`` does the default)."""
    from tava_core.export.graph import bert_fusions, export_graph

    export_graph(module, path, vocab_size=vocab_size)
    if fusion is None:
        return path
    bert_fusions(path, module.model.config, **fusion).save_model_to_file(str(path), use_external_data_format=False)
    return path


def quantize(fp32: Path, out: Path, change: dict[str, Any]) -> None:
    from tava_core.export.query_encoder import quantize_graph

    quantize_graph(fp32, out, {**BEFORE_QUANT, "weights_only": True, **change})


class Dev:
    """SciFact train queries (the dev split), teacher vectors of their relevant documents + 300
    distractors, the torch student's reference vectors and nDCG@10."""

    def __init__(self, adapter: str, timing_queries: int) -> None:
        from tava_core.config import EncoderSpec
        from tava_core.encoders import load_encoder

        corpus, queries, _ = speed.scifact()
        self.corpus = corpus
        self.qrels: dict[str, dict[str, int]] = {}
        for line in list(open(SCIFACT / "qrels" / "train.tsv"))[1:]:
            qid, did, score = line.split("\t")
            self.qrels.setdefault(qid, {})[did] = int(score)
        self.qids = sorted(self.qrels)
        relevant = {d for rel in self.qrels.values() for d in rel}
        others = [i for i in sorted(corpus) if i not in relevant]
        self.dids = sorted(relevant | set(random.Random(0).sample(others, 300)))
        self.texts = [queries[q] for q in self.qids]
        self.timing_texts = random.Random(1).sample(self.texts, timing_queries)
        self.teacher = load_encoder(EncoderSpec(model=speed.TEACHER, backend="torch"), cache=False)
        self.docs = self.teacher.encode([corpus[d] for d in self.dids])
        self.student = load_encoder(EncoderSpec(model=adapter, backend="torch"), cache=False)
        self.reference = self.student.encode(self.texts, kind="query")
        self.base_ndcg = self.ndcg(self.reference)

    def ndcg(self, vectors: np.ndarray, docs: Optional[np.ndarray] = None) -> float:
        return speed.ndcg_at_10(vectors, self.qids, self.docs if docs is None else docs, self.dids, self.qrels)

    def agreement(self, vectors: np.ndarray) -> dict[str, float]:
        stats = speed.cosine_stats(self.reference, vectors)
        return {"mean_cosine": round(stats["mean_cosine"], 5), "min_cosine": round(stats["min_cosine"], 5),
                "ndcg_delta": round(self.ndcg(vectors) - self.base_ndcg, 4)}


def make_variants(dev: Dev, adapter: str, work: Path) -> dict[str, Any]:
    """name -> ExportedQueryEncoder over each variant's directory (card + tokenizer of a real export)."""
    from tava_core.export.config import ExportConfig
    from tava_core.export.graph import EncoderGraph
    from tava_core.export.query_encoder import _split_encoder, export_query_encoder
    from tava_core.export.standalone import ExportedQueryEncoder
    from tava_core.home import TavaHome

    card = export_query_encoder(ExportConfig(model=adapter, precision="fp32", out=str(work / "base")), TavaHome(work))
    int8 = export_query_encoder(ExportConfig(model=adapter, precision="int8", out=str(work / "int8")), TavaHome(work))
    parts = _split_encoder(dev.student)     # an ExportParts since a210680 (this unpacked a pair until session 51)
    student, tail = parts.student, parts.adapter
    if "window_tokens" in card:
        raise SystemExit(f"{adapter}: a windowed student's export takes piece_weights, which the graphs this bench "
                         "rebuilds do not: run it on a student without window.json")
    module = EncoderGraph(student.model, student.dense, pooling=student.pooling, normalize=student.normalized,
                          tail=tail)
    graphs = {name: build_graph(module, work / f"{name}.onnx", len(student.tokenizer), fusion)
              for name, fusion in FUSIONS.items()}
    from tava_core.export.standalone import SESSION_SETTINGS

    encoders = {}
    for index, (name, (fusion, change, session)) in enumerate(VARIANTS.items()):
        directory = work / f"v{index}"
        shutil.copytree(card["path"], directory)
        if change is None:
            shutil.copy(graphs[fusion], directory / "model.onnx")
        else:
            quantize(graphs[fusion], directory / "model.onnx", change)
        variant_card = json.loads((directory / "card.json").read_text())
        variant_card["session"] = {"default": DEFAULT_SESSION,
                                   "noskip": {**DEFAULT_SESSION, "disabled_optimizers": ["SkipLayerNormFusion"]}
                                   }.get(session, SESSION_SETTINGS)
        (directory / "card.json").write_text(json.dumps(variant_card))
        encoders[name] = ExportedQueryEncoder(directory, threads=2)
    encoders[SHIPPED_FP32] = ExportedQueryEncoder(card["path"], threads=2)
    encoders[SHIPPED_INT8] = ExportedQueryEncoder(int8["path"], threads=2)
    return encoders


def encode_fn(name: str, encoder: Any) -> Callable[[list[str], int], np.ndarray]:
    if name not in VARIANTS or VARIANTS[name][2] != "tuned+ftz":
        return lambda texts, batch_size=64: encoder.encode(texts, batch_size=batch_size)
    ftz = CallerFlushToZero()

    def run(texts: list[str], batch_size: int = 64) -> np.ndarray:
        with ftz:
            return encoder.encode(texts, batch_size=batch_size)
    return run


def variants_section(dev: Dev, encoders: dict[str, Any], repeats: int, batch_size: int) -> dict[str, Any]:
    texts = dev.timing_texts
    fns = {name: encode_fn(name, e) for name, e in encoders.items()}
    sides: dict[str, Callable[[], Any]] = {"torch fp32 student": lambda: dev.student.encode(texts, kind="query")}
    sides.update({name: (lambda fn=fn: fn(texts, batch_size)) for name, fn in fns.items()})
    out = timed(sides, repeats, len(texts), "torch fp32 student")
    out["agreement"] = {name: dev.agreement(fn(dev.texts)) for name, fn in fns.items()}
    out["settings"] = {name: {"fusion": fusion, "session": session,
                              "quantization": None if change is None else {**BEFORE_QUANT, **change}}
                       for name, (fusion, change, session) in VARIANTS.items()}
    for name in (SHIPPED_FP32, SHIPPED_INT8):
        card = encoders[name].card
        out["settings"][name] = {key: card.get(key) for key in ("graph", "session", "quantization")}
    best = out["sides"]
    out["shipped_int8_vs_before"] = round(best[SHIPPED_INT8]["best_per_second"] / best[BEFORE_INT8]["best_per_second"], 3)
    return out


# ----------------------------------------------------------------------------------- torch alternatives

@contextlib.contextmanager
def bf16_autocast() -> Iterator[None]:
    import torch

    with torch.autocast("cpu", dtype=torch.bfloat16):
        yield


def torch_section(dev: Dev, adapter: str, repeats: int) -> dict[str, Any]:
    import torch

    from tava_core.config import EncoderSpec
    from tava_core.encoders import load_encoder

    texts = dev.timing_texts
    bf16_weights = load_encoder(EncoderSpec(model=adapter, backend="torch", dtype="bfloat16"), cache=False)
    bf16_weights.encode(texts[:2], kind="query")
    quantized = {}
    for engine in ("x86", "onednn"):
        if engine not in torch.backends.quantized.supported_engines:
            continue
        # Shallow copies: the adapter's student encoder is shared (cached), so its modules are
        # replaced on copies, never in place.
        torch.backends.quantized.engine = engine
        enc = copy.copy(dev.student)
        enc.inner = inner = copy.copy(dev.student.inner)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao's deprecation notes
            inner._model = torch.ao.quantization.quantize_dynamic(inner.model, {torch.nn.Linear}, dtype=torch.qint8)
            inner.dense = torch.ao.quantization.quantize_dynamic(inner.dense, {torch.nn.Linear}, dtype=torch.qint8)
            enc.mapper = torch.ao.quantization.quantize_dynamic(enc.mapper, {torch.nn.Linear}, dtype=torch.qint8)
        quantized[engine] = enc

    def run_quantized(engine: str, batch: list[str]) -> np.ndarray:
        torch.backends.quantized.engine = engine
        return quantized[engine].encode(batch, kind="query")

    def run_autocast(batch: list[str]) -> np.ndarray:
        with bf16_autocast():  # the transformer; the adapter maps its float32 vectors as usual
            vectors = dev.student.inner.encode(batch, kind="query")
        return dev.student.mapper.map_numpy(vectors)

    candidates: dict[str, Callable[[list[str]], np.ndarray]] = {
        "torch bf16 autocast": run_autocast,
        "torch bf16 weights (EncoderSpec dtype=bfloat16)": lambda b: bf16_weights.encode(b, kind="query"),
        **{f"torch dynamic int8 ({engine})": (lambda b, e=engine: run_quantized(e, b)) for engine in quantized}}
    sides: dict[str, Callable[[], Any]] = {"torch fp32 student": lambda: dev.student.encode(texts, kind="query")}
    sides.update({name: (lambda fn=fn: fn(texts)) for name, fn in candidates.items()})
    out = timed(sides, repeats, len(texts), "torch fp32 student")
    out["agreement"] = {name: dev.agreement(fn(dev.texts)) for name, fn in candidates.items()}
    return out


# ----------------------------------------------------------------------------------- profile

def profile_section(encoders: dict[str, Any], names: list[str], texts: list[str], work: Path) -> dict[str, Any]:
    import onnxruntime as ort

    out: dict[str, Any] = {"load_before": load_avg()}
    for name in names:
        source = encoders[name]
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        settings = source.card.get("session") or {}
        for key, value in (settings.get("config") or {}).items():
            options.add_session_config_entry(key, value)
        options.enable_profiling = True
        options.profile_file_prefix = str(work / "profile")
        session = ort.InferenceSession(str(source.directory / "model.onnx"), options,
                                       providers=["CPUExecutionProvider"],
                                       disabled_optimizers=list(settings.get("disabled_optimizers") or []))
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        runs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"batch_64": [], "batch_1": []}
        for size, key, limit in ((64, "batch_64", len(texts)), (1, "batch_1", 100)):
            for start in range(0, limit, size):
                batch = source.tokenizer.encode_batch([texts[i] for i in order[start:start + size]])
                runs[key].append((np.array([e.ids for e in batch], dtype=np.int64),
                                  np.array([e.attention_mask for e in batch], dtype=np.int64)))
        for batches in runs.values():
            session.run(None, {"input_ids": batches[0][0], "attention_mask": batches[0][1]})  # warm
            for ids, mask in batches:
                session.run(None, {"input_ids": ids, "attention_mask": mask})
        trace = Path(session.end_profiling())
        events = json.loads(trace.read_text())
        trace.unlink()
        section: dict[str, Any] = {}
        model_runs = [e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"]
        nodes = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
        split = len(runs["batch_64"]) + 1  # warm-up run + timed runs of batch 64, then batch 1's
        boundary = model_runs[split - 1]["ts"] + model_runs[split - 1]["dur"]
        for key in ("batch_64", "batch_1"):
            by_type: collections.Counter[str] = collections.Counter()
            for event in nodes:
                if (event["ts"] <= boundary) == (key == "batch_64"):
                    by_type[event["args"]["op_name"]] += event["dur"]
            count = split if key == "batch_64" else len(model_runs) - split
            total = sum(by_type.values())
            section[key] = {"runs": count, "mean_padded_length": round(float(np.mean([b[0].shape[1] for b in runs[key]])), 1),
                            "node_ms_per_run": round(total / count / 1000, 3),
                            "share_by_op_type": {op: round(us / total, 3) for op, us in by_type.most_common() if us / total >= 0.005}}
        out[name] = section
    out["load_after"] = load_avg()
    return out


# ----------------------------------------------------------------------------------- teacher bf16

def teacher_bf16_section(dev: Dev, repeats: int, doc_sample: int) -> dict[str, Any]:
    from tava_core.config import EncoderSpec
    from tava_core.encoders import load_encoder

    fp32 = dev.teacher
    weights = load_encoder(EncoderSpec(model=speed.TEACHER, backend="torch", dtype="bfloat16"), cache=False)
    ids = sorted(dev.corpus)
    docs = [dev.corpus[i] for i in random.Random(2).sample(ids, doc_sample)]

    def autocast(batch: list[str]) -> np.ndarray:
        with bf16_autocast():
            return fp32.encode(batch)

    candidates: dict[str, Callable[[list[str]], np.ndarray]] = {
        "torch bf16 autocast": autocast, "torch bf16 weights (EncoderSpec dtype=bfloat16)": weights.encode}
    sides: dict[str, Callable[[], Any]] = {"torch fp32 teacher": lambda: fp32.encode(docs)}
    sides.update({name: (lambda fn=fn: fn(docs)) for name, fn in candidates.items()})
    out = timed(sides, repeats, len(docs), "torch fp32 teacher")
    reference = fp32.encode(docs)
    queries = fp32.encode(dev.texts, kind="query")
    base = dev.ndcg(queries)
    out["ndcg_at_10_fp32"] = round(base, 4)
    out["agreement"] = {}
    for name, fn in candidates.items():
        stats = speed.cosine_stats(reference, fn(docs))
        all_docs = fn([dev.corpus[d] for d in dev.dids])
        out["agreement"][name] = {
            "mean_cosine": round(stats["mean_cosine"], 6), "min_cosine": round(stats["min_cosine"], 6),
            "max_abs_diff": round(stats["max_abs_diff"], 5),
            "ndcg_delta_documents_only": round(speed.ndcg_at_10(queries, dev.qids, all_docs, dev.dids, dev.qrels) - base, 4),
            "ndcg_delta_documents_and_queries": round(speed.ndcg_at_10(fn(dev.texts), dev.qids, all_docs, dev.dids,
                                                                       dev.qrels) - base, 4)}
    out["texts"] = {"documents_timed": len(docs), "ndcg_documents": len(dev.dids), "ndcg_queries": len(dev.qids)}
    return out


# ----------------------------------------------------------------------------------- teacher onnx

def teacher_onnx_section(repeats: int, doc_sample: int, work: Path) -> dict[str, Any]:
    """Would the export's graph and session settings help the fp32 ONNX backend too? The teacher
    on SciFact documents: torch, the backend's graph (fused offline) with ORT defaults, and the
    unfused graph with the card's session settings; max |diff| to torch (the backend's gate is 1e-4)."""
    import onnxruntime as ort

    from tava_core.config import EncoderSpec
    from tava_core.encoders import load_encoder
    from tava_core.encoders.base import length_sorted_order
    from tava_core.export.graph import EncoderGraph
    from tava_core.export.standalone import SESSION_SETTINGS, session_options

    corpus, _, _ = speed.scifact()
    docs = [corpus[i] for i in random.Random(2).sample(sorted(corpus), doc_sample)]
    teacher = load_encoder(EncoderSpec(model=speed.TEACHER, backend="torch"), cache=False)
    module = EncoderGraph(teacher.model, teacher.dense, pooling=teacher.pooling, normalize=teacher.normalized)
    order = length_sorted_order(docs)
    batches = []
    for start in range(0, len(order), 64):
        features = teacher.tokenize([docs[i] for i in order[start:start + 64]])
        batches.append((order[start:start + 64], {"input_ids": features["input_ids"].astype(np.int64),
                                                   "attention_mask": features["attention_mask"].astype(np.int64)}))

    def session(path: Path, settings: dict[str, Any]) -> Any:
        options, disabled = session_options({"session": settings}, threads=2)
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"],
                                    disabled_optimizers=disabled)

    def runner(sess: Any) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            out = np.zeros((len(docs), teacher.dim), dtype=np.float32)
            for idx, feeds in batches:
                out[idx] = sess.run(None, feeds)[0]
            return out
        return run

    graphs = {name: build_graph(module, work / f"teacher-{name}.onnx", len(teacher.tokenizer), FUSIONS[name])
              for name in ("fused", "fused_no_skip_ln", "plain")}
    candidates = {"onnx fused graph, default session": runner(session(graphs["fused"], DEFAULT_SESSION)),
                  "onnx fused graph, tuned session": runner(session(graphs["fused"], SESSION_SETTINGS)),
                  # the BERT attention fusion alone (long documents: attention's share grows with length)
                  "onnx fused attention without SkipLayerNorm, tuned session":
                      runner(session(graphs["fused_no_skip_ln"], SESSION_SETTINGS)),
                  "onnx plain graph, tuned session": runner(session(graphs["plain"], SESSION_SETTINGS))}
    sides: dict[str, Callable[[], Any]] = {"torch fp32 teacher": lambda: teacher.encode(docs)}
    sides.update(candidates)
    out = timed(sides, repeats, len(docs), "torch fp32 teacher")
    reference = teacher.encode(docs)
    out["max_abs_diff_to_torch"] = {name: float(np.abs(fn() - reference).max()) for name, fn in candidates.items()}
    return out


# ----------------------------------------------------------------------------------- main

def padded_rows(dev: Dev, batch_size: int) -> int:
    """Rows of the activation matrix of one length-sorted batch of dev queries (batch x padded length)."""
    texts = sorted(dev.timing_texts, key=len, reverse=True)
    lengths = []
    for start in range(0, len(texts), batch_size):
        lengths.append(int(dev.student.inner.tokenize(texts[start:start + batch_size])["input_ids"].shape[1]))
    return batch_size * int(round(statistics.mean(lengths)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", default=str(ROOT / ".tava" / "artifacts" / "adapters" / "speed-adapter"))
    parser.add_argument("--only", nargs="*", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--timing-queries", type=int, default=256)
    parser.add_argument("--teacher-docs", type=int, default=64)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "int8_amx.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tava-bench-amx-"))
    os.environ.update({"TAVA_HOME": str(work), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    import onnxruntime
    import torch

    torch.set_num_threads(2)
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s load {load_avg()[0]:4.1f}] {message}", flush=True)
        if "result" in locals_:  # each section's figures are kept even if a later one fails
            write_result(args.out, {**locals_["result"], "seconds": round(time.perf_counter() - started, 1)})

    locals_: dict[str, Any] = {}

    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    result: dict[str, Any] = {
        **previous, "benchmark": "int8_amx", "split": "SciFact train queries (dev)", "adapter": args.adapter,
        "machine": {"cpus": os.cpu_count(), "threads": 2, "torch": torch.__version__,
                    "onnxruntime": onnxruntime.__version__},
        "protocol": "warm; best-of-N with all sides interleaved in one run; ratios of best rates; runs = spread; "
                    "load average before/after each section",
        "command": ".venv/bin/python bench/int8_amx.py"}
    locals_["result"] = result
    if "amx" in args.only:
        log("amx: cpu flags, XTILEDATA permission")
        result["amx"] = amx_section()
    dev: Optional[Dev] = None
    if set(args.only) - {"amx", "teacher_onnx"}:
        log("dev: SciFact train queries, teacher documents, torch student reference")
        dev = Dev(args.adapter, args.timing_queries)
        result["dev"] = {"queries": len(dev.qids), "documents": len(dev.dids), "timing_queries": len(dev.timing_texts),
                         "torch_student_ndcg_at_10": round(dev.base_ndcg, 4)}
    if "gemm" in args.only and dev is not None:
        rows = padded_rows(dev, 64)
        log(f"gemm: M={rows}")
        result["gemm"] = gemm_section(rows, 2, args.repeats + 8)
    if "kernels" in args.only and dev is not None:
        log("kernels: SkipLayerNormalization, masked Softmax")
        result["kernels"] = kernels_section(padded_rows(dev, 64), args.repeats + 13)
    encoders: dict[str, Any] = {}
    if ("variants" in args.only or "profile" in args.only) and dev is not None:
        log("variants: exporting")
        encoders = make_variants(dev, args.adapter, work)
    if "variants" in args.only and dev is not None:
        log("variants: timing")
        result["variants"] = variants_section(dev, encoders, args.repeats, 64)
    if "torch" in args.only and dev is not None:
        log("torch alternatives")
        result["torch"] = torch_section(dev, args.adapter, args.repeats)
    if "profile" in args.only and dev is not None:
        log("profile")
        result["profile"] = profile_section(encoders, [BEFORE_INT8, SHIPPED_INT8], dev.timing_texts, work)
    if "teacher_bf16" in args.only and dev is not None:
        log("teacher bf16")
        result["teacher_bf16"] = teacher_bf16_section(dev, max(3, args.repeats - 3), args.teacher_docs)
    if "teacher_onnx" in args.only:
        log("teacher onnx: fused vs unfused graph, session settings")
        result["teacher_onnx"] = teacher_onnx_section(max(3, args.repeats - 3), args.teacher_docs, work)
    result["seconds"] = round(time.perf_counter() - started, 1)
    write_result(args.out, result)
    log(f"wrote {args.out}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
