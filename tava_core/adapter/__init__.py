"""Stage B: a vec2vec-style adapter from a student's vector space into the teacher's.

- ``model``: ``Vec2VecAdapter`` (residual MLP, L2-normalised output, optional shared latent space)
- ``discriminator``, ``losses``, ``trainer`` (``AdapterTrainer``): the adapter's training stage (paired
  supervision, optionally adversarial) run by ``tava_core.training``'s engine, with its guards
- ``baselines``: identity, ridge, orthogonal Procrustes; ``metrics``: held-out alignment metrics
- ``io``: safetensors + JSON save/load; ``encoder``: ``AdaptedEncoder`` (student then adapter)
- ``run``: the whole stage in-process (the Prefect flow in ``flows/adapt.py`` wraps it)
"""
from .._lazy import lazy_exports
from .config import AdapterConfig

# The rest needs torch: loaded on first use (tava_core/_lazy.py), so the CLI checks a config fast.
__getattr__ = lazy_exports(__name__, {
    ".baselines": ["LinearMap", "fit_baselines", "fit_procrustes", "fit_ridge", "identity_map"],
    ".discriminator": ["Discriminator"],
    ".encoder": ["AdaptedEncoder", "load_adapted_encoder"],
    ".io": ["load_adapter", "save_adapter"],
    ".losses": ["AdversarialLoss", "CycleConsistencyLoss", "GradientPenalty", "PairedSupervisionLoss",
                "RankingDistillationLoss", "ReconstructionLoss", "VectorSpacePreservationLoss"],
    ".metrics": ["alignment_metrics"],
    ".model": ["Vec2VecAdapter"],
    ".trainer": ["AdapterData", "AdapterTrainer", "TrainingResult", "split_paired", "split_unpaired"],
})

__all__ = ["AdapterConfig", "Vec2VecAdapter", "Discriminator", "AdapterTrainer", "AdapterData", "TrainingResult",
           "split_paired", "split_unpaired", "AdversarialLoss", "GradientPenalty", "VectorSpacePreservationLoss",
           "CycleConsistencyLoss", "ReconstructionLoss", "PairedSupervisionLoss", "RankingDistillationLoss",
           "LinearMap", "fit_baselines",
           "fit_ridge", "fit_procrustes", "identity_map", "alignment_metrics", "save_adapter", "load_adapter",
           "AdaptedEncoder", "load_adapted_encoder"]
