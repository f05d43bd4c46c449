"""What `tava run` keeps of its teacher, and how much faster its query encoders are: one picture.

Reads the test-split runs of ``bench/cli_run.py`` (the CLI a user runs, its printed table parsed into
JSON; each run read once on test after its settings were chosen on dev) and draws, per run, the share of
the teacher's nDCG@10 against the query speed-up over the same teacher in the same run, for the query
encoders the table prints: student + adapter, the blend, and the router at 10% / 20% of the queries sent
to the teacher. The peers' published anchors are drawn beside them, marked as measured on other
collections (LEAF on BEIR, pyNIFE on NanoBEIR). No encoding happens here: every point is a figure from a
JSON already in ``bench/results/``; this script only gathers them (``bench/results/frontier.json``) and
draws them (``bench/results/frontier.png``).

    python bench/frontier.py
"""
from __future__ import annotations

import json
from pathlib import Path

from shared_data import ROOT, write_result

RESULTS = ROOT / "bench" / "results"

# (label, results file, run key): the shipped defaults (no option but the source and teacher) on each
# collection with a test split, newest run of each; since session 53 the defaults train on the queries of
# the splits not scored ("+ its train queries"), and runs without any query text are drawn beside them
# (rows before session 53, or `--no-other-split-queries`). The static student (`--distill-student static`,
# no blend) is the ~100x+ end.
RUNS = [
    ("MiniLM, SciFact, no query text", "cli_run_query_log_test.json", "test/scifact-logsplit/std"),
    ("MiniLM, SciFact + half its train queries", "cli_run_query_log_test.json", "test/scifact-logsplit/log4"),
    ("MiniLM, 40k known-item passages", "cli_run.json", "test/passages-known-item/fitted"),
    ("MiniLM, 10k known-item passages + its dev queries", "cli_run_other_split_queries.json",
     "test/passages-known-item-mpnet/minilm-qlog"),
    ("MiniLM static student, SciFact-1500", "cli_run.json", "test/scifact-1500/static"),
    ("MiniLM static student, SciFact + its train queries", "cli_run_titles.json", "test/scifact/static-titles"),
    ("mpnet, SciFact, no query text", "cli_run_titles_mpnet.json", "test/scifact-logsplit/mpnet-titles"),
    ("mpnet, SciFact + its train queries", "cli_run_trainlog_mpnet.json", "test/scifact-logsplit/mpnet-trainlog"),
    ("mpnet, 10k known-item passages, no query text", "cli_run_known_item_windows.json",
     "test/passages-known-item-mpnet/mpnet-windows"),
    ("MiniLM, SciFact reversed + its train abstracts", "cli_run_other_split_queries.json",
     "test/scifact-reversed/minilm-qlog"),
    ("mpnet, SciFact reversed, no query text", "cli_run_reversed_windows.json", "test/scifact-reversed/mpnet"),
]
NOTES = {  # what a reader must know to read a run's points
    "MiniLM, 40k known-item passages": "run before the router moved onto the blend (session 42): "
                                       "its router rows route from student + adapter, so they sit under its blend",
}
SYSTEMS = {  # the table's row -> the marker it is drawn with
    "student + adapter": "o",
    "blend: student + adapter, static student": "s",
    "router, 10% to teacher": "^",
    "router, 20% to teacher": "v",
}
PEERS = [  # published, on other collections: context, not a comparison on the same queries
    ("LEAF (BEIR, published)", 7.3, 0.977),
    ("pyNIFE (NanoBEIR, published)", 300.0, 0.89),
]
TARGETS = [("#15 mpnet: >= 0.97 at >= 5x", 5.0, 0.97)]


def gather() -> list[dict]:
    files = {file: RESULTS / file for _, file, _ in RUNS}
    runs_in = {file: json.loads(path.read_text())["runs"] if path.is_file() else {} for file, path in files.items()}
    points = []
    for label, file, key in RUNS:
        if key not in runs_in[file]:
            print(f"skipped {label}: no run {key} in {file}")
            continue
        rows = runs_in[file][key]["rows"]
        for system in SYSTEMS:
            if system in rows:
                points.append({"run": label, "source": f"{file}:{key}", "note": NOTES.get(label, ""), "system": system,
                               "of_teacher": rows[system]["of_teacher"], "speedup": rows[system]["speedup"]})
    return points


def draw(points: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5.5))
    runs = list(dict.fromkeys(p["run"] for p in points))
    # grey marks the marker legend; tab20 (less its greys) has a colour for each of up to 18 runs
    palette = [c for i, c in enumerate(plt.get_cmap("tab20").colors) if i not in (14, 15)]
    colours = dict(zip(runs, palette, strict=False))
    for p in points:
        ax.scatter(p["speedup"], p["of_teacher"], marker=SYSTEMS[p["system"]], color=colours[p["run"]], s=55)
    for run in runs:  # colour legend: one entry per run
        ax.scatter([], [], marker="o", color=colours[run], label=run)
    for system, marker in SYSTEMS.items():  # marker legend: one entry per query encoder
        ax.scatter([], [], marker=marker, facecolors="none", edgecolors="black", label=system.split(":")[0])
    for name, speed, share in PEERS:
        ax.scatter(speed, share, marker="*", color="black", s=140)
        ax.annotate(name, (speed, share), textcoords="offset points", xytext=(-60, 9), fontsize=8)
    for name, speed, share in TARGETS:
        ax.axhline(share, color="grey", ls=":", lw=0.8)
        ax.axvline(speed, color="grey", ls=":", lw=0.8)
        ax.annotate(name, (speed, share), textcoords="offset points", xytext=(-150, -12), fontsize=8, color="grey")
    ax.set_xscale("log")
    ax.set_xlabel("query speed-up over the teacher (same run, log scale)")
    ax.set_ylabel("share of the teacher's nDCG@10 (test split)")
    ax.set_title("tava run, test splits: quality kept against query speed")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> None:
    points = gather()
    write_result(RESULTS / "frontier.json", {
        "benchmark": "frontier", "note": "gathered from the cli_run results named in each point's source; "
        "peers are published figures on other collections", "points": points,
        "peers": [{"name": n, "speedup": s, "of_teacher": q} for n, s, q in PEERS]})
    draw(points, RESULTS / "frontier.png")
    for p in points:
        print(f"{p['run']:<34} {p['system']:<42} {p['of_teacher']:.3f}  {p['speedup']:.1f}x")


if __name__ == "__main__":
    main()
