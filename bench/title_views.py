"""Document titles as label-free query-like views for Stage A (issue 15), dev only.

Many retrieval corpora give each document a title (SciFact, TREC-COVID, NFCorpus, SciDocs -- whose
queries ARE paper titles --, DBPedia, HotpotQA, ArguAna). A title is a short text that names what the
document is about, much as a query asks for it, yet Stage A sees it only glued to the front of its
document (``title + " " + text``): the span views rarely cut it out alone. This trains bench/distill.py's
setting-(b) students (5,000 generic passages + SciFact's documents, with span views) with and without
the 5,183 titles as a dataset of their own, the teacher embedding them once, and scores them on
SciFact's 809 train queries (dev): asymmetric nDCG@10 (student queries against the teacher's documents)
and mean cosine to the teacher's query vectors. Test is not read. The titles here are a training dataset of
their own, so Stage A also cuts span views of them (a title of 4-32 words is mostly its own view): each title
weighs about 2.5 rows, where `tava run`'s title views (DistillConfig.title_views, since this session) are one row
of the span dataset each; `bench/cli_run.py` measures those through the CLI.

    python bench/title_views.py                   # -> bench/results/title_views_dev.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.distill import SciFact, query_scores, run_config  # noqa: E402  (sets the offline environment)
from bench.distill_data import BENCH_HOME, SCIFACT, _write_dataset, prepare  # noqa: E402
from tava_core.distill import distill  # noqa: E402
from tava_core.embed import EmbedConfig, embed_dataset  # noqa: E402
from tava_core.encoders import load_encoder  # noqa: E402
from tava_core.home import TavaHome  # noqa: E402

OUT = ROOT / "bench" / "results" / "title_views_dev.json"
TITLES = "scifact-titles"


def prepare_titles(home: TavaHome) -> tuple[Path, int]:
    """Dataset ``scifact-titles``: each titled SciFact document's title, alone (id ``<doc>#title``); and how
    many there are."""
    corpus = [json.loads(x) for x in (SCIFACT / "corpus.jsonl").read_text().splitlines() if x.strip()]
    titled = [d for d in corpus if (d.get("title") or "").strip()]
    out = _write_dataset(home, TITLES, str(SCIFACT / "corpus.jsonl"), {"texts": {
        "id": [f"{d['_id']}#title" for d in titled], "text": [" ".join(d["title"].split()) for d in titled]}})
    embed_dataset(EmbedConfig(dataset=TITLES, collections=["texts"]), home, show_progress=True)
    return out, len(titled)


def dev_scores(student_dir: Path, dev: SciFact) -> dict[str, float]:
    """Asymmetric nDCG@10 and query cosine on SciFact's train queries (dev)."""
    _, scores = query_scores(load_encoder(str(student_dir), cache=False), dev)
    return {**scores, "teacher_ndcg10": dev.teacher_ndcg(), "queries": len(dev.query_ids)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", default="static,transformer")
    parser.add_argument("--passages", type=int, default=5000)
    parser.add_argument("--home", default=str(BENCH_HOME))
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    started = time.time()
    home = TavaHome(args.home)
    paths = prepare(args.passages, Path(args.home), progress=True)
    titles, title_count = prepare_titles(home)
    dev = SciFact(paths, "train")   # read once: every run is scored on the same queries and vectors
    report: dict[str, Any] = {
        "benchmark": "Stage A with document titles as views of their own (SciFact dev: 809 train queries)",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average_at_start": os.getloadavg()},
        "setting": f"bench/distill.py setting (b): {args.passages} passages + SciFact's documents, span views",
        "runs": []}
    steps = {"static": 400, "transformer": 300}     # route.py's students
    for kind in args.kinds.split(","):
        for with_titles in (False, True):
            name = f"titles-{kind}-b-{args.passages}-{steps[kind]}{'-titles' if with_titles else ''}"
            config = run_config(name, kind, "b", args.passages, steps[kind], False, None, paths)
            if with_titles:
                # titles listed before the passages, so max_texts trims passages, never titles
                config = config.model_copy(update={"datasets": [config.datasets[0], str(titles), *config.datasets[1:]],
                                                   "max_texts": config.max_texts + title_count})
            print(f"== {name}", flush=True)
            record = distill(config, home, progress=True)
            card = json.loads(record.card_path.read_text())
            run = {"name": name, "student": kind, "titles": with_titles, "training_texts": card["corpus"]["texts"],
                   "steps_run": card["training"]["steps_done"], "held_out_cosine": card["validation"]["best_cosine"],
                   **dev_scores(Path(record.output), dev)}
            report["runs"].append(run)
            print(json.dumps(run, indent=1), flush=True)
            report["total_seconds"] = time.time() - started
            Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
