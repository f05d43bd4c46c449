"""The artifact registry: versions, atomic promotion, compare-and-set, lineage, rollback, locking."""
from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest

from tava_core.errors import InputError
from tava_core.registry import Registry, RegistryLockedError, StalePromotionError, current_version, file_lock, slot_lock


def artifact(tmp_path: Path, name: str, content: str) -> Path:
    directory = tmp_path / "src" / name
    directory.mkdir(parents=True)
    (directory / "weights.bin").write_text(content)
    return directory


def test_publish_promote_lineage_and_listing(tmp_path):
    registry = Registry(tmp_path / "home")
    first = registry.publish("students", "small", artifact(tmp_path, "a", "v1"),
                             lineage={"teacher": {"fingerprint": "t" * 12}, "data": ["m1"]},
                             metrics={"ndcg_at_10": 0.5}, promote=True)
    assert first.version == "00001" and first.current
    second = registry.publish("students", "small", artifact(tmp_path, "b", "v2"), lineage={"data": ["m2"]})
    # published, not promoted: readers still get version 1
    assert registry.current_version("students", "small") == "00001"
    assert not second.current
    assert (registry.current_path("students", "small") / "weights.bin").read_text() == "v1"
    registry.promote("students", "small", "2", reason="better")
    assert (registry.current_path("students", "small") / "weights.bin").read_text() == "v2"
    record = registry.record("students", "small", "1")
    assert record.lineage["teacher"]["fingerprint"] == "t" * 12 and record.metrics == {"ndcg_at_10": 0.5}
    stored = json.loads((Path(record.path) / "registry.json").read_text())
    assert stored["lineage"]["data"] == ["m1"]
    rows = registry.listing()
    assert [(r["kind"], r["name"], r["current"], r["versions"]) for r in rows] == \
        [("students", "small", "00002", ["00001", "00002"])]
    assert [h["action"] for h in registry.history("students", "small")] == ["promote", "promote"]
    assert registry.history("students", "small")[-1]["reason"] == "better"


def test_rollback_previous_and_to_version(tmp_path):
    registry = Registry(tmp_path / "home")
    for i in range(3):
        registry.publish("students", "s", artifact(tmp_path, f"v{i}", f"v{i + 1}"), promote=True)
    moved = registry.rollback("students", "s")
    assert (moved["from_version"], moved["to_version"]) == ("00003", "00002")
    moved = registry.rollback("students", "s", to="1")
    assert moved["to_version"] == "00001"
    assert (registry.current_path("students", "s") / "weights.bin").read_text() == "v1"
    with pytest.raises(InputError, match="nothing to roll back"):
        registry.rollback("students", "s")
    with pytest.raises(InputError, match="no complete version 00009"):
        registry.rollback("students", "s", to="9")
    # numbering continues after a rollback
    assert registry.publish("students", "s", artifact(tmp_path, "v4", "v4")).version == "00004"


def test_rollback_refuses_a_version_that_does_not_load(tmp_path):
    registry = Registry(tmp_path / "home")
    registry.publish("adapters", "a", artifact(tmp_path, "x", "not an adapter"), promote=True)
    registry.publish("adapters", "a", artifact(tmp_path, "y", "not an adapter either"), promote=True)
    from tava_core.errors import ModelLoadError

    with pytest.raises(ModelLoadError):
        registry.rollback("adapters", "a")
    assert registry.current_version("adapters", "a") == "00002"  # pointer untouched


def test_failed_publish_leaves_registry_unchanged(tmp_path):
    registry = Registry(tmp_path / "home")
    registry.publish("students", "s", artifact(tmp_path, "ok", "v1"), promote=True)

    def broken_writer(staging: Path) -> None:
        (staging / "weights.bin").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        registry.publish("students", "s", broken_writer, promote=True)
    slot = registry.slot("students", "s")
    assert current_version(slot) == "00001"
    assert sorted(p.name for p in (slot / "versions").iterdir()) == ["00001"]  # no temp dirs left


def test_stale_candidate_is_not_promoted(tmp_path):
    registry = Registry(tmp_path / "home")
    registry.publish("students", "s", artifact(tmp_path, "a", "v1"), promote=True)
    registry.publish("students", "s", artifact(tmp_path, "b", "v2"), promote=True, expected_current="00001")
    with pytest.raises(StalePromotionError, match="current moved to version 00002"):
        registry.publish("students", "s", artifact(tmp_path, "c", "v3"), promote=True, expected_current="00001")
    assert [v.version for v in registry.versions("students", "s")] == ["00001", "00002"]  # nothing written


def test_two_concurrent_promotions_from_the_same_base_only_one_wins(tmp_path):
    """Two refreshes trained from version 1 both try to promote at the same moment (threads)."""
    registry = Registry(tmp_path / "home")
    registry.publish("adapters", "nightly", artifact(tmp_path, "base", "v1"), promote=True)
    sources = [artifact(tmp_path, f"cand{i}", f"candidate {i}") for i in range(2)]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def refresh(i: int) -> None:
        barrier.wait()
        try:
            registry.publish("adapters", "nightly", sources[i], promote=True, expected_current="00001",
                             lock_timeout=10)
            outcomes.append("promoted")
        except StalePromotionError:
            outcomes.append("stale")

    threads = [threading.Thread(target=refresh, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["promoted", "stale"]
    assert registry.current_version("adapters", "nightly") == "00002"
    assert len(registry.versions("adapters", "nightly")) == 2


def _hold_lock(path: str, ready, release) -> None:
    with file_lock(path, timeout=5):
        ready.set()
        release.wait(10)


def test_lock_held_by_another_process_fails_clearly_or_waits(tmp_path):
    registry = Registry(tmp_path / "home")
    registry.publish("students", "s", artifact(tmp_path, "a", "v1"))
    slot = registry.slot("students", "s")
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(slot / "lock"), ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        with pytest.raises(RegistryLockedError, match=rf"locked by pid {holder.pid}"):
            registry.promote("students", "s", "1", lock_timeout=0)
        assert registry.current_version("students", "s") is None
        # with a timeout the second one queues behind the first
        threading.Timer(0.3, release.set).start()
        start = time.monotonic()
        registry.promote("students", "s", "1", lock_timeout=10)
        assert time.monotonic() - start >= 0.2
        assert registry.current_version("students", "s") == "00001"
    finally:
        release.set()
        holder.join(10)


def test_lock_of_a_killed_holder_is_released(tmp_path):
    import os
    import signal

    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(tmp_path / "lock"), ready, release))
    holder.start()
    assert ready.wait(10)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(10)
    with slot_lock(tmp_path, timeout=2):  # the kernel dropped the dead holder's lock
        pass


def _publish_and_hang(home: str, source: str, started) -> None:
    def slow_writer(staging: Path) -> None:
        (staging / "weights.bin").write_text("half written")
        started.set()
        time.sleep(60)

    Registry(home).publish("students", "s", slow_writer, promote=True)


def test_process_killed_mid_publish_leaves_registry_as_it_was(tmp_path):
    import os
    import signal

    registry = Registry(tmp_path / "home")
    registry.publish("students", "s", artifact(tmp_path, "a", "v1"), promote=True)
    ctx = multiprocessing.get_context("fork")
    started = ctx.Event()
    worker = ctx.Process(target=_publish_and_hang, args=(str(tmp_path / "home"), "", started))
    worker.start()
    assert started.wait(20)
    os.kill(worker.pid, signal.SIGKILL)
    worker.join(10)
    # the half-written version is a hidden temp dir: not a version, not current, lock released
    assert [v.version for v in registry.versions("students", "s")] == ["00001"]
    assert registry.current_version("students", "s") == "00001"
    assert registry.publish("students", "s", artifact(tmp_path, "b", "v2"), promote=True,
                            lock_timeout=2).version == "00002"


def test_index_versions_are_registry_versions(tmp_path, tava_home):
    """FAISS indexes publish through the registry: listed, with lineage, rolled back by name."""
    import numpy as np
    from adapter_helpers import write_vector_dir

    from tava_core.index import IndexConfig, build_index

    vectors = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    vdir = write_vector_dir(tmp_path / "v", [f"d{i}" for i in range(50)], vectors)
    from tava_core.home import TavaHome

    build_index(IndexConfig(vectors=str(vdir), recall_queries=5), TavaHome(tava_home))
    build_index(IndexConfig(vectors=str(vdir), factory="HNSW32,Flat", recall_queries=5), TavaHome(tava_home))
    registry = Registry(tava_home)
    [row] = registry.listing("indexes")
    assert row["current"] == "00002" and row["versions"] == ["00001", "00002"]
    record = registry.record("indexes", row["name"])
    assert record.lineage["fingerprint"] == "f" * 24 and record.metrics["count"] == 50
    assert registry.rollback("indexes", row["name"])["to_version"] == "00001"


def test_plain_outputs_live_apart_from_registry_slots(tmp_path):
    """`tava adapt` writes <home>/artifacts/adapters/<name>; the registry slot of the same name is
    <home>/registry/adapters/<name>: publishing it neither collides with nor touches the plain one."""
    from tava_core.errors import ConfigError
    from tava_core.home import TavaHome

    home = TavaHome(tmp_path / "home")
    registry = Registry(home)
    plain = home.artifacts / "adapters" / "made-by-tava-adapt"
    plain.mkdir(parents=True)
    (plain / "model.safetensors").write_bytes(b"plain output")
    record = registry.publish("adapters", "made-by-tava-adapt", artifact(tmp_path, "a", "v1"))
    assert Path(record.path) == home.registry / "adapters" / "made-by-tava-adapt" / "versions" / "00001"
    assert sorted(p.name for p in plain.iterdir()) == ["model.safetensors"]
    # a plain model directory put inside the registry itself is still refused, naming the fix
    stray = home.registry / "students" / "copied-by-hand"
    stray.mkdir(parents=True)
    (stray / "modules.json").write_text("[]")
    with pytest.raises(ConfigError, match="not a registry slot"):
        registry.publish("students", "copied-by-hand", artifact(tmp_path, "b", "v1"))


def test_slots_of_an_old_home_under_artifacts_keep_working(tmp_path):
    """Homes from before the registry had its own root: their slots are listed, read and extended."""
    import shutil

    from tava_core.home import TavaHome

    home = TavaHome(tmp_path / "home")
    Registry(home).publish("students", "old", artifact(tmp_path, "a", "v1"), promote=True)
    home.artifacts.mkdir(parents=True)
    shutil.move(str(home.registry / "students"), str(home.artifacts / "students"))  # the old layout
    registry = Registry(home)
    assert registry.names() == [("students", "old")]
    assert (registry.current_path("students", "old") / "weights.bin").read_text() == "v1"
    assert registry.publish("students", "old", artifact(tmp_path, "b", "v2"), promote=True).version == "00002"
    assert (home.artifacts / "students" / "old" / "versions" / "00002" / "weights.bin").read_text() == "v2"
    assert not (home.registry / "students" / "old").exists()


def test_publish_holds_one_reentrant_lock_across_its_steps(tmp_path):
    """publish calls the slot functions under its own lock; another process meanwhile cannot move
    `current` (it is refused, naming the holder), and a second thread queues behind the first."""
    registry = Registry(tmp_path / "home")
    slot = registry.slot("students", "s")
    seen: dict[str, object] = {}

    def writer(staging: Path) -> None:
        import subprocess
        import sys

        (staging / "weights.bin").write_text("v1")
        probe = ("import sys; from tava_core.store import slot_lock; from tava_core.locks import ResourceLockedError\n"
                 "try:\n    slot_lock(sys.argv[1], timeout=0).__enter__()\nexcept ResourceLockedError as e:\n"
                 "    print('refused:', e)\n")
        proc = subprocess.run([sys.executable, "-c", probe, str(slot)], capture_output=True, text=True, timeout=60,
                              cwd=Path(__file__).resolve().parents[2])
        seen["probe"] = proc.stdout + proc.stderr

    record = registry.publish("students", "s", writer, promote=True)
    assert record.version == "00001" and record.current
    assert "refused:" in seen["probe"] and f"pid {os.getpid()}" in seen["probe"], seen["probe"]
    assert "--lock-timeout-seconds" in seen["probe"]
    assert [h["action"] for h in registry.history("students", "s")] == ["promote"]


def test_kinds_register_how_they_verify_and_load(tmp_path):
    """The store knows no kind: a kind registered by its own module decides what `verify`/`load` do."""
    from tava_core.errors import IntegrityError
    from tava_core.store import ArtifactKind, ArtifactStore, register_kind

    def verify(version_dir: Path) -> None:
        if (version_dir / "weights.bin").read_text() != "ok":
            raise IntegrityError("weights are not ok", path=version_dir)

    register_kind(ArtifactKind(name="toys", verify=verify, load=lambda d: (d / "weights.bin").read_text().upper()))
    store = ArtifactStore(tmp_path / "store", {"toys": None})
    store.publish("toys", "t", artifact(tmp_path, "good", "ok"), promote=True)
    store.publish("toys", "t", artifact(tmp_path, "bad", "broken"), promote=True)
    store.publish("toys", "t", artifact(tmp_path, "good2", "ok"), promote=True)
    assert store.load("toys", "t") == "OK"
    with pytest.raises(IntegrityError, match="weights are not ok"):
        store.rollback("toys", "t")  # version 2 is the one before 3: refused, pointer kept
    assert store.current_version("toys", "t") == "00003"
    assert store.rollback("toys", "t", to="1")["to_version"] == "00001"
    from tava_core.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown artifact kind 'nope'"):
        store.slot("nope", "t")


@pytest.mark.parametrize("module", ["tava_core.store", "tava_core.registry", "tava_core.index", "tava_core.locks",
                                    "tava_core.encoders.artifact_kind", "tava_core.adapter.artifact_kind"])
def test_each_module_imports_alone(module):
    """No import cycle: each module imports first in a fresh interpreter, and the generic store
    pulls in no artifact kind (nor faiss) by itself."""
    import subprocess
    import sys

    code = (f"import sys, {module}\n"
            "kinds = [m for m in ('tava_core.index', 'tava_core.adapter', 'faiss') if m in sys.modules]\n"
            "print(','.join(kinds))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr[-2000:]
    if module in ("tava_core.store", "tava_core.registry", "tava_core.locks"):
        assert proc.stdout.strip() == ""


def test_cli_list_show_rollback(tmp_path, monkeypatch, capsys):
    from flows.cli import main

    home = tmp_path / "home"
    registry = Registry(home)
    for i in range(2):
        registry.publish("students", "s", artifact(tmp_path, f"v{i}", str(i)), promote=True,
                         lineage={"teacher": {"fingerprint": "abc"}})
    main(["--home", str(home), "registry", "list"])
    assert "students  s" in capsys.readouterr().out
    main(["--home", str(home), "rollback", "students", "s", "--to", "1"])
    assert json.loads(capsys.readouterr().out)["to_version"] == "00001"
    main(["--home", str(home), "registry", "show", "students", "s"])
    shown = json.loads(capsys.readouterr().out)
    assert shown["record"]["version"] == "00001" and shown["history"][-1]["action"] == "rollback"
    with pytest.raises(SystemExit) as exit_info:
        main(["--home", str(home), "rollback", "students", "s"])
    assert exit_info.value.code == 2
    assert "nothing to roll back" in capsys.readouterr().err
