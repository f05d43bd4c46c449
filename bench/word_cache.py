"""A static student's tokens from a per-word cache (``tava_core/encoders/word_cache.py``) against the whole
tokenizer pipeline, side by side in one process (issues 18 and 16).

A static vector is a mean of table rows, so the tokenizer is most of its cost: on a Zen 2 EPYC it took
40 of the 49 µs of a SciFact query at batch 64 (bench/results/route_fastpath_zen2_dev.json). The cache
looks each whitespace-separated word's ids up in a dict and runs the tokenizer only on words it has not
seen. Calls, interleaved in the same rounds (bench/route_cost.py: rotating order, median of per-round
ratios), on SciFact queries (dev: train; test: test) and documents:

- ``student, cached`` (shipped) and ``student, tokenizer`` (the cache switched off: the code before);
- ``student, cache emptied every batch``: every word a miss, the worst case (a cold service);
- ``model2vec``: model2vec's own encoder on the same directory (the fastest static runtime before);
- ``routed default``: the router with nothing sent to the teacher (budget 0; the fused static path),
  with the cache and without: the cost of a query the router keeps, issue 16's ratio.

Batches: 1 (the first 128 queries one at a time), 64 (every query of the split) and documents (2,000
SciFact abstracts, ``encode``'s default chunk).

``training`` (Stage A's static student tokenises every batch it trains on, ``StaticStudent.prepare``):
batches of 64 texts drawn, seeded, from what Stage A trains on: SciFact's documents and two span views of
each (``tava_core.distill.spans.make_spans``, Stage A's span maker); ``prepare`` alone, and a whole training step (prepare, forward, an MSE to fixed random
targets, backward, SparseAdam on the table, Adam on the token weights) with the cache and without. Vectors are checked equal first (cached against not).
Fixture: bench/route_fastpath_data.py (a static student with MiniLM's token table; cost depends on
shapes and tokens, not on training). Wall clock.

    python bench/word_cache.py --split dev    # -> bench/results/word_cache_dev.json
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.route_cost import interleaved_seconds, ratio  # noqa: E402
from bench.route_fastpath import build_routers  # noqa: E402
from bench.route_fastpath_data import build_fixture  # noqa: E402
from bench.shared_data import SCIFACT, write_result  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "word_cache_dev.json"
ROUNDS = 11
SINGLE_QUERIES = 128
DOCUMENTS = 2000


def without_cache(encoder: Any, call: Callable[[list[str]], Any]) -> Callable[[list[str]], Any]:
    """``call`` with ``encoder``'s word cache switched off around it (the tokenizer on whole texts)."""
    def uncached(texts: list[str]) -> Any:
        encoder.word_cache.enabled = False
        try:
            return call(texts)
        finally:
            encoder.word_cache.enabled = True
    return uncached


def emptied(encoder: Any) -> Callable[[list[str]], Any]:
    """``encoder`` (an instance of its own, so the others' caches stay warm) with its word cache emptied
    before every batch: every word of the batch a miss."""
    def cold(texts: list[str]) -> Any:
        encoder.word_cache.words.clear()
        return encoder.encode(texts, kind="query")
    return cold


@functools.cache
def scifact_documents() -> tuple[list[str], list[str]]:
    """SciFact's document ids and texts (title + abstract), read once for both sections."""
    rows = [json.loads(line) for line in (SCIFACT / "corpus.jsonl").open()]
    return [str(r["_id"]) for r in rows], [r["title"] + " " + r["text"] for r in rows]


def training_section(rounds: int) -> dict[str, Any]:
    """``StaticStudent.prepare`` and one training step, cached against the tokenizer (the docstring)."""
    import random

    import torch
    from tokenizers import Tokenizer

    from tava_core.distill.spans import make_spans
    from tava_core.distill.students import StaticStudent
    from tava_core.encoders import resolve_model_path

    tokenizer = Tokenizer.from_file(str(resolve_model_path("all-MiniLM-L6-v2") / "tokenizer.json"))
    ids, documents = scifact_documents()
    texts = documents + make_spans(ids, documents, views=2, seed=0)[1]
    rng = random.Random(0)
    batches = [rng.sample(texts, 64) for _ in range(48)]
    torch.manual_seed(0)
    student = StaticStudent(torch.randn(tokenizer.get_vocab_size(), 384) * 0.1, tokenizer, None, max_length=128)
    assert student.word_cache.enabled
    targets = torch.randn(64, 384)
    sparse = torch.optim.SparseAdam([student.embeddings], lr=1e-3)
    dense = torch.optim.Adam([student.token_weights], lr=1e-3)

    def prepare(batch: list[str]) -> Any:
        return student.prepare(batch)

    def step(batch: list[str]) -> Any:
        out = student(student.prepare(batch))
        loss = torch.nn.functional.mse_loss(out, targets[: len(batch)])
        sparse.zero_grad()
        dense.zero_grad()
        loss.backward()
        sparse.step()
        dense.step()
        return loss

    same = all(torch.equal(student.prepare(b)["input_ids"], without_cache(student, prepare)(b)["input_ids"])
               for b in batches)
    flat = [t for b in batches for t in b]
    calls = {"prepare, cached": prepare, "prepare, tokenizer": without_cache(student, prepare),
             "train step, cached": step, "train step, tokenizer": without_cache(student, step)}
    result = interleaved_seconds(calls, flat, batch_size=64, rounds=rounds)
    r = {"prepare: tokenizer / cached (speed-up)": ratio(result, "prepare, tokenizer", "prepare, cached"),
         "train step: tokenizer / cached (speed-up)": ratio(result, "train step, tokenizer", "train step, cached")}
    us = {k: round(v["median"] * 1e6 * 64, 1) for k, v in result["seconds_per_query"].items()}
    print("training, µs a batch of 64", us)
    print("training", {k: round(v["median_of_round_ratios"], 2) for k, v in r.items()})
    return {"texts": len(texts), "batches": len(batches), "same_ids": same, "microseconds_per_batch_of_64_median": us,
            "ratios_median_of_rounds": {k: round(v["median_of_round_ratios"], 3) for k, v in r.items()},
            "ratios": r, "measured": result}


def encode_section(split: str, rounds: int) -> dict[str, Any]:
    """The static student, routed or not, cached against the tokenizer, beside model2vec (the docstring)."""
    from model2vec import StaticModel

    from tava_core.encoders import load_encoder
    from tava_core.route.config import RouterSettings

    fx = build_fixture()
    queries = list(fx.test_queries if split == "test" else fx.dev_queries)
    documents = scifact_documents()[1][:DOCUMENTS]
    student, built = build_routers(fx, ["default"], settings={"default": RouterSettings()})
    assert student.word_cache.enabled, "the fixture's tokenizer should be word-local (WordPiece, BERT-style)"
    router = built["default"]["fast"]
    theirs = StaticModel.from_pretrained(str(fx.student_dir))

    def alone(t: list[str]) -> Any:
        return student.encode(t, kind="query")

    def routed(t: list[str]) -> Any:
        return router.route(t, batch_size=len(t))

    calls: dict[str, Callable[[list[str]], Any]] = {
        "student, cached": alone, "student, tokenizer": without_cache(student, alone),
        "student, cache emptied every batch": emptied(load_encoder(str(fx.student_dir), cache=False)),
        "model2vec": lambda t: theirs.encode(t, show_progress_bar=False),
        "routed default, cached": routed, "routed default, tokenizer": without_cache(student, routed)}
    # the cache changes no vector and no confidence
    check = queries[:200] + documents[:200]
    agreement = {
        "max_abs_vector_difference": float(np.abs(alone(check) - without_cache(student, alone)(check)).max()),
        "max_abs_vector_difference_one_at_a_time": float(max(
            np.abs(alone([t]) - without_cache(student, alone)([t])).max() for t in check[:100])),
        "max_abs_confidence_difference": float(np.abs(
            routed(check)["confidence"] - without_cache(student, routed)(check)["confidence"]).max())}
    print(agreement)
    runs = {"batch 1": (queries[:SINGLE_QUERIES], 1, calls),
            "batch 64": (queries, 64, calls),
            "documents": (documents, 1024, {k: v for k, v in calls.items() if not k.startswith("routed")})}
    measured: dict[str, Any] = {}
    ratios: dict[str, Any] = {}
    for label, (texts, batch, run_calls) in runs.items():
        result = interleaved_seconds(run_calls, texts, batch_size=batch, rounds=rounds)
        measured[label] = result
        r = {"tokenizer / cached (speed-up)": ratio(result, "student, tokenizer", "student, cached"),
             "tokenizer / emptied cache": ratio(result, "student, tokenizer", "student, cache emptied every batch"),
             "model2vec / cached": ratio(result, "model2vec", "student, cached"),
             "model2vec / tokenizer": ratio(result, "model2vec", "student, tokenizer")}
        if "routed default, cached" in run_calls:
            r["routed / student, cached (issue 16)"] = ratio(result, "routed default, cached", "student, cached")
            r["routed / student, tokenizer (before)"] = ratio(result, "routed default, tokenizer", "student, tokenizer")
            r["routed tokenizer / routed cached (speed-up)"] = ratio(result, "routed default, tokenizer",
                                                                     "routed default, cached")
        ratios[label] = r
        print(label, {k: round(v["median"] * 1e6, 1) for k, v in result["seconds_per_query"].items()})
        print(label, {k: round(v["median_of_round_ratios"], 2) for k, v in r.items()})
    return {"split": f"SciFact {'test' if split == 'test' else 'train (dev)'} queries; {len(documents)} SciFact documents",
            "agreement": agreement,
            "microseconds_per_text_median": {label: {k: round(v["median"] * 1e6, 1)
                                                     for k, v in m["seconds_per_query"].items()}
                                             for label, m in measured.items()},
            "ratios_median_of_rounds": {label: {k: round(v["median_of_round_ratios"], 3) for k, v in r.items()}
                                        for label, r in ratios.items()},
            "ratios": ratios, "measured": measured}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=("dev", "test"), default="dev")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--out", default=None)
    parser.add_argument("--only", nargs="*", choices=("encode", "training"), default=["encode", "training"])
    args = parser.parse_args()
    import torch

    started = time.time()
    report: dict[str, Any] = {
        "benchmark": "a static student's tokens from a per-word cache against the tokenizer on whole texts: encoding "
                     "(alone, routed with nothing sent to the teacher, beside model2vec's encoder) and Stage A's "
                     "training steps",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch_threads": torch.get_num_threads()}}
    if "encode" in args.only:
        report["encode"] = encode_section(args.split, args.rounds)
    if "training" in args.only:
        report["training"] = training_section(args.rounds)
    report["machine"]["load_average_end"] = os.getloadavg()
    report["total_seconds"] = round(time.time() - started, 1)
    out = Path(args.out) if args.out else (RESULTS if args.split == "dev" else RESULTS.with_name("word_cache.json"))
    write_result(out, report)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
