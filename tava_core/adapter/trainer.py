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
import copy
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Optional

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import ConfigError, TrainingError
from ..training import Diverged, EngineConfig, Schedule, Selection, TrainingEngine, TrainingStage, WeightAverage
from ..training.engine import apply_loss
from .baselines import LinearMap, fit_baselines, fit_procrustes, fit_ridge, normalize_rows
from .config import AdapterConfig
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
from .memory import ResidualMemory, build_memory, memory_rows
from .metrics import alignment_metrics, mean_pairwise_cosine, retrieval_overlap, top_k
from .model import Vec2VecAdapter

if TYPE_CHECKING:
    from .unsupervised import UnsupervisedSettings

log = logging.getLogger(__name__)


@dataclass
class SelectionSet:
    """Label-free in-domain rows that only choose, never train (``AdapterConfig.selection_*_vectors``): the
    student's ``queries`` (span views), mapped, should retrieve among ``documents`` (the teacher's vectors of
    the target collection) what the teacher's vectors of the same texts, ``targets``, retrieve."""

    queries: np.ndarray
    targets: np.ndarray
    documents: np.ndarray
    # the teacher's top-k of each target among the documents, per k: the same at every evaluation
    _target_top: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)

    def overlap(self, mapped_queries: np.ndarray, k: int) -> float:
        """selection_retrieval_overlap@k of the mapped queries."""
        if k not in self._target_top:
            self._target_top[k] = top_k(self.targets, self.documents, k)
        return retrieval_overlap(mapped_queries, self.targets, self.documents, k, target_top=self._target_top[k])

    @classmethod
    def from_rows(cls, student: np.ndarray, teacher: np.ndarray, query_like: np.ndarray) -> "SelectionSet":
        """Query-like rows (span views) are the queries, the other rows' teacher vectors the documents."""
        query_like = np.asarray(query_like, dtype=bool)
        if int(query_like.sum()) < MIN_QUERY_LIKE or int((~query_like).sum()) < MIN_QUERY_LIKE:
            raise ConfigError(f"the selection vectors hold {int(query_like.sum())} span views and "
                              f"{int((~query_like).sum())} documents; at least {MIN_QUERY_LIKE} of each are needed",
                              hint="embed the target collection's documents and its span views (`tava distill` "
                                   "writes them) with both encoders and give all four directories")
        return cls(student[query_like], teacher[query_like], teacher[~query_like])


@dataclass
class AdapterData:
    """Training vectors and held-out pairs. Paired: ``student[i]`` and ``teacher[i]`` are one text;
    unpaired: the two sides are different texts. Held-out rows are always pairs (may be empty)."""

    student: np.ndarray
    teacher: np.ndarray
    heldout_student: np.ndarray
    heldout_teacher: np.ndarray
    paired: bool
    # Query-like rows (span views): the adapter maps queries, so maps are compared on these when there
    # are enough (config.selection_rows). Per training row (paired only) and per held-out row; None = unknown.
    query_like: Optional[np.ndarray] = None
    heldout_query_like: Optional[np.ndarray] = None
    selection: Optional[SelectionSet] = None  # in-domain rows that choose maps (never trained on)

    @property
    def has_heldout(self) -> bool:
        return len(self.heldout_student) > 1

    def heldout_query_rows(self) -> Optional[np.ndarray]:
        """Indices of the query-like held-out rows, or None when there are fewer than ``MIN_QUERY_LIKE``."""
        if self.heldout_query_like is None:
            return None
        rows = np.flatnonzero(self.heldout_query_like)
        return rows if len(rows) >= MIN_QUERY_LIKE else None


# Fewest query-like held-out rows (or start-check rows) that maps are compared on; fewer -> all rows.
MIN_QUERY_LIKE = 50


def split_paired(x: np.ndarray, y: np.ndarray, config: AdapterConfig, seed: int = 0,
                 query_like: Optional[np.ndarray] = None) -> AdapterData:
    """Hold out a share of the pairs (the same split for every seed of a best-of-N run); ``query_like``
    (a bool per row: span views) follows its rows."""
    n = len(x)
    order = np.random.default_rng(seed).permutation(n)
    n_hold = int(min(config.holdout_max, max(2, round(n * config.holdout_fraction))))
    hold, train = order[:n_hold], order[n_hold:]
    mask = None if query_like is None else np.asarray(query_like, dtype=bool)
    return AdapterData(x[train], y[train], x[hold], y[hold], paired=True,
                       query_like=None if mask is None else mask[train],
                       heldout_query_like=None if mask is None else mask[hold])


def split_unpaired(x: np.ndarray, y: np.ndarray, config: AdapterConfig, seed: int = 0,
                   extra_student: Optional[np.ndarray] = None,
                   extra_teacher: Optional[np.ndarray] = None,
                   query_like: Optional[np.ndarray] = None) -> AdapterData:
    """Held-out pairs, then the remaining texts split in two disjoint halves: the student side
    sees one half, the teacher side the other, so no text is seen by both (pure vec2vec)."""
    base = split_paired(x, y, config, seed, query_like)
    order = np.random.default_rng(seed + 1).permutation(len(base.student))
    half = len(order) // 2
    student = base.student[order[:half]]
    teacher = base.teacher[order[half:]]
    if extra_student is not None and len(extra_student):
        student = np.concatenate([student, extra_student])
    if extra_teacher is not None and len(extra_teacher):
        teacher = np.concatenate([teacher, extra_teacher])
    return AdapterData(student, teacher, base.heldout_student, base.heldout_teacher, paired=False,
                       heldout_query_like=base.heldout_query_like)


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


def selection_for(metric: str, metric_names: Iterable[str]) -> Selection:
    """The held-out selection rule (early stopping, best-of-N seeds, the keep-learned gate) for
    ``config.early_stopping_metric``: mean cosine (ties: lower mean rank), retrieval overlap (to 4 decimals;
    ties: mean cosine) when it is measured, else mean rank (to 4 decimals; ties: mean cosine). Mean cosine
    and retrieval overlap are taken over the query-like held-out rows when they are measured ('query_'); retrieval
    overlap over the in-domain selection rows ('selection_', ``SelectionSet``) wins over both when measured."""
    names = list(metric_names)
    in_domain = next((name for name in names if name.startswith("selection_retrieval_overlap@")), None)
    if metric == "retrieval_overlap" and in_domain is not None:
        return Selection(in_domain, greater_is_better=True, decimals=4, tie_break="mean_cosine")
    if metric == "mean_cosine":
        return Selection("query_mean_cosine" if "query_mean_cosine" in names else "mean_cosine",
                         greater_is_better=True, tie_break="mean_rank", tie_break_greater_is_better=False)
    overlap = next((name for name in names if name.startswith("query_retrieval_overlap@")), None)
    overlap = overlap or next((name for name in names if name.startswith("retrieval_overlap@")), None)
    if metric == "retrieval_overlap" and overlap is not None:
        return Selection(overlap, greater_is_better=True, decimals=4, tie_break="mean_cosine")
    return Selection("mean_rank", greater_is_better=False, decimals=4, tie_break="mean_cosine")


def best_index(metrics: list[dict[str, float]], metric: str) -> int:
    """Which of several runs' held-out ``metrics`` is best by ``metric`` (the first of equals)."""
    return selection_for(metric, metrics[0] if metrics else ()).best_index(metrics)


def _metric_names(config: AdapterConfig, data: AdapterData) -> list[str]:
    """The held-out metrics ``evaluate`` will report (``alignment_metrics`` measures retrieval overlap only
    when the document pool is larger than k)."""
    n = len(data.heldout_student)
    k = min(config.knn_k, n - 1) if n > 1 else 0
    names = ["mean_cosine", "mean_rank"] if data.has_heldout else []
    pooled = data.has_heldout and min(config.retrieval_pool, len(data.teacher)) > k > 0
    if pooled:
        names.append(f"retrieval_overlap@{k}")
    if data.has_heldout and _query_rows(config, data) is not None:
        names.append("query_mean_cosine")
        if pooled:
            names.append(f"query_retrieval_overlap@{k}")
    if data.selection is not None:
        names.append(f"selection_retrieval_overlap@{_selection_k(config, data.selection)}")
    return names


def _selection_k(config: AdapterConfig, selection: SelectionSet) -> int:
    return min(config.knn_k, len(selection.documents) - 1)


def _query_rows(config: AdapterConfig, data: AdapterData) -> Optional[np.ndarray]:
    """The held-out rows maps are compared on besides all: the query-like ones, under selection_rows
    'query_like' and when there are enough of them; else None."""
    return data.heldout_query_rows() if config.selection_rows == "query_like" else None


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
                            selection=selection_for(cfg.early_stopping_metric, _metric_names(cfg, data)),
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


# ---------------------------------------------------------------------- building and best-of-N

def build_adapter(config: AdapterConfig, input_dim: int, output_dim: int) -> Vec2VecAdapter:
    return Vec2VecAdapter(input_dim, output_dim, config.hidden_dims, config.activation, config.norm,
                          config.dropout, config.residual, config.latent_dim)


def unsupervised_settings(config: AdapterConfig) -> "UnsupervisedSettings":
    """The unsupervised search's settings an adapter config sets (the rest are the search's defaults)."""
    from .unsupervised import UnsupervisedSettings

    return UnsupervisedSettings(domain_weight=config.domain_weight)


def fit_start(x: np.ndarray, y: np.ndarray, kind: str, seed: int = 0,
              domain: Optional[tuple[np.ndarray, np.ndarray]] = None, settings: Optional[Any] = None) -> LinearMap:
    """The closed-form map a skip path starts at: 'identity' (equal dimensions), 'ridge' or 'procrustes'
    (fitted on pairs), or 'unsupervised' (from the two sets' own geometry, no pairs; ``unsupervised.py``;
    ``domain``: each side's vectors of other in-domain texts, for its last step; ``settings``: its
    ``UnsupervisedSettings``, default when None)."""
    if kind == "unsupervised":
        from .unsupervised import fit_unsupervised

        source_domain, target_domain = domain if domain is not None else (None, None)
        return fit_unsupervised(x, y, seed=seed, settings=settings, domain_source=source_domain,
                                domain_target=target_domain).linear_map
    if kind == "identity":
        if x.shape[1] != y.shape[1]:
            raise ConfigError(f"init 'identity' needs equal dimensions, not {x.shape[1]} -> {y.shape[1]}",
                              hint="use init 'procrustes' or 'ridge'")
        return LinearMap("identity", np.eye(x.shape[1], dtype=np.float32))
    return fit_ridge(x, y) if kind == "ridge" else fit_procrustes(x, y)


@torch.no_grad()
def init_from_closed_form(adapter: Vec2VecAdapter, start: LinearMap) -> bool:
    """Start a direct adapter's linear skip path at a closed-form map (``fit_start``); False if it has
    no skip path (shared latent space, or no residual)."""
    skip = adapter.linear_skip()
    if skip is None or adapter.net is None:  # linear_skip() is None whenever net is
        return False
    if start.weight is None:
        raise ValueError("an identity map has no weight to start from; fit_start gives ridge or procrustes maps")
    skip.weight.copy_(torch.as_tensor(start.weight.T))
    if start.bias is not None:
        adapter.net.head.bias.copy_(torch.as_tensor(start.bias))
    else:
        adapter.net.head.bias.zero_()
    return True


# Paired 'auto' start: held-out retrieval overlap@10 a fitted map must gain over the next simpler
# start (identity, then Procrustes) to be preferred. Fitted maps tilt towards the training texts'
# domain, so near-ties go to the geometry-preserving start (bench/adapter.py, SciFact, generic
# pairs: Stage A transformer student overlap identity 0.643 / Procrustes 0.654 / ridge 0.666 but
# nDCG@10 0.630 / 0.624 / 0.620; model2vec student overlap 0.08 / 0.13 / 0.47, nDCG 0.14 / 0.09 /
# 0.46; MiniLM -> mpnet overlap Procrustes 0.527 / ridge 0.510, nDCG 0.462 / 0.384).
AUTO_START_MARGIN = 0.03
AUTO_START_HELDOUT = 2000  # held-out pairs the starts are compared on
# Second-moment agreement without pairs (SciFact bench, disjoint passages): Stage A students
# 0.93-0.94, the teacher against a random rotation or permutation of itself 0.18.
AUTO_IDENTITY_MOMENTS = 0.5


def retrieval_pool(data: AdapterData, config: AdapterConfig) -> np.ndarray:
    """Documents for the retrieval-overlap metric: a fixed sample of training teacher vectors."""
    n = min(config.retrieval_pool, len(data.teacher))
    rows = np.random.default_rng(0).choice(len(data.teacher), n, replace=False)
    return data.teacher[np.sort(rows)]


@torch.no_grad()
def heldout_metrics(adapter: Vec2VecAdapter, data: AdapterData, config: AdapterConfig,
                    pool: np.ndarray) -> dict[str, float]:
    """What early stopping, the best seed and the keep gates compare: the adapter's metrics on the held-out
    pairs (all, and the query-like ones) and on the in-domain selection rows; raises ``Diverged`` for
    non-finite or collapsed outputs."""
    probe = data.heldout_student if data.has_heldout else data.student[:512]
    mapped = adapter.map_numpy(probe)
    if not np.isfinite(mapped).all():
        raise Diverged("adapter outputs are not finite")
    spread = mean_pairwise_cosine(mapped)
    if spread > config.collapse_threshold:
        raise Diverged(f"adapter outputs collapsed (mean pairwise cosine {spread:.3f})")
    metrics: dict[str, float] = {"mean_pairwise_cosine": spread}
    if data.selection is not None:
        chosen = data.selection
        k = _selection_k(config, chosen)
        metrics[f"selection_retrieval_overlap@{k}"] = chosen.overlap(adapter.map_numpy(chosen.queries), k)
    if not data.has_heldout:
        return metrics
    metrics.update(alignment_metrics(mapped, data.heldout_teacher, k=config.knn_k, pool=pool))
    rows = _query_rows(config, data)
    if rows is not None:
        metrics.update(query_metrics(mapped[rows], data.heldout_teacher[rows], pool, config.knn_k))
    return metrics


def query_metrics(mapped: np.ndarray, target: np.ndarray, pool: np.ndarray, k: int) -> dict[str, float]:
    """Mean cosine and retrieval overlap@k (when the pool is larger than k) of query-like held-out rows."""
    out = {"query_mean_cosine": float((normalize_rows(mapped) * normalize_rows(target)).sum(1).mean())}
    k = min(k, len(mapped) - 1)
    if len(pool) > k > 0:
        out[f"query_retrieval_overlap@{k}"] = retrieval_overlap(mapped, target, pool, k)
    return out


def moment_alignment(x: np.ndarray, y: np.ndarray) -> float:
    """Cosine between the second-moment matrices ``x'x/n`` and ``y'y/m`` of two vector sets: needs no
    pairs, and is near 1 only when both sets live in the same coordinates (same space, same basis)."""
    a = x.T.astype(np.float64) @ x / max(len(x), 1)
    b = y.T.astype(np.float64) @ y / max(len(y), 1)
    return float((a * b).sum() / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def closed_form_overlaps(x: np.ndarray, y: np.ndarray, k: int = 10, pool_size: int = 5000,
                         seed: int = 0, query_like: Optional[np.ndarray] = None) -> dict[str, float]:
    """Held-out retrieval overlap@k of every closed-form start (identity when dims match, Procrustes,
    ridge), fitted on all but a held-out slice of the training pairs; ``pool_size`` of the rest are the
    document pool. With ``query_like`` (a bool per row), the slice is drawn from those rows only."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    candidates = order if query_like is None else order[np.asarray(query_like, dtype=bool)[order]]
    n_check = min(AUTO_START_HELDOUT, max(len(candidates) // 10, 1))
    check = candidates[:n_check]
    fit = order[~np.isin(order, check)]
    pool = y[fit[:pool_size]]
    return {name: retrieval_overlap(linear_map(x[check]), y[check], pool, min(k, len(pool) - 1))
            for name, linear_map in fit_baselines(x[fit], y[fit]).items()}


def resolve_init(config: AdapterConfig, x: np.ndarray, y: np.ndarray, *, paired: bool = True,
                 query_like: Optional[np.ndarray] = None) -> tuple[str, Optional[dict[str, float]]]:
    """The start ``config.init`` names; returns (start, the evidence for an 'auto' choice, else None).

    'auto', paired: the closed form whose held-out retrieval overlap is best, preferring the identity,
    then Procrustes, unless a fitted map beats it by ``AUTO_START_MARGIN`` (``closed_form_overlaps``):
    a Stage A student keeps the identity, an unrelated model of the same size does not (its coordinates
    may even match, as model2vec's do, without its vectors landing near the teacher's). Under
    selection_rows 'query_like' the overlaps are measured on query-like rows (``query_like``, a bool per
    row) when there are enough (evidence keys ``<map>_query_overlap``).
    'auto', unpaired: the identity when the two disjoint sets' ``moment_alignment`` is high (same
    coordinates), else the unsupervised linear start (``unsupervised.fit_unsupervised``)."""
    if config.init != "auto":
        return config.init, None
    if not paired:
        evidence = {} if x.shape[1] != y.shape[1] else {"second_moment": moment_alignment(x[:20000], y[:20000])}
        if evidence and evidence["second_moment"] >= AUTO_IDENTITY_MOMENTS:
            return "identity", evidence
        from .unsupervised import UnsupervisedSettings, minimum_vectors

        # the unsupervised start needs a linear skip path to start (no shared latent) and a few
        # vectors per k-means anchor; without either, the plain random start
        if config.latent_dim is not None or min(len(x), len(y)) < minimum_vectors(UnsupervisedSettings()):
            return "random", evidence or None
        return "unsupervised", evidence or {"dimensions_differ": 1.0}
    queries = query_like if config.selection_rows == "query_like" else None
    if queries is not None and int(np.sum(queries)) // 10 < MIN_QUERY_LIKE:
        queries = None  # too few to check on: all rows
    overlaps = closed_form_overlaps(x, y, k=config.knn_k, pool_size=config.retrieval_pool, query_like=queries)
    order = [name for name in ("identity", "procrustes", "ridge") if name in overlaps]
    start = order[0]
    for name in order[1:]:
        if overlaps[name] >= overlaps[start] + AUTO_START_MARGIN:
            start = name
    suffix = "_query_overlap" if queries is not None else "_overlap"
    return start, {f"{name}{suffix}": round(value, 4) for name, value in overlaps.items()}


def keep_learned(result: TrainingResult, start_state: dict[str, torch.Tensor], config: AdapterConfig,
                 data: AdapterData, start: str) -> dict[str, Any]:
    """The do-no-harm gate: keep the learned adapter only if its held-out selection metric beats the start's
    (step 0: the closed-form map or the warm-start adapter) by more than ``config.keep_learned_margin``;
    otherwise put the start's weights back (``result`` then reports step 0). Returns the decision."""
    selection = selection_for(config.early_stopping_metric, _metric_names(config, data))
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
    metric = selection_for(config.early_stopping_metric, _metric_names(config, data)).metric
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
