"""Texts and cached teacher vectors for bench/transfer.py (both teachers, SciFact + built-in data).

all-mpnet-base-v2 runs at a fraction of MiniLM's speed on this CPU, so every teacher vector is
computed once and cached as ``.npy`` chunks under $TAVA_TRANSFER_CACHE (default
/tmp/tava-transfer-cache/<encoder>-<fingerprint>/<set>/); ../shared/data's mpnet vectors of
SciFact and of 20k shuffled passages are used as they are (never recomputed). A killed run keeps
its finished chunks.

    python bench/transfer_data.py            # prepare everything the table needs
"""
from __future__ import annotations

import gzip
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from shared_data import MPNET_VECTORS, PASSAGES, ROOT, SCIFACT, SHARED  # noqa: E402,F401 - sets sys.path

CACHE = Path(os.environ.get("TAVA_TRANSFER_CACHE", "/tmp/tava-transfer-cache"))
BENCH_HOME = Path(os.environ.get("TAVA_BENCH_HOME", "/tmp/tava-transfer-home"))
TEACHERS = ("all-MiniLM-L6-v2", "all-mpnet-base-v2")
CHUNK = 500


@dataclass
class TextSet:
    """Ids and texts (as the teacher embeds them) of one collection."""

    name: str
    ids: list[str]
    texts: list[str]
    kind: str = "document"   # "query" or "document"


@dataclass
class Retrieval:
    """One evaluation set: documents, queries per split, qrels per split."""

    name: str
    docs: TextSet
    queries: TextSet
    qrels: dict[str, dict[str, dict[str, int]]]   # split -> qid -> did -> grade


def _qrels(path: Path) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for line in path.read_text().splitlines()[1:]:
        qid, did, score = line.split("\t")
        out.setdefault(qid, {})[did] = int(score)
    return out


def _jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def scifact() -> Retrieval:
    """All 5,183 documents (title + " " + text, as the shared vectors), all 1,109 queries in file order."""
    corpus = _jsonl(SCIFACT / "corpus.jsonl")
    queries = _jsonl(SCIFACT / "queries.jsonl")
    docs = TextSet("scifact-corpus", [str(r["_id"]) for r in corpus],
                   [((r.get("title") or "") + " " + (r.get("text") or "")).strip() for r in corpus])
    qs = TextSet("scifact-queries", [str(r["_id"]) for r in queries], [r["text"] for r in queries], "query")
    return Retrieval("scifact", docs, qs, {s: _qrels(SCIFACT / "qrels" / f"{s}.tsv") for s in ("train", "test")})


def builtin() -> tuple[Retrieval, TextSet]:
    """The built-in docstring benchmark (split 'test') and its unlabeled training text."""
    from tava_core.datasets.builtin import ensure_builtin_source
    from tava_core.home import TavaHome

    root, _ = ensure_builtin_source(TavaHome(BENCH_HOME))
    corpus, queries, unlabeled = (_jsonl(root / f"{n}.jsonl") for n in ("corpus", "queries", "unlabeled"))

    def text(r: dict) -> str:
        return (f"{r['title']} {r['text']}" if r.get("title") else r["text"]).strip()

    docs = TextSet("builtin-corpus", [str(r["_id"]) for r in corpus], [text(r) for r in corpus])
    qs = TextSet("builtin-queries", [str(r["_id"]) for r in queries], [r["text"] for r in queries], "query")
    extra = TextSet("builtin-unlabeled", [str(r["_id"]) for r in unlabeled], [text(r) for r in unlabeled])
    return Retrieval("builtin", docs, qs, {"test": _qrels(root / "qrels" / "test.tsv")}), extra


def passages(count: int) -> TextSet:
    """The first ``count`` passages of the shared vectors' shuffle (its 20,000 first), then (beyond
    20,000: MiniLM only, mpnet has no vectors of them) the other passages in file order."""
    import pyarrow.parquet as pq

    order = pq.read_table(MPNET_VECTORS / "passages_shuffled_first20000.parquet", columns=["id"]).column("id").to_pylist()
    by_id = {r["_id"]: r["text"] for r in _jsonl(PASSAGES)}
    if count > len(order):
        shuffled = set(order)
        order += [i for i in by_id if i not in shuffled]
    ids = order[:count]
    return TextSet(f"passages{count}", ids, [by_id[i] for i in ids])


def spans(texts: TextSet, views: int = 1, seed: int = 0) -> TextSet:
    """Short label-free views (tava's own span maker): query-like training text."""
    from tava_core.distill.spans import make_spans

    ids, out = make_spans(texts.ids, texts.texts, views, seed)
    return TextSet(f"{texts.name}.spans{views}", ids, out)


def _shared_mpnet(name: str) -> tuple[list[str], np.ndarray] | None:
    import pyarrow.parquet as pq

    files = {"scifact-corpus": "scifact/corpus.parquet", "scifact-queries": "scifact/queries.parquet"}
    if name in files:
        table = pq.read_table(MPNET_VECTORS / files[name])
    elif name.startswith("passages") and not name.endswith(tuple(f"spans{i}" for i in range(1, 9))) \
            and int(name.removeprefix("passages")) <= 20000:
        table = pq.read_table(MPNET_VECTORS / "passages_shuffled_first20000.parquet")
    else:
        return None
    ids = table.column("id").to_pylist()
    vectors = table.column("vector").combine_chunks().values.to_numpy(zero_copy_only=False).reshape(len(ids), -1)
    vectors = vectors.astype(np.float32)
    return ids, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def teacher_vectors(teacher: str, texts: TextSet, *, log: bool = True, compute: bool = True) -> np.ndarray | None:
    """The teacher's vectors of ``texts`` (shared file, else cached chunks, else computed now;
    None when a chunk is missing and ``compute`` is off)."""
    if teacher == "all-mpnet-base-v2":
        shared = _shared_mpnet(texts.name)
        if shared is not None:
            position = {i: k for k, i in enumerate(shared[0])}
            return shared[1][[position[i] for i in texts.ids]]
    from tava_core.encoders import load_encoder

    encoder = load_encoder(teacher)
    folder = CACHE / f"{teacher}-{encoder.fingerprint[:12]}" / texts.name
    folder.mkdir(parents=True, exist_ok=True)
    chunks = []
    for start in range(0, len(texts.texts), CHUNK):
        path = folder / f"{start:07d}-{min(start + CHUNK, len(texts.texts)):07d}.npy"
        if not path.is_file() and not compute:
            return None
        if not path.is_file():
            began = time.perf_counter()
            block = encoder.encode(texts.texts[start:start + CHUNK], kind=texts.kind, batch_size=32)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, block.astype(np.float32))
            os.replace(tmp, path)
            if log:
                print(f"  {teacher} {texts.name} {start + len(block)}/{len(texts.texts)} "
                      f"({len(block) / (time.perf_counter() - began):.0f}/s)", flush=True)
        chunks.append(np.load(path))
    return np.concatenate(chunks) if chunks else np.zeros((0, encoder.dim), np.float32)


def main() -> None:
    import argparse

    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=4000)
    parser.add_argument("--teachers", nargs="+", default=list(TEACHERS))
    args = parser.parse_args()
    torch.set_num_threads(2)
    sci, (built, unlabeled) = scifact(), builtin()
    generic = passages(args.passages)
    mpnet, minilm = "all-mpnet-base-v2", "all-MiniLM-L6-v2"
    # Cheapest and most needed first: on a shared 2-core CPU mpnet embeds ~1 document/s, so its
    # span views and the built-in corpus come last (the bench trains mpnet students without spans).
    jobs = [(mpnet, built.queries), (minilm, sci.queries), (minilm, built.queries), (minilm, built.docs),
            (minilm, generic), (minilm, spans(generic)), (minilm, sci.docs), (mpnet, built.docs),
            (minilm, spans(sci.docs)), (minilm, unlabeled), (minilm, spans(unlabeled))]
    for teacher, texts in jobs:
        if teacher in args.teachers:
            teacher_vectors(teacher, texts)
            print(f"{teacher}: {texts.name} ready ({len(texts.ids)})", flush=True)


if __name__ == "__main__":
    main()
