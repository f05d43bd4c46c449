"""Prefect tasks of `tava evaluate`: plan (all checks), embed the corpus per document encoder
(cached on corpus checksum + encoder fingerprint), encode queries (timed), score and report; an identical
earlier evaluation is served from its report. Tasks pass the config, paths and small records; vectors stay on disk."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from prefect import task
from prefect.context import TaskRunContext

from tava_core.evaluate import EvalConfig, load_retrieval_data
from tava_core.evaluate.runner import earlier_report, load_encoders, plan, query_vector_path, score_and_report
from tava_core.evaluate.vectors import embed_corpus, encode_queries
from tava_core.home import TavaHome
from tava_core.io import stable_hash


@task(name="evaluate-plan", task_run_name="check {config.dataset} ({config.split})")
def plan_task(config: EvalConfig, home: Optional[str] = None) -> dict[str, Any]:
    """Read and check the data, load the encoders, check pair dims; before any encoding. Also finds
    the report of an identical earlier evaluation, which the flow then serves (``config.reuse``)."""
    tava_home = TavaHome(home)
    data, encoders, modes = plan(config, tava_home)
    return {"dataset": data.summary(), "modes": modes,
            "encoders": {role: enc.info() for role, enc in encoders.items()},
            "earlier_report": earlier_report(config, tava_home, data, encoders)}


def corpus_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
    """Reuse only while the vectors are on disk (a deleted cache must be recomputed)."""
    dirs = parameters.get("expected_dir")
    if not dirs or not (Path(dirs) / "manifest.json").is_file():
        return None
    return "evaluate-corpus-" + stable_hash([parameters["corpus_checksum"], parameters["fingerprint"], dirs])


@task(name="evaluate-embed-corpus", task_run_name="embed corpus with {role}", retries=1,
      cache_key_fn=corpus_cache_key, persist_result=True)
def embed_corpus_task(config: EvalConfig, role: str, corpus_checksum: str, fingerprint: str,
                      expected_dir: str, home: Optional[str] = None) -> str:
    """Document vectors of the corpus by the ``role`` encoder; returns their directory."""
    tava_home = TavaHome(home)
    data = load_retrieval_data(config.dataset, config.split, tava_home)
    encoder = load_encoders(config)[role]
    return str(embed_corpus(data, encoder, tava_home, batch_size=config.batch_size))


@task(name="evaluate-encode-queries", task_run_name="encode queries with {role}")
def encode_queries_task(config: EvalConfig, role: str, home: Optional[str] = None) -> dict[str, Any]:
    """The split's queries by the ``role`` encoder (timed: queries/second)."""
    tava_home = TavaHome(home)
    data = load_retrieval_data(config.dataset, config.split, tava_home)
    encoder = load_encoders(config)[role]
    return encode_queries(data, encoder, query_vector_path(tava_home, data, encoder), batch_size=config.batch_size)


# log_prints off here: mteb hashes through `datasets`/dill, whose nestedglobals() reads dis.dis()
# output by capturing stdout; Prefect's print capture would steal that output (pages of bytecode
# in the run log) and leave dill's capture empty.
@task(name="evaluate-score-and-report", task_run_name="score {config.dataset} and report", log_prints=False)
def score_task(config: EvalConfig, corpus_dirs: dict[str, str], query_records: dict[str, dict[str, Any]],
               home: Optional[str] = None) -> dict[str, Any]:
    """mteb + numpy scores of every mode and variant; the report directory, written atomically."""
    tava_home = TavaHome(home)
    data = load_retrieval_data(config.dataset, config.split, tava_home)
    return score_and_report(config, tava_home, data, load_encoders(config), corpus_dirs, query_records)
