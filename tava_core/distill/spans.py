"""Short label-free views of the training texts ("spans"): a sentence or a short word window.

Queries are short, training passages are long. A student trained only on passages lands much
farther from the teacher on a 15-word query than on held-out passages (on SciFact, query cosine
0.60 against passage cosine 0.74 for the same student). Spans cut from the corpus itself give
the student short inputs with their own teacher vectors, still without any label: the teacher
embeds them once through the ordinary embedding stage, like any other collection.

Spans are a pure function of (text id, view index, seed), so a larger corpus only adds spans and
a re-run writes the same dataset byte for byte (its vectors stay cached).
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Optional, Sequence, TypeVar

import numpy as np

from ..home import TavaHome
from ..io import atomic_directory, stable_hash, write_text_shard
from ..manifest import Collection, DatasetManifest, ShardRecord, load_dataset_manifest, save_manifest
from .data import read_collection_texts

T = TypeVar("T")

SPAN_COLLECTION = "spans"
MIN_WORDS, MAX_WORDS = 4, 32
SHARD_ROWS = 5000
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")


def _rng(text_id: str, view: int, seed: int) -> np.random.Generator:
    digest = hashlib.blake2b(f"{seed}\x1f{text_id}\x1f{view}".encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def make_span(text: str, rng: np.random.Generator) -> str:
    """A sentence of 4-32 words (7 times in 10, when the text has one), else a 4-24-word window."""
    words = text.split()
    if len(words) <= MIN_WORDS:
        return " ".join(words)
    sentences = [s for s in _SENTENCE_END.split(text) if MIN_WORDS <= len(s.split()) <= MAX_WORDS]
    if sentences and rng.random() < 0.7:
        return " ".join(sentences[int(rng.integers(len(sentences)))].split())
    n = int(rng.integers(MIN_WORDS, min(24, len(words)) + 1))
    start = int(rng.integers(0, len(words) - n + 1))
    return " ".join(words[start:start + n])


def span_view(text_id: str, text: str, view: int, seed: int) -> str:
    """View ``view`` of one text: a pure function of (text id, view, seed)."""
    return make_span(text, _rng(text_id, view, seed))


def make_spans(ids: Sequence[str], texts: Sequence[str], views: int, seed: int) -> tuple[list[str], list[str]]:
    """``views`` spans of every text, de-duplicated per text; ids ``<text id>#span<k>``."""
    span_ids: list[str] = []
    spans: list[str] = []
    for text_id, text in zip(ids, texts, strict=False):
        seen: set[str] = set()
        for view in range(views):
            span = span_view(text_id, text, view, seed)
            if span and span not in seen:
                seen.add(span)
                span_ids.append(f"{text_id}#span{view}")
                spans.append(span)
    return span_ids, spans


def span_dataset_name(dataset_name: str, views: int, seed: int) -> str:
    return f"{dataset_name}.spans{views}-s{seed}"


def write_span_dataset(home: TavaHome, dataset_dir: Path, collections: Sequence[str], views: int,
                       seed: int, *, limit: Optional[int] = None, sample: Optional[int] = None) -> Path:
    """Write (or reuse) the span dataset of ``collections`` of ``dataset_dir`` (of its first
    ``limit`` texts, when given; of a seeded sample of ``sample`` of those, in their order, when
    there are more); returns its directory.

    Reused when its manifest records the same source shards, views, seed, limit and sample; written atomically.
    """
    source = load_dataset_manifest(dataset_dir)
    rows = sum(source.collections[c].rows for c in collections)
    kept = rows if limit is None else min(limit, rows)
    sample = sample if sample is not None and sample < kept else None   # a sample that cuts nothing is none
    name = (span_dataset_name(source.name, views, seed) + (f"-n{limit}" if limit is not None else "")
            + (f"-r{sample}" if sample is not None else ""))
    out = home.dataset_dir(name)
    shards = [s for c in collections for s in source.collections[c].shards]
    key = stable_hash({"source": [s.sha256 for s in shards], "collections": list(collections), "views": views,
                       "seed": seed, "limit": limit, "words": [MIN_WORDS, MAX_WORDS],
                       **({"sample": sample} if sample is not None else {})}, 24)
    if (out / "manifest.json").is_file():
        existing = load_dataset_manifest(out)
        if existing.config.get("span_key") == key:
            return out
    ids: list[str] = []
    texts: list[str] = []
    for collection in collections:
        cids, ctexts, _ = read_collection_texts(dataset_dir, source.collections[collection].shards)
        ids.extend(cids)
        texts.extend(ctexts)
    if limit is not None:
        ids, texts = ids[:limit], texts[:limit]
    if sample is not None:   # already None when it would cut nothing
        keep = np.sort(np.random.default_rng(seed).choice(len(ids), sample, replace=False))
        ids, texts = [ids[i] for i in keep], [texts[i] for i in keep]
    span_ids, spans = make_spans(ids, texts, views, seed)
    with atomic_directory(out) as tmp:
        records = []
        for start in range(0, len(span_ids), SHARD_ROWS):
            rel = f"{SPAN_COLLECTION}/shard-{start // SHARD_ROWS:05d}.parquet"
            written = write_text_shard(tmp / rel, {"id": span_ids[start:start + SHARD_ROWS],
                                                   "text": spans[start:start + SHARD_ROWS],
                                                   "title": [""] * len(span_ids[start:start + SHARD_ROWS]),
                                                   "source": [source.name] * len(span_ids[start:start + SHARD_ROWS])})
            records.append(ShardRecord(path=rel, rows=written["rows"], sha256=written["sha256"]))
        save_manifest(tmp, DatasetManifest(
            name=name, source=str(dataset_dir), collections={SPAN_COLLECTION: Collection(shards=records)},
            config={"span_key": key, "views": views, "seed": seed, "collections": list(collections),
                    **({"sample": sample} if sample is not None else {})},
            info={"made_by": "tava distill (span views)", "from": source.name, "texts": len(ids),
                  "spans": len(span_ids)}))
    return out


def sample_span_views(ids: Sequence[str], texts: Sequence[str], n: int, seed: int) -> list[str]:
    """One span view of every text, ``n`` of them (a seeded sample, in text order): label-free query
    stand-ins, as the router calibrates on and `tava run` chooses a blend's weight on."""
    _, spans = make_spans(list(ids), list(texts), 1, seed)
    return seeded_sample(spans, n, seed)


def seeded_sample(items: Sequence[T], n: int, seed: int) -> list[T]:
    """``n`` of ``items`` drawn without replacement (seeded), in their order; all of them when there are
    no more than ``n``."""
    if len(items) <= n:
        return list(items)
    return [items[i] for i in sorted(np.random.default_rng(seed).choice(len(items), size=n, replace=False))]
