"""Small builders shared by tests (not fixtures: plain functions with explicit inputs)."""
from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Callable, ContextManager, Iterator

from tava_core.home import TavaHome
from tava_core.io import write_text_shard
from tava_core.manifest import Collection, DatasetManifest, ShardRecord, save_manifest

WORDS = ("retrieval embedding vector teacher student adapter corpus query document index search model "
         "cosine distance layer token static dense sparse shard parquet flow task cache").split()


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    """Deterministic pseudo-sentences of varying length."""
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 40))) + f" #{i}" for i in range(n)]


def write_dataset(home: Path, name: str, collections: dict[str, list[str]], shard_size: int = 50) -> Path:
    """Write an ingested-dataset directory (text shards + manifest) without the ingest flow."""
    dataset_dir = TavaHome(home).dataset_dir(name)
    colls = {}
    for collection, texts in collections.items():
        shards = []
        for start in range(0, len(texts), shard_size):
            chunk = texts[start:start + shard_size]
            rel = f"{collection}/shard-{start // shard_size:05d}.parquet"
            ids = [f"{collection[0]}{start + i}" for i in range(len(chunk))]
            record = write_text_shard(dataset_dir / rel, {"id": ids, "text": chunk,
                                                          "source": ["test"] * len(chunk)})
            shards.append(ShardRecord(path=rel, rows=record["rows"], sha256=record["sha256"]))
        colls[collection] = Collection(shards=shards)
    save_manifest(dataset_dir, DatasetManifest(name=name, source="test", collections=colls))
    return dataset_dir


@contextlib.contextmanager
def held_by_another_thread(lock: Callable[[], ContextManager]) -> Iterator[threading.Event]:
    """Hold ``lock()`` in a second thread for the block (tava's locks re-enter for the thread that
    holds them, so "another run" must be another thread); yields the event that releases it early."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock():
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(5), "the other thread never got the lock"
        yield release
    finally:
        release.set()
        thread.join(5)


def tiny_topic_beir(root: Path) -> Path:
    """A raw BEIR directory: 5 topics x 6 documents, 2 queries per topic with one relevant document."""
    import json

    topics = {"cell": "cells divide and grow when the protein signal is present in the tissue",
              "parser": "the parser reads tokens from the input stream and builds a syntax tree",
              "optimizer": "the optimizer updates weights with the gradient and a learning rate schedule",
              "river": "the river floods the valley every spring when the snow melts in the mountains",
              "market": "prices in the market rise when demand grows faster than the supply of goods"}
    docs, queries, qrels = [], [], []
    for topic, text in topics.items():
        for v in range(6):
            docs.append({"_id": f"{topic}{v}", "title": "", "text": f"{text} variant {v} about {topic} number {v * 7}"})
        for v in range(2):
            queries.append({"_id": f"q-{topic}{v}", "text": f"what happens to the {topic} {['now', 'later'][v]}"})
            qrels.append(f"q-{topic}{v}\t{topic}{v}\t1")
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    (root / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    (root / "qrels").mkdir(exist_ok=True)
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(qrels) + "\n")
    return root


def add_dense(model_dir: Path, out_dim: int, *, seed: int) -> Path:
    """Give a copied sentence-transformers directory a seeded Dense projection (hidden -> ``out_dim``)
    after its pooling: a projected student's layout."""
    import json

    import torch

    from tava_core.distill.students import _write_dense

    hidden = int(json.loads((model_dir / "config.json").read_text())["hidden_size"])
    torch.manual_seed(seed)
    _write_dense(model_dir / "2_Dense", torch.nn.Linear(hidden, out_dim))
    modules = json.loads((model_dir / "modules.json").read_text())
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (model_dir / "modules.json").write_text(json.dumps(modules))
    return model_dir


def write_static_model(directory: Path, tokenizer_from: Path, dim: int, *, seed: int) -> Path:
    """A model2vec-format static encoder with a seeded random (30,522 x ``dim``) table and the tokenizer
    of ``tokenizer_from`` (the teacher's): loads through ``load_encoder`` in milliseconds."""
    import json
    import shutil

    import numpy as np
    from safetensors.numpy import save_file

    directory.mkdir(parents=True, exist_ok=True)
    table = np.random.default_rng(seed).standard_normal((30522, dim)).astype(np.float32)
    save_file({"embeddings": table}, str(directory / "model.safetensors"))
    shutil.copy(tokenizer_from / "tokenizer.json", directory / "tokenizer.json")
    (directory / "config.json").write_text(json.dumps({"model_type": "model2vec", "normalize": True}))
    return directory
