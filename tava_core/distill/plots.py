"""Training curves as a PNG (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..io import atomic_path


def _smooth(values: Sequence[float], window: int) -> np.ndarray:
    series = np.asarray(values, dtype=np.float64)
    if len(series) < window or window <= 1:
        return series
    kernel = np.ones(window) / window
    return np.convolve(series, kernel, mode="valid")


def plot_curves(history: Sequence[dict], validation: Sequence[dict], path: str | Path, *, title: str = "") -> Path:
    """Training loss (raw + smoothed) and held-out cosine to the teacher, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 3.6))
    if history:
        steps = [h["step"] for h in history]
        losses = [h["loss"] for h in history]
        ax_loss.plot(steps, losses, color="0.8", linewidth=0.8, label="loss")
        window = max(1, len(losses) // 50)
        smooth = _smooth(losses, window)
        ax_loss.plot(steps[window - 1:][:len(smooth)], smooth, color="C0", label=f"mean of {window}")
        ax_loss.set_yscale("log")
        ax_loss.legend()
    ax_loss.set_xlabel("step")
    ax_loss.set_title("training loss")
    if validation:
        ax_val.plot([v["step"] for v in validation], [v["cosine"] for v in validation], "o-", color="C1")
        best = max(validation, key=lambda v: v["cosine"])
        ax_val.axvline(best["step"], color="0.6", linestyle="--", linewidth=0.8)
        ax_val.set_title(f"held-out cosine to teacher (best {best['cosine']:.4f} @ {best['step']})")
    ax_val.set_xlabel("step")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)
