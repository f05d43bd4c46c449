"""The evaluation report: JSON (everything), a markdown table and a PNG chart of nDCG@10."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..io import atomic_path, write_json

METRIC_LABELS = {"ndcg_at_10": "nDCG@10", "recall_at_100": "recall@100", "mrr_at_10": "MRR@10"}


def _fmt(value: Any, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _quirks(data: dict[str, Any]) -> str:
    """What the scoring did about BEIR's quirks, when the set has them (tava_core.evaluate.metrics)."""
    notes = []
    if data.get("queries_with_same_id_document"):
        notes.append(f" {data['queries_with_same_id_document']} queries have a document with their own id: "
                     "left out of their rankings, as BEIR does.")
    if data.get("judged_documents_not_in_corpus"):
        notes.append(f" {data['judged_documents_not_in_corpus']} judged documents are not in the corpus: "
                     "relevant and never retrieved, as trec_eval scores them.")
    return "".join(notes)


def markdown_table(report: dict[str, Any]) -> str:
    """The report as markdown: one row per (mode, variant), then query-encoder throughput."""
    data = report["dataset"]
    lines = [f"# tava evaluate: {data['name']} ({data['split']})", "",
             f"{data['documents']} documents, {data['queries']} queries, {data['qrels_pairs']} judged pairs. "
             "Exact search, cosine. Retention = nDCG@10 / teacher/teacher nDCG@10 (full dim)." + _quirks(data), "",
             "| mode (query/document) | variant | dim | nDCG@10 | recall@100 | MRR@10 | retention |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for row in report["rows"]:
        lines.append(f"| {row['mode']} | {row['variant']} | {row['dim']} | {_fmt(row['ndcg_at_10'])} | "
                     f"{_fmt(row['recall_at_100'])} | {_fmt(row['mrr_at_10'])} | {_fmt(row.get('retention'), 3)} |")
    lines += ["", "| query encoder | role | dim | queries/s | batch size |", "|---|---|---:|---:|---:|"]
    for role, record in report["throughput"].items():
        lines.append(f"| {record['encoder']} | {role} | {record['dim']} | {record['queries_per_second']:.1f} | "
                     f"{record['batch_size']} |")
    lines += ["", "Variants: `full` = all dims; `mrl-D` = Matryoshka, query and document vectors cut to D dims "
              "and re-normalised; `int8` = documents scalar-quantised to int8 with per-dimension ranges "
              "from the corpus, scored as float query · dequantised document; `binary` = sign bits of "
              "query and document, similarity = dim − 2·Hamming distance (ties broken by doc id, as trec_eval)."]
    check = report.get("mteb_check") or {}
    if check:
        worst = max(c["max_abs_diff"] for c in check.values())
        lines += ["", f"Full-dim rows come from mteb {report.get('mteb_version', '')} (results in `mteb/`); tava's "
                  f"numpy metrics agree to {worst:.1e}."]
    return "\n".join(lines) + "\n"


def plot_ndcg(report: dict[str, Any], path: str | Path) -> Path:
    """Grouped bars: nDCG@10 of each mode (bar colour) per variant (x axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    modes = list(dict.fromkeys(row["mode"] for row in report["rows"]))
    variants = list(dict.fromkeys(row["variant"] for row in report["rows"]))
    value = {(row["mode"], row["variant"]): row["ndcg_at_10"] for row in report["rows"]}
    width = 0.8 / max(len(modes), 1)
    x = np.arange(len(variants))
    fig, ax = plt.subplots(figsize=(max(7.0, 1.2 * len(variants) + 3.5), 4.2))
    for i, mode in enumerate(modes):
        heights = [value.get((mode, v), np.nan) for v in variants]
        ax.bar(x + (i - (len(modes) - 1) / 2) * width, heights, width, label=mode)
    teacher = report.get("teacher_ndcg_at_10")
    if teacher:
        ax.axhline(teacher, color="black", linewidth=0.8, linestyle="--", label="teacher (full)")
    ax.set_xticks(x, variants)
    ax.set_ylabel("nDCG@10")
    ax.set_title(f"{report['dataset']['name']} ({report['dataset']['split']}): nDCG@10 per mode and variant")
    ax.set_xlabel("variant: full dims, Matryoshka cut (mrl-D), int8 or binary documents")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))   # beside the bars, never on them
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return Path(path)


def report_paths(directory: Path) -> dict[str, Path]:
    """Where a report directory keeps its files, by kind."""
    return {"json": directory / "report.json", "markdown": directory / "report.md", "chart": directory / "ndcg.png"}


def write_report_files(report: dict[str, Any], directory: Path) -> dict[str, str]:
    """report.json, report.md and ndcg.png in ``directory``; returns their paths."""
    paths = report_paths(directory)
    with atomic_path(paths["markdown"]) as tmp:
        tmp.write_text(markdown_table(report))
    plot_ndcg(report, paths["chart"])
    write_json(paths["json"], report)
    return {k: str(v) for k, v in paths.items()}
