"""Benchmark `tava embed` (the sharded Prefect flow) against a plain SentenceTransformer.encode.

Measures, in one run, on the same texts with the same model (the packaged teacher):
- texts/second of the flow vs. ``SentenceTransformer.encode`` (target: ratio >= 0.9);
- a fully cached re-run's time against the first run (target: < 10%);
- peak memory (RSS) of the flow process at two corpus sizes, 10x apart (must not grow 10x).

    .venv/bin/python bench/embed.py            # 4,000 passages; memory at 1,000 and 10,000
    .venv/bin/python bench/embed.py --quick    # 600 passages; memory at 200 and 2,000

Texts: ../shared/data/corpus_passages_en.jsonl.gz when present, else the built-in corpus.
Writes bench/results/embed.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PASSAGES = ROOT.parent / "shared" / "data" / "corpus_passages_en.jsonl.gz"


def _environment(home: Path) -> None:
    os.environ.update({"TAVA_HOME": str(home), "PREFECT_HOME": str(home / "prefect"),
                       "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(home / "prefect" / "results"),
                       "HF_HUB_OFFLINE": "1", "PREFECT_LOGGING_LEVEL": "WARNING",
                       "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"})


def _ingest(home: Path, n_texts: int, shard_size: int) -> str:
    from tava_core.config import IngestConfig
    from tava_core.ingest import ingest

    source = str(PASSAGES) if PASSAGES.exists() else "builtin"
    config = IngestConfig(source=source, name="bench", shard_size=shard_size, max_records=n_texts)
    ingest(config, home)
    return source


def _texts(home: Path) -> list[str]:
    from tava_core.home import TavaHome
    from tava_core.io import document_texts, read_text_shard
    from tava_core.manifest import load_dataset_manifest

    dataset_dir = TavaHome(home).dataset_dir("bench")
    manifest = load_dataset_manifest(dataset_dir)
    collection = "texts" if "texts" in manifest.collections else next(iter(manifest.collections))
    return [t for s in manifest.collections[collection].shards
            for t in document_texts(read_text_shard(dataset_dir / s.path))]


def memory_probe(n_texts: int) -> dict:
    """Run in a child process: ingest + embed ``n_texts`` through the flow, report peak RSS."""
    home = Path(tempfile.mkdtemp(prefix="tava-bench-mem-"))
    _environment(home)
    _ingest(home, n_texts, shard_size=1000)
    from flows.embed import embed_dataset_flow
    from tava_core.embed import EmbedConfig

    start = time.perf_counter()
    result = embed_dataset_flow(EmbedConfig(dataset="bench"), home=str(home))
    return {"texts": sum(c.rows for c in result.collections), "seconds": time.perf_counter() - start,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--texts", type=int, default=None, help="texts for the throughput comparison")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "embed.json")
    parser.add_argument("--memory-probe", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        print(json.dumps(memory_probe(args.memory_probe)))
        return

    n_texts = args.texts or (600 if args.quick else 4000)
    memory_sizes = (200, 2000) if args.quick else (1000, 10000)
    home = Path(tempfile.mkdtemp(prefix="tava-bench-embed-"))
    _environment(home)
    source = _ingest(home, n_texts, shard_size=max(1, n_texts // 4))
    texts = _texts(home)

    import torch
    from sentence_transformers import SentenceTransformer

    from flows.embed import embed_dataset_flow
    from tava_core.config import EncoderSpec
    from tava_core.embed import EmbedConfig
    from tava_core.encoders import resolve_model_path

    teacher_dir = resolve_model_path("all-MiniLM-L6-v2")
    model = SentenceTransformer(str(teacher_dir), device="cpu")
    model.encode(texts[:64], batch_size=args.batch_size)  # warm-up
    start = time.perf_counter()
    model.encode(texts, batch_size=args.batch_size)
    plain_seconds = time.perf_counter() - start

    config = EmbedConfig(dataset="bench", encoder=EncoderSpec(batch_size=args.batch_size))
    # Warm-up: the ephemeral Prefect server starts on the first flow call; keep it out of the rate.
    from prefect import flow

    flow(name="bench-warm-up")(lambda: None)()
    start = time.perf_counter()
    first = embed_dataset_flow(config, home=str(home))
    first_seconds = time.perf_counter() - start
    start = time.perf_counter()
    embed_dataset_flow(config, home=str(home))
    cached_seconds = time.perf_counter() - start

    memory = []
    for size in memory_sizes:
        out = subprocess.run([sys.executable, __file__, "--memory-probe", str(size)], cwd=ROOT,
                             capture_output=True, text=True, check=True)
        memory.append(json.loads(out.stdout.strip().splitlines()[-1]))

    result = {
        "benchmark": "embed",
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "python": platform.python_version(), "torch": torch.__version__},
        "source": source, "texts": len(texts), "shards": sum(c.shards for c in first.collections),
        "batch_size": args.batch_size, "model": "all-MiniLM-L6-v2",
        "plain_sentence_transformers": {"seconds": plain_seconds, "texts_per_second": len(texts) / plain_seconds},
        "tava_embed_flow": {"seconds": first_seconds, "texts_per_second": len(texts) / first_seconds,
                            "note": "includes Prefect flow/task overhead (server already started)"},
        "throughput_ratio": plain_seconds / first_seconds,
        "throughput_target": 0.9,
        "cached_rerun": {"seconds": cached_seconds, "fraction_of_first_run": cached_seconds / first_seconds,
                         "target": 0.10},
        "peak_memory": memory,
        "peak_memory_growth": memory[1]["peak_rss_mb"] / memory[0]["peak_rss_mb"],
        "texts_growth": memory[1]["texts"] / memory[0]["texts"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
