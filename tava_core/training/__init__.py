"""One training engine for every stage (distillation, adapter, compression).

- ``engine``: ``TrainingEngine`` and ``EngineConfig`` (the loop), ``EngineResult``
- ``stage``: ``TrainingStage`` (what a stage supplies) and ``Diverged``
- ``schedule``: warm-up and decay; ``selection``: the model-selection rule
- ``ema``: weight averaging; ``checkpoint``: atomic checkpoints and resume
"""
from .checkpoint import CheckpointConfig
from .ema import WeightAverage
from .engine import EngineConfig, EngineResult, TrainingEngine
from .schedule import Schedule
from .selection import Selection
from .stage import Diverged, TrainingStage

__all__ = ["CheckpointConfig", "WeightAverage", "EngineConfig", "EngineResult", "TrainingEngine", "Schedule",
           "Selection", "Diverged", "TrainingStage"]
