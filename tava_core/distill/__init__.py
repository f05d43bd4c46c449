"""Stage A: distil the teacher into a small student on unlabeled text.

``plan_distillation(config, home)`` checks the config and names the teacher vectors needed;
``distill(config, home)`` checks the inputs, trains a ``TransformerStudent`` or ``StaticStudent``
towards the teacher's cached vectors with ``DistillationLoss`` and saves a directory that
sentence-transformers loads as-is.
"""
from .._lazy import lazy_exports
from .config import DistillConfig

# The rest needs torch: loaded on first use (tava_core/_lazy.py), so the CLI checks a config fast.
__getattr__ = lazy_exports(__name__, {
    ".losses": ["DistillationLoss"],
    ".run": ["build_student", "check_student_config", "distill", "output_dir", "plan_distillation",
              "prepare_training"],
    ".students": ["StaticStudent", "TransformerStudent"],
    ".trainer": ["Trainer", "TrainResult", "check_corpus_size"],
})

__all__ = ["DistillConfig", "DistillationLoss", "TransformerStudent", "StaticStudent", "Trainer", "TrainResult",
           "check_corpus_size", "check_student_config", "build_student", "distill", "output_dir",
           "plan_distillation", "prepare_training"]
