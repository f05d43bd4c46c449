"""Routing report files: JSON, markdown table and a PNG of the curves (atomic writes)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..io import atomic_path, write_json
from .curves import MIN_GAP

LABELS = {"router": "router (confidence)", "random": "random", "longest_first": "longest queries first",
          "label_free_oracle": "label-free oracle (true top-10 overlap)", "labelled_oracle": "labelled oracle"}


def markdown(curves: dict[str, Any]) -> str:
    lines = [f"**Warning:** {warning}\n" for warning in curves.get("warnings", [])]
    lines += [f"Student nDCG@10 {curves['student_ndcg10']:.4f}, teacher {curves['teacher_ndcg10']:.4f} "
             f"({curves['queries']} queries; {curves['queries_student_below_teacher']:.0%} score below the teacher).",
             "", "| share to teacher | " + " | ".join(LABELS[m] for m in LABELS) + " | router - random (95% CI) | cost/query |",
             "|---" * (len(LABELS) + 3) + "|"]
    meaningful = curves.get("gap_meaningful", True)     # reports written before the flag: as they were
    for row in curves["rows"]:
        ci = row["router_vs_random"]
        cost = row.get("cost_per_query_teacher_units")
        cells = [f"{row[m]['ndcg10']:.4f}" + (f" ({row[m]['gap_recovered']:.0%})" if meaningful else "")
                 for m in LABELS]
        lines.append(f"| {row['share']:.0%} | " + " | ".join(cells) +
                     f" | {ci['mean']:+.4f} [{ci['low']:+.4f}, {ci['high']:+.4f}] | "
                     f"{'-' if cost is None else f'{cost:.3f}'} |")
    gap = curves.get("gap", 0.0)
    lines += ["", ("Cells: nDCG@10 (share of the student-teacher gap recovered)." if meaningful else
                   f"Cells: nDCG@10. The student scores above the teacher here (by {-gap:.4f}): each query sent to "
                   "the teacher lowers the score, and there is no gap to recover." if gap < 0 else
                   f"Cells: nDCG@10. The student is within {MIN_GAP} of the teacher, so shares of that gap "
                   "are not shown (they would be noise).")
              + " Cost per query in teacher units (student + confidence + share x teacher)."]
    if "routed_share_at_threshold" in curves:
        lines.append(f"The router's own threshold ({curves['threshold']['mode']} {curves['threshold']['value']}) "
                     f"routed {curves['routed_share_at_threshold']:.1%} of these queries.")
    if curves.get("routed_share_live"):
        shares = ", ".join(f"{share:.1%} in batches of {size}" for size, share in curves["routed_share_live"].items())
        lines.append(f"Streamed through the router ({curves.get('routing', {}).get('mode', 'fixed')} threshold), "
                     f"in order from a fresh start: {shares}.")
    return "\n".join(lines) + "\n"


def plot(curves: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    shares = [r["share"] for r in curves["rows"]]
    for method, label in LABELS.items():
        axes[0].plot(shares, [r[method]["ndcg10"] for r in curves["rows"]], marker="o", label=label)
        axes[1].plot(shares, [r[method]["top10_overlap_with_teacher"] for r in curves["rows"]], marker="o",
                     label=label)
    axes[0].axhline(curves["teacher_ndcg10"], color="black", linestyle="--", linewidth=1, label="teacher")
    axes[0].set_ylabel("nDCG@10")
    axes[1].set_ylabel("top-10 overlap with the teacher's results")
    for ax in axes:
        ax.set_xlabel("share of queries sent to the teacher")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def write_route_report(curves: dict[str, Any], out_dir: Path) -> dict[str, str]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"json": str(out_dir / "route.json"), "markdown": str(out_dir / "route.md"),
             "png": str(out_dir / "route.png")}
    plot(curves, Path(files["png"]))
    with atomic_path(files["markdown"]) as tmp:
        Path(tmp).write_text(markdown(curves))
    write_json(files["json"], {**curves, "files": files})
    return files



