"""Fitting a Stage B adapter: the best of N seeds, each trained from the same start and gated.

``train_best_of_seeds`` resolves and fits the start once (``start.py``), then per seed builds an adapter,
trains it (``AdapterTrainer``), applies the keep gates (``keep.py``, and the unsupervised start's criterion),
and returns the best seed on the held-out selection metric (``selection.best_index``) with every seed's summary.
"""
from __future__ import annotations

import copy
import logging
from typing import Any, Optional

import numpy as np
import torch

from ..errors import TrainingError
from .config import AdapterConfig
from .data import AdapterData
from .keep import keep_learned
from .model import Vec2VecAdapter
from .selection import best_index
from .start import fit_start, init_from_closed_form, resolve_init, unsupervised_settings
from .trainer import AdapterTrainer, TrainingResult, build_adapter

log = logging.getLogger(__name__)


def train_best_of_seeds(data: AdapterData, config: AdapterConfig, *, warm_start: Optional[Vec2VecAdapter] = None,
                        show_progress: bool = False, domain: Optional[tuple[np.ndarray, np.ndarray]] = None
                        ) -> tuple[TrainingResult, list[dict[str, Any]]]:
    """Train one adapter per seed; keep the best on held-out pairs. Seeds that diverge are skipped
    (their error is reported); if all diverge, the last ``TrainingError`` is raised. ``domain``: in-domain
    vectors of each side for the unsupervised start (``fit_start``)."""
    input_dim, output_dim = data.student.shape[1], data.teacher.shape[1]
    results: list[TrainingResult] = []
    runs: list[dict[str, Any]] = []
    last_error: Optional[TrainingError] = None
    if warm_start is not None:
        start, evidence = "warm_start", None
    else:
        start, evidence = resolve_init(config, data.student, data.teacher, paired=data.paired,
                                       query_like=data.query_like)
    if evidence is not None:
        log.info("start: %s (%s)", start, ", ".join(f"{k} {v:.3f}" for k, v in evidence.items()))
    start_map = (fit_start(data.student, data.teacher, start, seed=config.seeds[0], domain=domain,
                           settings=unsupervised_settings(config))
                 if warm_start is None and start != "random" else None)
    for seed in config.seeds:
        torch.manual_seed(seed)
        if warm_start is not None:
            adapter = copy.deepcopy(warm_start)
        else:
            adapter = build_adapter(config, input_dim, output_dim)
            if start_map is not None:
                init_from_closed_form(adapter, start_map)
                skip = adapter.linear_skip()
                if not config.train_skip and skip is not None:
                    skip.weight.requires_grad_(False)
        trainer = AdapterTrainer(adapter, config=config)
        if start == "unsupervised" and start_map is not None and trainer.reverse is not None:
            from .unsupervised import inverse_of  # the reverse adapter starts at the inverse map

            init_from_closed_form(trainer.reverse, inverse_of(start_map))
        # the start's weights, for the keep-learned gate (a reverse adapter trains jointly: no gate then)
        start_state = (copy.deepcopy(adapter.state_dict()) if start not in ("random", "unsupervised")
                       and trainer.reverse is None else None)
        if start == "unsupervised" and start_map is not None and not config.unsupervised_adversarial:
            # the found map is the adapter (the same for every seed): adversarial training from it took as long
            # as the search and changed nothing measurable (config.unsupervised_adversarial)
            metrics = trainer.evaluate(data)
            from .unsupervised import pair_free_quality

            # with no held-out pairs this is the only figure of the map's quality a user gets
            evidence = {**(evidence or {}), **pair_free_quality(start_map, data.student, data.teacher, seed)}
            log.info("unsupervised start: neighbour similarity %.3f (a random map of the same shape: %.3f)",
                     evidence["neighbour_similarity"], evidence["random_map_neighbour_similarity"])
            result = TrainingResult(adapter=adapter, reverse=trainer.reverse, seed=seed, best_step=0,
                                    best_metrics=metrics, initial_metrics=metrics,
                                    stopped="the unsupervised start, untrained (--unsupervised-adversarial trains from it)")
            log.info("adapter: the unsupervised start as it is (no adversarial training)")
            runs.append({**result.summary(), "start": start, "start_evidence": evidence})
            results.append(result)
            break
        try:
            result = trainer.fit(data, seed=seed, show_progress=show_progress)
        except TrainingError as exc:
            runs.append({"seed": seed, "error": exc.message})
            last_error = exc
            continue
        if start_state is not None:
            result.keep = keep_learned(result, start_state, config, data, start)
            if not result.keep["learned_kept"] and result.best_step == 0:
                log.info("learned adapter not kept: %s", result.keep["why"])
        if start == "unsupervised" and start_map is not None:
            # a GAN must never make the translation worse: keep its result only if the pair-free
            # criterion improves on the start's (unsupervised.keep_if_criterion_improves)
            from .unsupervised import keep_if_criterion_improves

            evidence = {**(evidence or {}), **keep_if_criterion_improves(
                result, build_adapter(config, input_dim, output_dim), start_map, data.student, data.teacher)}
        runs.append({**result.summary(), "start": start, "start_evidence": evidence})
        results.append(result)
    if not results:
        assert last_error is not None
        raise last_error
    return results[best_index([r.best_metrics for r in results], config.early_stopping_metric)], runs
