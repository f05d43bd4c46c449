"""Fitting every compression method on the same data, with the same early stopping (the training
engine's loop, ``tava_core.training``; this module supplies each method's model, batches and loss).

``train_method(method, dim, data, config)`` returns the fitted ``CompressionAdapter`` and a record.
Trained methods evaluate validation nDCG@10 at step 0 (the frozen, untrained compressor) and every
``eval_every`` steps, and keep the best state: with few labels a run can stop at its start, so a
compressor never scores below its frozen baseline on the validation split.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch

from ..encoders.device import resolve_device
from ..errors import ConfigError
from ..evaluate.metrics import cosine_scores, retrieval_metrics
from ..training import EngineConfig, Selection, TrainingEngine, TrainingStage
from .config import CompressConfig
from .data import (
    CompressionData,
    QuerySet,
    Triplets,
    mine_labeled_triplets,
    mine_pseudo_triplets,
    pseudo_qrels,
    top_documents,
)
from .losses import HeadwiseNTXentLoss, HingeTripletLoss, SimilarityPreservationLoss, SoftmaxRankingLoss
from .model import CompressionAdapter, ProjectionHeads, build_pca, build_prefix, count_parameters


@dataclass
class MethodResult:
    method: str
    dim: int
    model: CompressionAdapter
    validation_ndcg: float                 # best validation nDCG@10 (labels, or teacher neighbours)
    frozen_validation_ndcg: float          # the same at step 0 (untrained)
    validation: str = "labels"             # "labels" or "teacher-neighbours"
    best_step: int = 0
    steps: int = 0
    seconds: float = 0.0
    history: list[dict] = field(default_factory=list)
    choices: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {"method": self.method, "dim": self.dim, "validation_ndcg_at_10": self.validation_ndcg,
                "frozen_validation_ndcg_at_10": self.frozen_validation_ndcg, "validation": self.validation,
                "best_step": self.best_step, "steps": self.steps, "seconds": round(self.seconds, 2),
                "parameters": count_parameters(self.model), **self.choices}


def evaluate_model(model: CompressionAdapter | None, queries: QuerySet, corpus_ids: list[str], corpus: np.ndarray,
                   *, compressed_corpus: Optional[np.ndarray] = None) -> dict[str, float]:
    """nDCG@10, recall@100, MRR@10 of retrieval in the compressed space (``None``: uncompressed)."""
    if model is None:
        q, d = queries.vectors, corpus
    else:
        q = model.map_numpy(queries.vectors)
        d = compressed_corpus if compressed_corpus is not None else model.map_numpy(corpus)
    return retrieval_metrics(cosine_scores(q, d), queries.ids, corpus_ids, queries.qrels)


def _validator(queries: QuerySet, data: CompressionData) -> Callable[[CompressionAdapter], float]:
    """Validation nDCG@10: the mean of ``_per_query``."""
    per_query = _per_query(queries, data)
    return lambda model: float(per_query(model).mean())


def label_free_split(data: CompressionData, seed: int, fraction: float = 0.15,
                     max_heldout: int = 300) -> tuple[np.ndarray, np.ndarray, QuerySet]:
    """(training anchors, their own corpus rows or -1, pseudo-labeled validation queries) without labels:
    anchors = corpus documents + unlabeled query vectors; a share of the query vectors (documents when
    there are none) is held out, with the teacher's top 10 documents as its 'relevant' ones."""
    queries = data.unlabeled if data.unlabeled is not None else np.zeros((0, data.input_dim), np.float32)
    rng = np.random.default_rng(seed)
    if len(queries) >= 20:
        order = rng.permutation(len(queries))
        n_val = min(max_heldout, max(10, int(len(queries) * fraction)))
        val_vectors, train_queries = queries[order[:n_val]], queries[order[n_val:]]
        docs_kept = np.arange(len(data.corpus))
        val_docs = None
    else:
        order = rng.permutation(len(data.corpus))
        n_val = min(max_heldout, max(10, int(len(data.corpus) * fraction)))
        val_docs, docs_kept = order[:n_val], np.sort(order[n_val:])
        val_vectors, train_queries = data.corpus[val_docs], queries
    anchors = np.concatenate([data.corpus[docs_kept], train_queries]).astype(np.float32)
    own = np.concatenate([docs_kept, -np.ones(len(train_queries), np.int64)])
    ids, qrels = pseudo_qrels(val_vectors, data.corpus, data.corpus_ids, 10,
                              anchor_docs=None if val_docs is None else val_docs)
    return anchors, own, QuerySet(ids, val_vectors.astype(np.float32), qrels)


def _per_query(queries: QuerySet, data: CompressionData) -> Callable[[CompressionAdapter], np.ndarray]:
    """Validation nDCG@10 of every query (only the top 10 ranked: the cheap part of ``retrieval_metrics``)."""
    def per_query(model: CompressionAdapter) -> np.ndarray:
        scores = cosine_scores(model.map_numpy(queries.vectors), model.map_numpy(data.corpus))
        return retrieval_metrics(scores, queries.ids, data.corpus_ids, queries.qrels, ndcg_k=10, recall_k=10,
                                 mrr_k=10, per_query=True)["ndcg_at_10_per_query"]
    return per_query


def t_quantile(confidence: float, df: int) -> float:
    """One-sided Student-t quantile (Cornish-Fisher expansion around the normal; within 0.01 for df >= 3)."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf(confidence)
    return (z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)
            + (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * df ** 3))


def significant_gain(gains: np.ndarray, confidence: float) -> bool:
    """Is the mean per-query gain positive at ``confidence`` (one-sided paired t-test)?"""
    n = len(gains)
    if n < 2:
        return False
    mean, sd = float(np.mean(gains)), float(np.std(gains, ddof=1))
    if sd == 0.0:
        return mean > 0
    return mean - t_quantile(confidence, n - 1) * sd / np.sqrt(n) > 0


class TripletSampler:
    """Batches of (anchor, positive, K hard negatives) rows from ``Triplets``.

    With ``refresh_model`` and ``config.refresh_negatives_every`` > 0 the negative pools are re-mined
    every that many batches in the compressed space of the model being trained: the documents the
    compressor itself now ranks above the positives, not only the ones the teacher confused."""

    def __init__(self, triplets: Triplets, corpus: torch.Tensor, config: CompressConfig, rng: np.random.Generator,
                 *, refresh_model: Optional[CompressionAdapter] = None):
        self.t, self.corpus, self.config, self.rng = triplets, corpus, config, rng
        self.anchors = torch.as_tensor(triplets.anchors).to(corpus.device)
        self.pool_sizes = (triplets.negatives >= 0).sum(axis=1)
        self.refresh_model, self.batches, self.refreshes = refresh_model, 0, 0
        # every anchor's judged-relevant documents: never a negative, whoever mines the pool
        self.relevant: dict[int, set[int]] = {}
        for row, doc in zip(triplets.anchor_rows.tolist(), triplets.positives.tolist(), strict=False):
            self.relevant.setdefault(row, set()).add(doc)

    def refresh(self, model: CompressionAdapter) -> None:
        """Re-mine every pool: ``model``'s top documents of each anchor minus the anchor's positives."""
        t, relevant = self.t, self.relevant
        depth = t.negatives.shape[1]
        used = np.unique(t.anchor_rows)
        corpus = model.map_numpy(self.corpus.cpu().numpy())
        ranked = top_documents(model.map_numpy(t.anchors[used]), corpus, depth + max(map(len, relevant.values())))
        pools = {}
        for row, docs in zip(used.tolist(), ranked, strict=False):
            pool = [int(d) for d in docs if int(d) not in relevant[row]][:depth]
            pools[row] = pool + [-1] * (depth - len(pool))
        self.t = Triplets(t.anchors, t.anchor_rows, t.positives,
                          np.asarray([pools[row] for row in t.anchor_rows.tolist()], dtype=np.int64))
        self.pool_sizes = (self.t.negatives >= 0).sum(axis=1)
        self.refreshes += 1

    def sample(self) -> dict[str, torch.Tensor | np.ndarray]:
        cfg = self.config
        every = cfg.refresh_negatives_every
        if self.refresh_model is not None and every > 0 and self.batches > 0 and self.batches % every == 0:
            self.refresh(self.refresh_model)
        self.batches += 1
        t = self.t
        rows = self.rng.integers(0, len(t), min(cfg.batch_size, len(t)))
        sizes = self.pool_sizes[rows]
        cols = (self.rng.random((len(rows), cfg.negatives_per_anchor)) * np.maximum(sizes, 1)[:, None]).astype(int)
        negatives = t.negatives[rows[:, None], cols]
        negatives[sizes == 0] = -1
        return {"anchor_rows": t.anchor_rows[rows], "positives": t.positives[rows], "negatives": negatives}

    def encode(self, model: CompressionAdapter, batch: dict) -> tuple[torch.Tensor, ...]:
        """(anchors, positives, negatives (B, K[+B], d), mask) in the compressed space."""
        a = model(self.anchors[batch["anchor_rows"]])
        neg_rows = batch["negatives"]
        # every document of the batch once through the model (positives and negatives overlap)
        rows, inverse = np.unique(np.concatenate([batch["positives"], np.maximum(neg_rows, 0).reshape(-1)]),
                                  return_inverse=True)
        docs = model(self.corpus[rows])
        batch["doc_rows"], batch["docs"] = rows, docs
        p = docs[inverse[:len(neg_rows)]]
        n = docs[inverse[len(neg_rows):]].reshape(len(neg_rows), neg_rows.shape[1], -1)
        mask = torch.as_tensor(neg_rows >= 0, dtype=torch.float32, device=a.device)
        if self.config.in_batch_negatives and len(p) > 1:
            # the other anchors' positives, unless relevant to this anchor too (same doc or same anchor)
            same = (batch["positives"][:, None] == batch["positives"][None, :]) | \
                   (batch["anchor_rows"][:, None] == batch["anchor_rows"][None, :])
            n = torch.cat([n, p.unsqueeze(0).expand(len(p), -1, -1)], dim=1)
            mask = torch.cat([mask, torch.as_tensor(~same, dtype=torch.float32, device=a.device)], dim=1)
        return a, p, n, mask


class _CompressStage(TrainingStage):
    """A compressor's part of training: ``step_loss`` on a fresh batch; validation nDCG@10 (with the mean
    training loss since the previous validation, for the curves)."""

    divergence_hint = "lower --lr or the loss weights"

    def __init__(self, model: CompressionAdapter, groups: list[dict], step_loss: Callable[[], torch.Tensor],
                 validate: Callable[[CompressionAdapter], float], config: CompressConfig, label: str) -> None:
        self.model, self.step_loss, self.validate_model, self.label = model, step_loss, validate, label
        self.optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
        self.losses: list[float] = []

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model}

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.optimizer]

    def loss(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        self.model.train()
        loss = self.step_loss()
        self.losses.append(float(loss.detach()))
        return loss, {"loss": self.losses[-1]}

    def validate(self) -> dict[str, float]:
        self.model.eval()
        score = self.validate_model(self.model)
        mean_loss = float(np.mean(self.losses)) if self.losses else None
        self.losses = []
        return {"validation_ndcg_at_10": score, "loss": mean_loss}  # type: ignore[dict-item]


SELECTION = Selection("validation_ndcg_at_10", greater_is_better=True, tolerance=1e-6)


def _fit(model: CompressionAdapter, groups: list[dict], step_loss: Callable[[], torch.Tensor],
         validate: Callable[[CompressionAdapter], float], config: CompressConfig, *, label: str,
         per_query: Optional[Callable[[CompressionAdapter], np.ndarray]] = None,
         show_progress: bool = False) -> tuple[float, float, int, int, list[dict], bool]:
    """Optimise with early stopping on ``validate``; returns (best, frozen, best_step, steps, history,
    reverted) and leaves ``model`` at its best state, or at the untouched start when the best state's
    per-query gain over it is not significant (``config.min_gain_confidence``)."""
    frozen_state = copy.deepcopy(model.state_dict())
    engine_config = EngineConfig(max_steps=config.max_steps, eval_every=config.eval_every, selection=SELECTION,
                                 patience=config.patience, grad_clip=1.0, on_divergence="stop", log_every=0,
                                 progress=f"training {label}" if show_progress else None, progress_leave=False)
    run = TrainingEngine(_CompressStage(model, groups, step_loss, validate, config, label), engine_config).run()
    best, frozen, best_step = run.best_metrics[SELECTION.metric], run.initial_metrics[SELECTION.metric], run.best_step
    model.eval()
    reverted = False
    if best_step > 0 and per_query is not None and config.min_gain_confidence > 0:
        best_state = copy.deepcopy(model.state_dict())
        trained = per_query(model)
        model.load_state_dict(frozen_state)
        if significant_gain(trained - per_query(model), config.min_gain_confidence):
            model.load_state_dict(best_state)
        else:
            best, best_step, reverted = frozen, 0, True
        model.eval()
    return best, frozen, best_step, run.steps, run.evaluations, reverted


def choose_pca(data: CompressionData, dim: int, config: CompressConfig, hidden_dim: int = 0,
               method: str = "pca") -> tuple[CompressionAdapter, dict]:
    """PCA of the corpus, centred or not as configured (empty: whichever validates better)."""
    options = [config.pca_center] if config.pca_center is not None else [False, True]
    validate = _validator(data.validation, data)
    scored = []
    for center in options:
        model = build_pca(data.corpus, dim, center=center, hidden_dim=hidden_dim, method=method)
        scored.append((validate(model), center, model))
    score, center, model = max(scored, key=lambda item: item[0])
    return model, {"pca_center": center}


def _residual_parameters(model: CompressionAdapter, method: str) -> list[torch.nn.Parameter]:
    """The residual MLP's parameters: what the adaptor methods train."""
    if model.residual is None:
        raise ConfigError(f"{method} trains a residual MLP, and hidden_dim is 0", hint="set hidden_dim > 0, e.g. 512")
    return list(model.residual.parameters())


def train_method(method: str, dim: int, data: CompressionData, config: CompressConfig, *,
                 show_progress: bool = False) -> MethodResult:
    """Fit one method at one target dimension."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    began = time.perf_counter()
    label = f"{method} {dim}d"
    validate, per_query = _validator(data.validation, data), _per_query(data.validation, data)
    if method in ("pca", "truncate"):
        if method == "pca":
            model, choices = choose_pca(data, dim, config)
        else:
            model, choices = build_prefix(data.input_dim, dim), {}
        model.eval()
        score = validate(model)
        return MethodResult(method, dim, model, score, score, seconds=time.perf_counter() - began, choices=choices)

    # the corpus and the model on config.device; the fitted model is handed back on the CPU
    device = resolve_device(config.device)
    corpus = torch.as_tensor(data.corpus, dtype=torch.float32).to(device)
    validation = "labels"
    if method in ("dive", "dive-label-free"):
        model, choices = choose_pca(data, dim, config, hidden_dim=config.hidden_dim, method=method)
        if method == "dive":
            triplets = mine_labeled_triplets(data.train, data.corpus_ids, data.corpus, config.negative_depth)
        else:
            anchors, own, pseudo_val = label_free_split(data, config.seed)
            triplets = mine_pseudo_triplets(anchors, data.corpus, anchor_docs=own,
                                            positive_top=config.pseudo_positive_top,
                                            negative_ranks=config.negative_rank_range)
            validate, validation = _validator(pseudo_val, data), "teacher-neighbours"
            per_query = _per_query(pseudo_val, data)
        choices["triplets"] = len(triplets)
        heads = ProjectionHeads(dim, config.heads).to(device)
        sampler = TripletSampler(triplets, corpus, config, rng, refresh_model=model if method == "dive" else None)
        hinge, ntxent = HingeTripletLoss(config.margin, config.triplet_temperature), HeadwiseNTXentLoss(config.ntxent_temperature)
        groups = [{"params": list(model.residual.parameters()) if model.residual else [], "lr": config.lr},
                  {"params": list(heads.parameters()), "lr": config.lr}]
        if config.projection_lr_scale > 0:
            groups.append({"params": [model.projection.weight], "lr": config.lr * config.projection_lr_scale})
        groups = [g for g in groups if g["params"]]

        pseudo_sampler = None
        if method == "dive" and config.pseudo_triplet_weight > 0:
            pseudo = mine_pseudo_triplets(data.corpus, data.corpus, anchor_docs=np.arange(len(data.corpus)),
                                          positive_top=config.pseudo_positive_top,
                                          negative_ranks=config.negative_rank_range)
            pseudo_sampler = TripletSampler(pseudo, corpus, config, rng)
            choices["pseudo_triplets"] = len(pseudo)

        def step_loss() -> torch.Tensor:
            batch = sampler.sample()
            a, p, n, mask = sampler.encode(model, batch)
            loss = config.triplet_weight * hinge(a, p, n, mask)
            if pseudo_sampler is not None:
                loss = loss + config.pseudo_triplet_weight * hinge(*pseudo_sampler.encode(model, pseudo_sampler.sample()))
            if config.ntxent_weight > 0:
                # documents and anchors as two sets of items: a query and its own relevant document
                # must not be pushed apart as "different items"
                docs = batch["docs"][:config.ntxent_items]
                loss = loss + config.ntxent_weight * 0.5 * (ntxent(heads(docs)) + ntxent(heads(a[:config.ntxent_items])))
            return loss

    elif method == "search-adaptor":
        model, choices = build_prefix(data.input_dim, dim, hidden_dim=config.hidden_dim, method=method), {}
        triplets = mine_labeled_triplets(data.train, data.corpus_ids, data.corpus, config.negative_depth)
        choices["triplets"] = len(triplets)
        sampler = TripletSampler(triplets, corpus, config, rng, refresh_model=model)
        ranking = SoftmaxRankingLoss(config.ranking_temperature)
        groups = [{"params": _residual_parameters(model, method), "lr": config.lr}]

        def step_loss() -> torch.Tensor:
            batch = sampler.sample()
            a, p, n, mask = sampler.encode(model, batch)
            inputs = torch.cat([sampler.anchors[batch["anchor_rows"]], corpus[batch["positives"]]])
            return ranking(a, p, n, mask) + config.regularization_weight * model.residual_norm(inputs)

    elif method == "matryoshka-adaptor":
        model, choices = build_prefix(data.input_dim, dim, hidden_dim=config.hidden_dim, method=method), {}
        pool = data.corpus if data.unlabeled is None else np.concatenate([data.corpus, data.unlabeled])
        pool_t = torch.as_tensor(pool, dtype=torch.float32).to(device)
        group_size = 8       # a seed and its 7 nearest neighbours: the batch holds real top-k neighbours
        neighbours = top_documents(pool, pool, group_size - 1, exclude=np.arange(len(pool)))
        preserve = SimilarityPreservationLoss(config.similarity_top_k, config.pairwise_weight)
        groups = [{"params": _residual_parameters(model, method), "lr": config.lr}]

        def step_loss() -> torch.Tensor:
            seeds = rng.integers(0, len(pool), max(1, config.batch_size // group_size))
            rows = np.unique(np.concatenate([seeds, neighbours[seeds].reshape(-1)]))
            x = pool_t[rows]
            return preserve(model(x), x) + config.regularization_weight * model.residual_norm(x)
    else:
        raise ValueError(f"unknown method {method!r}")

    if model.hidden_dim == 0 and (method not in ("dive", "dive-label-free") or config.projection_lr_scale == 0):
        raise ConfigError(f"{method} has nothing to train: hidden_dim is 0"
                          + ("" if method not in ("dive", "dive-label-free") else " and the projection is frozen"),
                          hint="set --hidden-dim > 0 (e.g. 512)")
    model.to(device)   # in place: the optimizer groups above hold these very parameters
    try:
        best, frozen, best_step, steps, history, reverted = _fit(model, groups, step_loss, validate, config,
                                                                 label=label, per_query=per_query,
                                                                 show_progress=show_progress)
    finally:
        model.to("cpu")
    choices["reverted_to_frozen"] = reverted
    return MethodResult(method, dim, model, best, frozen, validation=validation, best_step=best_step, steps=steps,
                        seconds=time.perf_counter() - began, history=history, choices=choices)
