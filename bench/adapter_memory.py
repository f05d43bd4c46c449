"""Stage B's residual memory (tava_core/adapter/memory.py): does it recover more of a student's gap?

For a saved Stage A student (``bench/transfer.py --keep-student DIR``) and each corpus, Stage B trains
with tava's defaults on the corpus's label-free text (bench/transfer.py's ``adaptation_texts``: documents
and span views, never queries), then the corpus's queries are scored against the teacher's documents:
- ``alone``: the student's vectors as they are;
- ``adapter``: Stage B's map without the memory (what shipped before);
- ``memory``: the same map with the memory (forced on, whatever the gate said);
- ``shipped``: what `tava adapt` saves (the memory only where its label-free gate kept it).
"Gap recovered" is (map - alone) / (teacher - alone). With ``--controls`` (dev only) the script also
scores what the memory's gain could be instead: pseudo-relevance feedback (the neighbours' teacher
vectors added instead of their residuals, to the mapped query and to the teacher's own query) and a
memory compressed to 4,096 k-means centroids.

Speed is the student + adapter encoding queries with and without the memory, side by side in one run
(batch 64 and batch 1, best of 3).

``--phase dev`` scores SciFact's 809 train queries and the built-in test queries (the corpus the
settings were not chosen on); ``--phase test`` scores SciFact test, once, and prints only that.
Results: bench/results/adapter_memory.json, one row per phase / corpus / label. ``--saved-adapter DIR``
scores an adapter another run saved (e.g. `tava run --adapter-memory`'s, in bench/cli_run.py's home) the
same way, with and without its memory.

    python bench/transfer.py --phase dev --teacher all-MiniLM-L6-v2 --student static --train generic \\
        --generic 20000 --steps 2000 --lr 0.001 --keep-student .tava/memory/minilm-static-generic
    python bench/adapter_memory.py --student .tava/memory/minilm-static-generic --label minilm-static-generic \\
        --phase dev --controls
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench.transfer import DEV_SPLIT, TEST_SPLIT, adaptation_texts, judged, score  # noqa: E402
from bench.transfer_data import builtin, scifact, teacher_vectors  # noqa: E402
from tava_core.adapter.baselines import normalize_rows as unit  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "adapter_memory.json"


def corrected(keys: np.ndarray, additions: np.ndarray, queries: np.ndarray, start: np.ndarray,
              config: Any) -> np.ndarray:
    """``start`` moved as tava's memory moves it, by ``additions`` (one row per key) of the queries' nearest
    ``keys``, for the controls: the same weighting, other rows added."""
    import torch

    from tava_core.adapter.memory import ResidualMemory

    memory = ResidualMemory(len(keys), keys.shape[1], additions.shape[1], config.memory_k,
                            config.memory_temperature, config.memory_weight)
    memory.keys.copy_(torch.as_tensor(unit(keys)))
    memory.residuals.copy_(torch.as_tensor(additions, dtype=torch.float32))
    with torch.no_grad():
        return memory(torch.as_tensor(queries), torch.as_tensor(start)).numpy()


def interval(a: np.ndarray, b: np.ndarray) -> list[float]:
    from tava_core.evaluate.metrics import paired_bootstrap

    out = paired_bootstrap(a, b)
    return [round(out["low"], 4), round(out["high"], 4)]


def query_speed(student: Any, adapter: Any, texts: list[str], batch_size: int, repeats: int = 3) -> float:
    """Queries per second of student then adapter (best of ``repeats``)."""
    best = 0.0
    for _ in range(repeats):
        began = time.perf_counter()
        for start in range(0, len(texts), batch_size):
            adapter.map_numpy(student.encode(texts[start:start + batch_size], kind="query", batch_size=batch_size))
        best = max(best, len(texts) / (time.perf_counter() - began))
    return best


def controls(data: Any, split: str, docs: np.ndarray, mapped_q: np.ndarray, student_q: np.ndarray,
             teacher_q: np.ndarray, x: np.ndarray, y: np.ndarray, mapped_x: np.ndarray, config: Any,
             teacher_score: float) -> dict[str, float]:
    """What else the gain could be: feedback from the neighbours' teacher vectors; a compressed memory."""
    import faiss

    yn, residual = unit(y), unit(y) - unit(mapped_x)
    feedback = corrected(x, yn, student_q, mapped_q, config)
    teacher_feedback = corrected(y, yn, teacher_q, unit(teacher_q), config)
    centroids = 4096
    kmeans = faiss.Kmeans(x.shape[1], centroids, niter=20, seed=0, spherical=True)
    kmeans.train(unit(x))
    _, assigned = kmeans.index.search(unit(x), 1)
    mean_residual = np.zeros((centroids, y.shape[1]), np.float32)
    np.add.at(mean_residual, assigned[:, 0], residual)
    mean_residual /= np.maximum(np.bincount(assigned[:, 0], minlength=centroids), 1)[:, None]
    compressed = corrected(kmeans.centroids, mean_residual, student_q, mapped_q, config)

    def share(v: np.ndarray) -> float:
        return round(float(score(v, data, split, docs).mean()) / teacher_score, 4)

    return {"feedback_instead_of_residual": share(feedback), "teacher_with_feedback": share(teacher_feedback),
            f"memory_of_{centroids}_centroids": share(compressed)}


def study(student_dir: str, teacher: str, label: str, phase: str, with_controls: bool) -> dict[str, Any]:
    import torch

    from tava_core.adapter.config import AdapterConfig
    from tava_core.adapter.run import train_adapter_from_arrays
    from tava_core.encoders import load_encoder

    torch.manual_seed(0)
    student = load_encoder(student_dir, cache=False)
    splits = DEV_SPLIT if phase == "dev" else {"scifact": TEST_SPLIT["scifact"]}
    rows: dict[str, Any] = {}
    for data in (scifact(), builtin()[0]):
        if data.name not in splits:
            continue
        split = splits[data.name]
        sets, y = adaptation_texts(teacher, data.name)
        is_span = np.concatenate([np.full(len(s.ids), ".spans" in s.name) for s in sets])
        x = student.encode([t for s in sets for t in s.texts], kind="document", batch_size=64).astype(np.float32)
        judged_rows = judged(data, split)
        query_texts = [data.queries.texts[k] for k in judged_rows]
        student_q = student.encode(query_texts, kind="query", batch_size=64).astype(np.float32)
        docs = teacher_vectors(teacher, data.docs, log=False, compute=False)
        all_teacher_q = teacher_vectors(teacher, data.queries, log=False, compute=False)
        if docs is None or all_teacher_q is None:
            raise SystemExit(f"{teacher}'s vectors of {data.name} are not cached: python bench/transfer_data.py")
        teacher_q = all_teacher_q[judged_rows]
        config = AdapterConfig()
        began = time.perf_counter()
        run = train_adapter_from_arrays(x, y, config, name=f"memory-{data.name}", query_like=is_span)
        seconds = time.perf_counter() - began
        adapter = run.result.adapter
        decision = dict(run.report["memory"])
        if adapter.memory is None:  # the gate dropped it: build it anyway, to measure what it would have done
            from tava_core.adapter.keep import memory_for

            adapter.attach_memory(memory_for(adapter, np.concatenate([run.data.student, run.data.heldout_student]),
                                             np.concatenate([run.data.teacher, run.data.heldout_teacher]), config))
        memory = adapter.memory
        with_memory = adapter.map_numpy(student_q)
        adapter.attach_memory(None)
        without = adapter.map_numpy(student_q)
        mapped_x = adapter.map_numpy(x)
        per_query = {"teacher": score(teacher_q, data, split, docs), "alone": score(student_q, data, split, docs),
                     "adapter": score(without, data, split, docs), "memory": score(with_memory, data, split, docs)}
        per_query["shipped"] = per_query["memory" if decision["memory_kept"] else "adapter"]
        teacher_score = float(per_query["teacher"].mean())
        means = {name: float(v.mean()) for name, v in per_query.items()}
        gap = teacher_score - means["alone"]
        speed_texts = (query_texts * 4)[:256]
        speeds = {}
        for batch in (64, 1):
            texts = speed_texts if batch == 64 else speed_texts[:64]
            speeds[f"batch_{batch}"] = {"without_memory": round(query_speed(student, adapter, texts, batch), 1)}
            adapter.attach_memory(memory)
            speeds[f"batch_{batch}"]["with_memory"] = round(query_speed(student, adapter, texts, batch), 1)
            adapter.attach_memory(None)
            speeds[f"batch_{batch}"]["ratio"] = round(speeds[f"batch_{batch}"]["with_memory"]
                                                      / speeds[f"batch_{batch}"]["without_memory"], 3)
        row: dict[str, Any] = {
            "student": str(student_dir), "teacher": teacher, "phase": phase, "corpus": data.name, "split": split,
            "queries": len(judged_rows), "teacher_ndcg10": round(teacher_score, 4),
            "of_teacher": {name: round(v / teacher_score, 4) for name, v in means.items() if name != "teacher"},
            "gap_recovered": {name: round((means[name] - means["alone"]) / gap, 3) if gap > 0 else None
                              for name in ("adapter", "memory", "shipped")},
            "memory_minus_adapter_95": interval(per_query["memory"], per_query["adapter"]),
            "shipped_minus_alone_95": interval(per_query["shipped"], per_query["alone"]),
            "memory_gate": decision, "memory_rows": memory.rows if memory is not None else 0,
            "adapter_kept_learned": run.report["selection"].get("learned_kept"),
            "adapter_start": run.report["seed_runs"][0].get("start"),
            "stage_b_seconds": round(seconds, 1), "query_speed": speeds,
            "settings": {k: getattr(config, k) for k in ("memory_k", "memory_temperature", "memory_weight",
                                                          "memory_max_rows", "memory_margin")},
        }
        if with_controls and phase == "dev":
            row["controls"] = controls(data, split, docs, without, student_q, teacher_q, x, y, mapped_x, config,
                                       teacher_score)
        rows[f"{phase}/{data.name}/{label}"] = row
    return rows


def study_saved(adapter_dir: str, teacher: str, label: str, phase: str, corpus: str) -> dict[str, Any]:
    """A saved adapter directory as `tava run` / `tava adapt` wrote it (e.g. with --adapter-memory): its
    student's queries through the map with and without the memory it holds, 95% paired."""
    from tava_core.encoders import load_encoder

    encoder = load_encoder(adapter_dir, cache=False)
    adapter = getattr(encoder, "mapper", None)
    if getattr(adapter, "memory", None) is None:
        raise SystemExit(f"{adapter_dir} holds no residual memory: nothing to compare")
    data = scifact() if corpus == "scifact" else builtin()[0]
    split = (DEV_SPLIT if phase == "dev" else TEST_SPLIT)[corpus]
    judged_rows = judged(data, split)
    docs = teacher_vectors(teacher, data.docs, log=False, compute=False)
    all_teacher_q = teacher_vectors(teacher, data.queries, log=False, compute=False)
    if docs is None or all_teacher_q is None:
        raise SystemExit(f"{teacher}'s vectors of {corpus} are not cached: python bench/transfer_data.py")
    student_q = encoder.inner.encode([data.queries.texts[k] for k in judged_rows], kind="query", batch_size=64)
    per_query = {"teacher": score(all_teacher_q[judged_rows], data, split, docs),
                 "alone": score(student_q, data, split, docs),
                 "adapter": score(adapter.map_numpy(student_q, memory=False), data, split, docs),
                 "memory": score(adapter.map_numpy(student_q), data, split, docs)}
    teacher_score = float(per_query["teacher"].mean())
    report = json.loads((Path(adapter_dir) / "report.json").read_text())
    return {f"{phase}/{corpus}/{label}": {
        "adapter_dir": str(adapter_dir), "teacher": teacher, "phase": phase, "corpus": corpus, "split": split,
        "queries": len(judged_rows), "teacher_ndcg10": round(teacher_score, 4),
        "of_teacher": {name: round(float(v.mean()) / teacher_score, 4) for name, v in per_query.items()
                       if name != "teacher"},
        "memory_minus_adapter_95": interval(per_query["memory"], per_query["adapter"]),
        "memory_rows": adapter.memory.rows, "memory_gate": report.get("memory", {}),
        "adapter_kept_learned": report.get("selection", {}).get("learned_kept")}}


def save(rows: dict[str, Any]) -> None:
    existing = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    existing.setdefault("rows", {}).update(rows)
    existing["machine"] = {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(existing, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, RESULTS)


def table(phase: str) -> str:
    rows = json.loads(RESULTS.read_text())["rows"] if RESULTS.is_file() else {}
    lines = ["| row | alone | adapter | + memory (gap recovered) | memory - adapter (95%) | gate | query speed b64 / b1 |",
             "| --- | ---: | ---: | ---: | --- | --- | --- |"]
    for key, row in sorted(rows.items()):
        if row["phase"] != phase or "gap_recovered" not in row:
            continue
        of, gap, speed = row["of_teacher"], row["gap_recovered"], row["query_speed"]
        recovered = "student at or above the teacher" if gap["memory"] is None else f"{gap['memory']:.0%}"
        lines.append(f"| {key} | {of['alone']:.3f} | {of['adapter']:.3f} | {of['memory']:.3f} ({recovered}) "
                     f"| {row['memory_minus_adapter_95']} | {'kept' if row['memory_gate']['memory_kept'] else 'dropped'}"
                     f" | {speed['batch_64']['ratio']:.2f}x / {speed['batch_1']['ratio']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", help="a saved Stage A student directory")
    parser.add_argument("--saved-adapter", help=(
        "instead: a saved adapter directory holding a memory (e.g. `tava run --adapter-memory`'s), scored on "
        "--corpus with and without it"))
    parser.add_argument("--corpus", choices=["scifact", "builtin"], default="builtin")
    parser.add_argument("--teacher", default="all-MiniLM-L6-v2")
    parser.add_argument("--label", help="the row's name")
    parser.add_argument("--phase", choices=["dev", "test"], default="dev")
    parser.add_argument("--controls", action="store_true", help="(dev) feedback and compressed-memory controls")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--table", choices=["dev", "test"], help="print one phase's rows and exit")
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return
    if not (args.student or args.saved_adapter) or not args.label:
        parser.error("--student (or --saved-adapter) and --label are needed (or --table PHASE)")
    import torch

    torch.set_num_threads(args.threads)
    if args.saved_adapter:
        rows = study_saved(args.saved_adapter, args.teacher, args.label, args.phase, args.corpus)
        save(rows)
        for key, row in rows.items():
            print(key, row["of_teacher"], "memory - map (95%):", row["memory_minus_adapter_95"])
        return
    save(study(args.student, args.teacher, args.label, args.phase, args.controls))
    print(table(args.phase))


if __name__ == "__main__":
    main()
