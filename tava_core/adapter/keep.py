"""The adapter's do-no-harm gates, applied after training: keep what was learned only if it measurably helps.

``keep_learned`` keeps a trained adapter only if it beats its start (the closed-form map or the warm start)
on the held-out selection metric, else puts the start back; ``keep_memory`` attaches a residual memory of the
training pairs (``memory_for``) and keeps it only if it beats the adapter alone. Each returns its decision.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .config import AdapterConfig
from .data import AdapterData
from .memory import ResidualMemory, build_memory, memory_rows
from .model import Vec2VecAdapter
from .selection import heldout_metrics, metric_names, retrieval_pool, selection_for
from .trainer import TrainingResult


def keep_learned(result: TrainingResult, start_state: dict[str, torch.Tensor], config: AdapterConfig,
                 data: AdapterData, start: str) -> dict[str, Any]:
    """The do-no-harm gate: keep the learned adapter only if its held-out selection metric beats the start's
    (step 0: the closed-form map or the warm-start adapter) by more than ``config.keep_learned_margin``;
    otherwise put the start's weights back (``result`` then reports step 0). Returns the decision."""
    selection = selection_for(config.early_stopping_metric, metric_names(config, data))
    metric = selection.metric
    before, after = result.initial_metrics.get(metric), result.best_metrics.get(metric)
    decision: dict[str, Any] = {"metric": metric, "start": start, "margin": config.keep_learned_margin,
                                "start_value": before, "learned_value": after}
    if config.keep_learned_margin is None or before is None or after is None or result.best_step == 0:
        why = ("training never beat its start (best step 0)" if result.best_step == 0 else
               "no gate (keep_learned_margin empty)" if config.keep_learned_margin is None else
               "nothing held out to compare on")
        return {**decision, "learned_kept": result.best_step > 0, "why": why}
    gain = (after - before) if selection.greater_is_better else (before - after)
    if gain > config.keep_learned_margin:
        return {**decision, "learned_kept": True,
                "why": f"{metric} {after:.4f} beats the start's {before:.4f} by more than {config.keep_learned_margin}"}
    result.adapter.load_state_dict(start_state)
    result.best_metrics, result.best_step = dict(result.initial_metrics), 0
    return {**decision, "learned_kept": False,
            "why": f"{metric} {after:.4f} does not beat the start's {before:.4f} by more than "
                   f"{config.keep_learned_margin}: the start was kept"}


def memory_for(adapter: Vec2VecAdapter, student: np.ndarray, teacher: np.ndarray, config: AdapterConfig,
               seed: int = 0) -> ResidualMemory:
    """A residual memory of these pairs (at most ``memory_max_rows``) behind ``adapter`` as it is now."""
    rows = memory_rows(len(student), config.memory_max_rows, seed)
    mapped = adapter.map_numpy(student[rows], memory=False)  # residuals are what the map alone misses
    return build_memory(student[rows], teacher[rows], mapped, k=config.memory_k,
                        temperature=config.memory_temperature, weight=config.memory_weight)


def keep_memory(adapter: Vec2VecAdapter, data: AdapterData, config: AdapterConfig) -> dict[str, Any]:
    """Build the memory from the training pairs and attach it to ``adapter``; with a ``memory_margin``, keep it
    only if the held-out selection metric (the keep-learned gate's) beats the adapter alone by more than that.
    Returns the decision (both metric values, measured either way); the caller widens a kept memory to every
    pair once the held-out figures are in."""
    if not config.memory or not data.paired:
        return {"memory_kept": False, "why": "off" if not config.memory else "unpaired mode has no pairs"}
    metric = selection_for(config.early_stopping_metric, metric_names(config, data)).metric
    adapter.attach_memory(None)  # a trained adapter has none; measured without it first
    memory = memory_for(adapter, data.student, data.teacher, config)
    pool = retrieval_pool(data, config) if data.has_heldout or data.selection is not None else None
    before = heldout_metrics(adapter, data, config, pool).get(metric) if pool is not None else None
    adapter.attach_memory(memory)
    after = heldout_metrics(adapter, data, config, pool).get(metric) if pool is not None else None
    decision: dict[str, Any] = {"metric": metric, "margin": config.memory_margin, "without": before, "with": after}
    if config.memory_margin is None:
        figures = "" if before is None or after is None else f": held-out {metric} {before:.4f} without, {after:.4f} with"
        return {**decision, "memory_kept": True, "why": f"no gate (memory_margin empty){figures}"}
    if before is None or after is None:
        adapter.attach_memory(None)
        return {**decision, "memory_kept": False, "why": "nothing held out to compare on"}
    if after - before > config.memory_margin:
        return {**decision, "memory_kept": True,
                "why": f"{metric} {after:.4f} with the memory beats {before:.4f} without by more than "
                       f"{config.memory_margin}"}
    adapter.attach_memory(None)
    return {**decision, "memory_kept": False,
            "why": f"{metric} {after:.4f} with the memory does not beat {before:.4f} without by more than "
                   f"{config.memory_margin}: no memory"}
