"""BEIR retrieval evaluation: mteb on local data, asymmetric modes, Matryoshka and quantisation.

flows/evaluate.py chains the steps of `runner` (plan, embed the corpus, encode queries, score and
report) as Prefect tasks; it is the only orchestrator. See `runner` for the steps, `metrics` for
the exact (pytrec_eval-compatible) numpy metrics, `mteb_adapter` for the custom mteb task and routing encoder.
"""
from .._lazy import lazy_exports
from .config import MODE_ROLES, EvalConfig

# The data loaders and the runner pull in torch and mteb: loaded on first use (tava_core/_lazy.py),
# so the CLI builds and checks an EvalConfig in a moment.
__getattr__ = lazy_exports(__name__, {
    ".data": ["RetrievalData", "load_retrieval_data"],
    ".runner": ["encoding_plan", "evaluation_record", "plan", "score_and_report"],
})

__all__ = ["EvalConfig", "MODE_ROLES", "RetrievalData", "load_retrieval_data", "encoding_plan", "evaluation_record",
           "plan", "score_and_report"]
