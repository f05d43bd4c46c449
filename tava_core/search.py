"""Search a published index with query texts: the check a user runs after `tava index`, `tava translate`
or a backfill (do the right documents come back?), without writing FAISS code.

The query encoder defaults to the one the index's vectors are in the space of: the target model of a
translated store, else the encoder that embedded the vectors (when it is an alias or a directory that
still loads). Hits carry the document text when the indexed collection's dataset is in this home.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from .config import EncoderSpec
from .errors import ConfigError, TavaError
from .home import TavaHome, find_dataset


def indexed_space(manifest: dict[str, Any]) -> Optional[str]:
    """The encoder whose space an index's vectors are in, as a loadable name, or None when the manifest
    does not say one (then ``--encoder`` is needed)."""
    encoder = (manifest.get("source") or {}).get("encoder") or {}
    if encoder.get("type") == "translated":
        return encoder.get("target_encoder")
    spec = encoder.get("spec") or {}
    return spec.get("model") or encoder.get("name")


def hit_texts(home: TavaHome, manifest: dict[str, Any], ids: set[str]) -> dict[str, str]:
    """id -> text of the hits, read from the indexed collection's dataset in ``home`` ({} when it is not there)."""
    from .distill.data import read_collection_texts
    from .manifest import load_dataset_manifest

    source = manifest.get("source") or {}
    try:
        dataset_dir = find_dataset(home, str(source.get("dataset")))
        collection = load_dataset_manifest(dataset_dir).collections[str(source.get("collection"))]
    except (KeyError, TavaError):   # not ingested in this home (a store from elsewhere): ids only
        return {}
    all_ids, texts, _ = read_collection_texts(dataset_dir, collection.shards)
    return {i: t for i, t in zip(all_ids, texts, strict=True) if i in ids}


def search_index(index_dir: str | Path, queries: Sequence[str], *, encoder: Optional[str] = None, k: int = 10,
                 home: Optional[TavaHome] = None, with_text: bool = True) -> dict[str, Any]:
    """Top-``k`` documents of each query text in the published index at ``index_dir``."""
    from .encoders import load_encoder
    from .index import load_index, search

    if not queries:
        raise ConfigError("no query text given", hint="pass query texts as arguments, or --queries FILE (one a line)")
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    loaded = load_index(index_dir)
    model = encoder or indexed_space(loaded.manifest)
    if not model:
        raise ConfigError("the index's manifest does not name the encoder its vectors came from",
                          hint="give the query encoder with --encoder")
    query_encoder = load_encoder(EncoderSpec(model=model))
    ids, scores = search(loaded, query_encoder.encode(list(queries), kind="query"), k)
    texts = hit_texts(home or TavaHome(), loaded.manifest, {i for row in ids for i in row}) if with_text else {}
    results = [{"query": query, "hits": [{"id": doc, "score": round(float(score), 4),
                                          **({"text": texts[doc]} if doc in texts else {})}
                                         for doc, score in zip(row, scores[q], strict=False)]}
               for q, (query, row) in enumerate(zip(queries, ids, strict=True))]
    return {"index": str(loaded.path), "encoder": query_encoder.name, "indexed_space": indexed_space(loaded.manifest),
            "metric": loaded.metric, "results": results}
