"""Stage A: distil the teacher into a small student on unlabeled text.

``plan_distillation(config, home)`` checks the config and names the teacher vectors needed;
``distill(config, home)`` checks the inputs, trains a ``TransformerStudent`` or ``StaticStudent``
towards the teacher's cached vectors with ``DistillationLoss`` and saves a directory that
sentence-transformers loads as-is.
"""
from .config import DistillConfig
from .losses import DistillationLoss
from .run import build_student, check_student_config, distill, output_dir, plan_distillation, prepare_training
from .students import StaticStudent, TransformerStudent
from .trainer import Trainer, TrainResult, check_corpus_size

__all__ = ["DistillConfig", "DistillationLoss", "TransformerStudent", "StaticStudent", "Trainer", "TrainResult",
           "check_corpus_size", "check_student_config", "build_student", "distill", "output_dir",
           "plan_distillation", "prepare_training"]
