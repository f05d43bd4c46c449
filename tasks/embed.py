"""Prefect task: embed one text shard. The cache key is shard checksum + encoder fingerprint +
kind (+ where it goes), so a re-run, or a run after a crash, recomputes only what is missing."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.context import TaskRunContext

from tasks import retry_unless_tava_error

from tava_core.config import EncoderSpec
from tava_core.embed import ShardJob, embed_shard, vector_shard_is_current
from tava_core.encoders import load_encoder
from tava_core.errors import IntegrityError
from tava_core.io import stable_hash
from tava_core.manifest import ShardRecord


def embed_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
    """Reuse a cached record only while the vector shard it describes is still on disk and current
    (a deleted or damaged shard must be recomputed, whatever Prefect remembers)."""
    job: ShardJob = parameters["job"]
    fingerprint: str = parameters["fingerprint"]
    if not vector_shard_is_current(job.out_path, fingerprint=fingerprint, source_sha256=job.source_sha256,
                                   kind=job.kind):
        return None
    return "embed-" + stable_hash([job.source_sha256, fingerprint, job.kind, job.out_path])


@task(name="embed-shard", task_run_name="embed {job.text_shard}", retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=retry_unless_tava_error, cache_key_fn=embed_cache_key, persist_result=True)
def embed_shard_task(job: ShardJob, spec: EncoderSpec, fingerprint: str) -> ShardRecord:
    """Embed ``job`` with the encoder ``spec`` names (loaded once per worker process)."""
    encoder = load_encoder(spec)
    if encoder.fingerprint != fingerprint:
        # A worker that sees other weights than the planner would write vectors under a lie.
        raise IntegrityError(f"encoder on this worker has fingerprint {encoder.fingerprint[:12]}, "
                             f"the flow planned with {fingerprint[:12]}", path=Path(spec.model),
                             hint="make the same model files visible to every worker")
    # A per-shard bar: shards can be large, and on CPU they run one at a time anyway.
    return embed_shard(job, encoder, show_progress=True)
