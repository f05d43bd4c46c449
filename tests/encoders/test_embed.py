"""Sharded embedding: vectors right, per-shard caching, crash + re-run, Dask == threads."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from damaged_models import DAMAGED_KINDS, damaged_model
from helpers import synthetic_texts, write_dataset

from tava_core.config import EncoderSpec
from tava_core.embed import EmbedConfig, embed_dataset
from tava_core.encoders import load_encoder
from tava_core.home import TavaHome
from tava_core.io import vector_shard_metadata
from tava_core.manifest import load_vector_manifest, read_vector_dir

PROJECT = Path(__file__).resolve().parents[2]


def _mtimes(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in directory.glob("shard-*.parquet")}


def test_embed_dataset_writes_exact_vectors_and_skips_current_shards(tava_home, tiny_model_dir):
    texts = synthetic_texts(130)
    write_dataset(tava_home, "toy", {"texts": texts, "queries": texts[:20]}, shard_size=50)
    config = EmbedConfig(dataset="toy", encoder=EncoderSpec(model=str(tiny_model_dir)))
    outputs = embed_dataset(config, TavaHome(tava_home))
    ids, vectors, manifest = read_vector_dir(outputs["texts"])
    encoder = load_encoder(config.encoder)
    assert ids == [f"t{i}" for i in range(130)] and len(manifest.shards) == 3
    np.testing.assert_allclose(vectors, encoder.encode(texts), atol=1e-5)
    assert manifest.dim == 32 and manifest.fingerprint == encoder.fingerprint
    assert vector_shard_metadata(outputs["queries"] / "shard-00000.parquet")["kind"] == "query"

    before = _mtimes(outputs["texts"])
    (outputs["texts"] / "shard-00001.parquet").unlink()
    embed_dataset(config, TavaHome(tava_home))
    after = _mtimes(outputs["texts"])
    assert after["shard-00000.parquet"] == before["shard-00000.parquet"]  # not recomputed
    assert after["shard-00002.parquet"] == before["shard-00002.parquet"]
    assert "shard-00001.parquet" in after  # the missing one was
    np.testing.assert_allclose(read_vector_dir(outputs["texts"])[1], vectors, atol=1e-6)


def test_changed_text_shard_is_refused(tava_home, tiny_model_dir):
    from tava_core.errors import IntegrityError
    from tava_core.io import write_text_shard

    dataset_dir = write_dataset(tava_home, "toy", {"texts": synthetic_texts(10)})
    write_text_shard(dataset_dir / "texts/shard-00000.parquet", {"id": ["a"], "text": ["tampered"]})
    with pytest.raises(IntegrityError, match="changed since it was ingested"):
        embed_dataset(EmbedConfig(dataset="toy", encoder=EncoderSpec(model=str(tiny_model_dir))), TavaHome(tava_home))



@pytest.mark.parametrize("kind", DAMAGED_KINDS)
def test_nan_vectors_are_refused_and_nothing_is_written(tava_home, tiny_model_dir, tmp_path, kind):
    """An encoder whose damaged weights give NaN (the audit: an adapter file overwritten in the middle)
    is refused naming it and its directory; no vector shard, manifest or current marker is left, so a
    re-run encodes again (and is refused again) instead of reusing NaN vectors."""
    from tava_core.embed import embed_shard, plan_collection
    from tava_core.errors import ModelLoadError
    from tava_core.manifest import load_dataset_manifest

    bad = damaged_model(kind, tmp_path, tiny_model_dir)
    dataset_dir = write_dataset(tava_home, "toy", {"texts": synthetic_texts(60), "queries": synthetic_texts(30)},
                                shard_size=25)
    home = TavaHome(tava_home)
    config = EmbedConfig(dataset="toy", collections=["queries"], encoder=EncoderSpec(model=str(bad)))
    encoder = load_encoder(config.encoder)
    out_dir, jobs = plan_collection(home, dataset_dir, load_dataset_manifest(dataset_dir), "queries", encoder)
    for _ in range(2):
        with pytest.raises(ModelLoadError) as info:
            embed_dataset(config, home)
        message = str(info.value)
        assert info.value.path == str(bad.resolve()) and f"encoder {bad.name!r}" in message
        assert "holding NaN for 25 of 25 texts of shard-00000.parquet" in message
        assert "weights" in message and "damaged" in message and "no vector shard was written" in message
        assert not list(out_dir.glob("*.parquet")) and not (out_dir / "manifest.json").exists()
    with pytest.raises(ModelLoadError, match="5 of 5 texts of shard-00001.parquet"):
        embed_shard(jobs[1], encoder)
    assert not Path(jobs[1].out_path).exists()


@pytest.mark.slow
def test_flow_is_cached_and_dask_gives_the_same_vectors_and_index(tava_home, tiny_model_dir, prefect_harness):
    """Scale-out: the embedding and index steps on a local two-process Dask cluster give the same
    vectors and the same search results as one process; shard tasks carry their device's tag."""
    from distributed import Client, LocalCluster
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName
    from prefect_dask import DaskTaskRunner

    from flows.embed import device_tag, embed_dataset_flow
    from flows.index import rebuild_index
    from tava_core.index import IndexConfig, load_index, search

    write_dataset(tava_home, "toy", {"texts": synthetic_texts(120)}, shard_size=40)
    spec = EncoderSpec(model=str(tiny_model_dir), device="cpu")
    first = embed_dataset_flow(EmbedConfig(dataset="toy", encoder=spec), home=str(tava_home))
    out_dir = Path(first.collections[0].vectors_dir)
    ids, vectors, _ = read_vector_dir(out_dir)
    before = _mtimes(out_dir)
    second = embed_dataset_flow(EmbedConfig(dataset="toy", encoder=spec), home=str(tava_home))
    assert second.collections[0].rows == 120 and _mtimes(out_dir) == before
    assert first.collections[0].backends and second.collections[0].backends == []  # nothing encoded the second time
    index_config = IndexConfig(vectors=str(out_dir), factory="HNSW32,Flat", recall_queries=20)
    local_index = rebuild_index(index_config, home=str(tava_home))

    # The same two steps on a local two-process Dask cluster (one thread each: one shard per worker).
    dask_home = tava_home.parent / "dask-home"
    write_dataset(dask_home, "toy", {"texts": synthetic_texts(120)}, shard_size=40)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        result = embed_dataset_flow(EmbedConfig(dataset="toy", encoder=spec, task_runner="dask",
                                                dask_address=cluster.scheduler_address), home=str(dask_home))
        dask_dir = result.collections[0].vectors_dir
        dask_index = rebuild_index.with_options(task_runner=DaskTaskRunner(address=cluster.scheduler_address))(
            index_config.model_copy(update={"vectors": dask_dir}), home=str(dask_home))
        worked = client.run(lambda: {m: m in __import__("sys").modules for m in ("transformers", "faiss")})
    assert len(worked) == 2
    assert any(w["transformers"] for w in worked.values()), "no shard was embedded on a Dask worker"
    assert any(w["faiss"] for w in worked.values()), "the index was not built on a Dask worker"

    dask_ids, dask_vectors, _ = read_vector_dir(dask_dir)
    assert dask_ids == ids
    np.testing.assert_allclose(dask_vectors, vectors, atol=1e-6)
    assert dask_index.count == local_index.count == 120
    queries = vectors[::7]
    local_hits, local_scores = search(load_index(local_index.index_dir), queries, k=10)
    dask_hits, dask_scores = search(load_index(dask_index.index_dir), queries, k=10)
    assert dask_hits == local_hits and [row[0] for row in local_hits] == ids[::7]
    np.testing.assert_allclose(dask_scores, local_scores, atol=1e-5)

    # Every shard task is tagged with its device, so a Prefect concurrency limit on the tag
    # (`prefect concurrency-limit create tava-device:cuda:0 1`) caps shards per GPU.
    with get_client(sync_client=True) as prefect_client:
        shard_runs = prefect_client.read_task_runs(task_run_filter=TaskRunFilter(
            name=TaskRunFilterName(like_=tava_home.parent.name)))  # this test's shards only
    assert shard_runs and all(device_tag("cpu") in run.tags for run in shard_runs)


@pytest.mark.slow
def test_killed_run_resumes_with_every_id_exactly_once(tava_home, teacher_path, prefect_api_url):
    """A real SIGKILL part-way through `tava embed`, then a re-run that only does what is missing.
    (That a killed CLI leaves no process behind, its temporary server included: test_cli_manners.)"""
    texts = synthetic_texts(300, seed=3)
    write_dataset(tava_home, "big", {"texts": texts}, shard_size=15)
    env = {**os.environ, "TAVA_HOME": str(tava_home), "PREFECT_HOME": str(tava_home / "prefect"),
           "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(tava_home / "prefect" / "results"),
           "PREFECT_API_URL": prefect_api_url}
    cmd = [sys.executable, "-m", "flows.cli", "embed", "--dataset", "big", "--encoder", "all-MiniLM-L6-v2",
           "--encoder-batch-size", "16"]
    proc = subprocess.Popen(cmd, cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    vectors_root = tava_home / "vectors" / "big" / "texts"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            done = list(vectors_root.glob("*/shard-*.parquet"))
            if len(done) >= 3:
                break
            assert proc.poll() is None, "embedding finished before it could be killed"
            time.sleep(0.2)
        else:
            pytest.fail("no shards appeared within 240 s")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    out_dir = next(vectors_root.iterdir())
    assert not (out_dir / "manifest.json").exists(), "the run was killed before the manifest"
    survivors = _mtimes(out_dir)
    assert 3 <= len(survivors) < 20

    rerun = subprocess.run(cmd, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    manifest = load_vector_manifest(out_dir)
    ids, vectors, _ = read_vector_dir(out_dir)
    assert len(manifest.shards) == 20 and sorted(ids) == sorted(f"t{i}" for i in range(300))
    assert len(set(ids)) == len(ids) == 300
    assert not list(out_dir.glob(".*tmp*")), "no temporary files left behind"
    after = _mtimes(out_dir)
    assert all(after[name] == mtime for name, mtime in survivors.items()), "finished shards were recomputed"
    np.testing.assert_allclose(vectors[:5], load_encoder("all-MiniLM-L6-v2").encode(texts[:5]), atol=1e-5)


@pytest.mark.slow
def test_device_concurrency_limit_runs_one_shard_at_a_time(tava_home, tiny_model_dir, prefect_harness):
    """The per-device limit: with `tava-device:cpu` limited to 1, three threads still embed the
    shards one after another (on a multi-GPU node: one limit per `tava-device:cuda:N`)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    from flows.embed import device_tag, embed_dataset_flow

    write_dataset(tava_home, "toy", {"texts": synthetic_texts(90)}, shard_size=30)
    config = EmbedConfig(dataset="toy", encoder=EncoderSpec(model=str(tiny_model_dir), device="cpu"), max_workers=3)
    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag=device_tag("cpu"), concurrency_limit=1)
        try:
            result = embed_dataset_flow(config, home=str(tava_home))
        finally:
            client.delete_concurrency_limit_by_tag(device_tag("cpu"))
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_=tava_home.parent.name)))
    assert result.collections[0].rows == 90
    spans = sorted((run.start_time, run.end_time) for run in runs if run.state and run.state.is_completed())
    assert len(spans) == 3
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:], strict=False)), spans
