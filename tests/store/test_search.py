"""`tava search` / tava_core.search: an index searched with query texts, the hits' texts from the dataset."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import synthetic_texts, write_dataset

from tava_core.config import EncoderSpec
from tava_core.embed import EmbedConfig, embed_dataset
from tava_core.errors import ConfigError
from tava_core.home import TavaHome
from tava_core.index import IndexConfig, build_index
from tava_core.search import indexed_space, search_index

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def indexed(tava_home, tiny_model_dir):
    texts = synthetic_texts(80, seed=3)
    write_dataset(tava_home, "docs", {"texts": texts}, shard_size=40)
    home = TavaHome(tava_home)
    out = embed_dataset(EmbedConfig(dataset="docs", encoder=EncoderSpec(model=str(tiny_model_dir), device="cpu")),
                        home)["texts"]
    record = build_index(IndexConfig(vectors=str(out), factory="Flat", recall_queries=10), home)
    return home, record, texts, out


def test_a_documents_own_text_finds_it_first_with_its_text(indexed, tiny_model_dir):
    home, record, texts, _ = indexed
    found = search_index(record["index_dir"], [texts[7], texts[42]], encoder=str(tiny_model_dir), k=3, home=home)
    first = [result["hits"][0] for result in found["results"]]
    assert [hit["text"] for hit in first] == [texts[7], texts[42]]
    assert all(hit["score"] == pytest.approx(1.0, abs=1e-3) for hit in first)
    assert [len(result["hits"]) for result in found["results"]] == [3, 3]
    assert "text" not in search_index(record["index_dir"], [texts[7]], encoder=str(tiny_model_dir), k=1, home=home,
                                      with_text=False)["results"][0]["hits"][0]
    with pytest.raises(ConfigError, match="no query text"):
        search_index(record["index_dir"], [], encoder=str(tiny_model_dir), home=home)


@pytest.mark.parametrize("encoder, space", [
    ({"type": "translated", "target_encoder": "all-mpnet-base-v2", "name": "all-MiniLM-L6-v2+m"}, "all-mpnet-base-v2"),
    ({"name": "all-MiniLM-L6-v2", "fingerprint": "f"}, "all-MiniLM-L6-v2"),
    ({"name": "student", "spec": {"model": "/a/student"}}, "/a/student"),
    ({}, None),
])
def test_the_default_query_encoder_is_the_indexed_space(encoder, space):
    assert indexed_space({"source": {"encoder": encoder}}) == space


@pytest.mark.slow
def test_search_command_prints_hits_as_json(indexed, tiny_model_dir):
    import json

    home, record, texts, out = indexed
    env = {"TAVA_HOME": str(home.root), "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "flows.cli", "search", "--vectors", str(out), "--encoder",
                           str(tiny_model_dir), "-k", "2", texts[5]], cwd=PROJECT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    [result] = json.loads(done.stdout)["results"]
    assert result["query"] == texts[5] and result["hits"][0]["text"] == texts[5] and len(result["hits"]) == 2
    missing = subprocess.run([sys.executable, "-m", "flows.cli", "search", "anything"], cwd=PROJECT, env=env,
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "tava search needs --index-dir" in missing.stderr
