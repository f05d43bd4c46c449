"""BEIR retrieval evaluation: mteb on local data, asymmetric modes, Matryoshka and quantisation.

`evaluate(EvalConfig(...))` runs everything in-process; flows/evaluate.py runs the same steps as
Prefect tasks. See `runner` for the steps, `metrics` for the exact (pytrec_eval-compatible)
numpy metrics, `mteb_adapter` for the custom mteb task and routing encoder.
"""
from importlib import import_module
from typing import Any

from .config import MODE_ROLES, EvalConfig

# The data loaders and the runner pull in torch and mteb; they load on first use, so the CLI can
# build and check an EvalConfig in a moment.
_LAZY = {"RetrievalData": ".data", "load_retrieval_data": ".data", "evaluate": ".runner", "plan": ".runner",
         "score_and_report": ".runner"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["EvalConfig", "MODE_ROLES", "RetrievalData", "load_retrieval_data", "evaluate", "plan",
           "score_and_report"]
