"""Runs that meet on shared state (issue 19), with real processes: two backfills of one table, two
embeds of one collection, an index rebuild during a backfill while a third process searches, and
a lock holder killed with SIGKILL.

A "paused holder" is a real process running the real core step (the same code the CLI's flow
runs) with a pause injected after it has taken the lock, so the overlap is certain rather than a
race; the runs that meet it are the real `tava` command line.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import held_by_another_thread, synthetic_texts, write_dataset

from tava_core.locks import ResourceLockedError, file_lock, read_holder

PROJECT = Path(__file__).resolve().parents[2]
ROWS, SHARD = 300, 75  # 4 shards


# ----------------------------------------------------------------------------- the lock itself

def test_lock_is_reentrant_exclusive_between_threads_and_names_its_holder(tmp_path):
    path = tmp_path / "resource.lock"
    entered = threading.Event()
    leave = threading.Event()
    outcome: dict[str, object] = {}

    def other_thread() -> None:
        try:
            with file_lock(path, timeout=0, what="the toy resource"):
                outcome["got"] = True
        except ResourceLockedError as exc:
            outcome["refused"] = str(exc)
        entered.set()
        leave.wait(5)

    with file_lock(path, what="the toy resource"):
        with file_lock(path, timeout=0, what="the toy resource"):  # re-entered by the holder: no wait
            holder = read_holder(path)
            assert holder["pid"] == os.getpid() and holder["host"] and holder["since"]
        worker = threading.Thread(target=other_thread)
        worker.start()
        assert entered.wait(5)
        assert "got" not in outcome and f"locked by pid {os.getpid()}" in str(outcome["refused"])
        assert "--lock-timeout-seconds" in str(outcome["refused"])
        leave.set()
        worker.join(5)
    assert read_holder(path) is None  # a free lock names no one
    with file_lock(path, timeout=0):  # and is free for the next holder
        pass


def _try_in_child(path: str, queue) -> None:
    try:
        with file_lock(path, timeout=0):
            queue.put("entered")
    except ResourceLockedError as exc:
        queue.put(str(exc))


def test_forked_child_does_not_inherit_the_lock(tmp_path):
    """A child forked while the parent holds a lock neither re-enters it nor keeps it alive."""
    import multiprocessing

    path = tmp_path / "resource.lock"
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    with file_lock(path):
        child = ctx.Process(target=_try_in_child, args=(str(path), queue))
        child.start()
        answer = queue.get(timeout=30)
        child.join(30)
    assert answer != "entered" and f"locked by pid {os.getpid()}" in answer
    # A holder that forked a long-lived child and was then killed: its lock dies with it, not with the child.
    script = textwrap.dedent("""
        import multiprocessing, os, signal, sys, time
        from tava_core.locks import file_lock
        with file_lock(sys.argv[1]):
            child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(30,))
            child.start()
            print(child.pid, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    holder = subprocess.run([sys.executable, "-c", script, str(path)], cwd=PROJECT, capture_output=True, text=True,
                            timeout=60)
    child_pid = int(holder.stdout.split()[0])
    try:
        os.kill(child_pid, 0)  # the forked child still runs
        with file_lock(path, timeout=0):  # ... and the lock is free
            pass
    finally:
        os.kill(child_pid, signal.SIGKILL)


def test_waiting_is_bounded_and_shown(tmp_path, caplog):
    path = tmp_path / "resource.lock"
    with held_by_another_thread(lambda: file_lock(path)):
        started = time.monotonic()
        with pytest.raises(ResourceLockedError, match=r"waited 0\.5 s"):
            with file_lock(path, timeout=0.5, what="the toy resource"):
                pass
        assert 0.45 <= time.monotonic() - started < 5


def test_waiting_across_processes_is_logged_then_granted(tmp_path, caplog):
    """A second process waits on the first (a log line names it), then gets the lock."""
    import logging

    path = tmp_path / "resource.lock"
    script = textwrap.dedent("""
        import sys, time
        from tava_core.locks import file_lock
        with file_lock(sys.argv[1]):
            print("HELD", flush=True)
            time.sleep(float(sys.argv[2]))
    """)
    holder = subprocess.Popen([sys.executable, "-c", script, str(path), "1.5"], cwd=PROJECT, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "HELD"
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="tava_core.locks"):
            with file_lock(path, timeout=30, what="the toy resource"):
                assert time.monotonic() - started >= 1.0  # granted only once the holder let go (1.5 s)
        assert any(f"held by pid {holder.pid}" in r.getMessage() for r in caplog.records), caplog.text
    finally:
        holder.wait(30)


def test_ingest_into_a_dataset_being_ingested_stops_or_waits(tmp_path, tava_home):
    """The dataset directory's lock: a second ingest of the same name refuses (naming the holder)
    or, given a timeout, runs once the first is done; another name is not held up."""
    from tava_core.config import IngestConfig
    from tava_core.home import TavaHome
    from tava_core.ingest.pipeline import ingest

    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps({"_id": str(i), "text": f"text {i}"}) + "\n" for i in range(5)))
    home = TavaHome(tava_home)
    with held_by_another_thread(lambda: file_lock(home.lock_file("datasets", "docs"))) as release:
        with pytest.raises(ResourceLockedError, match="dataset docs is locked by pid"):
            ingest(IngestConfig(source=str(source), name="docs"), home)
        assert not home.dataset_dir("docs").exists()
        assert ingest(IngestConfig(source=str(source), name="other"), home).collections == {"texts": 5}
        threading.Timer(0.5, release.set).start()
        assert ingest(IngestConfig(source=str(source), name="docs"), home, lock_timeout=30).collections == {"texts": 5}


# ----------------------------------------------------------------------------- helpers

def child_env(home: Path, prefect_api_url: str | None) -> dict[str, str]:
    env = {**os.environ, "TAVA_HOME": str(home), "PYTHONPATH": str(PROJECT),
           "PREFECT_HOME": str(home / "prefect"), "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(home / "prefect" / "results"),
           "PREFECT_LOGGING_LEVEL": "INFO"}  # the flows' info lines say what was reused
    if prefect_api_url:
        env["PREFECT_API_URL"] = prefect_api_url
    return env


class Proc:
    """A child process whose stdout/stderr go to files (readable while it runs)."""

    def __init__(self, args: list[str], home: Path, prefect_api_url: str | None, name: str) -> None:
        self.out = home.parent / f"{name}.out"
        self.err = home.parent / f"{name}.err"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.popen = subprocess.Popen(args, cwd=PROJECT, env=child_env(home, prefect_api_url), stdout=out, stderr=err)
        self.pid = self.popen.pid

    def text(self) -> str:
        return self.out.read_text() + self.err.read_text()

    def wait_for(self, needle: str, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            if self.popen.poll() is not None:
                raise AssertionError(f"exited {self.popen.returncode} before printing {needle!r}:\n{self.text()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {needle!r} within {timeout} s:\n{self.text()[-3000:]}")
            time.sleep(0.1)

    def finish(self, timeout: float = 600) -> int:
        return self.popen.wait(timeout)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(30)


def tava(home: Path, prefect_api_url: str, name: str, *args: str) -> Proc:
    return Proc([sys.executable, "-m", "flows.cli", "--home", str(home), *args], home, prefect_api_url, name)


def paused_holder(home: Path, name: str, script: str, *args: str, prefect_api_url: str | None = None) -> Proc:
    return Proc([sys.executable, "-c", textwrap.dedent(script), *args], home, prefect_api_url, name)


def open_table(home: Path, name: str = "toy_corpus"):
    import lancedb

    return lancedb.connect(str(home / "lancedb")).open_table(name)


def assert_every_id_once_with_right_vectors(home: Path, model: Path, texts: list[str]) -> None:
    from tava_core.config import EncoderSpec
    from tava_core.encoders import load_encoder

    data = open_table(home).to_arrow()
    ids = data.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == len(texts)
    assert sorted(ids) == sorted(f"c{i}" for i in range(len(texts)))
    rows = {r["id"]: r for r in data.select(["id", "vector"]).to_pylist()}
    sample = [f"c{i}" for i in (0, 77, 151, len(texts) - 1)]
    expected = load_encoder(EncoderSpec(model=str(model))).encode([texts[int(i[1:])] for i in sample])
    np.testing.assert_allclose(np.array([rows[i]["vector"] for i in sample]), expected, atol=1e-5)


BACKFILL_HOLDER = """
    import json, sys, time
    from pathlib import Path
    from tava_core import vectorstore
    from tava_core.config import EncoderSpec
    from tava_core.home import TavaHome

    model, home, go = sys.argv[1:4]
    real_upsert = vectorstore.upsert
    calls = {"n": 0}

    def upsert_then_pause(table, batch):  # the lock is held from the plan to the end of the run
        result = real_upsert(table, batch)
        calls["n"] += 1
        if calls["n"] == 2:
            print("PAUSED", flush=True)
            while not Path(go).exists():
                time.sleep(0.05)
        return result

    vectorstore.upsert = upsert_then_pause
    config = vectorstore.BackfillConfig(dataset="toy", encoder=EncoderSpec(model=model), build_index=False)
    # the flow the deployment runs (it is the only place that chains the backfill steps)
    from flows.backfill import backfill_vector_store
    print(backfill_vector_store(config, home=str(TavaHome(home).root)).model_dump_json(), flush=True)
"""


@pytest.fixture()
def toy(tava_home) -> list[str]:
    texts = synthetic_texts(ROWS, seed=3)
    write_dataset(tava_home, "toy", {"corpus": texts}, shard_size=SHARD)
    return texts


# ----------------------------------------------------------------------------- backfill

@pytest.mark.slow
def test_second_backfill_refuses_or_waits_as_configured(tava_home, toy, tiny_model_dir, prefect_api_url):
    from tava_core.vectorstore import state_path

    go = tava_home.parent / "go"
    first = paused_holder(tava_home, "first", BACKFILL_HOLDER, str(tiny_model_dir), str(tava_home), str(go),
                          prefect_api_url=prefect_api_url)
    cli_args = ["backfill", "--dataset", "toy", "--encoder", str(tiny_model_dir), "--no-build-index"]
    try:
        first.wait_for("PAUSED")
        # 1. --lock-timeout-seconds 0 (the default): stops at once, naming the holder and how to wait
        refused = tava(tava_home, prefect_api_url, "refused", *cli_args)
        assert refused.finish() == 2, refused.text()[-3000:]
        message = refused.err.read_text()
        assert "LanceDB table 'toy_corpus'" in message and f"locked by pid {first.pid}" in message
        assert "--lock-timeout-seconds" in message
        state = json.loads(state_path(tava_home / "lancedb", "toy_corpus").read_text())
        assert len(state["runs"]) == 1 and state["runs"][0]["status"] == "running"  # the refused run wrote nothing

        # 2. --lock-timeout-seconds 300: waits (saying for whom), then runs after the first
        waiting = tava(tava_home, prefect_api_url, "waiting", *cli_args, "--lock-timeout-seconds", "300")
        waiting.wait_for(f"held by pid {first.pid}")
        time.sleep(1.0)
        assert open_table(tava_home).count_rows() == 2 * SHARD  # the waiter has not written
        go.touch()
        assert first.finish() == 0, first.text()[-3000:]
        assert waiting.finish() == 0, waiting.text()[-3000:]
    finally:
        go.touch()
        first.kill()
    assert_every_id_once_with_right_vectors(tava_home, tiny_model_dir, toy)
    runs = json.loads(state_path(tava_home / "lancedb", "toy_corpus").read_text())["runs"]
    assert [r["status"] for r in runs] == ["done", "done"]
    assert [r["tag"] for r in runs] == ["tava-backfill-1", "tava-backfill-2"]
    assert runs[1]["version_before"] == runs[0]["version_after"]  # serial: the second saw the first's end
    table = open_table(tava_home)
    assert set(table.tags.list()) >= {"tava-backfill-1", "tava-backfill-2"}

    # rolling back twice returns to the state before the first run (an empty table); the CLI's
    # --rollback calls this same step (tests/test_backfill.py drives it)
    from tava_core.vectorstore import rollback_backfill

    assert rollback_backfill(tava_home / "lancedb", "toy_corpus").table_rows == ROWS
    assert rollback_backfill(tava_home / "lancedb", "toy_corpus").table_rows == 0


@pytest.mark.slow
def test_killed_lock_holder_leaves_no_lock_behind(tava_home, toy, tiny_model_dir, prefect_api_url):
    go = tava_home.parent / "go"  # never created: the holder is killed while paused
    holder = paused_holder(tava_home, "holder", BACKFILL_HOLDER, str(tiny_model_dir), str(tava_home), str(go),
                          prefect_api_url=prefect_api_url)
    try:
        holder.wait_for("PAUSED")
        os.kill(holder.pid, signal.SIGKILL)
        assert holder.finish() == -signal.SIGKILL
    finally:
        holder.kill()
    lock_file = tava_home / "lancedb" / "_tava" / "toy_corpus.lock"
    assert lock_file.is_file() and read_holder(lock_file)["pid"] == holder.pid  # the file stays, naming the dead
    # the next run (refusing at once if anything were held) proceeds with no clean-up, and resumes
    after = tava(tava_home, prefect_api_url, "after", "backfill", "--dataset", "toy", "--encoder", str(tiny_model_dir),
                 "--no-build-index", "--lock-timeout-seconds", "0")
    assert after.finish() == 0, after.text()[-3000:]
    record = json.loads(after.out.read_text()[after.out.read_text().index("{"):])
    # the holder died inside its 2nd shard's upsert, before recording it: that shard and the two after it
    assert record["resumed"] is True and record["shards_upserted"] == 3
    assert_every_id_once_with_right_vectors(tava_home, tiny_model_dir, toy)


# ----------------------------------------------------------------------------- embed

EMBED_HOLDER = """
    import json, sys, time
    from pathlib import Path
    from tava_core import embed
    from tava_core.config import EncoderSpec
    from tava_core.home import TavaHome

    model, home, go = sys.argv[1:4]
    real_embed, real_manifest = embed.embed_shard, embed.write_vector_manifest
    calls = {"n": 0}

    def embed_then_pause(job, encoder, **kwargs):
        record = real_embed(job, encoder, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:
            print("PAUSED", flush=True)
            while not Path(go).exists():
                time.sleep(0.05)
        return record

    def manifest_and_report(out_dir, *args):  # still inside the lock: what this run wrote
        result = real_manifest(out_dir, *args)
        stats = {p.name: [p.stat().st_ino, p.stat().st_mtime_ns] for p in Path(out_dir).glob("shard-*.parquet")}
        print("WRITTEN " + json.dumps(stats), flush=True)
        return result

    embed.embed_shard, embed.write_vector_manifest = embed_then_pause, manifest_and_report
    embed.embed_dataset(embed.EmbedConfig(dataset="toy", encoder=EncoderSpec(model=model)), TavaHome(home))
"""


@pytest.mark.slow
def test_two_embeds_of_one_dataset_write_each_shard_once(tava_home, toy, tiny_model_dir, prefect_api_url):
    from tava_core.config import EncoderSpec
    from tava_core.encoders import load_encoder
    from tava_core.manifest import load_vector_manifest, read_vector_dir

    go = tava_home.parent / "go"
    first = paused_holder(tava_home, "first", EMBED_HOLDER, str(tiny_model_dir), str(tava_home), str(go))
    try:
        first.wait_for("PAUSED")
        second = tava(tava_home, prefect_api_url, "second", "embed", "--dataset", "toy", "--encoder", str(tiny_model_dir),
                      "--lock-timeout-seconds", "300")
        second.wait_for(f"held by pid {first.pid}")
        go.touch()
        assert first.finish() == 0, first.text()[-3000:]
        assert second.finish() == 0, second.text()[-3000:]
    finally:
        go.touch()
        first.kill()
    written = json.loads(first.out.read_text().split("WRITTEN ", 1)[1].splitlines()[0])
    [out_dir] = list((tava_home / "vectors" / "toy" / "corpus").iterdir())  # the lock file is inside it
    now = {p.name: [p.stat().st_ino, p.stat().st_mtime_ns] for p in out_dir.glob("shard-*.parquet")}
    assert len(written) == 4 and now == written  # the run that waited rewrote nothing
    assert "0 shards computed (0 rows), 4 reused" in second.text()  # ... it reused the first run's shards
    assert not [p for p in out_dir.parent.rglob("*") if ".tmp" in p.name]  # no temporary files left
    manifest = load_vector_manifest(out_dir)
    ids, vectors, _ = read_vector_dir(out_dir)  # checks every shard against the manifest's sha256
    assert len(manifest.shards) == 4 and sorted(ids) == sorted(f"c{i}" for i in range(ROWS))
    expected = load_encoder(EncoderSpec(model=str(tiny_model_dir))).encode(toy[:3])
    np.testing.assert_allclose(vectors[[ids.index(f"c{i}") for i in range(3)]], expected, atol=1e-5)


# ----------------------------------------------------------------------------- readers never block

SEARCHER = """
    import json, sys, time
    from pathlib import Path
    import numpy as np
    from tava_core.index import load_index, search
    from tava_core.manifest import read_vector_dir

    index_dir, vector_dir, stop = sys.argv[1:4]
    ids, vectors, _ = read_vector_dir(vector_dir)
    probes = [0, len(ids) // 2, len(ids) - 1]
    seen, errors, loads = {}, [], 0
    while not Path(stop).exists():
        try:
            loaded = load_index(index_dir)  # resolves `current` once, then reads that version only
            loads += 1
            if loads == 1:
                print("READY", flush=True)
            version = loaded.path.name
            seen[version] = loaded.manifest["factory"]
            if loaded.index.ntotal != len(ids) or loaded.manifest["count"] != len(ids):
                errors.append(f"version {version}: {loaded.index.ntotal} vectors")
            hits, _ = search(loaded, vectors[probes], k=1)
            if [h[0] for h in hits] != [ids[p] for p in probes]:
                errors.append(f"version {version}: wrong top-1 {hits}")
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        time.sleep(0.05)
    print(json.dumps({"seen": seen, "errors": errors[:10], "loads": loads}), flush=True)
"""


@pytest.mark.slow
def test_index_rebuild_during_backfill_while_a_third_process_searches(tava_home, tiny_model_dir, prefect_api_url):
    from tava_core.config import EncoderSpec
    from tava_core.embed import EmbedConfig, embed_dataset
    from tava_core.home import TavaHome
    from tava_core.index import IndexConfig, build_index, load_index

    texts = synthetic_texts(1200, seed=5)
    write_dataset(tava_home, "toy", {"corpus": texts}, shard_size=150)
    [vector_dir] = embed_dataset(EmbedConfig(dataset="toy", encoder=EncoderSpec(model=str(tiny_model_dir))),
                                 TavaHome(tava_home)).values()
    index_dir = tava_home / "index"
    build_index(IndexConfig(vectors=str(vector_dir), index_dir=str(index_dir), recall_queries=20), TavaHome(tava_home))

    stop = tava_home.parent / "stop"
    searcher = paused_holder(tava_home, "searcher", SEARCHER, str(index_dir), str(vector_dir), str(stop))
    try:
        searcher.wait_for("READY")  # the searcher reads version 1 before anything starts
        backfill = tava(tava_home, prefect_api_url, "backfill", "backfill", "--dataset", "toy", "--encoder",
                        str(tiny_model_dir), "--index-type", "ivf_flat", "--num-partitions", "2")
        rebuild = tava(tava_home, prefect_api_url, "rebuild", "index", "--vectors", str(vector_dir), "--index-dir",
                       str(index_dir), "--factory", "HNSW32,Flat", "--recall-queries", "100")
        assert rebuild.finish() == 0, rebuild.text()[-3000:]
        assert backfill.finish() == 0, backfill.text()[-3000:]
        time.sleep(1.5)  # and the new version a few times after
    finally:
        stop.touch()
        searcher.finish(120)
        searcher.kill()
    report = json.loads(searcher.out.read_text().strip().splitlines()[-1])
    assert report["errors"] == [], report
    assert report["seen"] == {"00001": "Flat", "00002": "HNSW32,Flat"}, report
    assert report["loads"] >= 10
    assert load_index(index_dir).manifest["factory"] == "HNSW32,Flat"
    assert open_table(tava_home).count_rows() == 1200
