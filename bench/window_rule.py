"""Where windowed reading changes a student's queries: per `tava run` student, the window its training texts
give (tava_core/encoders/windows.py: the 95th percentile of their token counts, cut at max_length) and how many
of the collection's queries are longer than it. A corpus whose every query fits in the window gets the same
query vectors as before windows existed; only its Stage B inputs and a blend member's targets (the student's
vectors of long training texts) can move. Labels are not read; nothing is chosen here.

    python bench/window_rule.py --run /work/cache/s50/cli-home scifact-reversed-mpnet bench-data/scifact-reversed \
        --run /work/cache/s47/cli-home scifact-logsplit-mpnet-std /work/shared/data/beir/scifact
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from shared_data import ROOT, write_result

from tava_core.distill.run import student_window

OUT = ROOT / "bench" / "results" / "window_rule.json"


def training_texts(card: dict[str, Any]) -> list[str]:
    """The texts a student was trained on, from its model card's sources (the home's Parquet shards)."""
    texts: list[str] = []
    for source in card["corpus"]["sources"]:
        for shard in sorted((Path(source["dataset_dir"]) / source["collection"]).glob("shard-*.parquet")):
            texts += pq.read_table(shard, columns=["text"]).column("text").to_pylist()
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", nargs=3, action="append", required=True, metavar=("HOME", "STUDENT", "BEIR_DIR"),
                        help="a tava home, a student's name under its artifacts, the BEIR directory of its queries "
                             "(relative to the home or absolute)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    from transformers import AutoTokenizer

    report: dict[str, Any] = {"benchmark": "window_rule", "runs": {}}
    for home, name, beir in args.run:
        student_dir = Path(home) / "artifacts" / "students" / name
        card = json.loads((student_dir / "model_card.json").read_text())
        max_length = int(card["training"]["config"]["max_length"])
        window = student_window(student_dir, training_texts(card), max_length)
        queries = [json.loads(line)["text"] for line in (Path(home) / beir / "queries.jsonl").open()]
        tokenizer = AutoTokenizer.from_pretrained(str(student_dir))
        counts = np.array([len(ids) for ids in tokenizer(queries)["input_ids"]])
        row = {"window": window, "queries": len(queries),
               "query_tokens": {"p50": int(np.median(counts)), "p99": int(np.percentile(counts, 99)),
                                "max": int(counts.max())},
               "queries_longer_than_window": int((counts > window["window_tokens"]).sum())}
        report["runs"][name] = row
        print(f"{name:<34} window {window['window_tokens']:>4} (training p50 {window['training_tokens']['p50']}, "
              f"p95 {window['training_tokens']['p95']}); queries: median {row['query_tokens']['p50']}, max "
              f"{row['query_tokens']['max']} tokens, {row['queries_longer_than_window']} of {len(queries)} windowed",
              flush=True)
    write_result(args.out, report)


if __name__ == "__main__":
    main()
