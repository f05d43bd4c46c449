"""`tava run` as a user runs it: the CLI in a subprocess, its printed table parsed into JSON.

The other benchmarks call the library; this one measures what a user (or anyone re-measuring
tava's figures on another collection) gets from the command line, with the recipe's options
spelled out exactly as they would type them. Every run of one ``--home`` shares the teacher's
vectors (ingest and embedding are cached by content), so only training and evaluation repeat.

    # choose on dev: SciFact's 809 train queries (--split train) and the built-in data
    python bench/cli_run.py --phase dev --dataset scifact --tag base
    python bench/cli_run.py --phase dev --dataset scifact --tag generic -- --unlabeled generic
    # report once: the same run (everything reused but the evaluation) on SciFact test
    python bench/cli_run.py --phase test --dataset scifact --tag generic -- --unlabeled generic

``scifact`` and ``generic`` (the shared unlabeled passages) are shorthands for paths under
../shared/data, ``scifact-1500`` for a small collection cut from SciFact (``small_scifact``),
``passages-known-item`` for a large one of another kind (``known_item``: 40,000 passages, 10-word
known-item queries), ``scifact-reversed`` for SciFact turned around (``reversed_scifact``: abstracts as the
queries, claims as the documents: long queries, short documents), ``passages-known-item-mpnet`` for one of 10,000 passages whose all-mpnet-base-v2
vectors the shared data holds (``-- --teacher all-mpnet-base-v2 --teacher-document-vectors
mpnet-passage-vectors`` imports them); every other option after ``--`` goes to `tava run` unchanged. Results land in
bench/results/cli_run.json under ``PHASE/DATASET/TAG`` (only the phase run is printed).

Since session 53 `tava run` trains on the texts of the queries of the splits it does not score (never a
``test`` split's; `tava_core/ingest/query_log.py`). A test phase on SciFact therefore trains on its 809 train
queries' texts, which its dev phase scores and so cannot: the test phase trains its own student instead of
reusing the dev phase's. ``-- --no-other-split-queries`` runs as before (rows from sessions before 53).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from shared_data import MPNET_VECTORS, PASSAGES, ROOT, SCIFACT, add_run  # noqa: E402  (sets sys.path)

OUT = ROOT / "bench" / "results" / "cli_run.json"
MPNET_PASSAGES = MPNET_VECTORS / "passages_shuffled_first20000.parquet"
SHORTHANDS = {"scifact": str(SCIFACT), "generic": str(PASSAGES), "builtin": "builtin",
              "mpnet-passage-vectors": str(MPNET_PASSAGES)}
ROW = re.compile(r"^\| (?P<system>[^|]+?) \| (?P<modes>[^|]+?) \| (?P<ndcg>[0-9.]+) \| (?P<share>[0-9.]+)% \| "
                 r"(?P<qps>[0-9.]+) \| (?P<speedup>[0-9.]+)x \|$")
STEP = re.compile(r"^\| (?P<step>[^|]+?) \| (?P<seconds>[0-9.]+) \| (?P<work>[^|]*?) \|$")


SMALL_SCIFACT = "scifact-1500"
KNOWN_ITEM = "passages-known-item"
KNOWN_ITEM_MPNET = "passages-known-item-mpnet"   # 10,000 of the passages with shared mpnet vectors
REVERSED_SCIFACT = "scifact-reversed"  # abstracts ask, claims answer
LOG_SCIFACT = "scifact-logsplit"      # SciFact scored on half of its dev queries ...
QUERY_LOG = "scifact-querylog"        # ... the other half as a query log (unlabeled text)


def small_scifact(home: str, documents: int = 1500, seed: int = 0) -> str:
    """A small collection from SciFact (``scifact-1500``): every document a train or test query judges
    relevant (666) plus random others up to ``documents``, with both qrels splits -- a corpus under the
    ~2,200 documents a static student's 2,000 x 64 texts need within 20 passes, so `tava run` fits its
    steps (Stage A's fit_steps). Written once under ``<home>/bench-data`` (outside the project)."""
    import random

    out = Path(home) / "bench-data" / SMALL_SCIFACT
    if (out / "qrels" / "test.tsv").is_file():
        return str(out)
    qrels = {split: (SCIFACT / "qrels" / f"{split}.tsv").read_text().splitlines() for split in ("train", "test")}
    relevant = {line.split("\t")[1] for lines in qrels.values() for line in lines[1:]}
    corpus = [json.loads(line) for line in (SCIFACT / "corpus.jsonl").open()]
    others = sorted(d["_id"] for d in corpus if d["_id"] not in relevant)
    keep = relevant | set(random.Random(seed).sample(others, documents - len(relevant)))
    tmp = out.with_name(out.name + ".tmp")
    (tmp / "qrels").mkdir(parents=True, exist_ok=True)
    (tmp / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus if d["_id"] in keep))
    (tmp / "queries.jsonl").write_text((SCIFACT / "queries.jsonl").read_text())
    for split, lines in qrels.items():
        (tmp / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    tmp.rename(out)
    return str(out)


def known_item(home: str, documents: int = 40000, queries: int = 300, seed: int = 7, *,
               name: str = KNOWN_ITEM, only_ids: list[str] | None = None) -> str:
    """A large collection of another kind (``passages-known-item``): ``documents`` of the shared
    unlabeled passages (reviews, news, fiction, questions; shuffled with ``seed``) as the corpus, and
    per split (train = dev, test) ``queries`` known-item queries: a random 10-word window of a
    random corpus passage of at least 16 words, that passage its one relevant document. Nothing in
    tava was tuned on it; it is 8x SciFact's corpus, so the student's queries meet teacher documents
    packed far more densely. Written once under ``<home>/bench-data`` (outside the project).

    ``only_ids`` keeps the passages with those ids (in that order) before the shuffle's first ``documents``
    are taken: ``passages-known-item-mpnet`` is built from the 20,000 passages the shared data has
    all-mpnet-base-v2 vectors of, so `tava run --teacher-document-vectors` imports its corpus."""
    import gzip
    import random

    out = Path(home) / "bench-data" / name
    if (out / "qrels" / "test.tsv").is_file():
        return str(out)
    rng = random.Random(seed)
    with gzip.open(PASSAGES, "rt") as handle:
        rows = [json.loads(line) for line in handle]
    if only_ids is not None:
        by_id = {row["_id"]: row for row in rows}
        rows = [by_id[i] for i in only_ids]
    rng.shuffle(rows)
    corpus = rows[:documents]
    long_enough = [r for r in corpus if len(r["text"].split()) >= 16]
    picked = random.Random(seed + 1).sample(long_enough, 2 * queries)
    tmp = out.with_name(out.name + ".tmp")
    (tmp / "qrels").mkdir(parents=True, exist_ok=True)
    (tmp / "corpus.jsonl").write_text("".join(json.dumps({"_id": r["_id"], "title": "", "text": r["text"]}) + "\n"
                                              for r in corpus))
    windows = random.Random(seed + 2)
    lines, qrels = [], {"train": ["query-id\tcorpus-id\tscore"], "test": ["query-id\tcorpus-id\tscore"]}
    for i, row in enumerate(picked):
        words = row["text"].split()
        start = windows.randrange(0, len(words) - 10)
        lines.append(json.dumps({"_id": f"q{i}", "text": " ".join(words[start:start + 10])}) + "\n")
        qrels["train" if i < queries else "test"].append(f"q{i}\t{row['_id']}\t1")
    (tmp / "queries.jsonl").write_text("".join(lines))
    for split, split_lines in qrels.items():
        (tmp / "qrels" / f"{split}.tsv").write_text("\n".join(split_lines) + "\n")
    tmp.rename(out)
    return str(out)


def reversed_scifact(home: str) -> str:
    """SciFact turned around (``scifact-reversed``): the queries are the abstracts some claim cites
    (title + " " + text, ~200 words), the corpus is the 1,109 claims (~12 words), and an abstract's
    relevant documents are every claim that cites it. An abstract judged by a test claim is a test
    query, every other judged abstract a dev (train) query. Long queries against short documents: the
    shape the issue's weakest collection had (queries long and unlike the documents), which nothing
    in tava was chosen on -- span views are short, so a student sees no text this long in training.
    Written once under ``<home>/bench-data``."""
    out = Path(home) / "bench-data" / REVERSED_SCIFACT
    if (out / "qrels" / "test.tsv").is_file():
        return str(out)
    claims = [json.loads(line) for line in (SCIFACT / "queries.jsonl").open()]
    abstracts = {d["_id"]: d for d in map(json.loads, (SCIFACT / "corpus.jsonl").open())}
    cited: dict[str, dict[str, set[str]]] = {"train": {}, "test": {}}
    for split in ("train", "test"):
        for line in (SCIFACT / "qrels" / f"{split}.tsv").read_text().splitlines()[1:]:
            claim, doc, _ = line.split("\t")
            cited[split].setdefault(doc, set()).add(claim)
    citing = {doc: cited["train"].get(doc, set()) | cited["test"].get(doc, set())
              for doc in set(cited["train"]) | set(cited["test"])}
    tmp = out.with_name(out.name + ".tmp")
    (tmp / "qrels").mkdir(parents=True, exist_ok=True)
    (tmp / "corpus.jsonl").write_text("".join(json.dumps({"_id": c["_id"], "title": "", "text": c["text"]}) + "\n"
                                              for c in claims))
    (tmp / "queries.jsonl").write_text("".join(
        json.dumps({"_id": f"a{doc}", "text": (abstracts[doc]["title"] + " " + abstracts[doc]["text"]).strip()}) + "\n"
        for doc in sorted(citing, key=int)))
    for split in ("train", "test"):
        docs = sorted((d for d in citing if (d in cited["test"]) == (split == "test")), key=int)
        (tmp / "qrels" / f"{split}.tsv").write_text("\n".join(
            ["query-id\tcorpus-id\tscore"] + [f"a{d}\t{c}\t1" for d in docs for c in sorted(citing[d], key=int)]) + "\n")
    tmp.rename(out)
    return str(out)


def query_log_split(home: str, seed: int = 0) -> tuple[str, str]:
    """A query log, label-free: SciFact's 809 dev (train) queries halved with ``seed``. One half is the log
    (``scifact-querylog``: a jsonl of their texts, once each; `tava run --unlabeled-weight` weighs it), the
    other is scored (``scifact-logsplit``: SciFact with qrels/train.tsv holding that half only; test
    unchanged). The way a platform that serves the teacher today has yesterday's queries: never labelled,
    never the ones scored. Written once under ``<home>/bench-data``.

    Sessions 44 and 47 wrote each query 4 times (``scifact-querylog-x4.jsonl``) to weigh the log; ingestion
    drops repeated texts (``dedupe_texts``), so those runs trained on each query once, as this file has it."""
    import random
    import shutil

    out, log = Path(home) / "bench-data" / LOG_SCIFACT, Path(home) / "bench-data" / f"{QUERY_LOG}.jsonl"
    lines = (SCIFACT / "qrels" / "train.tsv").read_text().splitlines()
    ids = sorted({line.split("\t")[0] for line in lines[1:]})
    logged = set(random.Random(seed).sample(ids, len(ids) // 2))
    if not (out / "qrels" / "test.tsv").is_file():
        tmp = out.with_name(out.name + ".tmp")
        (tmp / "qrels").mkdir(parents=True, exist_ok=True)
        for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
            shutil.copyfile(SCIFACT / name, tmp / name)
        (tmp / "qrels" / "train.tsv").write_text("\n".join([lines[0]] + [x for x in lines[1:] if x.split("\t")[0]
                                                                        not in logged]) + "\n")
        tmp.rename(out)
    if not log.is_file():
        queries = {q["_id"]: q["text"] for q in map(json.loads, (SCIFACT / "queries.jsonl").open())}
        log.write_text("".join(json.dumps({"_id": f"log-{qid}", "text": queries[qid]}) + "\n"
                               for qid in sorted(logged)))
    return str(out), str(log)


def split_of(phase: str, dataset: str) -> str:
    """SciFact's dev split is its train queries; the built-in data has one split and is dev data."""
    if dataset == "builtin":
        if phase == "test":
            raise SystemExit("the built-in data is dev data (one split): score it with --phase dev")
        return "test"
    return "train" if phase == "dev" else "test"


def parse_table(stdout: str) -> dict[str, Any]:
    """The quality rows and the step timings of `tava run`'s summary."""
    rows: dict[str, Any] = {}
    steps: dict[str, Any] = {}
    for line in stdout.splitlines():
        if (m := ROW.match(line.strip())) is not None:
            rows[m["system"]] = {"ndcg_at_10": float(m["ndcg"]), "of_teacher": round(float(m["share"]) / 100, 4),
                                 "queries_per_second": float(m["qps"]), "speedup": float(m["speedup"])}
        elif (m := STEP.match(line.strip())) is not None and m["step"] not in ("step", "---"):
            steps[m["step"]] = {"seconds": float(m["seconds"]), "work": m["work"]}
    return {"rows": rows, "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", choices=["dev", "test"], required=True)
    parser.add_argument("--dataset", required=True, help="scifact, builtin, or a path `tava ingest` reads")
    parser.add_argument("--tag", required=True, help="the recipe's name (student / adapter / registry names)")
    parser.add_argument("--label", default=None, help=(
        "the result's name under PHASE/DATASET/ (default: --tag); a second run of one --tag with other options "
        "reuses what they leave unchanged and is recorded beside the first under its own label"))
    parser.add_argument("--home", default="/tmp/tava-cli-bench", help="tava home shared by the runs")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("options", nargs=argparse.REMAINDER, help="after --: options for `tava run`")
    args = parser.parse_args()
    if args.dataset == SMALL_SCIFACT:
        SHORTHANDS[SMALL_SCIFACT] = small_scifact(args.home)
    if args.dataset == KNOWN_ITEM:
        SHORTHANDS[KNOWN_ITEM] = known_item(args.home)
    if args.dataset == REVERSED_SCIFACT:
        SHORTHANDS[REVERSED_SCIFACT] = reversed_scifact(args.home)
    if args.dataset == KNOWN_ITEM_MPNET:
        import pyarrow.parquet as pq

        ids = pq.read_table(MPNET_PASSAGES, columns=["id"]).column("id").to_pylist()
        SHORTHANDS[KNOWN_ITEM_MPNET] = known_item(args.home, documents=10000, name=KNOWN_ITEM_MPNET, only_ids=ids)
    if args.dataset == LOG_SCIFACT or QUERY_LOG in args.options:
        SHORTHANDS[LOG_SCIFACT], SHORTHANDS[QUERY_LOG] = query_log_split(args.home)
    options = [SHORTHANDS.get(o, o) for o in args.options if o != "--"]
    name = Path(args.dataset).name if args.dataset not in SHORTHANDS else args.dataset
    run_name = f"{name}-{args.tag}"
    command = [str(ROOT / ".venv" / "bin" / "tava"), "run", "--source", SHORTHANDS.get(args.dataset, args.dataset),
               "--name", name, "--split", split_of(args.phase, name), "--distill-name", run_name,
               "--adapter-name", run_name, "--registry-student", run_name, "--registry-adapter", run_name, *options]
    env = {**os.environ, "TAVA_HOME": args.home, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    # each run its own Prefect state: runs in parallel must not share one server database
    env["PREFECT_HOME"] = str(Path(args.home) / "prefect" / f"{args.phase}-{run_name}")
    print("$", " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = round(time.perf_counter() - start, 1)
    log = Path(args.home) / "cli_run_logs" / f"{args.phase}-{run_name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
    if done.returncode != 0:
        sys.exit(f"tava run failed (rc {done.returncode}); its output: {log}")
    parsed = parse_table(done.stdout)
    if not parsed["rows"]:
        sys.exit(f"no results table in tava run's output: {log}")
    add_run(args.out, "cli_run", f"{args.phase}/{name}/{args.label or args.tag}", {
        "command": "tava " + " ".join(command[1:]).replace(str(SCIFACT), "../shared/data/beir/scifact")
                                                   .replace(str(PASSAGES), "../shared/data/corpus_passages_en.jsonl.gz"),
        "split": split_of(args.phase, name), "wall_seconds": wall, "load_after": [round(x, 2) for x in os.getloadavg()],
        **parsed})
    for system, row in parsed["rows"].items():
        print(f"{args.phase} {name} {args.tag:>16} | {system:<24} nDCG@10 {row['ndcg_at_10']:.4f} "
              f"({row['of_teacher']:.1%} of teacher) {row['speedup']:.1f}x")


if __name__ == "__main__":
    main()
