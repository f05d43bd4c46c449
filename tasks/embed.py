"""Prefect tasks: embed one text shard; import a collection's vectors from a store's export. A vector
shard whose metadata names the same source shard checksum, encoder fingerprint and kind is not recomputed (the core decides: the one cache rule of
``tava_core.reuse``), so a re-run, or a run after a crash, recomputes only what is missing."""
from __future__ import annotations

from pathlib import Path

from prefect import task

from tasks import CORE_DECIDES, retry_unless_tava_error
from tava_core.config import EncoderSpec
from tava_core.embed import EmbedConfig, ShardJob, embed_shard, import_vectors
from tava_core.encoders import load_encoder
from tava_core.errors import IntegrityError
from tava_core.manifest import ShardRecord


@task(name="embed-shard", task_run_name="embed {job.text_shard}", retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=retry_unless_tava_error, cache_policy=CORE_DECIDES)
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


@task(name="import-vectors", task_run_name="import {config.import_vectors}", cache_policy=CORE_DECIDES)
def import_vectors_task(config: EmbedConfig, jobs: list[ShardJob], fingerprint: str) -> list[ShardRecord]:
    """The collection's vector shards from the file ``config.import_vectors`` names, checked against the
    encoder on a sample of texts (``tava_core.imported``); no retries: a bad file stays bad."""
    encoder = load_encoder(config.encoder)
    if encoder.fingerprint != fingerprint:
        raise IntegrityError("the encoder changed since the flow planned", path=Path(config.encoder.model))
    return import_vectors(config, jobs, encoder)
