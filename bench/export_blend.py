"""`tava export` of a blend (transformer student + adapter beside a static student, `tava blend`): the
exported ONNX file against tava's torch blend, the torch transformer member alone and the torch teacher.

One run, side by side on SciFact's 300 test queries (bench/speed.py's interleaved best-of-N at batch 64,
and batch-1 latency over single queries, the sides taking turns). Speed depends on shapes, not training,
so the members are built untrained in seconds with the shapes `tava run` gives them: the teacher's first
two layers (mpnet; 0 2 5 of MiniLM's six) + projection, a 1,024-wide adapter, a static table of the
teacher's vocabulary x its dimension, blended 0.5 / 0.5. Agreement (mean cosine, max |diff|) is the
exported file against the torch blend on the same queries; the blend's quality is in bench/blend.py.

    python bench/export_blend.py --teacher all-mpnet-base-v2   # -> bench/results/export_blend.json

``--blend DIR`` times and scores a trained blend instead (e.g. `tava run --blend-static`'s), adding
asymmetric nDCG@10 of the torch blend and of the fp32 / int8 files (queries against the teacher's
documents) on ``--eval`` (the built-in data's test split or SciFact test).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from shared_data import ROOT, cpu_info  # noqa: E402  (sets sys.path)
from speed import cosine_stats, interleaved, latency, load_avg, ratio, scifact

LAYERS = {"all-MiniLM-L6-v2": [0, 2, 5], "all-mpnet-base-v2": [0, 1]}


def build_blend(teacher: str, work: Path) -> Path:
    """Untrained members of `tava run --blend-static`'s shapes, blended 0.5 / 0.5; returns the blend dir."""
    import torch
    from safetensors.numpy import save_file

    from tava_core.adapter import Vec2VecAdapter, save_adapter
    from tava_core.config import EncoderSpec
    from tava_core.distill.students import TransformerStudent
    from tava_core.encoders import load_encoder, resolve_model_path
    from tava_core.encoders.blend import save_blend

    teacher_dir = resolve_model_path(teacher)
    dim = load_encoder(teacher).dim
    student = TransformerStudent.from_teacher(teacher_dir, layers=LAYERS[teacher], projection=True, teacher_dim=dim)
    student_dir = student.save(work / "student")
    adapter = Vec2VecAdapter(dim, dim, [1024]).eval()
    with torch.no_grad():
        adapter.net.skip.weight.copy_(torch.eye(dim))
        adapter.net.head.weight.normal_(0, 0.02)
    adapter_dir = save_adapter(work / "adapter", adapter, student=EncoderSpec(model=str(student_dir)).model_dump(mode="json"),
                               metadata={"lineage": {"teacher": {"name": teacher, "dim": dim}}})
    static_dir = work / "static"
    static_dir.mkdir()
    vocab = len(student.tokenizer)
    save_file({"embeddings": np.random.default_rng(0).standard_normal((vocab, dim)).astype(np.float32)},
              str(static_dir / "model.safetensors"))
    (static_dir / "tokenizer.json").write_text((teacher_dir / "tokenizer.json").read_text())
    (static_dir / "config.json").write_text(json.dumps({"model_type": "model2vec", "normalize": True}))
    save_blend(work / "blend", [EncoderSpec(model=str(adapter_dir)), EncoderSpec(model=str(static_dir))], [0.5, 0.5])
    return work / "blend"


def quality(teacher: str, data_name: str, encoders: dict[str, Any]) -> dict[str, Any]:
    """nDCG@10 of each encoder's queries against the teacher's documents (bench/transfer_data.py's cache)."""
    from bench.transfer import judged, score
    from bench.transfer_data import builtin, teacher_vectors
    from bench.transfer_data import scifact as scifact_set

    data = builtin()[0] if data_name == "builtin" else scifact_set()
    split = "test"
    docs = teacher_vectors(teacher, data.docs)
    queries = [data.queries.texts[k] for k in judged(data, split)]
    out: dict[str, Any] = {"set": f"{data_name}/{split}", "queries": len(queries)}
    for name, encode in encoders.items():
        out[name] = round(float(score(encode(queries), data, split, docs).mean()), 4)
    return out


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", choices=sorted(LAYERS), default="all-mpnet-base-v2")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--latency-queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--blend", type=Path, default=None, help="a trained blend directory (default: untrained shapes)")
    parser.add_argument("--eval", choices=["builtin", "scifact"], default="builtin",
                        help="with --blend: the queries its nDCG@10 is read on")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "export_blend.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from tava_core.config import EncoderSpec
    from tava_core.encoders import load_encoder
    from tava_core.export.config import ExportConfig
    from tava_core.export.query_encoder import export_query_encoder
    from tava_core.export.standalone import ExportedQueryEncoder
    from tava_core.home import TavaHome

    _, queries, qrels = scifact()
    texts = [queries[q] for q in sorted(qrels)]
    result: dict[str, Any] = {"teacher": args.teacher, "queries": len(texts), "batch_size": 64,
                              "threads": args.threads, "cpu": cpu_info(), "load_before": load_avg()}
    with tempfile.TemporaryDirectory(prefix="tava-export-blend-") as tmp:
        work = Path(tmp)
        blend_dir = args.blend.resolve() if args.blend else build_blend(args.teacher, work)
        exported, cards = {}, {}
        for precision in ("fp32", "int8"):
            began = time.perf_counter()
            card = export_query_encoder(ExportConfig(model=str(blend_dir), precision=precision,
                                                     out=str(work / f"export-{precision}")),
                                        TavaHome(work / "home"))
            cards[precision] = {"seconds": round(time.perf_counter() - began, 1), "bytes": card["bytes"],
                                "card_agreement": card["agreement"]}
            exported[precision] = ExportedQueryEncoder(card["path"], threads=args.threads)
        result["exports"] = cards
        blend = load_encoder(str(blend_dir), cache=False)
        member = blend.members[0]
        teacher = load_encoder(EncoderSpec(model=args.teacher, backend="torch"), cache=False)
        reference = blend.encode(texts, kind="query", batch_size=64)
        result["agreement_on_queries"] = {p: cosine_stats(reference, e.encode(texts)) for p, e in exported.items()}
        sides = {"torch_blend": lambda: blend.encode(texts, kind="query", batch_size=64),
                 "exported_fp32": lambda: exported["fp32"].encode(texts, batch_size=64),
                 "exported_int8": lambda: exported["int8"].encode(texts, batch_size=64),
                 "torch_transformer_member": lambda: member.encode(texts, kind="query", batch_size=64),
                 "torch_teacher": lambda: teacher.encode(texts, kind="query", batch_size=64)}
        throughput = interleaved(sides, args.repeats, len(texts))
        result["throughput"] = throughput
        result["ratios_vs_torch_blend"] = {n: ratio(throughput, n, "torch_blend") for n in sides if n != "torch_blend"}
        result["ratios_vs_torch_teacher"] = {n: ratio(throughput, n, "torch_teacher") for n in sides
                                             if n != "torch_teacher"}
        if args.blend:
            result["blend"] = str(args.blend)
            result["asymmetric_ndcg_at_10"] = quality(args.teacher, args.eval, {
                "torch_blend": lambda q: blend.encode(q, kind="query", batch_size=64),
                "exported_fp32": lambda q: exported["fp32"].encode(q), "exported_int8": lambda q: exported["int8"].encode(q),
                "torch_teacher": lambda q: teacher.encode(q, kind="query", batch_size=64)})
        single = texts[:args.latency_queries]
        result["latency_batch1"] = latency({
            "torch_blend": lambda q: blend.encode([q], kind="query"),
            "exported_fp32": lambda q: exported["fp32"].encode([q], batch_size=1),
            "exported_int8": lambda q: exported["int8"].encode([q], batch_size=1),
            "torch_teacher": lambda q: teacher.encode([q], kind="query")}, single)
    result["load_after"] = load_avg()
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("agreement_on_queries", "ratios_vs_torch_blend", "ratios_vs_torch_teacher",
                                             "latency_batch1")}, indent=1))


if __name__ == "__main__":
    main()
