"""`tava translate`: a saved adapter applied to stored vector shards or a LanceDB table (tiny synthetic data)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tava_core.adapter.baselines import LinearMap
from tava_core.errors import ConfigError, InputError
from tava_core.home import TavaHome
from tava_core.io import read_json, vector_shard_metadata, write_vector_shard
from tava_core.manifest import ShardRecord, VectorManifest, load_vector_manifest, read_vector_dir, save_manifest
from tava_core.translate import TranslateConfig, save_linear_adapter, translate

SRC_DIM, DST_DIM = 8, 12
SRC_FP, DST_FP = "a" * 24, "b" * 24


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_vector_dir(directory: Path, vectors: np.ndarray, *, shards: int = 3, fingerprint: str = SRC_FP) -> Path:
    directory.mkdir(parents=True)
    records = []
    for i, block in enumerate(np.array_split(np.arange(len(vectors)), shards)):
        path = directory / f"part-{i:05d}.parquet"
        written = write_vector_shard(path, [f"doc{j}" for j in block], vectors[block],
                                     metadata={"fingerprint": fingerprint, "kind": "document"})
        records.append(ShardRecord(path=path.name, rows=len(block), sha256=written["sha256"]))
    save_manifest(directory, VectorManifest(dataset="toy", collection="corpus", dim=vectors.shape[1], normalized=True,
                                            encoder={"name": "model-a", "fingerprint": fingerprint},
                                            shards=records))
    return directory


@pytest.fixture()
def maps() -> tuple[LinearMap, LinearMap]:
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(DST_DIM, SRC_DIM)))  # (12, 8), orthonormal columns
    weight = q.T.astype(np.float32)                          # (8, 12), orthonormal rows
    return LinearMap("toy", weight), LinearMap("toy-inverse", weight.T.copy())


@pytest.fixture()
def adapter_dir(tmp_path, maps) -> Path:
    forward, inverse = maps
    lineage = {"student": {"name": "model-a", "fingerprint": SRC_FP}, "teacher": {"name": "model-b", "fingerprint": DST_FP}}
    return save_linear_adapter(tmp_path / "adapter", forward, inverse=inverse, metadata={"lineage": lineage})


@pytest.fixture()
def source(tmp_path) -> tuple[Path, np.ndarray]:
    vectors = unit(np.random.default_rng(1).normal(size=(30, SRC_DIM))).astype(np.float32)
    return make_vector_dir(tmp_path / "src", vectors), vectors


def test_forward_translation_writes_mapped_shards_with_lineage(tmp_path, adapter_dir, source, maps):
    src_dir, vectors = source
    home = TavaHome(tmp_path / "home")
    record = translate(TranslateConfig(adapter=str(adapter_dir), vectors=str(src_dir)), home)
    out = Path(record["out"])
    assert out.parent == home.vectors / "toy" / "corpus"  # the default place `tava index` looks in
    ids, got, manifest = read_vector_dir(out)
    assert ids == [f"doc{i}" for i in range(30)]
    np.testing.assert_allclose(got, maps[0](vectors), atol=1e-5)
    assert manifest.dim == DST_DIM and record["rows"] == 30 and record["shards_translated"] == 3
    source_manifest = load_vector_manifest(src_dir)
    assert manifest.encoder["source_encoder"]["fingerprint"] == SRC_FP
    assert manifest.encoder["adapter"]["sha256"] == record["adapter"]["sha256"]
    assert [s.source_sha256 for s in manifest.shards] == [s.sha256 for s in source_manifest.shards]
    assert manifest.fingerprint not in (SRC_FP, DST_FP)
    assert vector_shard_metadata(out / manifest.shards[0].path)["direction"] == "forward"


def test_rerun_skips_done_shards_and_redoes_only_a_missing_one(tmp_path, adapter_dir, source):
    src_dir, _ = source
    config = TranslateConfig(adapter=str(adapter_dir), vectors=str(src_dir), out=str(tmp_path / "out"))
    translate(config, TavaHome(tmp_path / "home"))
    again = translate(config, TavaHome(tmp_path / "home"))
    assert (again["shards_translated"], again["shards_skipped"]) == (0, 3)
    (tmp_path / "out" / "part-00001.parquet").unlink()
    third = translate(config, TavaHome(tmp_path / "home"))
    assert (third["shards_translated"], third["shards_skipped"]) == (1, 2)
    assert read_vector_dir(tmp_path / "out")[1].shape == (30, DST_DIM)


def test_crash_mid_run_leaves_no_manifest_and_resumes(tmp_path, adapter_dir, source, monkeypatch):
    import tava_core.translate as module

    src_dir, _ = source
    config = TranslateConfig(adapter=str(adapter_dir), vectors=str(src_dir), out=str(tmp_path / "out"))
    real = module.write_vector_shard
    calls = []

    def crash_on_second(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(module, "write_vector_shard", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        translate(config, TavaHome(tmp_path / "home"))
    assert not (tmp_path / "out" / "manifest.json").exists()  # readers never see a half collection
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["part-00000.parquet"]  # no temp leftovers
    # a kill -9 gives the writer no chance to remove its temporary file: the finished run does
    (tmp_path / "out" / ".part-00001.parquet.tmp-deadbeef").write_bytes(b"half a shard")
    unrelated = tmp_path / "out" / "notes.txt"
    unrelated.write_text("mine")
    monkeypatch.setattr(module, "write_vector_shard", real)
    resumed = translate(config, TavaHome(tmp_path / "home"))
    assert (resumed["shards_translated"], resumed["shards_skipped"]) == (2, 1)
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")) == []
    assert unrelated.read_text() == "mine"


def test_inverse_direction_recovers_the_source(tmp_path, adapter_dir, source):
    src_dir, vectors = source
    home = TavaHome(tmp_path / "home")
    forward = translate(TranslateConfig(adapter=str(adapter_dir), vectors=str(src_dir)), home)
    # the translated collection carries its own fingerprint, not the adapter's target's: skip that check
    back = translate(TranslateConfig(adapter=str(adapter_dir), vectors=forward["out"], direction="inverse",
                                     check_fingerprint=False), home)
    _, recovered, _ = read_vector_dir(back["out"])
    assert recovered.shape == vectors.shape
    assert float((recovered * vectors).sum(1).min()) > 0.9999


def test_inverse_without_a_reverse_map_is_refused(tmp_path, maps, source):
    plain = save_linear_adapter(tmp_path / "plain", maps[0], metadata={"lineage": {}})
    with pytest.raises(ConfigError, match="no inverse map"):
        translate(TranslateConfig(adapter=str(plain), vectors=str(source[0]), direction="inverse"),
                  TavaHome(tmp_path / "home"))


def test_bad_inputs_are_refused_before_any_work(tmp_path, adapter_dir):
    home = TavaHome(tmp_path / "home")
    rng = np.random.default_rng(2)
    wrong_dim = make_vector_dir(tmp_path / "dim", unit(rng.normal(size=(6, 5))).astype(np.float32))
    with pytest.raises(ConfigError, match="5-d but the adapter"):
        translate(TranslateConfig(adapter=str(adapter_dir), vectors=str(wrong_dim)), home)
    other = make_vector_dir(tmp_path / "other", unit(rng.normal(size=(6, SRC_DIM))).astype(np.float32),
                            fingerprint="c" * 24)
    with pytest.raises(ConfigError, match="fingerprint cccccccccccc") as info:
        translate(TranslateConfig(adapter=str(adapter_dir), vectors=str(other)), home)
    assert "--no-check-fingerprint" in str(info.value)
    assert translate(TranslateConfig(adapter=str(adapter_dir), vectors=str(other), check_fingerprint=False),
                     home)["rows"] == 6
    already = make_vector_dir(tmp_path / "already", unit(rng.normal(size=(6, DST_DIM))).astype(np.float32),
                              fingerprint=DST_FP)
    with pytest.raises(ConfigError, match="already in the adapter's output space"):
        translate(TranslateConfig(adapter=str(adapter_dir), vectors=str(already)), home)
    empty = make_vector_dir(tmp_path / "empty", np.zeros((0, SRC_DIM), np.float32), shards=1)
    with pytest.raises(InputError, match="no vectors"):
        translate(TranslateConfig(adapter=str(adapter_dir), vectors=str(empty)), home)
    nan = unit(rng.normal(size=(6, SRC_DIM))).astype(np.float32)
    nan[4, 2] = np.nan
    with pytest.raises(InputError, match="id 'doc4'"):
        translate(TranslateConfig(adapter=str(adapter_dir), vectors=str(make_vector_dir(tmp_path / "nan", nan, shards=1))),
                  home)
    with pytest.raises(ConfigError, match="exactly one of"):
        translate(TranslateConfig(adapter=str(adapter_dir)), home)


def test_index_builds_on_translated_vectors(tmp_path, adapter_dir, source):
    from tava_core.index import IndexConfig, build_index

    home = TavaHome(tmp_path / "home")
    record = translate(TranslateConfig(adapter=str(adapter_dir), vectors=str(source[0])), home)
    built = build_index(IndexConfig(vectors=record["out"], factory="Flat"), home)
    assert built["count"] == 30 and built["dim"] == DST_DIM


def test_lancedb_table_translation_is_idempotent_and_resumable(tmp_path, adapter_dir, maps):
    import lancedb
    import pyarrow as pa

    vectors = unit(np.random.default_rng(3).normal(size=(25, SRC_DIM))).astype(np.float32)
    uri = tmp_path / "lancedb"
    db = lancedb.connect(str(uri))
    db.create_table("docs", pa.table({
        "id": [f"d{i}" for i in range(25)], "text": [f"text {i}" for i in range(25)],
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), SRC_DIM),
        "encoder": [SRC_FP] * 25}))
    config = TranslateConfig(adapter=str(adapter_dir), table="docs", uri=str(uri), batch_rows=10)
    record = translate(config, TavaHome(tmp_path / "home"))
    assert (record["table"], record["rows_translated"]) == ("docs__adapter", 25)
    out = db.open_table("docs__adapter").to_arrow().sort_by("id")
    by_id = {row: i for i, row in enumerate(out.column("id").to_pylist())}
    got = np.stack([np.asarray(v, np.float32) for v in out.column("vector").to_pylist()])
    expected = maps[0](vectors)
    np.testing.assert_allclose(got[[by_id[f"d{i}"] for i in range(25)]], expected, atol=1e-5)
    assert set(out.column("encoder").to_pylist()) == {record["fingerprint"]}
    state = read_json(record["state"])
    assert state["done"] == [0, 1, 2] and state["lineage"]["source_fingerprint"] == SRC_FP
    again = translate(config, TavaHome(tmp_path / "home"))
    assert again["rows_translated"] == 0 and db.open_table("docs__adapter").count_rows() == 25


@pytest.mark.slow
def test_translate_flow_and_cli(prefect_harness, tmp_path, adapter_dir, source, capsys):
    import json

    from flows.cli import main
    from flows.translate import translate_vectors

    home = tmp_path / "home"
    record = translate_vectors(TranslateConfig(adapter=str(adapter_dir), vectors=str(source[0])), home=str(home))
    assert (record["rows"], record["shards_translated"]) == (30, 3)
    capsys.readouterr()
    main(["--home", str(home), "translate", "--adapter", str(adapter_dir), "--vectors", str(source[0])])
    out = capsys.readouterr().out
    printed = json.loads(out[out.index("{"):])
    assert (printed["out"], printed["shards_skipped"]) == (record["out"], 3)  # the re-run skipped every shard
    with pytest.raises(SystemExit) as exit_info:
        main(["--home", str(home), "translate", "--adapter", str(adapter_dir), "--vectors", str(source[0]),
              "--direction", "inverse"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    # the source vectors are the inverse map's output space already: refused with the other direction named
    assert "already in the adapter's output space" in err and "--direction forward" in err
    assert "Traceback" not in err
