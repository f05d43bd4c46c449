"""Stage B: a vec2vec-style adapter from a student's vector space into the teacher's.

- ``model``: ``Vec2VecAdapter`` (residual MLP, L2-normalised output, optional shared latent space)
- ``data``: vector directories read, checked and joined, then split (``AdapterData``, ``split_paired``)
- ``discriminator``, ``losses``, ``trainer`` (``AdapterTrainer``): the adapter's training stage (paired
  supervision, optionally adversarial) run by ``tava_core.training``'s engine, with its guards
- ``selection``: the held-out metrics and the rule that choose among maps (``SelectionSet``, ``selection_for``)
- ``start``: the closed-form start (``resolve_init``, ``fit_start``); ``keep``: the do-no-harm gates after
  training (``keep_learned``, ``keep_memory``); ``fit``: the best of N seeds (``train_best_of_seeds``)
- ``baselines``: identity, ridge, orthogonal Procrustes; ``metrics``: held-out alignment metrics
- ``io``: safetensors + JSON save/load; ``encoder``: ``AdaptedEncoder`` (student then adapter)
- ``run``: the whole stage in-process (the Prefect flow in ``flows/adapt.py`` wraps it)
"""
from .._lazy import lazy_exports
from .config import AdapterConfig

# The rest needs torch: loaded on first use (tava_core/_lazy.py), so the CLI checks a config fast.
__getattr__ = lazy_exports(__name__, {
    ".baselines": ["LinearMap", "fit_baselines", "fit_procrustes", "fit_ridge", "identity_map"],
    ".data": ["AdapterData", "split_paired", "split_unpaired"],
    ".discriminator": ["Discriminator"],
    ".encoder": ["AdaptedEncoder", "load_adapted_encoder"],
    ".io": ["load_adapter", "save_adapter"],
    ".losses": ["AdversarialLoss", "CycleConsistencyLoss", "GradientPenalty", "PairedSupervisionLoss",
                "RankingDistillationLoss", "ReconstructionLoss", "VectorSpacePreservationLoss"],
    ".metrics": ["alignment_metrics"],
    ".model": ["Vec2VecAdapter"],
    ".trainer": ["AdapterTrainer", "TrainingResult"],
})

__all__ = ["AdapterConfig", "Vec2VecAdapter", "Discriminator", "AdapterTrainer", "AdapterData", "TrainingResult",
           "split_paired", "split_unpaired", "AdversarialLoss", "GradientPenalty", "VectorSpacePreservationLoss",
           "CycleConsistencyLoss", "ReconstructionLoss", "PairedSupervisionLoss", "RankingDistillationLoss",
           "LinearMap", "fit_baselines",
           "fit_ridge", "fit_procrustes", "identity_map", "alignment_metrics", "save_adapter", "load_adapter",
           "AdaptedEncoder", "load_adapted_encoder"]
