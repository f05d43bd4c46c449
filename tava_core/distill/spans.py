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
MIN_TITLE_WORDS = 2          # a one-word title ("Introduction", a name) asks for nothing in particular
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


def _title(title: str | None) -> str:
    """A title as a view: its words single-spaced; "" when it has under MIN_TITLE_WORDS words."""
    words = (title or "").split()
    return " ".join(words) if len(words) >= MIN_TITLE_WORDS else ""


def title_views(ids: Sequence[str], titles: Sequence[str]) -> tuple[list[str], list[str]]:
    """Each titled text's title alone, ids ``<text id>#title``: a short text naming what the document is
    about, much as a query asks for it, which the span views seldom cut out (the title is glued to the
    front of its text). Titles under MIN_TITLE_WORDS words and repeats of a title already taken are left out."""
    out_ids: list[str] = []
    out_texts: list[str] = []
    seen: set[str] = set()
    for text_id, raw in zip(ids, titles, strict=True):
        title = _title(raw)
        if title and title.lower() not in seen:
            seen.add(title.lower())
            out_ids.append(f"{text_id}#title")
            out_texts.append(title)
    return out_ids, out_texts


def read_collection_titles(dataset_dir: Path, shards) -> list[str]:  # noqa: ANN001
    """The title of every row of ``shards``, in row order: the title column alone is read (every text shard
    has one), so checking a big corpus for titles on each run costs little."""
    import pyarrow.parquet as pq

    titles: list[str] = []
    for shard in shards:
        titles.extend(t or "" for t in pq.read_table(dataset_dir / shard.path, columns=["title"]).column(0).to_pylist())
    return titles


def span_dataset_name(dataset_name: str, views: int, seed: int) -> str:
    return f"{dataset_name}.spans{views}-s{seed}"


def write_span_dataset(home: TavaHome, dataset_dir: Path, collections: Sequence[str], views: int,
                       seed: int, *, limit: Optional[int] = None, sample: Optional[int] = None,
                       titles: bool = False) -> Path:
    """Write (or reuse) the span dataset of ``collections`` of ``dataset_dir`` (of its first
    ``limit`` texts, when given; of a seeded sample of ``sample`` of those, in their order, when
    there are more); returns its directory. ``titles``: the titles of those texts as views too
    (``title_views``), after their spans.

    Reused when its manifest records the same source shards, views, seed, limit and sample; written atomically.
    """
    source = load_dataset_manifest(dataset_dir)
    rows = sum(source.collections[c].rows for c in collections)
    kept = rows if limit is None else min(limit, rows)
    sample = sample if sample is not None and sample < kept else None   # a sample that cuts nothing is none
    heads: list[str] = []
    if titles:
        for collection in collections:
            heads.extend(read_collection_titles(dataset_dir, source.collections[collection].shards))
        # a corpus without a title to take writes exactly the dataset it wrote without the option (same
        # name and key: its views and their vectors stay cached); one with titles gets a dataset of its own
        titles = any(_title(t) for t in heads[:kept])
    name = (span_dataset_name(source.name, views, seed) + (f"-n{limit}" if limit is not None else "")
            + (f"-r{sample}" if sample is not None else "") + ("-titles" if titles else ""))
    out = home.dataset_dir(name)
    shards = [s for c in collections for s in source.collections[c].shards]
    key = stable_hash({"source": [s.sha256 for s in shards], "collections": list(collections), "views": views,
                       "seed": seed, "limit": limit, "words": [MIN_WORDS, MAX_WORDS],
                       **({"sample": sample} if sample is not None else {}),
                       **({"titles": MIN_TITLE_WORDS} if titles else {})}, 24)
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
        ids, texts, heads = ids[:limit], texts[:limit], heads[:limit]
    if sample is not None:   # already None when it would cut nothing
        keep = np.sort(np.random.default_rng(seed).choice(len(ids), sample, replace=False))
        ids, texts = [ids[i] for i in keep], [texts[i] for i in keep]
        heads = [heads[i] for i in keep] if titles else heads
    span_ids, spans = make_spans(ids, texts, views, seed)
    title_ids, title_texts = title_views(ids, heads) if titles else ([], [])
    span_ids, spans = span_ids + title_ids, spans + title_texts
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
                    **({"sample": sample} if sample is not None else {}), **({"titles": True} if titles else {})},
            info={"made_by": "tava distill (span views)", "from": source.name, "texts": len(ids),
                  "spans": len(span_ids), **({"titles": len(title_ids)} if titles else {})}))
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
