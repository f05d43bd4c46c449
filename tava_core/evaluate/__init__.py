"""BEIR retrieval evaluation: mteb on local data, asymmetric modes, Matryoshka and quantisation.

`evaluate(EvalConfig(...))` runs everything in-process; flows/evaluate.py runs the same steps as
Prefect tasks. See `runner` for the steps, `metrics` for the exact (pytrec_eval-compatible)
numpy metrics, `mteb_adapter` for the custom mteb task and routing encoder.
"""
from .config import MODE_ROLES, EvalConfig
from .data import RetrievalData, load_retrieval_data
from .runner import evaluate, plan, score_and_report

__all__ = ["EvalConfig", "MODE_ROLES", "RetrievalData", "load_retrieval_data", "evaluate", "plan",
           "score_and_report"]
