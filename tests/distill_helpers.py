"""Helpers for the Stage A tests: a toy corpus ingested into a tava home, embedded by a teacher."""
from __future__ import annotations

import random
from pathlib import Path

WORDS = ("protein cell gene virus patient study result brain heart blood cancer drug effect risk trial "
         "mouse human tissue signal growth immune response level increase decrease model data analysis "
         "film movie actor plot story music song review great bad boring funny love war peace city river "
         "market price stock bank money trade law court judge vote people country president nation water "
         "food energy climate weather storm rain sun moon star planet space rocket science school student "
         "teacher book paper word language computer network system software code machine learning").split()


def toy_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))) for _ in range(n)]


def make_toy_dataset(home: Path, name: str = "toy", n: int = 400, seed: int = 0) -> Path:
    """An ingested dataset (collection ``texts``, one shard) under ``home``/data/``name``."""
    from tava_core.home import TavaHome
    from tava_core.io import write_text_shard
    from tava_core.manifest import Collection, DatasetManifest, ShardRecord, save_manifest

    out = TavaHome(home).dataset_dir(name)
    texts = toy_texts(n, seed)
    rec = write_text_shard(out / "texts" / "shard-00000.parquet",
                           {"id": [f"t{i}" for i in range(n)], "text": texts})
    save_manifest(out, DatasetManifest(name=name, source="toy", collections={
        "texts": Collection(shards=[ShardRecord(path="texts/shard-00000.parquet", rows=rec["rows"],
                                                sha256=rec["sha256"])])}))
    return out


def embed_toy(home: Path, teacher: str, name: str = "toy") -> Path:
    """The teacher's vector dir of the toy dataset (tava's embedding core)."""
    from tava_core.config import EncoderSpec
    from tava_core.embed import EmbedConfig, embed_dataset
    from tava_core.home import TavaHome

    dirs = embed_dataset(EmbedConfig(dataset=name, encoder=EncoderSpec(model=teacher)), TavaHome(home))
    return dirs["texts"]
