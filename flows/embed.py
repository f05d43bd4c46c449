"""Flow: embed a dataset's text shards into vector shards, one task per shard.

    plan (which shards, where)  ->  embed shards (threads or Dask; cached per shard; skipped
                                    altogether when every shard is current)
                                ->  write each collection's manifest (last, atomically)
"""
from __future__ import annotations

from typing import Optional

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.embed import embed_shard_task, import_vectors_task
from tava_core.embed import (
    EmbedConfig,
    ShardJob,
    collection_lock,
    current_jobs,
    current_records,
    plan_collection,
    write_vector_manifest,
)
from tava_core.encoders import load_encoder
from tava_core.encoders.device import available_devices, device_for_shard, device_name
from tava_core.home import TavaHome, find_dataset
from tava_core.interrupt import stop_workers_on_interrupt
from tava_core.manifest import ShardRecord, load_dataset_manifest
from tava_core.records import EmbedResult, VectorSet


def shard_devices(config: EmbedConfig) -> list[str]:
    """Devices shards are spread over: every GPU when the device is 'auto' and there are several,
    else the one device the spec names (so the encoder is loaded once and shared)."""
    if config.encoder.device == "auto":
        gpus = [d for d in available_devices() if d.startswith("cuda")]
        if len(gpus) > 1:
            return gpus
    return [config.encoder.device]


def make_task_runner(config: EmbedConfig, n_devices: int):
    """Prefect's thread pool (default) or a Dask cluster through prefect-dask."""
    if config.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if config.dask_address:
            return DaskTaskRunner(address=config.dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": config.dask_workers, "threads_per_worker": 1,
                                              "processes": True, "dashboard_address": None})
    return ThreadPoolTaskRunner(max_workers=config.max_workers or n_devices)


def device_tag(device: str) -> str:
    """Tag of every shard task that runs on ``device``. A Prefect concurrency limit on it caps
    the shards on that device at once, across runs, flows and Dask workers:
    `prefect concurrency-limit create tava-device:cuda:0 1` (one per GPU). ``device`` is resolved first
    ('auto' and 'cuda' name the GPU they run on), so such a limit holds whatever the spec said."""
    return f"tava-device:{device_name(device)}"


@flow(name="embed-shards")
def embed_shards(jobs: list[ShardJob], specs: list, fingerprint: str) -> list[ShardRecord]:
    """Submit one task per shard (shard i on device i mod n) and collect records in order."""
    futures = []
    for i, job in enumerate(jobs):
        spec = device_for_shard(i, specs)
        futures.append(embed_shard_task.with_options(tags={device_tag(spec.device)}).submit(job, spec, fingerprint))
    progress_id = create_progress_artifact(progress=0.0, key="embed-progress",
                                           description=f"{len(jobs)} shards") if jobs else None
    from tava_core.progress import progress_bar

    records: list[ShardRecord] = []
    with stop_workers_on_interrupt(), progress_bar(total=len(futures), desc="embed shards", unit="shard") as bar:
        for done, future in enumerate(futures, start=1):
            records.append(future.result())
            bar.update(1)
            if progress_id is not None:
                update_progress_artifact(progress_id, progress=100.0 * done / len(futures))
    return records


# The flow's default parameters, built once: Prefect shows them in the deployment's form, and
# the flows only read their config.
DEFAULT_EMBED_CONFIG = EmbedConfig()


def computed_backends(jobs: list[ShardJob], reused: list[ShardJob]) -> list[str]:
    """The runtimes ('onnx', 'torch') that encoded the shards this run computed, as each shard records it."""
    from tava_core.io import vector_shard_metadata

    computed = [job for job in jobs if job not in reused]
    return sorted({str(vector_shard_metadata(job.out_path).get("backend")) for job in computed} - {"None"})


@flow(name="embed-dataset", log_prints=True)
def embed_dataset_flow(config: EmbedConfig = DEFAULT_EMBED_CONFIG, home: Optional[str] = None) -> EmbedResult:
    """Embed the requested collections of an ingested dataset with one encoder.

    Args:
        config: Which dataset and collections, which encoder, and on what workers (threads or Dask).
        home: tava home directory (data, vectors, artifacts, reports); empty = $TAVA_HOME, else ./.tava.
    """
    tava_home = TavaHome(home)
    dataset_dir = find_dataset(tava_home, config.dataset)
    manifest = load_dataset_manifest(dataset_dir)
    encoder = load_encoder(config.encoder)
    devices = shard_devices(config)
    specs = [config.encoder.model_copy(update={"device": d}) for d in devices]
    runner = make_task_runner(config, len(devices))

    logger = get_run_logger()
    results = []
    for collection in config.collections or list(manifest.collections):
        out_dir, jobs = plan_collection(tava_home, dataset_dir, manifest, collection, encoder)
        with collection_lock(out_dir, timeout=config.lock_timeout_seconds):  # plan to manifest: one run at a time
            reused = current_jobs(jobs, encoder.fingerprint)  # read once: the counts and the skip below
            # Every shard already current (a re-run): nothing to schedule, so no sub-flow and no workers.
            records = current_records(jobs, reused)
            if records is None and config.import_vectors:
                records = import_vectors_task(config, jobs, encoder.fingerprint)
            elif records is None:
                records = embed_shards.with_options(task_runner=runner)(jobs, specs, encoder.fingerprint)
            reused_rows = sum(job.rows for job in reused)
            work = dict(computed_shards=len(jobs) - len(reused),
                        computed_rows=sum(job.rows for job in jobs) - reused_rows,
                        reused_shards=len(reused), reused_rows=reused_rows)
            backends = computed_backends(jobs, reused)
            logger.info("%s: %d shards %s (%d rows), %d reused (%d rows) by %s%s", collection,
                        work["computed_shards"], "imported" if config.import_vectors else "computed",
                        work["computed_rows"], work["reused_shards"], work["reused_rows"], encoder.name,
                        f", backend {' and '.join(backends)}" if backends else "")
            write_vector_manifest(out_dir, manifest, collection, encoder, records)
        results.append(VectorSet(collection=collection, vectors_dir=str(out_dir), rows=sum(r.rows for r in records),
                                 shards=len(records), dim=encoder.dim, **work, backends=backends,
                                 imported_from=config.import_vectors if work["computed_shards"] else None))
    return EmbedResult(dataset=manifest.name, encoder=encoder.info(), collections=results)


if __name__ == "__main__":
    embed_dataset_flow()
