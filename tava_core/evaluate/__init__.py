"""BEIR retrieval evaluation: mteb on local data, asymmetric modes, Matryoshka and quantisation.

`evaluate(EvalConfig(...))` runs everything in-process; flows/evaluate.py runs the same steps as
Prefect tasks. See `runner` for the steps, `metrics` for the exact (pytrec_eval-compatible)
numpy metrics, `mteb_adapter` for the custom mteb task and routing encoder.
"""
from .._lazy import lazy_exports
from .config import MODE_ROLES, EvalConfig

# The data loaders and the runner pull in torch and mteb: loaded on first use (tava_core/_lazy.py),
# so the CLI builds and checks an EvalConfig in a moment.
__getattr__ = lazy_exports(__name__, {
    ".data": ["RetrievalData", "load_retrieval_data"],
    ".runner": ["evaluate", "plan", "score_and_report"],
})

__all__ = ["EvalConfig", "MODE_ROLES", "RetrievalData", "load_retrieval_data", "evaluate", "plan",
           "score_and_report"]
