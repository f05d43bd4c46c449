"""Encoders: exact parity with sentence-transformers, pooling/prefix options, errors, OOM retry."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tava_core.config import EncoderSpec
from tava_core.encoders import TransformerEncoder, load_encoder
from tava_core.encoders.device import (
    device_for_shard,
    device_name,
    is_out_of_memory,
    native_bf16,
    resolve_device,
    resolve_dtype,
)
from tava_core.errors import ConfigError, ModelLoadError

TEXTS = ["short", "a somewhat longer sentence about dense retrieval",
         "the teacher embeds documents once; the student embeds every live query " * 3, "x"]


def test_teacher_matches_sentence_transformers(teacher_path):
    from sentence_transformers import SentenceTransformer

    ours = load_encoder("all-MiniLM-L6-v2").encode(TEXTS)
    reference = SentenceTransformer(str(teacher_path), device="cpu").encode(TEXTS)
    assert ours.shape == (4, 384) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_order_is_input_order_despite_length_sorting(tiny_model_dir):
    encoder = TransformerEncoder(tiny_model_dir)
    together = encoder.encode(TEXTS, batch_size=2)
    one_by_one = np.stack([encoder.encode([t])[0] for t in TEXTS])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


def test_options_change_vectors_and_fingerprint(tiny_model_dir):
    base = TransformerEncoder(tiny_model_dir)
    cls = TransformerEncoder(tiny_model_dir, EncoderSpec(model=str(tiny_model_dir), pooling="cls"))
    raw = TransformerEncoder(tiny_model_dir, EncoderSpec(model=str(tiny_model_dir), normalize=False))
    prefixed = TransformerEncoder(tiny_model_dir, EncoderSpec(model=str(tiny_model_dir), query_prefix="query: "))
    assert len({base.fingerprint, cls.fingerprint, raw.fingerprint, prefixed.fingerprint}) == 4
    assert not np.allclose(base.encode(TEXTS), cls.encode(TEXTS))
    assert not np.allclose(np.linalg.norm(raw.encode(TEXTS), axis=1), 1.0)
    # The query prefix applies to queries only.
    np.testing.assert_allclose(prefixed.encode(TEXTS, kind="document"), base.encode(TEXTS), atol=1e-6)
    assert not np.allclose(prefixed.encode(TEXTS, kind="query"), base.encode(TEXTS))
    np.testing.assert_allclose(prefixed.encode(["query: x"], kind="document"), prefixed.encode(["x"], kind="query"),
                               atol=1e-6)


def test_fingerprint_follows_weights(tiny_model_dir, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    assert TransformerEncoder(copy).fingerprint == TransformerEncoder(tiny_model_dir).fingerprint
    weights = load_file(str(copy / "model.safetensors"))
    first = next(iter(weights))
    weights[first] = weights[first] + 0.01
    save_file(weights, str(copy / "model.safetensors"))
    assert TransformerEncoder(copy).fingerprint != TransformerEncoder(tiny_model_dir).fingerprint


def test_missing_and_broken_models_name_the_path(tmp_path):
    with pytest.raises(ModelLoadError, match="model not found") as missing:
        load_encoder(str(tmp_path / "nope"))
    assert str(tmp_path / "nope") in str(missing.value)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ModelLoadError, match="names no hidden size") as no_size:
        load_encoder(str(tmp_path / "broken"))
    assert "broken/config.json" in str(no_size.value)
    # Weights load lazily: a directory whose config is fine but whose weights are missing fails
    # at the first encode, still with the path and no transformers traceback.
    (tmp_path / "broken" / "config.json").write_text('{"model_type": "bert", "hidden_size": 32}')
    encoder = load_encoder(str(tmp_path / "broken"))
    assert encoder.dim == 32
    with pytest.raises(ModelLoadError, match="cannot load the model") as broken:
        encoder.encode(["x"])
    assert "broken" in str(broken.value) and "Traceback" not in str(broken.value)



def test_non_finite_vectors_are_counted_and_the_encoder_named(tiny_model_dir):
    from tava_core.encoders.finite import check_finite_vectors

    loaded, built = load_encoder(str(tiny_model_dir)), TransformerEncoder(tiny_model_dir)
    vectors = loaded.encode(TEXTS)
    check_finite_vectors(vectors, loaded)                       # finite vectors: nothing to say
    check_finite_vectors(np.zeros((0, 32), dtype=np.float32), loaded)
    vectors[1, 3], vectors[3] = np.nan, np.inf
    # loaded by load_encoder: the directory its spec names; built directly: its own directory
    for encoder in (loaded, built):
        with pytest.raises(ModelLoadError, match="holding NaN and infinite values for 2 of 4 queries; not kept") \
                as info:
            check_finite_vectors(vectors, encoder, texts="queries", outcome="not kept")
        assert info.value.path == str(tiny_model_dir) and f"encoder {tiny_model_dir.name!r}" in str(info.value)
        assert info.value.hint is not None and "damaged" in info.value.hint
    vectors[1, 3] = 0.0
    with pytest.raises(ModelLoadError, match="holding infinite values for 1 of 4 texts") as info:
        check_finite_vectors(vectors, loaded, model="elsewhere")
    assert info.value.path == "elsewhere"


def test_out_of_memory_halves_the_batch(tiny_model_dir, monkeypatch):
    encoder = TransformerEncoder(tiny_model_dir, EncoderSpec(model=str(tiny_model_dir), batch_size=8))
    expected = encoder.encode(TEXTS * 4)
    real_forward = encoder._forward
    seen = []

    def forward_that_fails_on_big_batches(texts):
        seen.append(len(texts))
        if len(texts) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_forward(texts)

    monkeypatch.setattr(encoder, "_forward", forward_that_fails_on_big_batches)
    got = encoder.encode(TEXTS * 4)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert seen[0] == 8 and max(seen[1:]) <= 4 and encoder.batch_size <= 2


@pytest.mark.parametrize("device, bf16_supported, expected", [
    ("cpu", False, torch.float32),
    ("cuda", True, torch.bfloat16),
    ("cuda", False, torch.float16),
])
def test_auto_dtype_follows_the_device(device, bf16_supported, expected):
    assert resolve_dtype("auto", torch.device(device), bf16_supported=bf16_supported) == expected


def test_device_choice():
    assert resolve_device("cpu").type == "cpu"
    assert [device_for_shard(i, ["cuda:0", "cuda:1"]) for i in range(4)] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert is_out_of_memory(RuntimeError("CUDA out of memory")) and not is_out_of_memory(ValueError("x"))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda:0")
        assert resolve_device("auto").type in {"cpu", "mps"}


@pytest.mark.parametrize("capability, native", [((7, 5), False), ((7, 0), False), ((8, 0), True), ((9, 0), True)])
def test_auto_dtype_takes_bfloat16_only_where_the_gpu_computes_it(monkeypatch, capability, native):
    # torch.cuda.is_bf16_supported() says yes on a T4 / V100 too (emulated, slower than float16); the
    # capability of the encoder's own GPU decides
    asked: list[int] = []
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: asked.append(index) or capability)
    assert native_bf16(torch.device("cuda", 1)) is native and asked == [1]
    assert resolve_dtype("auto", torch.device("cuda", 1)) == (torch.bfloat16 if native else torch.float16)


def test_concurrency_tags_name_the_device_a_shard_runs_on(monkeypatch):
    from flows.embed import device_tag

    assert device_name("cpu") == "cpu" and device_tag("cpu") == "tava-device:cpu"
    # on a GPU host 'auto' and 'cuda' are the GPU a limit names: `tava-device:cuda:0`, not `tava-device:auto`
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert [device_tag(d) for d in ("auto", "cuda", "cuda:1")] == ["tava-device:cuda:0", "tava-device:cuda:0",
                                                                     "tava-device:cuda:1"]


def _saved_by_sentence_transformers(tiny_model_dir, out, *, pooling: str, prompts: dict[str, str]):
    """The tiny model saved by the installed sentence-transformers (v6 writes ``pooling_mode`` and its
    own module paths, not the older configs tava's fixture and its own students use)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules

    transformer = modules.Transformer(str(tiny_model_dir))
    model = SentenceTransformer(modules=[transformer, modules.Pooling(32, pooling_mode=pooling), modules.Normalize()],
                                prompts=prompts, device="cpu")
    model.save(str(out))
    return SentenceTransformer(str(out), device="cpu")


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_a_model_saved_by_sentence_transformers_6_encodes_as_it_does_prompts_included(tiny_model_dir, tmp_path,
                                                                                        pooling):
    prompts = {"query": "query: ", "document": "passage: "}
    reference = _saved_by_sentence_transformers(tiny_model_dir, tmp_path / "m", pooling=pooling, prompts=prompts)
    ours = TransformerEncoder(tmp_path / "m")
    assert ours.pooling == pooling
    assert (ours.spec.query_prefix, ours.spec.document_prefix) == ("query: ", "passage: ")
    np.testing.assert_allclose(ours.encode(TEXTS, kind="query"), reference.encode_query(TEXTS), atol=1e-5)
    np.testing.assert_allclose(ours.encode(TEXTS, kind="document"), reference.encode_document(TEXTS), atol=1e-5)
    # the prompts are part of what the vectors are: the same weights without them are another encoder
    unprompted = _saved_by_sentence_transformers(tiny_model_dir, tmp_path / "u", pooling=pooling, prompts={})
    plain = TransformerEncoder(tmp_path / "u")
    assert (plain.spec.query_prefix, plain.spec.document_prefix) == ("", "")
    np.testing.assert_allclose(plain.encode(TEXTS, kind="query"), unprompted.encode_query(TEXTS), atol=1e-5)
    assert plain.fingerprint != ours.fingerprint
    # a prefix given explicitly wins over the model's prompt
    given = TransformerEncoder(tmp_path / "m", EncoderSpec(model=str(tmp_path / "m"), query_prefix="search: "))
    np.testing.assert_allclose(given.encode(TEXTS, kind="query"), reference.encode(TEXTS, prompt="search: "), atol=1e-5)


def test_pooling_and_modules_tava_cannot_compute_are_refused_with_the_file(tiny_model_dir, tmp_path):
    import json
    import shutil

    copy = tmp_path / "max"
    shutil.copytree(tiny_model_dir, copy)
    (copy / "1_Pooling" / "config.json").write_text(json.dumps({"embedding_dimension": 32, "pooling_mode": "max"}))
    with pytest.raises(ModelLoadError, match="pooling mode 'max' is not supported") as err:
        TransformerEncoder(copy)
    assert "1_Pooling/config.json" in str(err.value)
    overridden = TransformerEncoder(copy, EncoderSpec(model=str(copy), pooling="mean"))   # the user's choice
    np.testing.assert_allclose(overridden.encode(TEXTS), TransformerEncoder(tiny_model_dir).encode(TEXTS), atol=1e-6)
    # the older boolean keys: max pooling was read as mean before, silently
    (copy / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32,
                                                                 "pooling_mode_max_tokens": True}))
    with pytest.raises(ModelLoadError, match="'max'"):
        TransformerEncoder(copy)
    modules = json.loads((tiny_model_dir / "modules.json").read_text())
    modules.insert(2, {"idx": 9, "name": "9", "path": "9_LayerNorm", "type": "sentence_transformers.models.LayerNorm"})
    (copy / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ModelLoadError, match="LayerNorm.* is not supported") as err:
        TransformerEncoder(copy)
    assert "modules.json" in str(err.value)
