"""Dims read without loading anything (the CLI's up-front checks): an encoder's from its files, a vector
file's from its schema or first row. Each is checked against what loading the model or reading the rows gives."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tava_core.errors import ModelLoadError
from tava_core.imported import read_vector_source, source_dim
from tava_core.model_dims import MPNET_ALIAS, aliases_of_dim, declared_dim


@pytest.mark.parametrize("alias", ["all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "teacher",
                                   MPNET_ALIAS, f"sentence-transformers/{MPNET_ALIAS}"])
def test_every_alias_has_the_dim_its_encoder_makes(alias):
    from tava_core.encoders import ALIASES, load_encoder

    assert alias in ALIASES
    try:
        encoder = load_encoder(alias)   # reads the config; the weights load on first encode
    except ModelLoadError as exc:       # the mpnet extra is not installed (CI): the shared vectors test below
        pytest.skip(f"{alias} is not installed here: {exc}")
    assert declared_dim(alias) == encoder.dim


def test_the_mpnet_alias_dim_is_that_of_its_published_vectors(shared_data_dir):
    vectors = shared_data_dir / "vectors" / MPNET_ALIAS / "passages_shuffled_first20000.parquet"
    assert declared_dim(MPNET_ALIAS) == source_dim(vectors) == 768
    assert aliases_of_dim(768) == [MPNET_ALIAS] and "teacher" not in aliases_of_dim(384)


def test_a_directory_dim_is_its_last_dense_module_else_its_hidden_size(tiny_model_dir, tmp_path):
    import torch
    from safetensors.torch import save_file

    from tava_core.encoders import TransformerEncoder

    assert declared_dim(str(tiny_model_dir)) == TransformerEncoder(tiny_model_dir).dim == 32
    dense = tmp_path / "with-dense"
    shutil.copytree(tiny_model_dir, dense)
    (dense / "2_Dense").mkdir()
    (dense / "2_Dense" / "config.json").write_text(json.dumps({"in_features": 32, "out_features": 12, "bias": True}))
    save_file({"linear.weight": torch.zeros(12, 32), "linear.bias": torch.zeros(12)},
              str(dense / "2_Dense" / "model.safetensors"))
    modules = json.loads((dense / "modules.json").read_text())
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (dense / "modules.json").write_text(json.dumps(modules))
    encoder = TransformerEncoder(dense)
    assert declared_dim(str(dense)) == encoder.dim == encoder.encode(["a text"]).shape[1] == 12


def test_what_cannot_be_read_cheaply_is_left_to_the_loading_stage(tiny_model_dir, tmp_path):
    marked = tmp_path / "student"
    shutil.copytree(tiny_model_dir, marked)
    (marked / "tava_encoder.json").write_text(json.dumps({"type": "adapted"}))
    static = tmp_path / "m2v"
    static.mkdir()
    (static / "config.json").write_text(json.dumps({"model_type": "model2vec", "hidden_dim": 64}))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    for model in (marked, static, broken, tmp_path / "missing"):
        assert declared_dim(str(model)) is None, model


def _write(path: Path, vectors: np.ndarray, *, fixed: bool) -> Path:
    column = (pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1]) if fixed
              else pa.array(vectors.tolist(), pa.list_(pa.float32())))
    pq.write_table(pa.table({"id": [str(i) for i in range(len(vectors))], "emb": column}), path)
    return path


@pytest.mark.parametrize("fixed", [True, False])
def test_a_vector_file_dim_is_what_reading_its_rows_gives(tmp_path, fixed):
    vectors = np.random.default_rng(0).normal(size=(5, 24)).astype(np.float32)
    folder = tmp_path / "store"
    folder.mkdir()
    file = _write(folder / "part-0.parquet", vectors, fixed=fixed)
    for source in (file, folder):
        assert source_dim(source, vector_column="emb") == 24
        assert read_vector_source(source, vector_column="emb").vectors.shape[1] == 24
    assert source_dim(file) is None                        # no such column: the import names it
    assert source_dim(tmp_path / "missing.parquet") is None


def test_a_lancedb_table_dim_is_read_from_its_schema(tmp_path):
    import lancedb

    vectors = np.random.default_rng(1).normal(size=(4, 10)).astype(np.float32)
    lancedb.connect(str(tmp_path / "db")).create_table(
        "docs", pa.table({"id": list("abcd"),
                          "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), 10)}))
    table = tmp_path / "db" / "docs.lance"
    assert source_dim(table) == read_vector_source(table).vectors.shape[1] == 10
