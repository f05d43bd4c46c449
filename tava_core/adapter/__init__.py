"""Stage B: a vec2vec-style adapter from a student's vector space into the teacher's.

- ``model``: ``Vec2VecAdapter`` (residual MLP, L2-normalised output, optional shared latent space)
- ``discriminator``, ``losses``, ``trainer`` (``AdapterTrainer``): the adapter's training stage (paired
  supervision, optionally adversarial) run by ``tava_core.training``'s engine, with its guards
- ``baselines``: identity, ridge, orthogonal Procrustes; ``metrics``: held-out alignment metrics
- ``io``: safetensors + JSON save/load; ``encoder``: ``AdaptedEncoder`` (student then adapter)
- ``run``: the whole stage in-process (the Prefect flow in ``flows/adapt.py`` wraps it)
"""
from .baselines import LinearMap, fit_baselines, fit_procrustes, fit_ridge, identity_map
from .config import AdapterConfig
from .discriminator import Discriminator
from .encoder import AdaptedEncoder, load_adapted_encoder
from .io import load_adapter, save_adapter
from .losses import (AdversarialLoss, CycleConsistencyLoss, GradientPenalty, PairedSupervisionLoss,
                     RankingDistillationLoss, ReconstructionLoss, VectorSpacePreservationLoss)
from .metrics import alignment_metrics
from .model import Vec2VecAdapter
from .trainer import AdapterData, AdapterTrainer, TrainingResult, split_paired, split_unpaired

__all__ = ["AdapterConfig", "Vec2VecAdapter", "Discriminator", "AdapterTrainer", "AdapterData", "TrainingResult",
           "split_paired", "split_unpaired", "AdversarialLoss", "GradientPenalty", "VectorSpacePreservationLoss",
           "CycleConsistencyLoss", "ReconstructionLoss", "PairedSupervisionLoss", "RankingDistillationLoss",
           "LinearMap", "fit_baselines",
           "fit_ridge", "fit_procrustes", "identity_map", "alignment_metrics", "save_adapter", "load_adapter",
           "AdaptedEncoder", "load_adapted_encoder"]
