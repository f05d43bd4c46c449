"""The alignment report: the adapter beside the closed-form baselines, as JSON, markdown and PNG."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from .data import MIN_UNPAIRED_HELDOUT

METRIC_COLUMNS = ["mean_cosine", "top1", "mean_rank", "median_rank"]
NO_HELDOUT = (f"None: no held-out pairs (unpaired sides that share fewer than {MIN_UNPAIRED_HELDOUT} texts). To measure the map, give "
              "both sides the two models' vectors of a few hundred of the same texts (held out, never trained on), "
              "or score retrieval with it (`tava evaluate`). Without pairs, the start line's neighbour similarity "
              "is the figure to read: the mean cosine of mapped vectors to their 10 nearest target vectors, "
              "beside a random map's (MiniLM -> mpnet at 2,500 texts: paired Procrustes 0.375, a random map 0.105; "
              "docs/translation.md).")


def _knn_key(row: dict[str, Any]) -> Optional[str]:
    return next((k for k in row if k.startswith("knn_overlap@")), None)


def markdown_table(rows: dict[str, dict[str, Any]]) -> str:
    """One row per map (adapter, ridge, ...), one column per metric."""
    knn = next((k for r in rows.values() if (k := _knn_key(r))), None)
    overlap = next((k for r in rows.values() for k in r if k.startswith("retrieval_overlap@")), None)
    cols = METRIC_COLUMNS + ([knn] if knn else []) + ([overlap] if overlap else [])
    lines = ["| map | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for name, row in rows.items():
        cells = []
        for col in cols:
            value = row.get(col)
            cells.append("" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value)))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def domain_note(data: dict[str, Any]) -> str:
    """', + 750 / 750 in-domain vectors ...' when the unsupervised start had them (reports before: '')."""
    if not data.get("domain_student") and not data.get("domain_teacher"):
        return ""
    return (f", + {data['domain_student']} student / {data['domain_teacher']} teacher in-domain vectors "
            "(the unsupervised start's last step)")


def start_lines(report: dict[str, Any]) -> list[str]:
    """Where the linear path started, and for 'auto' the evidence it was chosen on."""
    runs = [run for run in report.get("seed_runs", []) if "start" in run]
    if not runs:
        return []
    evidence = runs[0].get("start_evidence") or {}
    why = ", ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in evidence.items())
    lines = [f"- start: **{runs[0]['start']}**" + (f" ({why})" if why else "")]
    keep = report.get("selection") or {}
    if "learned_kept" in keep:  # the keep-learned gate's decision (keep.keep_learned)
        lines.append(f"- learned part: **{'kept' if keep['learned_kept'] else 'not kept'}** ({keep['why']}; "
                     f"compared on {keep.get('rows', 'all')} held-out rows)")
    memory = report.get("memory") or {}
    if "memory_kept" in memory:  # the residual memory's gate (keep.keep_memory)
        rows = f", {memory['rows']} texts" if memory.get("rows") else ""
        lines.append(f"- residual memory: **{'kept' if memory['memory_kept'] else 'not kept'}**{rows} "
                     f"({memory['why']})")
    return lines


def markdown_report(report: dict[str, Any]) -> str:
    t = report["training"]
    lines = [f"# Adapter {report['name']}", "",
             f"- mode: **{report['mode']}**; student {report['student']['name']} ({report['student']['dim']}-d) "
             f"-> teacher {report['teacher']['name']} ({report['teacher']['dim']}-d)",
             f"- training: {report['data']['train_student']} student / {report['data']['train_teacher']} teacher "
             f"vectors, {report['data']['heldout_pairs']} held-out pairs" + domain_note(report["data"]),
             f"- best step {t['best_step']} of {t['steps']} ({t['stopped']}), seed {t['seed']}, "
             f"{t['rollbacks']} rollbacks, {t['seconds']:.1f} s",
             *start_lines(report), "",
             "## Held-out alignment (the adapter beside the closed-form baselines)", "",
             markdown_table(report["metrics"]) if report["metrics"] else NO_HELDOUT, ""]
    for name, note in report.get("baseline_notes", {}).items():
        lines.append(f"- {name}: {note}")
    if report.get("seed_runs") and len(report["seed_runs"]) > 1:
        lines += ["", "## Seeds", ""]
        for run in report["seed_runs"]:
            lines.append(f"- seed {run['seed']}: " + (f"failed: {run['error']}" if "error" in run else
                                                      f"mean rank {run['best_metrics'].get('mean_rank', float('nan')):.3f}, "
                                                      f"mean cosine {run['best_metrics'].get('mean_cosine', float('nan')):.4f}"))
    lines += ["", "![training curves](curves.png)", ""]
    return "\n".join(lines)


def plot_curves(history: list[dict[str, float]], evals: list[dict[str, float]], path: str | Path,
                baselines: Optional[dict[str, dict[str, Any]]] = None) -> Path:
    """Loss curves and held-out mean cosine / mean rank over steps (ridge drawn as a reference)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    keys = sorted({k for row in history for k in row if k not in {"step"}})
    for key in keys:
        points = [(row["step"], row[key]) for row in history if key in row]
        if points:
            axes[0].plot(*zip(*points, strict=False), label=key)
    axes[0].set_yscale("symlog", linthresh=1e-3)
    axes[0].set_title("training losses")
    axes[0].set_xlabel("step")
    axes[0].legend(fontsize=7)
    for ax, metric in ((axes[1], "mean_cosine"), (axes[2], "mean_rank")):
        points = [(row["step"], row[metric]) for row in evals if metric in row]
        if points:
            ax.plot(*zip(*points, strict=False), marker="o", label="adapter")
        for position, (name, row) in enumerate((baselines or {}).items()):
            if metric in row:
                ax.axhline(row[metric], linestyle="--", alpha=0.6, label=name, color=f"C{1 + position}")
        ax.set_title(f"held-out {metric}")
        ax.set_xlabel("step")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        else:   # unpaired sides with no text in common: nothing to measure a map against
            ax.text(0.5, 0.5, "no held-out pairs:\nthe sides share (almost) no text", ha="center", va="center",
                    transform=ax.transAxes, color="0.4")
    fig.tight_layout()
    with_path = Path(path)
    fig.savefig(with_path, dpi=90)
    plt.close(fig)
    return with_path
