"""Benchmark data for Stage A: ingested datasets + cached teacher vectors under a /tmp tava home.

Text shards and the teacher's vector shards are written once (vector shards by tava's own
embedding core, which skips shards that are already current), so re-runs cost nothing.

    python bench/distill_data.py --passages 40000      # prepare (teacher ~200 texts/s on 2 cores)
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tava_core.embed import EmbedConfig, embed_dataset  # noqa: E402
from tava_core.home import TavaHome  # noqa: E402
from tava_core.io import write_text_shard  # noqa: E402
from tava_core.manifest import Collection, DatasetManifest, ShardRecord, save_manifest  # noqa: E402

SHARED = Path(os.environ.get("TAVA_SHARED_DATA", ROOT.parent / "shared" / "data"))
SCIFACT = SHARED / "beir" / "scifact"
PASSAGES = SHARED / "corpus_passages_en.jsonl.gz"
BENCH_HOME = Path(os.environ.get("TAVA_BENCH_HOME", "/tmp/tava-bench-home"))
SHARD_ROWS = 5000
SHUFFLE_SEED = 13


def _write_dataset(home: TavaHome, name: str, source: str, collections: dict[str, dict[str, list[str]]]) -> Path:
    """Write text shards + manifest (skipped when the manifest exists: the data never changes)."""
    out = home.dataset_dir(name)
    if (out / "manifest.json").is_file():
        return out
    records: dict[str, Collection] = {}
    for collection, rows in collections.items():
        shards = []
        for start in range(0, len(rows["id"]), SHARD_ROWS):
            part = {k: v[start:start + SHARD_ROWS] for k, v in rows.items()}
            rel = f"{collection}/shard-{start // SHARD_ROWS:05d}.parquet"
            rec = write_text_shard(out / rel, part)
            shards.append(ShardRecord(path=rel, rows=rec["rows"], sha256=rec["sha256"]))
        records[collection] = Collection(shards=shards)
    save_manifest(out, DatasetManifest(name=name, source=source, collections=records))
    return out


def prepare_passages(home: TavaHome, count: int) -> Path:
    """The first ``count`` passages of a fixed shuffle (so a smaller set is a prefix of a larger)."""
    name = f"passages-{count}"
    if (home.dataset_dir(name) / "manifest.json").is_file():
        return home.dataset_dir(name)
    with gzip.open(PASSAGES, "rt") as handle:
        rows = [json.loads(line) for line in handle]
    random.Random(SHUFFLE_SEED).shuffle(rows)
    rows = rows[:count]
    data = {"id": [r["_id"] for r in rows], "text": [r["text"] for r in rows],
            "source": [r.get("source", "") for r in rows]}
    return _write_dataset(home, name, str(PASSAGES), {"texts": data})


def prepare_scifact(home: TavaHome) -> Path:
    """SciFact corpus + test queries (qrels are read by the benchmark only, never for training)."""
    def load(path: Path) -> list[dict]:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    corpus = load(SCIFACT / "corpus.jsonl")
    queries = load(SCIFACT / "queries.jsonl")
    return _write_dataset(home, "scifact", str(SCIFACT), {
        "corpus": {"id": [d["_id"] for d in corpus], "text": [d.get("text", "") for d in corpus],
                   "title": [d.get("title", "") for d in corpus]},
        "queries": {"id": [q["_id"] for q in queries], "text": [q["text"] for q in queries]},
    })


def prepare(passages: int, home_root: Path = BENCH_HOME, *, progress: bool = True) -> dict[str, Path]:
    """Datasets and teacher vector dirs; returns {'passages', 'passages_vectors', 'scifact', ...}."""
    home = TavaHome(home_root)
    out: dict[str, Path] = {}
    out["scifact"] = prepare_scifact(home)
    dirs = embed_dataset(EmbedConfig(dataset="scifact", collections=["queries", "corpus"]), home,
                         show_progress=progress)
    out["scifact_corpus_vectors"] = dirs["corpus"]
    out["scifact_queries_vectors"] = dirs["queries"]
    out["passages"] = prepare_passages(home, passages)
    dirs = embed_dataset(EmbedConfig(dataset=out["passages"].name, collections=["texts"]), home,
                         show_progress=progress)
    out["passages_vectors"] = dirs["texts"]
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--passages", type=int, default=40000)
    args = parser.parse_args()
    print(json.dumps({k: str(v) for k, v in prepare(args.passages).items()}, indent=2))
