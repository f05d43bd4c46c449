"""BEIR retrieval evaluation: mteb on local data, asymmetric modes, Matryoshka and quantisation.

flows/evaluate.py chains the steps of `runner` (plan, embed the corpus, encode queries, score and
report) as Prefect tasks; it is the only orchestrator. See `runner` for the steps, `metrics` for
the exact (pytrec_eval-compatible) numpy metrics, `mteb_adapter` for the custom mteb task and routing encoder.
"""
from .config import MODE_ROLES, EvalConfig
from .data import RetrievalData, load_retrieval_data
from .runner import encoding_plan, evaluation_record, plan, score_and_report

__all__ = ["EvalConfig", "MODE_ROLES", "RetrievalData", "load_retrieval_data", "encoding_plan", "evaluation_record",
           "plan", "score_and_report"]
