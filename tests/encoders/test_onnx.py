"""ONNX Runtime backend and `tava export`: agreement with torch, fingerprints, the export cache
(reused, rebuilt when stale or corrupt, refusals), the query-encoder export (round trip, int8
gate), the README snippet without torch, and bad input."""
from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from damaged_models import damaged_model
from helpers import add_dense, synthetic_texts

from tava_core.config import EncoderSpec
from tava_core.encoders import load_encoder
from tava_core.encoders.onnx_backend import resolve_backend
from tava_core.errors import ConfigError, InputError
from tava_core.export import cache as onnx_cache
from tava_core.export import graph as onnx_graph
from tava_core.export.config import ExportConfig
from tava_core.export.query_encoder import ExportRefused, export_query_encoder
from tava_core.export.standalone import ExportedQueryEncoder
from tava_core.home import TavaHome

pytest.importorskip("onnxruntime")
torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
TEXTS = synthetic_texts(40, seed=3) + ["x", "Ünïcode and émojis 🙂", "word " * 300]


def _spec(model: Path | str, backend: str, **kw) -> EncoderSpec:
    return EncoderSpec(model=str(model), backend=backend, **kw)


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    """A fresh home per test, so each starts with an empty ONNX cache."""
    root = tmp_path / "home"
    monkeypatch.setenv("TAVA_HOME", str(root))
    return root


@pytest.fixture(scope="module")
def dense_model_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny BERT with CLS pooling and a Dense projection 32 -> 24 (a projected student's layout)."""
    out = tmp_path_factory.mktemp("tiny-dense") / "model"
    shutil.copytree(tiny_model_dir, out)
    (out / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True}))
    return add_dense(out, 24, seed=1)


def _adapter_dir(tmp_path_factory, dense_model_dir, memory: bool) -> Path:
    """A Stage B adapter over the dense tiny student (tava_encoder.json names the student); with
    ``memory``, a residual memory whose keys are the student's own vectors of a few texts."""
    from tava_core.adapter import Vec2VecAdapter, save_adapter
    from tava_core.adapter.memory import build_memory

    torch.manual_seed(2)
    adapter = Vec2VecAdapter(24, 16, [32]).eval()
    with torch.no_grad():  # a non-trivial correction (the head starts at zero)
        adapter.net.head.weight.normal_(0, 0.2)
    spec = EncoderSpec(model=str(dense_model_dir)).model_dump(mode="json")
    if memory:
        # random keys: the tiny student's own vectors of any texts are nearly parallel, and a top-k among
        # near-ties is decided by rounding, in torch and ONNX Runtime alike
        rng = np.random.default_rng(3)
        keys = rng.standard_normal((40, 24)).astype(np.float32)
        targets = rng.standard_normal((len(keys), 16)).astype(np.float32)
        adapter.attach_memory(build_memory(keys, targets, adapter.map_numpy(keys), k=4, temperature=0.05,
                                           weight=0.75))
    return save_adapter(tmp_path_factory.mktemp("adapter") / "adapter", adapter, student=spec,
                        metadata={"lineage": {"teacher": {"name": "all-MiniLM-L6-v2", "dim": 384}}})


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, dense_model_dir) -> Path:
    return _adapter_dir(tmp_path_factory, dense_model_dir, memory=False)


@pytest.fixture(scope="module")
def memory_adapter_dir(tmp_path_factory, dense_model_dir) -> Path:
    return _adapter_dir(tmp_path_factory, dense_model_dir, memory=True)


# ------------------------------------------------------------------------------- backend choice

def test_resolve_backend_choices_and_fallbacks(caplog):
    assert resolve_backend("torch", "cpu", available=True) == "torch"
    assert resolve_backend("onnx", "cpu", available=True) == "onnx"
    assert resolve_backend("auto", "cpu", available=True) == "onnx"
    assert resolve_backend("auto", "cuda", available=True) == "torch"
    with caplog.at_level(logging.WARNING):
        assert resolve_backend("auto", "cpu", available=False) == "torch"
    assert "onnxruntime is not installed" in caplog.text
    with pytest.raises(ConfigError, match="needs onnx and onnxruntime"):
        resolve_backend("onnx", "cpu", available=False)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert resolve_backend("onnx", "cuda", available=True) == "torch"
    assert "CPU only" in caplog.text
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        EncoderSpec(backend="tensorrt")


# ------------------------------------------------------------------------------- agreement

@pytest.mark.parametrize("model", ["tiny", "dense"])
def test_onnx_backend_matches_torch_and_keeps_the_fingerprint(home, model, tiny_model_dir, dense_model_dir):
    directory = tiny_model_dir if model == "tiny" else dense_model_dir
    spec_kw = dict(query_prefix="query: ", batch_size=7)
    torch_encoder = load_encoder(_spec(directory, "torch", **spec_kw), cache=False)
    onnx_encoder = load_encoder(_spec(directory, "onnx", **spec_kw), cache=False)
    for kind in ("query", "document"):
        expected = torch_encoder.encode(TEXTS, kind=kind)
        got = onnx_encoder.encode(TEXTS, kind=kind)
        assert np.abs(got - expected).max() <= 1e-4
    assert onnx_encoder.backend == "onnx" and onnx_encoder._model is None  # torch weights let go after export
    cached = load_encoder(_spec(directory, "onnx", **spec_kw), cache=False)
    assert np.abs(cached.encode(TEXTS) - expected).max() <= 1e-4
    assert cached._model is None  # served from the export cache: torch weights never loaded
    assert onnx_encoder.fingerprint == torch_encoder.fingerprint
    assert onnx_encoder.dim == (32 if model == "tiny" else 24)
    record = json.loads((onnx_cache.entry_dir(onnx_encoder.name, onnx_encoder.fingerprint) / "export.json").read_text())
    assert record["verdict"] == "accepted" and record["agreement"]["max_abs_diff"] <= 1e-4
    assert onnx_encoder.encode([]).shape == (0, onnx_encoder.dim)


@pytest.mark.slow
def test_packaged_teacher_onnx_matches_torch(home):
    texts = TEXTS[:12]
    expected = load_encoder(_spec("all-MiniLM-L6-v2", "torch"), cache=False).encode(texts)
    onnx_encoder = load_encoder(_spec("all-MiniLM-L6-v2", "auto"), cache=False)
    assert onnx_encoder.backend == "onnx"
    assert np.abs(onnx_encoder.encode(texts) - expected).max() <= 1e-4


def test_backend_graph_fuses_bert_attention_only_and_runs_with_the_export_session_settings(home, tiny_model_dir):
    """The backend's cached graph for a BERT-family encoder has every layer's attention fused into ONNX
    Runtime's Attention op (faster on long documents) and nothing else that was slow (no
    SkipLayerNormalization); its session flushes subnormals and keeps SkipLayerNormFusion off, as
    `tava export`'s cards say; the vectors still match torch."""
    import onnx

    from tava_core.export.standalone import SESSION_SETTINGS

    encoder = load_encoder(_spec(tiny_model_dir, "onnx"), cache=False)
    expected = load_encoder(_spec(tiny_model_dir, "torch"), cache=False).encode(TEXTS)
    assert np.abs(encoder.encode(TEXTS) - expected).max() <= 1e-4
    nodes = [node.op_type for node in onnx.load(str(_entry(encoder) / "model.onnx")).graph.node]
    layers = json.loads((tiny_model_dir / "config.json").read_text())["num_hidden_layers"]
    assert nodes.count("Attention") == layers and "SkipLayerNormalization" not in nodes
    assert json.loads((_entry(encoder) / "export.json").read_text())["attention_fused"] == layers
    session = encoder.onnx_session()
    assert session is not None
    options = session.session.get_session_options()
    for key, value in SESSION_SETTINGS["config"].items():
        assert options.get_session_config_entry(key) == value
    assert SESSION_SETTINGS["disabled_optimizers"] == ["SkipLayerNormFusion"]


def test_fused_graph_that_disagrees_falls_back_to_the_plain_graph(home, tiny_model_dir, monkeypatch, caplog):
    """Fusion changes the attention's arithmetic; if that ever breaks the 1e-4 agreement, the plain graph
    is exported again and checked, instead of refusing the backend."""
    import onnx

    real = onnx_cache.measure_agreement
    calls = []

    def first_fails(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append(result)
        return {**result, "max_abs_diff": 1.0} if len(calls) == 1 else result

    monkeypatch.setattr(onnx_cache, "measure_agreement", first_fails)
    with caplog.at_level(logging.WARNING):
        encoder = load_encoder(_spec(tiny_model_dir, "onnx"), cache=False)
        got = encoder.encode(TEXTS)
    assert encoder.backend == "onnx" and "using the plain graph" in caplog.text and len(calls) == 2
    expected = load_encoder(_spec(tiny_model_dir, "torch"), cache=False).encode(TEXTS)
    assert np.abs(got - expected).max() <= 1e-4
    record = json.loads((_entry(encoder) / "export.json").read_text())
    assert record["verdict"] == "accepted" and record["attention_fused"] == 0
    ops = {node.op_type for node in onnx.load(str(_entry(encoder) / "model.onnx")).graph.node}
    assert "Attention" not in ops and "MatMul" in ops


# ------------------------------------------------------------------------------- export cache

def _entry(encoder) -> Path:
    return onnx_cache.entry_dir(encoder.name, encoder.fingerprint)


def test_cache_is_reused_and_rebuilt_when_corrupt_or_stale(home, tiny_model_dir, monkeypatch):
    first = load_encoder(_spec(tiny_model_dir, "onnx"), cache=False)
    reference = first.encode(TEXTS)
    entry = _entry(first)
    exports = []
    real_export = onnx_graph.export_graph
    monkeypatch.setattr(onnx_graph, "export_graph", lambda *a, **k: exports.append(1) or real_export(*a, **k))

    load_encoder(_spec(tiny_model_dir, "onnx"), cache=False).encode(TEXTS[:3])
    assert exports == []  # a valid entry is served from the cache

    graph_file = entry / "model.onnx"
    graph_file.write_bytes(graph_file.read_bytes()[:1000])  # truncated: sha256 no longer matches
    rebuilt = load_encoder(_spec(tiny_model_dir, "onnx"), cache=False)
    assert np.abs(rebuilt.encode(TEXTS) - reference).max() <= 1e-6 and rebuilt.backend == "onnx"
    assert len(exports) == 1

    record_file = entry / "export.json"
    record = json.loads(record_file.read_text())
    record_file.write_text(json.dumps({**record, "format": onnx_cache.EXPORT_FORMAT - 1}))  # an older export format
    load_encoder(_spec(tiny_model_dir, "onnx"), cache=False).encode(TEXTS[:3])
    assert len(exports) == 2

    record_file.write_text("{not json")
    load_encoder(_spec(tiny_model_dir, "onnx"), cache=False).encode(TEXTS[:3])
    assert len(exports) == 3 and json.loads(record_file.read_text())["verdict"] == "accepted"
    assert not [p for p in entry.iterdir() if p.name.startswith(".")]  # no temp files left behind


def test_disagreeing_graph_is_refused_and_torch_used(home, tiny_model_dir, monkeypatch, caplog):
    monkeypatch.setattr(onnx_cache, "TOLERANCE", -1.0)  # nothing can agree this closely
    expected = load_encoder(_spec(tiny_model_dir, "torch"), cache=False).encode(TEXTS)
    with caplog.at_level(logging.WARNING):
        encoder = load_encoder(_spec(tiny_model_dir, "onnx"), cache=False)
        got = encoder.encode(TEXTS)
    assert encoder.backend == "torch" and "encoding with torch instead" in caplog.text
    np.testing.assert_array_equal(got, expected)
    entry = _entry(encoder)
    assert json.loads((entry / "export.json").read_text())["verdict"] == "refused"
    assert not (entry / "model.onnx").exists()
    # The refusal is cached: the next load does not export again.
    monkeypatch.setattr(onnx_graph, "export_graph", lambda *a, **k: pytest.fail("re-exported a refused encoder"))
    assert load_encoder(_spec(tiny_model_dir, "onnx"), cache=False).encode(TEXTS[:2]).shape == (2, 32)


@pytest.mark.parametrize("agrees", [True, False])
def test_vector_shards_record_the_backend_that_ran(home, tiny_model_dir, monkeypatch, agrees):
    # `--encoder-backend onnx` falls back to torch when the graph disagrees: a user can see which one ran
    from helpers import write_dataset

    import tava_core.encoders as encoders
    from tava_core.embed import EmbedConfig, embed_dataset
    from tava_core.io import vector_shard_metadata
    from tava_core.manifest import load_vector_manifest

    monkeypatch.setattr(encoders, "_cache", {})   # embed_dataset loads through the per-process encoder cache
    if not agrees:
        monkeypatch.setattr(onnx_cache, "TOLERANCE", -1.0)
    tava_home = TavaHome(home / "tava")
    write_dataset(tava_home.root, "docs", {"texts": TEXTS[:12]}, shard_size=6)
    out = embed_dataset(EmbedConfig(dataset="docs", encoder=_spec(tiny_model_dir, "onnx")), tava_home)["texts"]
    shards = load_vector_manifest(out).shards
    assert [vector_shard_metadata(out / s.path)["backend"] for s in shards] == ["onnx" if agrees else "torch"] * 2


def test_unexportable_encoder_falls_back_to_torch(home, tiny_model_dir, monkeypatch, caplog):
    def broken_export(*args, **kwargs):
        raise RuntimeError("Unsupported: custom operator MyAttention")

    monkeypatch.setattr(torch.onnx, "export", broken_export)
    with caplog.at_level(logging.WARNING):
        encoder = load_encoder(_spec(tiny_model_dir, "auto"), cache=False)
        got = encoder.encode(TEXTS[:5])
    assert encoder.backend == "torch" and "cannot be exported to ONNX" in caplog.text
    np.testing.assert_allclose(got, load_encoder(_spec(tiny_model_dir, "torch"), cache=False).encode(TEXTS[:5]))
    assert not (_entry(encoder) / "export.json").exists()  # a failure is not cached as a verdict


# ------------------------------------------------------------------------------- tava export

@pytest.mark.parametrize("which", ["adapter_dir", "memory_adapter_dir"])
def test_export_round_trip_student_plus_adapter(tmp_path, which, request):
    adapter_dir = request.getfixturevalue(which)
    if which == "memory_adapter_dir":  # the memory is in the graph: top-k, softmax and gather run in ONNX Runtime
        bare = load_encoder(_spec(request.getfixturevalue("adapter_dir"), "torch"), cache=False)
        assert np.abs(bare.encode(TEXTS, kind="query") - load_encoder(_spec(adapter_dir, "torch"), cache=False).encode(
            TEXTS, kind="query")).max() > 0.05
    out = tmp_path / "export"
    card = export_query_encoder(ExportConfig(model=str(adapter_dir), out=str(out)), TavaHome(tmp_path / "home"))
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["card.json", "model.onnx", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"])
    on_disk = json.loads((out / "card.json").read_text())
    assert on_disk["precision"] == "fp32" and on_disk["dim"] == 16 and on_disk["encoder"]["adapter"] is True
    assert on_disk["teacher"]["name"] == "all-MiniLM-L6-v2" and on_disk["agreement"]["mean_cosine"] > 0.9999
    from tava_core.io import sha256_file

    assert on_disk["sha256"] == sha256_file(out / "model.onnx") and card["path"] == str(out)
    expected = load_encoder(_spec(adapter_dir, "torch"), cache=False).encode(TEXTS, kind="query")
    got = ExportedQueryEncoder(out).encode(TEXTS)
    assert np.abs(got - expected).max() <= 1e-4
    # Dynamic axes: one text, and a batch of a size and length never seen at export time.
    single = ExportedQueryEncoder(out).encode(["word " * 100], batch_size=1)
    assert np.abs(single - load_encoder(_spec(adapter_dir, "torch"), cache=False).encode(
        ["word " * 100], kind="query")).max() <= 1e-4


def test_int8_export_is_smaller_and_gated(tmp_path, dense_model_dir):
    home = TavaHome(tmp_path / "home")
    int8 = export_query_encoder(ExportConfig(model=str(dense_model_dir), precision="int8", min_mean_cosine=0.9,
                                             out=str(tmp_path / "int8")), home)
    fp32 = export_query_encoder(ExportConfig(model=str(dense_model_dir), out=str(tmp_path / "fp32")), home)
    assert int8["precision"] == "int8" and int8["bytes"] < fp32["bytes"]
    assert 0.9 <= int8["agreement"]["mean_cosine"] < fp32["agreement"]["mean_cosine"]
    # An impossible gate: refused, and nothing is saved (not even a partial directory).
    refused_out = tmp_path / "refused"
    with pytest.raises(ExportRefused, match="int8 export refused: mean cosine"):
        export_query_encoder(ExportConfig(model=str(dense_model_dir), precision="int8", min_mean_cosine=1.0,
                                          out=str(refused_out)), home)
    assert not refused_out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".refused")]
    # A refused re-export leaves an earlier good export in place.
    with pytest.raises(ExportRefused):
        export_query_encoder(ExportConfig(model=str(dense_model_dir), precision="int8", min_mean_cosine=1.0,
                                          out=str(tmp_path / "int8")), home)
    assert json.loads((tmp_path / "int8" / "card.json").read_text())["sha256"] == int8["sha256"]


def test_int8_export_keeps_the_residual_memory_in_fp32(tmp_path, memory_adapter_dir):
    import onnx

    export_query_encoder(ExportConfig(model=str(memory_adapter_dir), precision="int8", min_mean_cosine=0.9,
                                      out=str(tmp_path / "int8")), TavaHome(tmp_path / "home"))
    nodes = onnx.load(str(tmp_path / "int8" / "model.onnx")).graph.node
    memory = [node for node in nodes if "/memory/" in node.name]
    assert any(node.op_type == "TopK" for node in memory)
    assert [node.op_type for node in memory if "MatMul" in node.op_type] == ["MatMul"]  # the key product, fp32
    assert any(node.op_type == "MatMulInteger" or node.op_type.startswith("DynamicQuantize") for node in nodes)


def test_int8_card_records_recipe_and_session_settings(tmp_path, dense_model_dir):
    """The int8 file is the recorded recipe (uint8 activations x int8 weights, per-channel, from an
    unfused graph), and the card's session settings are what the runner applies: with them ONNX
    Runtime keeps Add + LayerNormalization; with its defaults it fuses them into the (slower)
    SkipLayerNormalization."""
    import onnx
    import onnxruntime as ort

    from tava_core.export.query_encoder import QUANTIZATION
    from tava_core.export.standalone import SESSION_SETTINGS, session_options

    out = tmp_path / "int8"
    card = export_query_encoder(ExportConfig(model=str(dense_model_dir), precision="int8", min_mean_cosine=0.9,
                                             out=str(out)), TavaHome(tmp_path / "home"))
    on_disk = json.loads((out / "card.json").read_text())
    assert on_disk["quantization"] == QUANTIZATION == card["quantization"]
    assert on_disk["quantization"]["weight_type"] == "QInt8" and on_disk["quantization"]["per_channel"] is True
    assert on_disk["session"] == SESSION_SETTINGS and on_disk["graph"] == {"offline_fusion": False}
    ops = {node.op_type for node in onnx.load(str(out / "model.onnx")).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops  # weights int8, activations quantised per call
    assert not ops & {"SkipLayerNormalization", "Attention", "QAttention", "EmbedLayerNormalization"}
    graph = onnx.load(str(out / "model.onnx")).graph
    inits = {t.name: t for t in graph.initializer}
    products = [n for n in graph.node if n.op_type == "MatMulInteger"]
    for node in products:  # int8 weights, one zero point (and scale) per output channel
        weight, zero_point = inits[node.input[1]], inits[node.input[3]]
        assert weight.data_type == onnx.TensorProto.INT8 and list(zero_point.dims) == [weight.dims[1]]

    def runtime_ops(settings_card: dict, name: str) -> set[str]:
        options, disabled = session_options(settings_card, threads=1)
        options.optimized_model_filepath = str(tmp_path / name)
        ort.InferenceSession(str(out / "model.onnx"), options, providers=["CPUExecutionProvider"],
                             disabled_optimizers=disabled)
        return {node.op_type for node in onnx.load(str(tmp_path / name)).graph.node}

    assert "SkipLayerNormalization" in runtime_ops({}, "default.onnx")
    assert "SkipLayerNormalization" not in runtime_ops(on_disk, "tuned.onnx")
    runner = ExportedQueryEncoder(out)
    assert runner.session.get_session_options().get_session_config_entry("session.set_denormal_as_zero") == "1"
    # A card from before the settings existed still runs, with ONNX Runtime's defaults, to the same vectors.
    del on_disk["session"]
    (out / "card.json").write_text(json.dumps(on_disk))
    np.testing.assert_allclose(ExportedQueryEncoder(out).encode(TEXTS), runner.encode(TEXTS), atol=1e-5)


def test_int8_full_range_uses_all_eight_bits_and_says_so(tmp_path, dense_model_dir):
    """--int8-range full: the weights span [-127, 127] per channel instead of the 7-bit [-64, 63], the
    card records reduce_range false, and it lands in its own default directory."""
    import onnx
    from onnx import numpy_helper

    from tava_core.export.standalone import cpu_flags, full_range_warning

    home = TavaHome(tmp_path / "home")
    widest = {}
    for int8_range in ("reduced", "full"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            card = export_query_encoder(ExportConfig(model=str(dense_model_dir), precision="int8",
                                                     min_mean_cosine=0.9, int8_range=int8_range), home)
        said = [str(w.message) for w in caught if "full-range" in str(w.message)]
        # on a CPU without VNNI / AMX the full-range file warns once, naming the saved directory (not the
        # staging one it was measured in); a reduced-range file never warns
        expected = 1 if full_range_warning(card, cpu_flags()) is not None else 0
        assert len(said) == expected, said
        assert all(s.startswith(f"{card['path']}: ") for s in said), said
        assert card["quantization"]["reduce_range"] is (int8_range == "reduced")
        graph = onnx.load(str(Path(card["path"]) / "model.onnx")).graph
        inits = {t.name: t for t in graph.initializer}
        weights = [numpy_helper.to_array(inits[n.input[1]]) for n in graph.node if n.op_type == "MatMulInteger"]
        widest[int8_range] = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
        widest[int8_range + " path"] = card["path"]
    assert widest["reduced"] <= 64 < widest["full"] <= 127
    assert widest["reduced path"] != widest["full path"] and widest["full path"].endswith("-int8-full")


@pytest.mark.parametrize("reduce_range, flags, warns", [
    (False, {"avx2", "avx512f"}, True),              # AVX2 / AVX-512 without VNNI: can saturate
    (False, {"avx2", "avx512_vnni"}, False),
    (False, {"avx2", "avx_vnni"}, False),
    (False, {"amx_int8", "avx512_vnni"}, False),
    (False, None, False),                            # flags unknown (not Linux / x86): no guess
    (True, {"avx2"}, False),                         # 7-bit weights are safe everywhere
])
def test_full_range_file_warns_on_a_cpu_without_vnni(reduce_range, flags, warns):
    from tava_core.export.standalone import full_range_warning

    card = {"quantization": {"reduce_range": reduce_range}}
    assert (full_range_warning(card, flags) is not None) is warns
    assert full_range_warning({"quantization": None}, {"avx2"}) is None   # an fp32 export


def test_export_bad_input(tmp_path, tiny_model_dir):
    home = TavaHome(tmp_path / "home")
    static_dir = tmp_path / "static"
    static_dir.mkdir()
    (static_dir / "config.json").write_text(json.dumps({"model_type": "model2vec", "normalize": True}))
    shutil.copy(tiny_model_dir / "tokenizer.json", static_dir / "tokenizer.json")
    from safetensors.torch import save_file

    save_file({"embeddings": torch.randn(30522, 8)}, str(static_dir / "model.safetensors"))
    with pytest.raises(ConfigError, match="cannot export a StaticEncoder"):
        export_query_encoder(ExportConfig(model=str(static_dir), out=str(tmp_path / "o1")), home)
    with pytest.raises(InputError, match="sample file not found"):
        export_query_encoder(ExportConfig(model=str(tiny_model_dir), sample_file=str(tmp_path / "nope.txt")), home)
    short = tmp_path / "short.txt"
    short.write_text("one\ntwo\n\n")
    with pytest.raises(InputError, match="has 2 non-empty lines"):
        export_query_encoder(ExportConfig(model=str(tiny_model_dir), sample_file=str(short)), home)
    from tava_core.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="model not found"):
        export_query_encoder(ExportConfig(model=str(tmp_path / "missing")), home)
    assert not (home.artifacts / "exports").exists()



@pytest.mark.parametrize("kind", ["transformer", "adapter"])
def test_export_of_a_model_giving_nan_is_refused_as_nan_not_as_a_gate(tmp_path, tiny_model_dir, kind):
    """Damaged weights (NaN from the torch encoder): refused at once, saying NaN and naming the model, not
    "mean cosine nan ... lower --min-mean-cosine" (an fp32 export; NaN is no agreement question)."""
    from tava_core.errors import ModelLoadError

    bad = damaged_model(kind, tmp_path, tiny_model_dir)
    out = tmp_path / "export"
    with pytest.raises(ModelLoadError) as info:
        export_query_encoder(ExportConfig(model=str(bad), out=str(out)), TavaHome(tmp_path / "home"))
    message = str(info.value)
    assert re.search(r"holding NaN for (\d+) of \1 agreement sample texts; nothing was exported", message)
    assert info.value.path == str(bad) and f"encoder {bad.name!r}" in message and "damaged" in message
    assert "min-mean-cosine" not in message and "gate" not in message and "export fp32" not in message
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".export")]


def test_export_whose_graph_gives_nan_is_refused_as_nan_not_as_a_gate(tmp_path, tiny_model_dir, monkeypatch):
    """Finite torch vectors but NaN from the exported graph (a broken graph): refused saying so."""
    from tava_core.export import query_encoder

    real = query_encoder.ExportedQueryEncoder.encode

    def every_other_nan(self, texts, *args, **kwargs):
        vectors = real(self, texts, *args, **kwargs)
        vectors[::2] = np.nan
        return vectors

    monkeypatch.setattr(query_encoder.ExportedQueryEncoder, "encode", every_other_nan)
    out = tmp_path / "export"
    with pytest.raises(ExportRefused) as info:
        export_query_encoder(ExportConfig(model=str(tiny_model_dir), out=str(out)), TavaHome(tmp_path / "home"))
    message = str(info.value)
    texts = len(query_encoder.read_sample(ExportConfig(model=str(tiny_model_dir))))
    assert f"gives vectors holding NaN or infinite values for {(texts + 1) // 2} of {texts} sample texts" in message
    assert info.value.path == str(tiny_model_dir) and "min-mean-cosine" not in message and "gate" not in message
    assert not out.exists()


def test_readme_snippet_runs_without_torch(tmp_path, adapter_dir):
    """The README's snippet, run as written (export path filled in) in a process where importing
    torch, transformers or tava fails."""
    out = tmp_path / "export"
    export_query_encoder(ExportConfig(model=str(adapter_dir), out=str(out)), TavaHome(tmp_path / "home"))
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- onnx-snippet -->\s*```python\n(.*?)```", readme, re.S)
    assert match, "README.md lost its `<!-- onnx-snippet -->` python block"
    snippet = match.group(1).replace('"path/to/export"', repr(str(out)))
    queries = ["what causes antibiotic resistance?", "a second, longer query about protein folding"]
    program = (
        "import sys\n"
        "for banned in ('torch', 'transformers', 'sentence_transformers', 'tava_core'):\n"
        "    sys.modules[banned] = None  # any import of them raises ImportError\n"
        + snippet +
        f"\nimport numpy\nnumpy.save({str(tmp_path / 'vectors.npy')!r}, encode_queries({queries!r}))\n")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    got = np.load(tmp_path / "vectors.npy")
    expected = load_encoder(_spec(adapter_dir, "torch"), cache=False).encode(queries, kind="query")
    assert got.shape == expected.shape and np.abs(got - expected).max() <= 1e-4


@pytest.mark.slow
def test_export_flow(tmp_path, prefect_harness, tiny_model_dir):
    from flows.export import export_query_encoder_flow

    card = export_query_encoder_flow(ExportConfig(model=str(tiny_model_dir), out=str(tmp_path / "e")),
                                     home=str(tmp_path / "home"))
    assert card["path"] == str(tmp_path / "e") and (tmp_path / "e" / "card.json").is_file()
    assert card["agreement"]["mean_cosine"] > 0.9999


def test_cli_options():
    from click.testing import CliRunner

    from flows.cli import group

    help_text = CliRunner().invoke(group, ["export", "--help"]).output
    assert "--precision [fp32|int8]" in help_text and "--min-mean-cosine" in help_text
    assert "--encoder-backend [torch|onnx|auto]" in CliRunner().invoke(group, ["embed", "--help"]).output
