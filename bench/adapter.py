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

Second pair -- teacher all-MiniLM-L6-v2, student a Stage A student: the teacher's vectors come from the
Stage A bench's cache ($TAVA_BENCH_HOME, bench/distill_data.py; computed through tava's embedding core
only when missing), training pairs add its label-free "span" datasets (short sentences cut from the
passages / SciFact documents, query-like) in both settings, for the adapter and the baselines alike;
SciFact train queries serve as a dev set for choosing settings, never test. Results go under
report["pairs"][<student>->all-MiniLM-L6-v2] of the same JSON:

    python bench/adapter.py --teacher all-MiniLM-L6-v2 --student <student dir> --quick \
        --passages 2500 --spans 2500 --skip-unpaired --skip-adversarial

Every map is also scored on the SciFact train queries (`dev_ndcg_at_10`: 809 queries, never trained
on) and the adapter's gap to identity, ridge and Procrustes gets a paired-bootstrap 95% interval
over the test queries (`adapter_minus_baseline_95ci`): at 300 queries a gap under ~0.008 is noise.
`--passage-offset N` trains Stage B on passages the student did not see in Stage A; with the
transformer student (Stage A on the first 12,500) it was no better on dev (setting b 0.610 against
0.617 on the same passages), so the reported runs use the first passages.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import time
from pathlib import Path
from typing import Optional

import numpy as np
from shared_data import MPNET_VECTORS, PASSAGES, ROOT, SCIFACT, SHARED  # noqa: E402,F401 - sets sys.path

TEACHER_VECTORS = MPNET_VECTORS
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
    data["teacher_name"] = "all-mpnet-base-v2"
    _add_query_splits(data, read_qrels)
    return data


# ------------------------------------------------------------------ teacher all-MiniLM-L6-v2 (Stage A's)

BENCH_HOME = Path(os.environ.get("TAVA_BENCH_HOME", "/tmp/tava-bench-home"))
MINILM = "all-MiniLM-L6-v2"


def _bench_texts(dataset_dir: Path, collection: str) -> dict[str, str]:
    """id -> text (title + text, as BEIR) of one collection of an ingested dataset, any shards present."""
    from tava_core.io import document_texts, read_text_shard

    out: dict[str, str] = {}
    for shard in sorted((dataset_dir / collection).glob("shard-*.parquet")):
        table = read_text_shard(shard)
        out.update(zip(table.column("id").to_pylist(), document_texts(table), strict=False))
    return out


def _teacher_dir(dataset: str, collection: str, teacher: str) -> Optional[Path]:
    root = BENCH_HOME / "vectors" / dataset / collection
    found = sorted(root.glob(f"{teacher}-*")) if root.is_dir() else []
    return found[0] if found else None


def _read_teacher_dir(directory: Path) -> tuple[list[str], np.ndarray]:
    """A cached teacher vector directory; its shards directly while the manifest is still being written."""
    from tava_core.io import read_vector_shard
    from tava_core.manifest import read_vector_dir

    if (directory / "manifest.json").is_file():
        ids, vectors, _ = read_vector_dir(directory)
        return list(ids), vectors
    ids: list[str] = []
    blocks = []
    for shard in sorted(directory.glob("shard-*.parquet")):
        shard_ids, vectors = read_vector_shard(shard)
        ids += shard_ids
        blocks.append(vectors)
    return ids, np.concatenate(blocks) if blocks else np.zeros((0, 1), np.float32)


def teacher_side(dataset: str, collection: str, teacher: str) -> tuple[list[str], np.ndarray]:
    """The teacher's vectors of a bench-home collection: the cache written by bench/distill_data.py,
    else computed once through tava's embedding core (and cached there)."""
    directory = _teacher_dir(dataset, collection, teacher)
    if directory is None:
        from tava_core.config import EncoderSpec
        from tava_core.embed import EmbedConfig, embed_dataset
        from tava_core.home import TavaHome

        home = TavaHome(BENCH_HOME)
        embed_dataset(EmbedConfig(dataset=dataset, collections=[collection], encoder=EncoderSpec(model=teacher)), home)
        directory = _teacher_dir(dataset, collection, teacher)
    ids, vectors = _read_teacher_dir(directory)
    return ids, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _span_dataset(prefix: str) -> Optional[str]:
    """The largest span dataset Stage A's bench made for ``prefix`` (e.g. passages.spans2-s0-n12500)."""
    found = [d.name for d in (BENCH_HOME / "data").glob(f"{prefix}.spans*") if (d / "manifest.json").is_file()]
    return max(found, key=lambda n: int(n.rsplit("-n", 1)[-1]) if n.rsplit("-n", 1)[-1].isdigit() else 0,
               default=None)


def load_minilm_data(student: str, cache_dir: Path, n_passages: int, n_spans: int, passage_offset: int = 0) -> dict:
    """Teacher all-MiniLM-L6-v2 through the Stage A bench's cache (passages, SciFact corpus and
    queries, span datasets); the student (e.g. a Stage A student directory) encoded and cached here.
    ``passage_offset`` skips that many passages of the bench's order: the ones Stage A trained on."""
    from tava_core.encoders import load_encoder
    from tava_core.evaluate.data import read_qrels

    encoder = load_encoder(student)
    data: dict = {"encoder": encoder, "teacher_name": MINILM}
    sources = {"queries": ("scifact", "queries"), "corpus": ("scifact", "corpus"),
               "passages": ("passages", "texts")}
    for tag, prefix in (("spans_passages", "passages"), ("spans_scifact", "scifact")):
        name = _span_dataset(prefix)
        if name is not None:
            sources[tag] = (name, "spans")
    for name, (dataset, collection) in sources.items():
        ids, teacher = teacher_side(dataset, collection, MINILM)
        limit = n_passages if name == "passages" else (n_spans if name.startswith("spans") else None)
        if limit is not None:
            skip = passage_offset if name == "passages" else 0
            if skip and skip + limit > len(ids):
                raise SystemExit(f"{dataset}/{collection} has {len(ids)} teacher vectors; --passage-offset {skip} "
                                 f"+ {limit} passages needs more: python bench/distill_data.py --passages {skip + limit}")
            ids, teacher = ids[skip:skip + limit], teacher[skip:skip + limit]
        if name not in _TEXTS:
            _TEXTS[name] = _bench_texts(BENCH_HOME / "data" / dataset, collection)
        vectors = student_vectors(encoder, name, ids, cache_dir, chunk=2500 if name != "queries" else None)
        data[name] = {"ids": ids, "teacher": teacher, "student": vectors, "dataset": dataset}
        print(f"{name}: {len(ids)} pairs from {dataset}/{collection}", flush=True)
    _add_query_splits(data, read_qrels)
    return data


def _add_query_splits(data: dict, read_qrels) -> None:
    """SciFact test queries (the benchmark) and train queries (a dev set, only to pick settings)."""
    for split in ("test", "train"):
        qrels, _ = read_qrels(SCIFACT / "qrels" / f"{split}.tsv")
        ids = [qid for qid in data["queries"]["ids"] if qid in qrels]
        position = {qid: row for row, qid in enumerate(data["queries"]["ids"])}
        rows = [position[qid] for qid in ids]
        data["test" if split == "test" else "dev"] = {
            "ids": ids, "teacher": data["queries"]["teacher"][rows], "student": data["queries"]["student"][rows],
            "qrels": qrels}


def ndcg_per_query(query_vectors: np.ndarray, data: dict, documents: np.ndarray | None = None,
                   split: str = "test") -> np.ndarray:
    """nDCG@10 of every query of ``split`` ('test', or 'dev' = SciFact train queries) against the
    teacher's document vectors (or ``documents``)."""
    from tava_core.evaluate.metrics import cosine_scores, retrieval_metrics

    documents = data["corpus"]["teacher"] if documents is None else documents
    scores = cosine_scores(query_vectors, documents)
    return retrieval_metrics(scores, data[split]["ids"], data["corpus"]["ids"], data[split]["qrels"],
                             per_query=True)["ndcg_at_10_per_query"]


def ndcg(query_vectors: np.ndarray, data: dict, documents: np.ndarray | None = None) -> float:
    return round(float(ndcg_per_query(query_vectors, data, documents).mean()), 4)


def rounded(metrics: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}


def adapter_config(quick: bool, **overrides):
    from tava_core.adapter import AdapterConfig

    values = dict(hidden_dims=[512], batch_size=256, max_steps=600 if quick else 2000, eval_every=50,
                  patience=6 if quick else 8, warmup_steps=50, holdout_fraction=0.05, holdout_max=1000,
                  discriminator_hidden_dim=256)
    values.update(overrides)
    return AdapterConfig(**values)


def run_setting(name: str, x: np.ndarray, y: np.ndarray, data: dict, quick: bool, variants: dict,
                seeds: tuple[int, ...] = (0,), best_of: int = 1) -> dict:
    """Fit the baselines and every adapter variant (once per seed) on (x, y); score them on SciFact test."""
    from tava_core.adapter import alignment_metrics, fit_baselines
    from tava_core.adapter.run import train_adapter_from_arrays
    from tava_core.adapter.selection import best_index
    from tava_core.evaluate.metrics import paired_bootstrap

    test_s, test_t = data["test"]["student"], data["test"]["teacher"]
    out: dict = {"pairs": int(len(x)), "maps": {}}
    per_query: dict[str, np.ndarray] = {}

    def score(map_name: str, map_fn) -> dict:
        mapped = map_fn(test_s)
        per_query[map_name] = ndcg_per_query(mapped, data)
        row = {"ndcg_at_10": round(float(per_query[map_name].mean()), 4),
               "test_queries": rounded(alignment_metrics(mapped, test_t))}
        if "dev" in data:   # SciFact train queries: a second, larger label set (never used for training)
            row["dev_ndcg_at_10"] = round(float(ndcg_per_query(map_fn(data["dev"]["student"]), data,
                                                               split="dev").mean()), 4)
        return row

    for map_name, linear_map in fit_baselines(x, y).items():
        out["maps"][map_name] = {**score(map_name, linear_map), "note": linear_map.note}
        print(f"[{name}] {map_name}: nDCG@10 {out['maps'][map_name]['ndcg_at_10']}", flush=True)
    for variant, overrides in variants.items():
        # One adapter per training seed, each reported; seeds of one best-of group share their held-out
        # split (the group's first seed draws it), as AdapterConfig(seeds=[...]) does.
        seed_rows, seed_per_query, seed_heldout = [], [], []
        for position, seed in enumerate(seeds):
            config = adapter_config(quick, **{**overrides, "seeds": [seed]})
            start = time.perf_counter()
            run = train_adapter_from_arrays(x, y, config, name=f"{name}-{variant}-{seed}", show_progress=True,
                                            split_seed=seeds[position - position % best_of])
            row = {**score(variant, run.result.adapter.map_numpy), "seed": seed,
                   "heldout_pairs": rounded(run.report["metrics"]["adapter"]),
                   "heldout_ridge": rounded(run.report["metrics"]["ridge"]),
                   "start": run.report["seed_runs"][0].get("start"),
                   "start_evidence": run.report["seed_runs"][0].get("start_evidence"),
                   "training": {k: v for k, v in run.report["training"].items()
                                if k not in {"best_metrics", "initial_metrics"}},
                   "train_seconds": round(time.perf_counter() - start, 1)}
            seed_rows.append(row)
            seed_heldout.append(run.result.best_metrics)
            seed_per_query.append(per_query[variant])
            print(f"[{name}] {variant} seed {seed}: nDCG@10 {row['ndcg_at_10']} (start {row['start']}, best step "
                  f"{run.result.best_step}/{run.result.steps}, {row['train_seconds']} s)", flush=True)
            if seed == seeds[0]:
                out.setdefault("_adapters", {})[variant] = run.result.adapter
        # The product's best-of-N: each group of `best_of` seeds keeps the seed with the best held-out
        # score (what `seeds: [...]` does in AdapterConfig, label-free); the variant's score is the mean
        # over groups, so it is the expected score of that configuration, not one lucky draw.
        groups = [list(range(i, min(i + best_of, len(seeds)))) for i in range(0, len(seeds), best_of)]
        picks = [group[best_index([seed_heldout[i] for i in group], config.early_stopping_metric)]
                 for group in groups]
        per_query[variant] = np.mean([seed_per_query[i] for i in picks], axis=0)
        scores = [r["ndcg_at_10"] for r in seed_rows]
        picked = [scores[i] for i in picks]
        out["maps"][variant] = {"ndcg_at_10": round(float(per_query[variant].mean()), 4), "best_of": best_of,
                                "picked_seeds": [seeds[i] for i in picks], "ndcg_at_10_by_pick": picked,
                                "ndcg_at_10_by_seed": scores, "single_seed_mean": round(float(np.mean(scores)), 4),
                                **({"dev_ndcg_at_10": round(float(np.mean([seed_rows[i]["dev_ndcg_at_10"]
                                                                            for i in picks])), 4)}
                                   if "dev" in data else {}),
                                "seeds": seed_rows, "config": overrides}
    # paired bootstrap over the same test queries: is the adapter's gap to each closed form more than noise?
    out["adapter_minus_baseline_95ci"] = {
        base: {k: round(v, 4) if isinstance(v, float) else v for k, v in
               paired_bootstrap(per_query["adapter"], per_query[base]).items()}
        for base in ("identity", "ridge", "procrustes") if base in per_query and "adapter" in per_query}
    return out


def training_settings(data: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(a) passages (+ their spans when the bench made them); (b) (a) plus SciFact corpus documents
    (+ their spans): label-free, never SciFact queries or qrels."""
    parts = {"a_passages": ["passages", "spans_passages"],
             "b_passages_plus_scifact_docs": ["passages", "spans_passages", "corpus", "spans_scifact"]}
    out = {}
    for setting, names in parts.items():
        blocks = [data[n] for n in names if n in data]
        out[setting] = (np.concatenate([b["student"] for b in blocks]), np.concatenate([b["teacher"] for b in blocks]))
    return out


def adapter_cost(adapter, data: dict, encoder, repeats: int = 5) -> dict:
    """Seconds per 1,000 queries: student encoding (the test query texts, cycled) vs the adapter's map.

    Measured in process CPU time (one torch thread), best of ``repeats``: on a shared, busy CPU wall
    time mostly measures the other processes, CPU time measures the work."""
    import torch

    texts_map = _texts("queries")
    # 1,000 queries (the test queries, cycled) for both sides: a 300-query encode of a static student
    # takes ~15 ms, too short for a stable timer.
    test_texts = [texts_map[qid] for qid in data["test"]["ids"]]
    texts = (test_texts * (1000 // len(test_texts) + 1))[:1000]
    encoder.encode(texts[:16], kind="query")  # warm-up

    def best_of(fn, n: int) -> tuple[float, float]:
        cpu, wall = [], []
        for _ in range(n):
            c, w = time.process_time(), time.perf_counter()
            fn()
            cpu.append(time.process_time() - c)
            wall.append(time.perf_counter() - w)
        return min(cpu), min(wall)

    vectors = encoder.encode(texts, kind="query")
    student_cpu, student_wall = best_of(lambda: encoder.encode(texts, kind="query"), repeats)
    adapter.eval()
    adapter.map_numpy(vectors[:64])
    adapter_cpu, adapter_wall = best_of(lambda: adapter.map_numpy(vectors), repeats)
    with torch.no_grad():
        one = torch.as_tensor(vectors[:1])
        single, _ = best_of(lambda: [adapter(one) for _ in range(50)], 3)
    per_1k = 1000 / len(texts)
    student_s, adapter_s = student_cpu * per_1k, adapter_cpu * per_1k
    params = sum(p.numel() for p in adapter.parameters())
    return {"student_encode_s_per_1k": round(student_s, 4), "adapter_s_per_1k_batched": round(adapter_s, 4),
            "adapter_ms_per_query_unbatched": round(single / 50 * 1000, 3),
            "adapter_share_of_student": round(adapter_s / student_s, 4), "adapter_parameters": int(params),
            "wall_student_encode_s_per_1k": round(student_wall * per_1k, 4),
            "wall_adapter_s_per_1k_batched": round(adapter_wall * per_1k, 4),
            "note": "process CPU time, 1 torch thread, best of repeats, same process (wall-clock beside it; "
                    "the 2-core CPU was shared with other jobs)"}


def remeasure_cost(out: Path, key: Optional[str], data: dict, encoder, config) -> None:
    """Replace the stored cost of one result (``key`` = a pair, None = the top-level run) in ``out``."""
    from tava_core.adapter.trainer import build_adapter
    from tava_core.io import write_json

    report = json.loads(out.read_text())
    entry = report if key is None else report["pairs"][key]
    adapter = build_adapter(config, data["test"]["student"].shape[1], data["test"]["teacher"].shape[1])
    entry["cost"] = {**adapter_cost(adapter, data, encoder),
                     "remeasured": "alone, --cost-only (an untrained adapter of the same architecture)"}
    write_json(out, report)
    print(f"cost: {entry['cost']}")


def unpaired_curve(data: dict, sizes: list[int], steps: int) -> list[dict]:
    """Pure vec2vec (no pairs seen): top-1 on 300 held-out passage pairs vs the number of texts."""
    from tava_core.adapter import AdapterConfig
    from tava_core.adapter.run import train_adapter_from_arrays

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
        seed_run = run.report["seed_runs"][0]
        rows.append({"texts": n, "texts_per_side": run.report["data"]["train_student"],
                     "heldout_pairs": metrics["n"], "top1": round(metrics["top1"], 4),
                     "mean_rank": round(metrics["mean_rank"], 2), "mean_cosine": round(metrics["mean_cosine"], 4),
                     "chance_top1": round(1 / metrics["n"], 4), "start": seed_run.get("start"),
                     "start_evidence": seed_run.get("start_evidence"),
                     **({f"identity_{k}": round(run.report["metrics"]["identity"][k], 4) for k in ("top1", "mean_cosine")}
                        if "identity" in run.report["metrics"] else {}),
                     "steps": run.result.steps, "seconds": round(time.perf_counter() - start, 1)})
        print(f"[unpaired] {rows[-1]}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", default=None, help=(
        "student encoder: alias or model directory (default all-MiniLM-L6-v2 for the mpnet teacher)"))
    parser.add_argument("--teacher", default="all-mpnet-base-v2", choices=["all-mpnet-base-v2", MINILM], help=(
        "all-mpnet-base-v2: precomputed vectors in ../shared/data/vectors; all-MiniLM-L6-v2: the Stage A "
        "bench's cached vectors under $TAVA_BENCH_HOME (passages, SciFact, span datasets)"))
    parser.add_argument("--spans", type=int, default=20000, help="span pairs per span dataset (MiniLM teacher)")
    parser.add_argument("--key", default=None, help="store this run under report['pairs'][KEY] of --out")
    parser.add_argument("--quick", action="store_true", help="5k passages, short training")
    parser.add_argument("--passages", type=int, default=None, help="passage pairs (default 5000 quick, 20000 full)")
    parser.add_argument("--passage-offset", type=int, default=0, help=(
        "MiniLM teacher: skip this many passages of the bench's order, e.g. the N a Stage A student trained "
        "on, so Stage B learns the student's errors on texts it has not seen"))
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="student vector cache")
    parser.add_argument("--cache-only", action="store_true", help="only encode and cache the student vectors")
    parser.add_argument("--cost-only", action="store_true", help=(
        "only re-measure the adapter's cost (an untrained adapter of the same architecture: weights do not "
        "change it) into this pair's entry of --out, e.g. on an idle machine"))
    parser.add_argument("--skip-unpaired", action="store_true")
    parser.add_argument("--unpaired-sizes", type=int, nargs="+", default=None, help=(
        "texts per unpaired run (default 1000 2500 5000 [10000 20000 full])"))
    parser.add_argument("--unpaired-steps", type=int, default=None, help="steps per unpaired run (300 quick, 1500 full)")
    parser.add_argument("--skip-adversarial", action="store_true", help="train only the default adapter variant")
    parser.add_argument("--hidden", type=int, nargs="+", default=None, help="adapter hidden widths (default 512)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "adapter.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help=(
        "train each adapter once per seed (every seed is reported)"))
    parser.add_argument("--best-of", type=int, default=1, help=(
        "group the seeds by N and keep each group's best on held-out pairs (the product's best-of-N "
        "seeds); the adapter's score is the mean over groups"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    n_passages = args.passages or (5000 if args.quick else 20000)
    started = time.perf_counter()
    if args.teacher == MINILM:
        if args.student is None:
            parser.error("--teacher all-MiniLM-L6-v2 needs --student (e.g. a Stage A student directory)")
        data = load_minilm_data(args.student, args.cache_dir, n_passages, args.spans, args.passage_offset)
    else:
        data = load_benchmark_data(args.student or MINILM, args.cache_dir, n_passages)
    if args.cache_only:
        return
    encoder = data["encoder"]
    base = {} if args.hidden is None else {"hidden_dims": args.hidden}
    key = args.key or (None if args.teacher != MINILM else f"{Path(str(args.student)).name}->{MINILM}")
    if args.cost_only:
        remeasure_cost(args.out, key, data, encoder, adapter_config(args.quick, **base))
        return
    teacher_ndcg = ndcg(data["test"]["teacher"], data)
    student_own = ndcg(data["test"]["student"], data, documents=data["corpus"]["student"])
    print(f"teacher nDCG@10 {teacher_ndcg}; student in its own space {student_own}", flush=True)
    student_same_dim = data["test"]["student"].shape[1] == data["test"]["teacher"].shape[1]
    # "adapter": the AdapterConfig defaults (paired: supervision + VSP, no discriminator);
    # the second variant adds vec2vec's adversarial term (LSGAN, R1, spectral norm) at light weight.
    variants = {"adapter": base, "adapter_adversarial": {**base, "adversarial_weight": 0.02, "vsp_weight": 1.0}}
    if args.skip_adversarial:
        variants.pop("adapter_adversarial")
    settings = training_settings(data)
    results: dict = {}
    adapters = {}
    for name, (x, y) in settings.items():
        results[name] = run_setting(name, x, y, data, args.quick, variants, tuple(args.seeds), args.best_of)
        adapters[name] = results[name].pop("_adapters")["adapter"]
        best_baseline = max(v["ndcg_at_10"] for k, v in results[name]["maps"].items() if k in {"ridge", "procrustes"})
        results[name]["adapter_beats_baselines"] = results[name]["maps"]["adapter"]["ndcg_at_10"] > best_baseline
        for kind, scores in (("picks", "ndcg_at_10_by_pick"), ("seeds", "ndcg_at_10_by_seed")):
            results[name][f"adapter_{kind}_beating_baselines"] = (
                f"{sum(v > best_baseline for v in results[name]['maps']['adapter'][scores])}"
                f"/{len(results[name]['maps']['adapter'][scores])}")
        results[name]["adapter_minus_best_baseline"] = round(results[name]["maps"]["adapter"]["ndcg_at_10"]
                                                             - best_baseline, 4)
        results[name]["adapter_share_of_teacher"] = round(results[name]["maps"]["adapter"]["ndcg_at_10"] / teacher_ndcg, 4)
    cost = adapter_cost(adapters["b_passages_plus_scifact_docs"], data, encoder)
    print(f"cost: {cost}", flush=True)
    unpaired = [] if args.skip_unpaired else unpaired_curve(
        data, args.unpaired_sizes or ([1000, 2500, 5000] if args.quick else [1000, 2500, 5000, 10000, 20000]),
        args.unpaired_steps or (300 if args.quick else 1500))
    report = {
        "benchmark": "adapter", "quick": args.quick, "student": encoder.info(),
        "teacher": {"name": data["teacher_name"], "dim": int(data["test"]["teacher"].shape[1]),
                    "vectors": str(TEACHER_VECTORS if data["teacher_name"] != MINILM else BENCH_HOME / "vectors")},
        "training_pairs": {name: len(data[name]["ids"]) for name in
                           ("passages", "spans_passages", "corpus", "spans_scifact") if name in data},
        "passage_pairs": n_passages, "passage_offset": args.passage_offset, "test_queries": len(data["test"]["ids"]),
        "teacher_ndcg_at_10": teacher_ndcg, "student_own_space_ndcg_at_10": student_own,
        "student_without_adapter_ndcg_at_10": (ndcg(data["test"]["student"], data) if student_same_dim else
                                               "n/a: student and teacher dimensions differ"),
        "settings": results, "cost": cost, "unpaired": unpaired,
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from tava_core.io import write_json

    if key is not None:  # another teacher pair: under report["pairs"][key], the rest of the file kept
        existing = json.loads(args.out.read_text()) if args.out.is_file() else {"benchmark": "adapter"}
        previous_pair = existing.get("pairs", {}).get(key, {})
        if args.skip_unpaired and previous_pair.get("unpaired"):  # keep this pair's last measured curve
            report["unpaired"] = previous_pair["unpaired"]
            report["unpaired_note"] = "carried over from the previous run of this pair (--skip-unpaired)"
        existing.setdefault("pairs", {})[key] = report
        report_to_write = existing
    else:
        previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
        if args.skip_unpaired and previous.get("unpaired"):  # keep the last measured curve, marked as such
            report["unpaired"] = previous["unpaired"]
            report["unpaired_note"] = previous.get("unpaired_note", "carried over from the previous run "
                                                   "(--skip-unpaired); unpaired training does not use the paired defaults")
        report_to_write = {**report, "pairs": previous.get("pairs", {})}
    write_json(args.out, report_to_write)
    print(json.dumps({k: report[k] for k in ("teacher_ndcg_at_10", "student_own_space_ndcg_at_10")}, indent=1))
    for name, res in results.items():
        print(name, {k: v["ndcg_at_10"] for k, v in res["maps"].items()})
    print(f"wrote {args.out} in {report['seconds']} s")


if __name__ == "__main__":
    main()
