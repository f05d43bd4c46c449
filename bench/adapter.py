"""Stage B benchmark: a learned adapter vs closed-form maps, from a student's space into a teacher's.

Default pair (no teacher needs to run): student = the packaged all-MiniLM-L6-v2 (384-d, encoded
here and cached), teacher = all-mpnet-base-v2 (768-d) through its precomputed vectors in
../shared/data/vectors. `--student PATH` plugs in any encoder (e.g. a Stage A student).

On SciFact test (300 queries), for two training settings -- (a) passage pairs only, (b) passages +
SciFact corpus documents (never queries or qrels) -- it reports asymmetric nDCG@10 (queries by
student + map, documents by the teacher's vectors) for the adapter, ridge and Procrustes, the
student alone (in its own space) and the teacher; vec2vec metrics of the mapped test queries; the
adapter's cost per 1,000 queries against the student's encoding cost; and unpaired-mode top-1 on
held-out pairs against the number of texts. Writes bench/results/adapter.json.

    python bench/adapter.py --quick        # 5k passages, short training (~10 min on 2 busy cores)
    python bench/adapter.py                # 20k passages
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = Path(os.environ.get("TAVA_SHARED_DATA", ROOT.parent / "shared" / "data"))
SCIFACT = SHARED / "beir" / "scifact"
PASSAGES = SHARED / "corpus_passages_en.jsonl.gz"
TEACHER_VECTORS = SHARED / "vectors" / "all-mpnet-base-v2"
DEFAULT_CACHE = Path(os.environ.get("TAVA_BENCH_CACHE", "/tmp/tava-bench-cache"))


def read_teacher(name: str) -> tuple[list[str], np.ndarray]:
    """Precomputed teacher vectors (float16 on disk), re-normalised in float32."""
    import pyarrow.parquet as pq

    from tava_core.io import vectors_from_column

    table = pq.read_table(TEACHER_VECTORS / name)
    vectors = vectors_from_column(table.column("vector"))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return table.column("id").to_pylist(), vectors


def read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def texts_by_id(name: str) -> dict[str, str]:
    if name == "passages":
        return {r["_id"]: r["text"] for r in read_jsonl(PASSAGES)}
    if name == "corpus":
        return {r["_id"]: (f"{r['title']} {r['text']}" if r.get("title") else r["text"])
                for r in read_jsonl(SCIFACT / "corpus.jsonl")}
    return {r["_id"]: r["text"] for r in read_jsonl(SCIFACT / "queries.jsonl")}


_TEXTS: dict[str, dict[str, str]] = {}


def _texts(name: str) -> dict[str, str]:
    if name not in _TEXTS:
        _TEXTS[name] = texts_by_id(name)
    return _TEXTS[name]


def student_vectors(encoder, name: str, ids: list[str], cache_dir: Path, chunk: int | None = None) -> np.ndarray:
    """Student vectors of the texts ``ids`` of collection ``name``, cached by encoder fingerprint
    in chunks of ``chunk`` ids (so a quick run's prefix is reused by a full run)."""
    if chunk is not None and len(ids) > chunk:
        return np.concatenate([student_vectors(encoder, name, ids[i:i + chunk], cache_dir, chunk)
                               for i in range(0, len(ids), chunk)])
    return _student_vectors_chunk(encoder, name, ids, cache_dir)


def _student_vectors_chunk(encoder, name: str, ids: list[str], cache_dir: Path) -> np.ndarray:
    from tava_core.io import stable_hash

    path = cache_dir / f"{encoder.name}-{encoder.fingerprint[:12]}" / f"{name}-{len(ids)}-{stable_hash(ids, 8)}.npy"
    if path.is_file():
        return np.load(path)
    texts_map = _texts(name)
    texts = [texts_map[i] for i in ids]
    kind = "query" if name == "queries" else "document"
    start = time.perf_counter()
    vectors = encoder.encode(texts, kind=kind, show_progress=True)
    print(f"encoded {len(texts)} {name} with {encoder.name} in {time.perf_counter() - start:.1f}s", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def load_benchmark_data(student: str, cache_dir: Path, n_passages: int) -> dict:
    """Teacher vectors, cached student vectors and test qrels, aligned by id."""
    from tava_core.encoders import load_encoder
    from tava_core.evaluate.data import read_qrels

    encoder = load_encoder(student)
    data: dict = {"encoder": encoder}
    for name, file in (("queries", "scifact/queries.parquet"), ("corpus", "scifact/corpus.parquet"),
                       ("passages", "passages_shuffled_first20000.parquet")):
        ids, teacher = read_teacher(file)
        if name == "passages":
            ids, teacher = ids[:n_passages], teacher[:n_passages]
        vectors = student_vectors(encoder, name, ids, cache_dir, chunk=2500 if name == "passages" else None)
        data[name] = {"ids": ids, "teacher": teacher, "student": vectors}
    qrels, _ = read_qrels(SCIFACT / "qrels" / "test.tsv")
    test_ids = [qid for qid in data["queries"]["ids"] if qid in qrels]
    rows = [data["queries"]["ids"].index(qid) for qid in test_ids]
    data["test"] = {"ids": test_ids, "teacher": data["queries"]["teacher"][rows],
                    "student": data["queries"]["student"][rows], "qrels": qrels}
    return data


def ndcg(query_vectors: np.ndarray, data: dict, documents: np.ndarray | None = None) -> float:
    from tava_core.evaluate.metrics import cosine_scores, retrieval_metrics

    documents = data["corpus"]["teacher"] if documents is None else documents
    scores = cosine_scores(query_vectors, documents)
    return round(retrieval_metrics(scores, data["test"]["ids"], data["corpus"]["ids"], data["test"]["qrels"])
                 ["ndcg_at_10"], 4)


def rounded(metrics: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}


def adapter_config(quick: bool, **overrides):
    from tava_core.adapter import AdapterConfig

    values = dict(hidden_dims=[512], batch_size=256, max_steps=600 if quick else 2000, eval_every=50,
                  patience=6 if quick else 8, warmup_steps=50, holdout_fraction=0.05, holdout_max=1000,
                  discriminator_hidden_dim=256)
    values.update(overrides)
    return AdapterConfig(**values)


def run_setting(name: str, x: np.ndarray, y: np.ndarray, data: dict, quick: bool, variants: dict) -> dict:
    """Fit the baselines and every adapter variant on (x, y); score them on SciFact test."""
    from tava_core.adapter import alignment_metrics, fit_baselines
    from tava_core.adapter.train import train_adapter_from_arrays

    test_s, test_t = data["test"]["student"], data["test"]["teacher"]
    out: dict = {"pairs": int(len(x)), "maps": {}}
    for map_name, linear_map in fit_baselines(x, y).items():
        mapped = linear_map(test_s)
        out["maps"][map_name] = {"ndcg_at_10": ndcg(mapped, data), "note": linear_map.note,
                                 "test_queries": rounded(alignment_metrics(mapped, test_t))}
        print(f"[{name}] {map_name}: nDCG@10 {out['maps'][map_name]['ndcg_at_10']}", flush=True)
    for variant, overrides in variants.items():
        config = adapter_config(quick, **overrides)
        start = time.perf_counter()
        run = train_adapter_from_arrays(x, y, config, name=f"{name}-{variant}", show_progress=True)
        mapped = run.result.adapter.map_numpy(test_s)
        out["maps"][variant] = {
            "ndcg_at_10": ndcg(mapped, data), "test_queries": rounded(alignment_metrics(mapped, test_t)),
            "heldout_pairs": rounded(run.report["metrics"]["adapter"]),
            "heldout_ridge": rounded(run.report["metrics"]["ridge"]),
            "training": {k: v for k, v in run.report["training"].items() if k not in {"best_metrics", "initial_metrics"}},
            "train_seconds": round(time.perf_counter() - start, 1), "config": overrides}
        print(f"[{name}] {variant}: nDCG@10 {out['maps'][variant]['ndcg_at_10']} "
              f"(best step {run.result.best_step}/{run.result.steps}, {out['maps'][variant]['train_seconds']} s)",
              flush=True)
        out.setdefault("_adapters", {})[variant] = run.result.adapter
    return out


def adapter_cost(adapter, data: dict, encoder, repeats: int = 5) -> dict:
    """Seconds per 1,000 queries: student encoding (300 test query texts) vs the adapter's map."""
    import torch

    texts_map = _texts("queries")
    texts = [texts_map[qid] for qid in data["test"]["ids"]]
    encoder.encode(texts[:16], kind="query")  # warm-up
    start = time.perf_counter()
    vectors = encoder.encode(texts, kind="query")
    student_s = (time.perf_counter() - start) / len(texts) * 1000
    adapter.eval()
    batch = np.repeat(vectors, 4, axis=0)[:1000]
    adapter.map_numpy(batch[:64])
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        adapter.map_numpy(batch)
        timings.append(time.perf_counter() - start)
    single = []
    with torch.no_grad():
        one = torch.as_tensor(vectors[:1])
        for _ in range(50):
            start = time.perf_counter()
            adapter(one)
            single.append(time.perf_counter() - start)
    adapter_s = float(np.median(timings)) * 1000 / len(batch)
    params = sum(p.numel() for p in adapter.parameters())
    return {"student_encode_s_per_1k": round(student_s, 3), "adapter_s_per_1k_batched": round(adapter_s, 4),
            "adapter_ms_per_query_unbatched": round(float(np.median(single)) * 1000, 3),
            "adapter_share_of_student": round(adapter_s / student_s, 4), "adapter_parameters": int(params),
            "note": "wall-clock on a shared 2-core CPU; both measured in the same process, same conditions"}


def unpaired_curve(data: dict, sizes: list[int], steps: int) -> list[dict]:
    """Pure vec2vec (no pairs seen): top-1 on 300 held-out passage pairs vs the number of texts."""
    from tava_core.adapter import AdapterConfig, alignment_metrics
    from tava_core.adapter.train import train_adapter_from_arrays

    x_all, y_all = data["passages"]["student"], data["passages"]["teacher"]
    rows = []
    for n in sizes:
        if n > len(x_all):
            continue
        config = AdapterConfig.unpaired_defaults(hidden_dims=[512], batch_size=256, max_steps=steps, eval_every=50,
                                                 holdout_max=300, holdout_fraction=min(0.4, 300 / n),
                                                 discriminator_hidden_dim=256, patience=max(4, steps // 100))
        start = time.perf_counter()
        run = train_adapter_from_arrays(x_all[:n], y_all[:n], config, name=f"unpaired-{n}")
        metrics = run.report["metrics"]["adapter"]
        rows.append({"texts": n, "texts_per_side": run.report["data"]["train_student"],
                     "heldout_pairs": metrics["n"], "top1": round(metrics["top1"], 4),
                     "mean_rank": round(metrics["mean_rank"], 2), "mean_cosine": round(metrics["mean_cosine"], 4),
                     "chance_top1": round(1 / metrics["n"], 4), "steps": run.result.steps,
                     "seconds": round(time.perf_counter() - start, 1)})
        print(f"[unpaired] {rows[-1]}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", default="all-MiniLM-L6-v2", help="student encoder: alias or model directory")
    parser.add_argument("--quick", action="store_true", help="5k passages, short training")
    parser.add_argument("--passages", type=int, default=None, help="passage pairs (default 5000 quick, 20000 full)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="student vector cache")
    parser.add_argument("--cache-only", action="store_true", help="only encode and cache the student vectors")
    parser.add_argument("--skip-unpaired", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "adapter.json")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    n_passages = args.passages or (5000 if args.quick else 20000)
    started = time.perf_counter()
    data = load_benchmark_data(args.student, args.cache_dir, n_passages)
    if args.cache_only:
        return
    encoder = data["encoder"]
    teacher_ndcg = ndcg(data["test"]["teacher"], data)
    student_own = ndcg(data["test"]["student"], data, documents=data["corpus"]["student"])
    print(f"teacher nDCG@10 {teacher_ndcg}; student in its own space {student_own}", flush=True)
    student_same_dim = data["test"]["student"].shape[1] == data["test"]["teacher"].shape[1]
    # "adapter": the AdapterConfig defaults (paired: supervision + VSP, no discriminator);
    # the second variant adds vec2vec's adversarial term (LSGAN, R1, spectral norm) at light weight.
    variants = {"adapter": {}, "adapter_adversarial": {"adversarial_weight": 0.02, "vsp_weight": 1.0}}
    p = data["passages"]
    settings = {
        "a_passages": (p["student"], p["teacher"]),
        "b_passages_plus_scifact_docs": (np.concatenate([p["student"], data["corpus"]["student"]]),
                                         np.concatenate([p["teacher"], data["corpus"]["teacher"]])),
    }
    results: dict = {}
    adapters = {}
    for name, (x, y) in settings.items():
        results[name] = run_setting(name, x, y, data, args.quick, variants)
        adapters[name] = results[name].pop("_adapters")["adapter"]
        best_baseline = max(v["ndcg_at_10"] for k, v in results[name]["maps"].items() if k in {"ridge", "procrustes"})
        results[name]["adapter_beats_baselines"] = results[name]["maps"]["adapter"]["ndcg_at_10"] > best_baseline
        results[name]["adapter_minus_best_baseline"] = round(results[name]["maps"]["adapter"]["ndcg_at_10"]
                                                             - best_baseline, 4)
        results[name]["adapter_share_of_teacher"] = round(results[name]["maps"]["adapter"]["ndcg_at_10"] / teacher_ndcg, 4)
    cost = adapter_cost(adapters["b_passages_plus_scifact_docs"], data, encoder)
    print(f"cost: {cost}", flush=True)
    unpaired = [] if args.skip_unpaired else unpaired_curve(
        data, [1000, 2500, 5000] if args.quick else [1000, 2500, 5000, 10000, 20000], 300 if args.quick else 1500)
    report = {
        "benchmark": "adapter", "quick": args.quick, "student": encoder.info(),
        "teacher": {"name": "all-mpnet-base-v2", "dim": int(data["test"]["teacher"].shape[1]),
                    "vectors": str(TEACHER_VECTORS)},
        "passage_pairs": n_passages, "test_queries": len(data["test"]["ids"]),
        "teacher_ndcg_at_10": teacher_ndcg, "student_own_space_ndcg_at_10": student_own,
        "student_without_adapter_ndcg_at_10": (ndcg(data["test"]["student"], data) if student_same_dim else
                                               "n/a: student and teacher dimensions differ"),
        "settings": results, "cost": cost, "unpaired": unpaired,
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from tava_core.io import write_json

    write_json(args.out, report)
    print(json.dumps({k: report[k] for k in ("teacher_ndcg_at_10", "student_own_space_ndcg_at_10")}, indent=1))
    for name, res in results.items():
        print(name, {k: v["ndcg_at_10"] for k, v in res["maps"].items()})
    print(f"wrote {args.out} in {report['seconds']} s")


if __name__ == "__main__":
    main()
