"""Stage B's keep-learned gate: held-out pairs drawn by row (tava's rule) or by source text (dev only).

A `tava run` student trained on its own corpus is adapted on that corpus's documents and their span
views, and the gate keeps the learned map only if mapped held-out span views retrieve more of what the
teacher retrieves than the start did. The held-out rows are drawn one by one, so a held-out span usually
has its source document and its sibling span among the training rows. Question: is the gate's gain an
artefact of that? Here each run's Stage B is re-trained on exactly the pipeline's vectors, once with
tava's split and once with whole source texts held out (a text and all its span views on one side), with
no gate (deterministic, so the gated run follows the same path), and each learned map is scored on the
corpus's dev queries. Reads the runs `bench/cli_run.py` left in ``--home`` (`artifacts/adapters/<run>`,
its vectors and qrels). Only dev splits: SciFact train, the built-in data (its only split).

    python bench/adapt_holdout_groups.py --home /tmp/tava-cli-bench \
        --run builtin-static-ctx:builtin:test --run builtin-static-m2v:builtin:test \
        --run scifact-static-ctx:scifact:train

Results: bench/results/adapt_holdout_groups_dev.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
from shared_data import ROOT, write_result  # noqa: E402  (sets sys.path)

OUT = ROOT / "bench" / "results" / "adapt_holdout_groups_dev.json"


def source_groups(keys: list[str]) -> np.ndarray:
    """One group per source text: ``<dataset>/<collection>/<id>`` and its spans ``.../<id>#span<k>``."""
    return np.array([key.split("/", 2)[2].split("#span")[0] for key in keys])


def group_split(groups: np.ndarray):  # type: ignore[no-untyped-def]
    """A drop-in for ``split_paired`` that holds out whole source texts (as many rows as tava holds out)."""
    from tava_core.adapter.data import AdapterData

    def split(x: np.ndarray, y: np.ndarray, config: Any, seed: int = 0,
              query_like: np.ndarray | None = None) -> AdapterData:
        _, inverse = np.unique(groups, return_inverse=True)
        order = np.random.default_rng(seed).permutation(inverse.max() + 1)
        n_hold = int(min(config.holdout_max, max(2, round(len(x) * config.holdout_fraction))))
        sizes = np.bincount(inverse)[order]
        held = np.isin(inverse, order[: int(np.searchsorted(np.cumsum(sizes), n_hold)) + 1])
        hold, train = np.flatnonzero(held), np.flatnonzero(~held)
        mask = None if query_like is None else np.asarray(query_like, dtype=bool)
        return AdapterData(x[train], y[train], x[hold], y[hold], paired=True,
                           query_like=None if mask is None else mask[train],
                           heldout_query_like=None if mask is None else mask[hold])
    return split


def read_shards(directory: Path) -> tuple[list[str], np.ndarray]:
    """Ids and vectors of a vector directory's Parquet shards (query directories have no manifest)."""
    from tava_core.io import read_vector_shard

    shards = [read_vector_shard(shard) for shard in sorted(directory.glob("*.parquet"))]
    return [i for ids, _ in shards for i in ids], np.concatenate([vectors for _, vectors in shards])


def study(home: Path, run: str, dataset: str, split: str) -> dict[str, Any]:
    import tava_core.adapter.run as stage_b
    from tava_core.adapter.config import AdapterConfig
    from tava_core.adapter.data import join_pairs, query_like_rows, read_side
    from tava_core.evaluate.data import read_qrels
    from tava_core.evaluate.metrics import paired_bootstrap
    from tava_core.route.curves import per_query_ndcg

    report = json.loads((home / "artifacts" / "adapters" / run / "report.json").read_text())
    margin = report["config"]["keep_learned_margin"]  # the gate the run had; replayed below from its values
    config = AdapterConfig.model_validate({**report["config"], "keep_learned_margin": None})
    student = read_side(config.student_vectors, "student")
    teacher = read_side(config.teacher_vectors, "teacher")
    keys, x, y = join_pairs(student, teacher)
    groups = source_groups(keys)

    vectors = home / "vectors" / dataset
    query_dir = vectors / f"queries-{split}" if (vectors / f"queries-{split}").exists() else vectors / "queries"
    query_ids, queries = read_shards(query_dir / Path(config.student_vectors[0]).name)
    doc_ids, documents = read_shards(vectors / "corpus" / Path(config.teacher_vectors[0]).name)
    qrels, _ = read_qrels(home / "data" / dataset / "qrels" / f"{split}.tsv")
    judged = [i for i, q in enumerate(query_ids) if q in qrels]
    queries, query_ids = queries[judged], [query_ids[i] for i in judged]
    alone = per_query_ndcg(queries, documents, query_ids, doc_ids, qrels)

    row: dict[str, Any] = {"run": run, "dataset": dataset, "split": split, "pairs": len(keys),
                           "source_texts": int(len(set(groups))), "queries": len(query_ids),
                           "student_alone_ndcg_at_10": float(alone.mean()), "margin": margin}
    original = stage_b.split_paired
    try:
        for name, splitter in (("by_row", original), ("by_source_text", group_split(groups))):
            stage_b.split_paired = splitter
            result = stage_b.train_adapter_from_arrays(x, y, config, query_like=query_like_rows(keys)).result
            learned = per_query_ndcg(result.adapter.map_numpy(queries), documents, query_ids, doc_ids, qrels)
            gain = float(result.keep["learned_value"] - result.keep["start_value"])
            row[name] = {"metric": result.keep["metric"], "start": result.keep["start"],
                         "start_value": result.keep["start_value"], "learned_value": result.keep["learned_value"],
                         "gate_keeps_learned": gain > row["margin"], "best_step": result.best_step,
                         "learned_ndcg_at_10": float(learned.mean()),
                         "learned_minus_alone": paired_bootstrap(learned, alone)}
            print(run, name, json.dumps(row[name]), flush=True)
    finally:
        stage_b.split_paired = original
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="the tava home bench/cli_run.py used")
    parser.add_argument("--run", action="append", required=True, help="RUN:DATASET:SPLIT (dev splits only)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    rows = {}
    for spec in args.run:
        run, dataset, split = spec.split(":")
        if dataset == "scifact" and split == "test":
            raise SystemExit("dev only: SciFact's test split is read once, not here")
        rows[run] = study(args.home, run, dataset, split)
    write_result(args.out, {"rows": rows, "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                                       "threads": args.threads, "load": os.getloadavg()}})


if __name__ == "__main__":
    main()
