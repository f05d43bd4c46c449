"""LanceDB backfill: upsert by id, idempotence, crash + resume (a real SIGKILL), rollback, dims.

Every backfill here runs the flow `backfill_vector_store`, the one chain of the core's backfill
steps (the deployment runs the same)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from helpers import add_dense, synthetic_texts, write_dataset

from tava_core.config import EncoderSpec
from tava_core.errors import ConfigError, InputError
from tava_core.home import TavaHome
from tava_core.records import BackfillResult
from tava_core.vectorstore import BackfillConfig, rollback_backfill, state_path

ROWS, SHARD = 300, 75  # 4 shards (>= 256 rows: enough to train an IVF index)


@pytest.fixture()
def dataset(tava_home) -> str:
    write_dataset(tava_home, "toy", {"corpus": synthetic_texts(ROWS, seed=3)}, shard_size=SHARD)
    return "toy"


@pytest.fixture(scope="module")
def tiny16_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model with a 16-d Dense head on top: another encoder with another dim."""
    return with_dense_head(tiny_model_dir, tmp_path_factory.mktemp("tiny16") / "tiny16", 16)


@pytest.fixture(scope="module")
def tiny32_other_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model with a 32-d Dense head on top: another encoder with the same dim."""
    return with_dense_head(tiny_model_dir, tmp_path_factory.mktemp("tiny32") / "tiny32", 32)


def with_dense_head(tiny_model_dir: Path, out: Path, dim: int) -> Path:
    import shutil

    shutil.copytree(tiny_model_dir, out)
    return add_dense(out, dim, seed=1)


@pytest.fixture(autouse=True)
def _prefect(prefect_harness):
    """Backfills run as flows, so every test here talks to the session's test Prefect server."""
    yield


def backfill(config: BackfillConfig, home: TavaHome) -> BackfillResult:
    from flows.backfill import backfill_vector_store

    return backfill_vector_store(config, home=str(home.root))


def cfg(tiny_model_dir: Path, dataset: str = "toy", **kwargs) -> BackfillConfig:
    return BackfillConfig(dataset=dataset, encoder=EncoderSpec(model=str(tiny_model_dir)), **kwargs)


def open_table(home: Path, name: str = "toy_corpus"):
    import lancedb

    return lancedb.connect(str(home / "lancedb")).open_table(name)


def table_ids(table, column: str = "id") -> list[str]:
    return table.to_arrow().column(column).to_pylist()


def test_backfill_writes_every_row_once_and_is_idempotent(tiny_model_dir, dataset, tava_home):
    first = backfill(cfg(tiny_model_dir), TavaHome(tava_home))
    assert first.table_rows == ROWS and first.rows_written == ROWS and first.shards == 4
    table = open_table(tava_home)
    data = table.to_arrow()
    assert set(data.column_names) == {"id", "text", "vector", "encoder"}
    ids = data.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == ROWS
    assert set(data.column("encoder").to_pylist()) == {first.fingerprint}
    # The stored vectors are the encoder's vectors of the stored text.
    from tava_core.encoders import load_encoder

    row = data.slice(7, 1).to_pylist()[0]
    expected = load_encoder(EncoderSpec(model=str(tiny_model_dir))).encode([row["text"]])[0]
    np.testing.assert_allclose(row["vector"], expected, atol=1e-5)
    assert first.tag in table.tags.list()

    second = backfill(cfg(tiny_model_dir), TavaHome(tava_home))
    table = open_table(tava_home)
    assert second.table_rows == ROWS and table.count_rows() == ROWS
    assert sorted(table_ids(table)) == sorted(ids)
    assert second.tag != first.tag


def test_index_built_or_skipped_with_reason(tiny_model_dir, dataset, tava_home):
    built = backfill(cfg(tiny_model_dir, index_type="ivf_flat"), TavaHome(tava_home))
    assert built.index["built"] is True
    assert [ix.columns for ix in open_table(tava_home).list_indices()] == [["vector"]]
    skipped = backfill(cfg(tiny_model_dir, num_partitions=4), TavaHome(tava_home))  # 4 x 256 > 300 rows
    assert skipped.index["built"] is False and "300 rows" in skipped.index["reason"]


def test_rollback_restores_previous_versions(tiny_model_dir, dataset, tava_home):
    write_dataset(tava_home, "more", {"texts": synthetic_texts(50, seed=9)}, shard_size=25)
    backfill(cfg(tiny_model_dir, build_index=False), TavaHome(tava_home))
    backfill(cfg(tiny_model_dir, dataset="more", table="toy_corpus", build_index=False), TavaHome(tava_home))
    table = open_table(tava_home)
    assert table.count_rows() == ROWS + 50
    uri = tava_home / "lancedb"
    result = rollback_backfill(uri, "toy_corpus")
    assert result.table_rows == ROWS
    assert not any(i.startswith("t") for i in table_ids(open_table(tava_home)))
    assert rollback_backfill(uri, "toy_corpus").table_rows == 0  # before the first run: empty
    with pytest.raises(InputError, match="no backfill run"):
        rollback_backfill(uri, "toy_corpus")


def test_dim_mismatch_error_new_table_and_new_column(tiny_model_dir, tiny16_dir, dataset, tava_home):
    backfill(cfg(tiny_model_dir, build_index=False), TavaHome(tava_home))
    with pytest.raises(ConfigError) as err:
        backfill(cfg(tiny16_dir), TavaHome(tava_home))
    assert "toy_corpus" in str(err.value) and "32-d" in str(err.value) and "16-d" in str(err.value)
    assert not list((TavaHome(tava_home).vectors / "toy" / "corpus").glob("tiny16-*/shard-*"))  # nothing embedded

    other = backfill(cfg(tiny16_dir, on_dim_mismatch="new_table", build_index=False), TavaHome(tava_home))
    assert other.table == "toy_corpus_16d" and other.table_rows == ROWS
    assert open_table(tava_home, "toy_corpus_16d").schema.field("vector").type.list_size == 16
    assert open_table(tava_home).schema.field("vector").type.list_size == 32
    assert rollback_backfill(tava_home / "lancedb", "toy_corpus_16d").table_rows == 0

    column = backfill(cfg(tiny16_dir, on_dim_mismatch="new_column"), TavaHome(tava_home))
    assert column.column == "vector_16d" and column.table == "toy_corpus"
    data = open_table(tava_home).to_arrow()
    assert data.num_rows == ROWS and data.column("vector_16d").null_count == 0
    assert data.schema.field("vector").type.list_size == 32 and data.column("vector").null_count == 0
    assert set(data.column("encoder_16d").to_pylist()) == {column.fingerprint}


def test_vectors_of_another_encoder_are_replaced_only_when_asked(tiny_model_dir, tiny32_other_dir, dataset,
                                                                  tava_home):
    """Same-dim vectors of two encoders fit one column: backfilling an adapted student into the teacher's
    table once replaced every document vector the student's queries are searched against, without a word."""
    home = TavaHome(tava_home)
    first = backfill(cfg(tiny_model_dir, build_index=False), home)
    with pytest.raises(ConfigError) as err:
        backfill(cfg(tiny32_other_dir, build_index=False), home)
    said = str(err.value)
    assert f"holds {ROWS} vectors written by another encoder" in said and "--on-encoder-change replace" in said, said
    assert "--table" in said
    assert set(open_table(tava_home).to_arrow().column("encoder").to_pylist()) == {first.fingerprint}
    assert not list((home.vectors / "toy" / "corpus").glob("tiny32-*/shard-*"))   # refused before embedding

    replaced = backfill(cfg(tiny32_other_dir, on_encoder_change="replace", build_index=False), home)
    data = open_table(tava_home).to_arrow()
    assert data.num_rows == ROWS and set(data.column("encoder").to_pylist()) == {replaced.fingerprint}
    again = backfill(cfg(tiny32_other_dir, build_index=False), home)   # its own vectors: no question asked
    assert again.table_rows == ROWS
    assert rollback_backfill(tava_home / "lancedb", "toy_corpus").table_rows == ROWS   # (the no-op run's tag)
    restored = rollback_backfill(tava_home / "lancedb", "toy_corpus")
    assert set(open_table(tava_home).to_arrow().column("encoder").to_pylist()) == {first.fingerprint}, restored


CRASH_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from flows.backfill import backfill_vector_store
    from tava_core import vectorstore
    from tava_core.config import EncoderSpec

    real_upsert = vectorstore.upsert
    calls = {"n": 0}

    def upsert_then_die(table, batch):
        result = real_upsert(table, batch)
        calls["n"] += 1
        if calls["n"] == 3:  # killed after the 3rd shard's commit, before it is recorded as done
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    vectorstore.upsert = upsert_then_die
    config = vectorstore.BackfillConfig(dataset="toy", encoder=EncoderSpec(model=sys.argv[1]))
    backfill_vector_store(config, home=sys.argv[2])
""")


@pytest.mark.slow
def test_killed_backfill_resumes_with_every_id_once(tiny_model_dir, dataset, tava_home):
    from prefect.settings import PREFECT_API_URL

    # The killed flow reports to this session's test server (no server of its own to orphan).
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
           "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    proc = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(tiny_model_dir), str(tava_home)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    state = json.loads(state_path(tava_home / "lancedb", "toy_corpus").read_text())
    assert state["runs"][-1]["status"] == "running" and len(state["runs"][-1]["completed"]) == 2
    assert open_table(tava_home).count_rows() == 3 * SHARD  # 3rd shard committed, unrecorded

    resumed = backfill(cfg(tiny_model_dir), TavaHome(tava_home))
    assert resumed.resumed is True and resumed.shards_upserted == 2  # shards 3 (again) and 4
    ids = table_ids(open_table(tava_home))
    assert len(ids) == len(set(ids)) == ROWS
    assert resumed.tag == state["runs"][-1]["tag"]  # one run, one tag: rollback undoes all of it
    assert rollback_backfill(tava_home / "lancedb", "toy_corpus").table_rows == 0


@pytest.mark.slow
def test_backfill_cli_rollback(tiny_model_dir, dataset, tava_home, monkeypatch):
    from click.testing import CliRunner

    from flows.cli import group

    record = backfill(cfg(tiny_model_dir, build_index=False), TavaHome(tava_home))
    assert record.table_rows == ROWS and record.rows_written == ROWS
    monkeypatch.setenv("TAVA_HOME", str(tava_home))
    result = CliRunner().invoke(group, ["backfill", "--rollback", "--table", "toy_corpus"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output[result.output.index("{"):])["table_rows"] == 0
