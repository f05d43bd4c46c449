"""Benchmark `tava backfill`: rows/second into LanceDB against the plain embedding rate.

Same encoder (the packaged teacher), same texts (passages from ../shared/data, else the built-in
corpus), same process. Order: plain encode, backfill, plain encode again (the plain rate is the
mean of the two, so load from other processes on a shared machine hits both sides alike).
Backfill time is end to end: dim check, version tag, embed each shard, merge_insert, state
file, IVF-PQ index and optimize. It runs the flow `backfill_vector_store` (the one chain of the
backfill steps, as deployed), so the figure includes Prefect's per-task overhead; its own timer
starts inside the flow (the temporary Prefect server's start-up is not counted).
Target: backfill rate >= 0.8 x plain rate.

    .venv/bin/python bench/backfill.py            # 2,000 passages, shards of 250
    .venv/bin/python bench/backfill.py --quick    # 500 passages, shards of 100

Writes bench/results/backfill.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PASSAGES = ROOT.parent / "shared" / "data" / "corpus_passages_en.jsonl.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="500 passages instead of 2,000")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "backfill.json"))
    args = parser.parse_args()
    n_texts, shard_size = (500, 100) if args.quick else (2000, 250)

    with tempfile.TemporaryDirectory(prefix="tava-bench-backfill-") as tmp:
        home_dir = Path(tmp) / "home"
        os.environ.update({"TAVA_HOME": str(home_dir), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
        from flows.backfill import backfill_vector_store
        from tava_core.config import EncoderSpec, IngestConfig
        from tava_core.encoders import load_encoder
        from tava_core.home import TavaHome
        from tava_core.ingest import ingest
        from tava_core.io import document_texts, read_text_shard
        from tava_core.manifest import load_dataset_manifest
        from tava_core.vectorstore import BackfillConfig

        def backfill(config: BackfillConfig, home: TavaHome) -> dict:
            return backfill_vector_store(config, home=str(home.root)).model_dump()

        home = TavaHome(home_dir)
        source = str(PASSAGES) if PASSAGES.exists() else "builtin"
        ingest(IngestConfig(source=source, name="bench", shard_size=shard_size, max_records=n_texts), home)
        dataset_dir = home.dataset_dir("bench")
        manifest = load_dataset_manifest(dataset_dir)
        collection = "texts" if "texts" in manifest.collections else next(iter(manifest.collections))
        texts = [t for s in manifest.collections[collection].shards
                 for t in document_texts(read_text_shard(dataset_dir / s.path))]

        spec = EncoderSpec()
        encoder = load_encoder(spec)
        encoder.encode(texts[:64])  # warm-up: first-call allocations are not the steady rate

        def plain() -> float:
            t0 = time.perf_counter()
            encoder.encode(texts, kind="document")
            return len(texts) / (time.perf_counter() - t0)

        plain_before = plain()
        print(f"plain encode: {plain_before:.1f} texts/s", flush=True)
        record = backfill(BackfillConfig(dataset="bench", collection=collection, encoder=spec), home)
        print(f"backfill: {record['rows_per_second']} rows/s ({record['seconds']} s)", flush=True)
        plain_after = plain()
        print(f"plain encode again: {plain_after:.1f} texts/s", flush=True)
        t0 = time.perf_counter()
        rerun = backfill(BackfillConfig(dataset="bench", collection=collection, encoder=spec), home)
        rerun_seconds = time.perf_counter() - t0

    plain_rate = (plain_before + plain_after) / 2
    backfill_rate = record["rows_written"] / record["seconds"]
    results = {
        "quick": args.quick, "texts": len(texts), "source": source, "shard_size": shard_size,
        "encoder": encoder.name, "dim": encoder.dim,
        "plain_texts_per_second": [round(plain_before, 2), round(plain_after, 2)],
        "plain_texts_per_second_mean": round(plain_rate, 2),
        "backfill_rows_per_second": round(backfill_rate, 2),
        "ratio_backfill_to_plain": round(backfill_rate / plain_rate, 3),
        "target_ratio": 0.8,
        "backfill": {k: record[k] for k in ("seconds", "embed_seconds", "upsert_seconds", "rows_written",
                                            "table_rows", "shards", "index")},
        "overhead_seconds_outside_embedding": round(record["seconds"] - record["embed_seconds"], 3),
        "rerun_cached_seconds": round(rerun_seconds, 3), "rerun_table_rows": rerun["table_rows"],
        "machine": {"cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg(), "python": platform.python_version()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
