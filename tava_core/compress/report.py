"""The compression report: every method at every dimension side by side (markdown table + PNG)."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def ndcg_table(report: dict[str, Any], key: str = "test") -> dict[str, dict[int, float]]:
    """method -> dim -> nDCG@10 (``key`` 'test', or 'validation' for the early-stopping split)."""
    table: dict[str, dict[int, float]] = {}
    for row in report["results"]:
        value = row["test"]["ndcg_at_10"] if key == "test" and "test" in row else row["validation_ndcg_at_10"]
        table.setdefault(row["method"], {})[row["dim"]] = value
    return table


def markdown_report(report: dict[str, Any]) -> str:
    dims = report["dims"]
    full = report["full_dimension"]
    has_test = full.get("test") is not None
    key = "test" if has_test else "validation"
    table = ndcg_table(report, key)
    data = report["data"]
    lines = [f"# Compressors {report['name']}", "",
             f"- encoder: {report['encoder'].get('name', '?')} ({report['input_dim']}-d); dataset {data.get('dataset')}: "
             f"{data.get('documents')} documents, {data.get('train_queries')} training + "
             f"{data.get('validation_queries')} validation queries ({data.get('train_split')}), "
             f"{data.get('test_queries')} scored queries ({data.get('eval_split')})", "",
             f"## nDCG@10 on {'the ' + str(data.get('eval_split')) + ' split' if has_test else 'the validation split'}", "",
             "| method | " + " | ".join(f"{d}-d" for d in dims) + f" | full {report['input_dim']}-d |",
             "|---|" + "---|" * (len(dims) + 1)]
    full_value = (full["test"] if has_test else full["validation"])["ndcg_at_10"]
    for method, by_dim in table.items():
        cells = [f"{by_dim[d]:.4f}" if d in by_dim else "" for d in dims]
        lines.append(f"| {method} | " + " | ".join(cells) + " | |")
    lines.append("| uncompressed | " + " | ".join("" for _ in dims) + f" | {full_value:.4f} |")
    lines += ["", "## Training", "", "| method | dim | validation nDCG@10 | untrained start | best step | steps | "
              "kept | seconds |", "|---|---|---|---|---|---|---|---|"]
    for row in report["results"]:
        # best step 0: training never beat the untrained start (its PCA / truncation), which is what was kept
        kept = "untrained start" if row["best_step"] == 0 and row["steps"] > 0 else "trained"
        lines.append(f"| {row['method']} | {row['dim']} | {row['validation_ndcg_at_10']:.4f} | "
                     f"{row['frozen_validation_ndcg_at_10']:.4f} | {row['best_step']} | {row['steps']} | {kept} | "
                     f"{row['seconds']:.1f} |")
    lines += ["", "Validation is the held-out share of the labeled training queries ('labels'), or for the "
              "label-free method the encoder's own top-10 neighbours of held-out unlabeled queries. The untrained "
              "start is each method's closed form before training (e.g. DIVE's PCA); a method whose training "
              "never beats it on validation keeps it, and then scores exactly as that start.", "",
              "![nDCG@10 by dimension](ndcg.png)", ""]
    return "\n".join(lines)


def ndcg_figure(report: dict[str, Any]):  # noqa: ANN201 (a matplotlib Figure; matplotlib is imported lazily)
    """nDCG@10 against dimension, one line per method, the uncompressed score as a dashed line.

    The x axis has a tick at each compressed dimension (log2-spaced when they span 4x or more, as
    dimensions usually halve); with a single dimension, one bar per method instead, since a line
    through one point on an axis of invented ticks says nothing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    full = report["full_dimension"]
    key = "test" if full.get("test") is not None else "validation"
    table = ndcg_table(report, key)
    dims = sorted({d for by_dim in table.values() for d in by_dim})
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if len(dims) == 1:
        methods = list(table)
        ax.bar(range(len(methods)), [table[m][dims[0]] for m in methods], color="tab:blue")
        ax.set_xticks(range(len(methods)), methods)
        ax.set_xlabel(f"method at {dims[0]} dimensions")
    else:
        for method, by_dim in table.items():
            own = sorted(by_dim)
            ax.plot(own, [by_dim[d] for d in own], marker="o", label=method)
        if dims[-1] >= 4 * dims[0]:
            ax.set_xscale("log", base=2)
        ax.set_xticks(dims, [str(d) for d in dims])
        ax.minorticks_off()
        ax.set_xlabel("dimensions")
    ax.axhline((full[key])["ndcg_at_10"], linestyle="--", color="gray", label=f"uncompressed {report['input_dim']}-d")
    ax.set_ylabel(f"nDCG@10 ({key})")
    ax.set_title(f"compression of {report['encoder'].get('name', 'encoder')} on {report['data'].get('dataset')}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_ndcg(report: dict[str, Any], path: str | Path) -> Path:
    """Save :func:`ndcg_figure` as a PNG."""
    import matplotlib.pyplot as plt

    fig = ndcg_figure(report)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
