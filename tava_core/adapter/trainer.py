"""``AdapterTrainer``: trains a ``Vec2VecAdapter`` with vec2vec's losses, carefully.

The adapter's part of training (batches, the discriminator step, the losses, the held-out metrics)
as a ``TrainingStage``; ``tava_core.training.TrainingEngine`` runs the loop. GANs fail in known ways,
so the adapter runs under the engine's guards: linear LR warm-up with cosine decay, gradient clipping,
early stopping on a held-out metric, and a check of every step's loss and every evaluation's outputs;
NaN/inf or collapsed outputs roll back to the last good state with halved learning rates, and a run
that keeps failing raises ``TrainingError``. The adapter handed back is always the best healthy
state, never a broken one.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import TrainingError
from ..training import Diverged, EngineConfig, Schedule, TrainingEngine, TrainingStage, WeightAverage
from ..training.engine import apply_loss
from .config import AdapterConfig
from .data import AdapterData
from .discriminator import Discriminator
from .losses import (
    AdversarialLoss,
    CycleConsistencyLoss,
    GradientPenalty,
    PairedSupervisionLoss,
    ProximalLoss,
    RankingDistillationLoss,
    ReconstructionLoss,
    VectorSpacePreservationLoss,
)
from .model import Vec2VecAdapter
from .selection import heldout_metrics, metric_names, retrieval_pool, selection_for


@dataclass
class TrainingResult:
    adapter: Vec2VecAdapter
    reverse: Optional[Vec2VecAdapter]
    seed: int
    best_step: int
    best_metrics: dict[str, float]
    initial_metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)  # per logged step: losses
    evals: list[dict[str, float]] = field(default_factory=list)    # per evaluation: held-out metrics
    rollbacks: int = 0
    stopped: str = "max_steps"
    steps: int = 0
    seconds: float = 0.0
    keep: dict[str, Any] = field(default_factory=dict)  # the keep-learned gate's decision (keep_learned)

    def summary(self) -> dict[str, Any]:
        return {"seed": self.seed, "best_step": self.best_step, "steps": self.steps, "stopped": self.stopped,
                "rollbacks": self.rollbacks, "seconds": round(self.seconds, 2),
                "best_metrics": self.best_metrics, "initial_metrics": self.initial_metrics, "keep": self.keep}


class AdapterTrainer(TrainingStage):
    """Trains ``generator`` (student -> teacher) with paired supervision and, when its weight is > 0, a
    discriminator on teacher-space vectors (vec2vec); the engine runs the loop, rolling back on divergence.

    The keyword arguments override the matching ``config`` fields (the seed paper's signature).
    """

    label = "adapter"
    divergence_hint = ("lower --lr / --discriminator-lr or --adversarial-weight, or raise "
                       "--gradient-penalty-weight")

    def __init__(self, generator: Vec2VecAdapter, discriminator_hidden_dim: Optional[int] = None,
                 use_spectral_norm: Optional[bool] = None, gradient_penalty_weight: Optional[float] = None,
                 config: Optional[AdapterConfig] = None, **overrides: Any) -> None:
        config = config or AdapterConfig()
        for key, value in dict(discriminator_hidden_dim=discriminator_hidden_dim, use_spectral_norm=use_spectral_norm,
                               gradient_penalty_weight=gradient_penalty_weight, **overrides).items():
            if value is not None:
                setattr(config := config.model_copy(), key, value)  # validate_assignment checks it
        self.config = config
        self.device = torch.device("cpu" if config.device == "auto" and not torch.cuda.is_available()
                                   else ("cuda" if config.device == "auto" else config.device))
        self.generator = generator.to(self.device)
        self._pool_cache: Optional[tuple[AdapterData, np.ndarray]] = None  # see _pool
        unpaired = config.mode == "unpaired"
        needs_reverse = config.cycle_weight > 0 or config.reconstruction_weight > 0 or unpaired
        self.reverse = generator.make_reverse().to(self.device) if needs_reverse else None
        adversarial = config.adversarial_weight > 0
        self.discriminator = (Discriminator(generator.output_dim, config.discriminator_hidden_dim,
                                            config.discriminator_layers, config.use_spectral_norm).to(self.device)
                              if adversarial else None)
        # Unpaired: the reverse adapter is judged in student space too (vec2vec's second GAN).
        self.student_discriminator = (Discriminator(generator.input_dim, config.discriminator_hidden_dim,
                                                    config.discriminator_layers, config.use_spectral_norm)
                                      .to(self.device) if adversarial and unpaired else None)
        self.adversarial = AdversarialLoss(config.adversarial_loss)
        self.gradient_penalty = GradientPenalty(config.gradient_penalty, config.gradient_penalty_weight)
        self.vsp = VectorSpacePreservationLoss(config.vsp_norm)
        self.cycle = CycleConsistencyLoss()
        self.reconstruction = ReconstructionLoss()
        self.paired = PairedSupervisionLoss(config.paired_cosine_weight, config.paired_mse_weight,
                                            config.contrastive_weight, config.contrastive_temperature)
        self.ranking = RankingDistillationLoss(config.ranking_temperature)
        self.ranking_documents: Optional[torch.Tensor] = None  # set per step by fit()
        # the generator as handed in (closed-form start or warm start) is what the proximal term pulls to
        self.proximal = ProximalLoss(self.generator) if config.proximal_weight > 0 else None
        generator_params = list(self.generator.parameters())
        if self.reverse is not None:
            seen = {id(p) for p in generator_params}  # a shared backbone appears once
            generator_params += [p for p in self.reverse.parameters() if id(p) not in seen]
        self.g_optimizer = torch.optim.AdamW(generator_params, lr=config.lr, weight_decay=config.weight_decay)
        d_params = [p for d in self._discriminators() for p in d.parameters()]
        self.d_optimizer = (torch.optim.Adam(d_params, lr=config.discriminator_lr, betas=(0.5, 0.999))
                            if d_params else None)
        # Polyak averaging: the adapter evaluated, kept and saved is the moving average of the weights,
        # which smooths the step-to-step noise of small-batch training (see config.ema_decay).
        self.ema = WeightAverage(self.generator, config.ema_decay) if config.ema_decay > 0 else None
        self._fit: Optional[tuple[AdapterData, np.random.Generator, int]] = None  # set by fit()

    # ------------------------------------------------------------------ one step

    def _discriminators(self) -> list[Discriminator]:
        return [d for d in (self.discriminator, self.student_discriminator) if d is not None]

    def _reverse_adapter(self) -> Vec2VecAdapter:
        """The teacher -> student adapter; built whenever a loss term uses it (see needs_reverse)."""
        if self.reverse is None:
            raise RuntimeError("no reverse adapter: only cycle, reconstruction and unpaired training build one")
        return self.reverse

    def _discriminator_step(self, s: torch.Tensor, t: torch.Tensor) -> dict[str, float]:
        discriminator = self.discriminator
        assert self.d_optimizer is not None and discriminator is not None  # both built when adversarial
        with torch.no_grad():
            fake_t = self.generator(s)
            fake_s = self._reverse_adapter()(t) if self.student_discriminator is not None else None
        loss = self.adversarial.discriminator_loss(discriminator(t), discriminator(fake_t))
        penalty = self.gradient_penalty(discriminator, t, fake_t)
        if self.student_discriminator is not None:
            real_s = F.normalize(s, dim=-1)
            loss = loss + self.adversarial.discriminator_loss(self.student_discriminator(real_s),
                                                              self.student_discriminator(fake_s))
            penalty = penalty + self.gradient_penalty(self.student_discriminator, real_s, fake_s)
        total = loss + penalty
        if not torch.isfinite(total):
            raise Diverged("discriminator loss is not finite")
        self.d_optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_([p for d in self._discriminators() for p in d.parameters()],
                                       self.config.grad_clip)
        self.d_optimizer.step()
        return {"d_loss": loss.item(), "gradient_penalty": penalty.item()}

    def _generator_losses(self, s: torch.Tensor, t: torch.Tensor, paired: bool) -> dict[str, torch.Tensor]:
        cfg = self.config
        s_unit = F.normalize(s, dim=-1)
        mapped = self.generator(s)
        back = self.reverse(t) if self.reverse is not None else None
        terms: dict[str, torch.Tensor] = {}
        if self.discriminator is not None:
            adv = self.adversarial.generator_loss(self.discriminator(mapped))
            if self.student_discriminator is not None:
                adv = adv + self.adversarial.generator_loss(self.student_discriminator(back))
            terms["adversarial"] = cfg.adversarial_weight * adv
        if cfg.vsp_weight > 0:
            vsp = self.vsp(s, mapped)
            if back is not None and not paired:
                vsp = vsp + self.vsp(t, back)
            terms["vsp"] = cfg.vsp_weight * vsp
        if cfg.cycle_weight > 0:
            cyc = self.cycle(s_unit, self._reverse_adapter()(mapped)) + self.cycle(t, self.generator(back))
            terms["cycle"] = cfg.cycle_weight * cyc
        if cfg.reconstruction_weight > 0:
            reverse = self._reverse_adapter()
            rec = (self.reconstruction(s_unit, reverse.from_latent(self.generator.to_latent(s)))
                   + self.reconstruction(t, self.generator.from_latent(reverse.to_latent(t))))
            terms["reconstruction"] = cfg.reconstruction_weight * rec
        if paired:
            terms["paired"] = self.paired(mapped, t)
            if cfg.ranking_weight > 0:
                docs, own = t, torch.arange(len(t), device=t.device)
                if self.ranking_documents is not None and len(self.ranking_documents):
                    docs = torch.cat([t, self.ranking_documents])
                terms["ranking"] = cfg.ranking_weight * self.ranking(mapped, t, docs, own)
            if back is not None:
                terms["paired_reverse"] = self.paired(back, s_unit)
        if self.proximal is not None:
            terms["proximal"] = cfg.proximal_weight * self.proximal()
        return terms

    def _losses(self, student_batch: torch.Tensor | np.ndarray, teacher_batch: torch.Tensor | np.ndarray,
                paired: bool) -> tuple[torch.Tensor, dict[str, float]]:
        """One discriminator step, then the adapter's total loss and every term as floats."""
        s = torch.as_tensor(student_batch, dtype=torch.float32, device=self.device)
        t = F.normalize(torch.as_tensor(teacher_batch, dtype=torch.float32, device=self.device), dim=-1)
        self.generator.train()
        logs: dict[str, float] = {}
        if self.d_optimizer is not None:
            logs.update(self._discriminator_step(s, t))
        terms = self._generator_losses(s, t, paired)
        if not terms:
            raise TrainingError("every loss weight is 0: nothing to train", hint="set some loss weights > 0")
        total = sum(terms.values())
        assert isinstance(total, torch.Tensor)
        logs.update({k: v.item() for k, v in terms.items()})
        logs["g_loss"] = total.item()
        return total, logs

    def train_step(self, student_batch: torch.Tensor | np.ndarray, teacher_batch: torch.Tensor | np.ndarray,
                   paired: bool = True) -> dict[str, float]:
        """One discriminator step then one adapter step; returns the losses as floats.

        Raises ``Diverged`` on a non-finite loss (``fit`` rolls back; callers of this alone decide)."""
        total, logs = self._losses(student_batch, teacher_batch, paired)
        return apply_loss(self, total, logs, self.config.grad_clip)

    # ------------------------------------------------------------------ the engine's stage

    def modules(self) -> dict[str, torch.nn.Module]:
        mods = {"generator": self.generator, "reverse": self.reverse, "discriminator": self.discriminator,
                "student_discriminator": self.student_discriminator}
        return {k: v for k, v in mods.items() if v is not None}

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.g_optimizer]

    def extra_optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.d_optimizer] if self.d_optimizer is not None else []

    def loss(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """A random batch (of pairs, or of each side apart when unpaired), then ``_losses``."""
        assert self._fit is not None, "loss() runs inside fit()"
        data, rng, batch = self._fit
        cfg = self.config
        idx_s = rng.integers(0, len(data.student), batch)
        idx_t = idx_s if data.paired else rng.integers(0, len(data.teacher), batch)
        if data.paired and cfg.ranking_weight > 0 and cfg.ranking_documents > 0:
            # may include a batch row's own text: harmless, it is then a near-duplicate document
            self.ranking_documents = torch.as_tensor(
                data.teacher[rng.integers(0, len(data.teacher), cfg.ranking_documents)], dtype=torch.float32,
                device=self.device)
        return self._losses(data.student[idx_s], data.teacher[idx_t], data.paired)

    def validate(self) -> dict[str, float]:
        assert self._fit is not None, "validate() runs inside fit()"
        return self._evaluate(self._fit[0])

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, data: AdapterData) -> dict[str, float]:
        """Held-out metrics (of the averaged weights under EMA); raises ``Diverged`` for non-finite or
        collapsed outputs."""
        with self.ema.averaged() if self.ema is not None else contextlib.nullcontext():
            return self._evaluate(data)

    @torch.no_grad()
    def _evaluate(self, data: AdapterData) -> dict[str, float]:
        if self._pool_cache is None or self._pool_cache[0] is not data:
            self._pool_cache = (data, retrieval_pool(data, self.config))
        return heldout_metrics(self.generator, data, self.config, self._pool_cache[1])

    # ------------------------------------------------------------------ the loop

    def engine_config(self, data: AdapterData, *, seed: int = 0, show_progress: bool = False,
                      start_step: int = 0) -> EngineConfig:
        cfg = self.config
        # warm-up times a cosine decay to 10% from step 1 (a warm-started refresh continues at start_step)
        schedule = Schedule(total_steps=cfg.max_steps, warmup_steps=cfg.warmup_steps, decay="cosine", floor=0.1,
                            warmup_overlaps_decay=True, offset=start_step + 1)
        return EngineConfig(max_steps=cfg.max_steps, eval_every=cfg.eval_every,
                            selection=selection_for(cfg.early_stopping_metric, metric_names(cfg, data)),
                            patience=cfg.patience, schedule=schedule, grad_clip=cfg.grad_clip,
                            on_divergence="rollback", max_rollbacks=cfg.max_rollbacks, rollback_lr_factor=0.5,
                            log_every=10, progress=f"adapter seed {seed}" if show_progress else None)

    def fit(self, data: AdapterData, *, seed: int = 0, show_progress: bool = False,
            start_step: int = 0) -> TrainingResult:
        """Train until ``max_steps`` or early stopping; returns the best healthy state."""
        started = time.perf_counter()
        if data.paired and len(data.student) != len(data.teacher):
            raise ValueError("paired data needs as many student as teacher rows")
        batch = min(self.config.batch_size, len(data.student), len(data.teacher))
        self._fit = (data, np.random.default_rng(seed), batch)
        try:
            run = TrainingEngine(self, self.engine_config(data, seed=seed, show_progress=show_progress,
                                                          start_step=start_step)).run()
        finally:
            self._fit = None
        return TrainingResult(adapter=self.generator, reverse=self.reverse, seed=seed, best_step=run.best_step,
                              best_metrics=run.best_metrics, initial_metrics=run.initial_metrics,
                              history=run.history, evals=run.evaluations, rollbacks=run.rollbacks,
                              stopped="max_steps" if run.stopped == "completed" else run.stopped, steps=run.steps,
                              seconds=time.perf_counter() - started)


# ---------------------------------------------------------------------- building

def build_adapter(config: AdapterConfig, input_dim: int, output_dim: int) -> Vec2VecAdapter:
    return Vec2VecAdapter(input_dim, output_dim, config.hidden_dims, config.activation, config.norm,
                          config.dropout, config.residual, config.latent_dim)
