"""Importing a store's vectors as a collection's shards: the same shards encoding would write, reused by
later runs, and refused when they are not the encoder's (other model, missing ids, NaN, wrong size)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import synthetic_texts, write_dataset

from tava_core.config import EncoderSpec
from tava_core.embed import EmbedConfig, embed_dataset
from tava_core.encoders import TransformerEncoder
from tava_core.errors import InputError, IntegrityError
from tava_core.home import TavaHome
from tava_core.io import read_text_shard, read_vector_shard, vector_shard_metadata
from tava_core.manifest import load_dataset_manifest, load_vector_manifest

TEXTS = synthetic_texts(45, seed=3)


def _store(path: Path, ids: list[str], vectors: np.ndarray, *, float16: bool = True) -> Path:
    """A vector store's export: ids + fixed-size float lists (float16, as ../shared/data keeps them)."""
    kind = pa.float16() if float16 else pa.float32()
    flat = pa.array(vectors.astype(np.float16 if float16 else np.float32).reshape(-1), kind)
    pq.write_table(pa.table({"id": ids, "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])}), path)
    return path


@pytest.fixture()
def dataset(tmp_path):
    home = TavaHome(tmp_path / "home")
    write_dataset(home.root, "docs", {"corpus": TEXTS, "queries": TEXTS[:5]}, shard_size=20)
    return home


def _ids_and_texts(home: TavaHome) -> tuple[list[str], list[str]]:
    directory = home.dataset_dir("docs")
    manifest = load_dataset_manifest(directory)
    rows = [r for shard in manifest.collections["corpus"].shards for r in read_text_shard(directory / shard.path).to_pylist()]
    return [r["id"] for r in rows], [r["text"] for r in rows]


def test_imported_vectors_become_the_collections_shards_and_are_reused(dataset, tiny_model_dir, tmp_path):
    encoder = TransformerEncoder(tiny_model_dir)
    ids, texts = _ids_and_texts(dataset)
    order = np.random.default_rng(0).permutation(len(ids))          # a store keeps its own order,
    extra = ["not-in-the-corpus"]                                     # and more documents than the corpus
    vectors = encoder.encode(texts)
    store = _store(tmp_path / "store.parquet", [ids[i] for i in order] + extra,
                   np.concatenate([vectors[order], vectors[:1]]))
    spec = EncoderSpec(model=str(tiny_model_dir))
    out = embed_dataset(EmbedConfig(dataset="docs", collections=["corpus"], encoder=spec,
                                    import_vectors=str(store)), dataset)["corpus"]
    manifest = load_vector_manifest(out)
    assert manifest.rows == len(ids) and len(manifest.shards) == 3
    got_ids, got = [], []
    for shard in manifest.shards:
        shard_ids, shard_vectors = read_vector_shard(out / shard.path)
        got_ids += shard_ids
        got.append(shard_vectors)
        meta = vector_shard_metadata(out / shard.path)
        assert meta["fingerprint"] == encoder.fingerprint and meta["imported_from"] == str(store)
    assert got_ids == ids                                             # the text shards' order
    np.testing.assert_allclose(np.concatenate(got), vectors, atol=2e-3)   # float16 storage
    np.testing.assert_allclose(np.linalg.norm(np.concatenate(got), axis=1), 1.0, atol=1e-5)
    # a later plain `tava embed` finds every shard current: nothing is encoded again
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*.parquet")}
    embed_dataset(EmbedConfig(dataset="docs", collections=["corpus"], encoder=spec), dataset)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.parquet")} == stamps


def test_vectors_of_another_model_are_refused_with_the_measured_cosine(dataset, tiny_model_dir, tmp_path):
    ids, texts = _ids_and_texts(dataset)
    other = TransformerEncoder(tiny_model_dir, EncoderSpec(model=str(tiny_model_dir), pooling="cls"))
    store = _store(tmp_path / "store.parquet", ids, other.encode(texts))
    with pytest.raises(IntegrityError, match="these vectors are not .*cosine") as err:
        embed_dataset(EmbedConfig(dataset="docs", collections=["corpus"], encoder=EncoderSpec(model=str(tiny_model_dir)),
                                  import_vectors=str(store)), dataset)
    assert str(store) in str(err.value)
    assert not list((dataset.root / "vectors").rglob("*.parquet"))   # nothing written


@pytest.mark.parametrize("case, message", [
    ("missing ids", "3 of the collection's 45 documents have no vector (first: 'c0', 'c1', 'c2', in shard-00000.parquet)"),
    ("another collection's ids", "none of the collection's 45 documents has a vector there: the file's ids (e.g. "
                                 "'q0', 'q1', 'q2') are not its document ids (e.g. 'c0', 'c1', 'c2')"),
    ("wrong size", "16-d vectors, but tiny"),
    ("nan", "1 vectors hold NaN or inf"),
    ("repeated id", "appears more than once"),
    ("no vector column", "no column 'vector'"),
])
def test_a_bad_export_is_refused_naming_the_file(dataset, tiny_model_dir, tmp_path, case, message):
    ids, texts = _ids_and_texts(dataset)
    vectors = TransformerEncoder(tiny_model_dir).encode(texts)
    path = tmp_path / "store.parquet"
    if case == "missing ids":
        _store(path, ids[3:], vectors[3:])
    elif case == "another collection's ids":   # say, the queries' vectors where the corpus's were meant
        _store(path, [f"q{i}" for i in range(len(ids))], vectors)
    elif case == "wrong size":
        _store(path, ids, vectors[:, :16])
    elif case == "nan":
        vectors[7, 0] = np.nan
        _store(path, ids, vectors, float16=False)
    elif case == "repeated id":
        _store(path, ids + ids[:1], np.concatenate([vectors, vectors[:1]]))
    else:
        pq.write_table(pa.table({"id": ids, "embedding": [v.tolist() for v in vectors]}), path)
    config = EmbedConfig(dataset="docs", collections=["corpus"], encoder=EncoderSpec(model=str(tiny_model_dir)),
                         import_vectors=str(path))
    with pytest.raises(InputError, match=re.escape(message)) as err:
        embed_dataset(config, dataset)
    assert str(path) in str(err.value)
    if case == "no vector column":       # the column is named, and then the list column reads
        renamed = config.model_copy(update={"import_vector_column": "embedding"})
        assert embed_dataset(renamed, dataset)["corpus"].is_dir()


def test_an_import_names_exactly_one_collection():
    with pytest.raises(ValueError, match="fills one collection"):
        EmbedConfig(dataset="docs", import_vectors="x.parquet")


def test_the_embed_flow_imports_through_its_task_and_plain_runs_reuse_the_shards(prefect_harness, dataset,
                                                                                 tiny_model_dir, tmp_path):
    from flows.embed import embed_dataset_flow

    ids, texts = _ids_and_texts(dataset)
    store = _store(tmp_path / "store.parquet", ids, TransformerEncoder(tiny_model_dir).encode(texts))
    spec = EncoderSpec(model=str(tiny_model_dir))
    imported = embed_dataset_flow(EmbedConfig(dataset="docs", collections=["corpus"], encoder=spec,
                                              import_vectors=str(store)), home=str(dataset.root))
    assert [(c.collection, c.computed_shards, c.rows, c.imported_from) for c in imported.collections] == [
        ("corpus", 3, 45, str(store))]
    everything = embed_dataset_flow(EmbedConfig(dataset="docs", encoder=spec), home=str(dataset.root))
    by_name = {c.collection: c for c in everything.collections}
    corpus = by_name["corpus"]
    assert (corpus.computed_shards, corpus.reused_shards, corpus.imported_from) == (0, 3, None)
    assert by_name["queries"].computed_shards == 1          # the rest is encoded as before


def test_a_lancedb_table_tava_backfill_wrote_is_imported(prefect_harness, tiny_model_dir, tmp_path):
    # the store a platform team already has: a LanceDB table `tava backfill` filled with the teacher's vectors
    from flows.backfill import backfill_vector_store
    from tava_core.imported import read_vector_source
    from tava_core.vectorstore import BackfillConfig

    spec = EncoderSpec(model=str(tiny_model_dir))
    store_home = TavaHome(tmp_path / "store-home")
    write_dataset(store_home.root, "docs", {"corpus": TEXTS, "queries": TEXTS[:5]}, shard_size=20)
    backfill_vector_store(BackfillConfig(dataset="docs", encoder=spec), home=str(store_home.root))
    table = store_home.root / "lancedb" / "docs_corpus.lance"
    assert table.is_dir()

    home = TavaHome(tmp_path / "home")
    write_dataset(home.root, "docs", {"corpus": TEXTS, "queries": TEXTS[:5]}, shard_size=20)
    out = embed_dataset(EmbedConfig(dataset="docs", collections=["corpus"], encoder=spec, import_vectors=str(table)),
                        home)["corpus"]
    ids, texts = _ids_and_texts(home)
    manifest = load_vector_manifest(out)
    got_ids = [i for shard in manifest.shards for i in read_vector_shard(out / shard.path)[0]]
    got = np.concatenate([read_vector_shard(out / shard.path)[1] for shard in manifest.shards])
    assert got_ids == ids and vector_shard_metadata(out / manifest.shards[0].path)["imported_from"] == str(table)
    np.testing.assert_allclose(got, TransformerEncoder(tiny_model_dir).encode(texts), atol=1e-5)

    # the database folder holds tables, not rows: the error names the one to give
    with pytest.raises(InputError, match=r"LanceDB database of 1 table\(s\) \(docs_corpus.lance\)") as caught:
        read_vector_source(store_home.root / "lancedb")
    assert str(table) in str(caught.value)
