"""A collection's own queries of the splits it does not score, as a label-free query log.

A BEIR collection ships the texts of every split's queries. Only the scored split's must stay out of
training; the others are what a live service already has as past queries: texts, never their labels.
`tava run` trains Stage A on them beside the documents, as it trains on a query log passed with
``--unlabeled`` (sessions 44 and 47: a log of half of SciFact's train queries moved the blend on the other
half by +0.006 with MiniLM and +0.015 with mpnet; docs/stage-a.md).

What is never taken, whichever split is scored: the queries the scored split's qrels name, the queries
a ``test`` split names (a dev run must not train on the texts a later test run scores), queries no
qrels file names (they may be a hidden split's), and any text equal, up to case and spacing, to a
held-out query's (collections repeat a query across splits: SciFact has two train claims that are also
test claims).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..evaluate.data import read_qrels
from ..io import atomic_path, read_text_shard
from ..manifest import load_dataset_manifest

# Splits whose queries are never training text, whichever split a run scores.
HELD_OUT_SPLITS = ("test",)


@dataclass(frozen=True)
class QueryLog:
    """The query texts a run may train on, in the queries file's order."""

    ids: list[str]
    texts: list[str]
    splits: list[str] = field(default_factory=list)    # the splits they come from
    held_out_splits: list[str] = field(default_factory=list)
    same_text_dropped: int = 0                          # other-split queries whose text a held-out query has

    def __len__(self) -> int:
        return len(self.ids)


def _normal(text: str) -> str:
    return " ".join(text.split()).casefold()


def other_split_queries(dataset_dir: str | Path, split: str) -> QueryLog:
    """The queries of ``dataset_dir`` (an ingested dataset) a run scoring ``split`` may train on: those
    the other splits' qrels name, less the held-out ones (module docstring). Empty when the dataset has
    no queries, or no qrels for ``split`` (a label-free run judges queries from the file: none is safe)."""
    directory = Path(dataset_dir)
    manifest = load_dataset_manifest(directory)
    if "queries" not in manifest.collections or split not in manifest.qrels:
        return QueryLog(ids=[], texts=[])
    held_splits = sorted({split, *(s for s in HELD_OUT_SPLITS if s in manifest.qrels)})
    named = {name: set(read_qrels(directory / record.path)[0]) for name, record in manifest.qrels.items()}
    held = set().union(*(named[s] for s in held_splits))
    others = sorted(s for s in named if s not in held_splits)
    wanted = set().union(*(named[s] for s in others)) - held if others else set()
    ids: list[str] = []
    texts: list[str] = []
    for shard in manifest.collections["queries"].shards:
        table = read_text_shard(directory / shard.path)
        ids += table.column("id").to_pylist()
        texts += table.column("text").to_pylist()
    held_texts = {_normal(t) for i, t in zip(ids, texts, strict=True) if i in held}
    kept = [(i, t) for i, t in zip(ids, texts, strict=True) if i in wanted]
    log = [(i, t) for i, t in kept if _normal(t) not in held_texts]
    return QueryLog(ids=[i for i, _ in log], texts=[t for _, t in log],
                    splits=[s for s in others if named[s] - held], held_out_splits=held_splits,
                    same_text_dropped=len(kept) - len(log))


def write_query_log(log: QueryLog, path: str | Path) -> Path:
    """``log`` as a JSONL source (``_id``, ``text``) that `tava ingest` reads; written atomically, and left
    untouched when it already holds the same lines (its ingested copy and vectors stay current)."""
    out = Path(path)
    content = "".join(json.dumps({"_id": i, "text": t}, ensure_ascii=False) + "\n"
                      for i, t in zip(log.ids, log.texts, strict=True))
    if not (out.is_file() and out.read_text(encoding="utf-8") == content):
        with atomic_path(out) as tmp:
            tmp.write_text(content, encoding="utf-8")
    return out
