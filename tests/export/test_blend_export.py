"""`tava export` of a blend (`tava blend`: a transformer student beside static students): one ONNX graph
whose static members read the transformer's token ids gives the blend's vectors; blends that cannot
read one tokenised text, or have no single transformer member, are refused with nothing saved."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import add_dense, synthetic_texts, write_static_model

from tava_core.config import EncoderSpec
from tava_core.encoders import load_encoder
from tava_core.encoders.blend import save_blend
from tava_core.errors import ConfigError
from tava_core.export.config import ExportConfig
from tava_core.export.query_encoder import export_query_encoder
from tava_core.export.standalone import ExportedQueryEncoder
from tava_core.home import TavaHome

pytest.importorskip("onnxruntime")
torch.set_num_threads(1)
# short and long, cased and not; all under the tiny model's max_length, where export and tava agree
TEXTS = synthetic_texts(30, seed=11) + ["x", "", "Mitochondrial DNA in Human Muscle", "what is a vector?"]


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory, tiny_model_dir) -> Path:
    out = tmp_path_factory.mktemp("tiny-24") / "model"
    shutil.copytree(tiny_model_dir, out)
    return add_dense(out, 24, seed=3)


@pytest.fixture(scope="module")
def static_dirs(tmp_path_factory, tiny_model_dir) -> list[Path]:
    root = tmp_path_factory.mktemp("statics")
    return [write_static_model(root / f"static{k}", tiny_model_dir, 24, seed=k) for k in range(2)]


def _blend(directory: Path, members: list[Path], weights: list[float]) -> Path:
    save_blend(directory, [EncoderSpec(model=str(m)) for m in members], weights)
    return directory


@pytest.mark.parametrize("weights", [[0.5, 0.5], [0.8, 0.2], [0.3, 0.4, 0.3]])
def test_exported_blend_equals_tava_blend(tmp_path, student_dir, static_dirs, weights):
    members = [student_dir, *static_dirs][:len(weights)]
    blend_dir = _blend(tmp_path / "blend", members, weights)
    out = tmp_path / "export"
    card = export_query_encoder(ExportConfig(model=str(blend_dir), out=str(out)), TavaHome(tmp_path / "home"))
    expected = load_encoder(str(blend_dir), cache=False).encode(TEXTS, kind="query")
    got = ExportedQueryEncoder(out).encode(TEXTS)
    assert np.abs(got - expected).max() <= 1e-5
    # the built-in agreement sample has texts past max_length, whose static part tava reads whole
    assert card["agreement"]["mean_cosine"] > 0.99
    # the blend is not its transformer member alone: the static members changed the vectors
    alone = load_encoder(str(student_dir), cache=False).encode(TEXTS[:-4], kind="query")
    assert np.abs(got[:-4] - alone).max() > 0.05
    blend = json.loads((out / "card.json").read_text())["encoder"]["blend"]
    assert [m["kind"] for m in blend] == ["transformer"] + ["static"] * (len(weights) - 1)
    np.testing.assert_allclose([m["weight"] for m in blend], np.array(weights) / sum(weights), atol=1e-9)


def test_int8_blend_export_is_gated_like_any_export(tmp_path, student_dir, static_dirs):
    blend_dir = _blend(tmp_path / "blend", [student_dir, static_dirs[0]], [0.5, 0.5])
    card = export_query_encoder(ExportConfig(model=str(blend_dir), precision="int8", min_mean_cosine=0.9,
                                             out=str(tmp_path / "int8")), TavaHome(tmp_path / "home"))
    assert card["precision"] == "int8" and card["agreement"]["mean_cosine"] >= 0.9
    got = ExportedQueryEncoder(tmp_path / "int8").encode(TEXTS)
    expected = load_encoder(str(blend_dir), cache=False).encode(TEXTS, kind="query")
    assert float(np.mean(np.sum(got * expected, axis=1))) >= 0.9


def test_blends_that_cannot_be_one_graph_are_refused(tmp_path, student_dir, static_dirs, tiny_model_dir):
    home = TavaHome(tmp_path / "home")
    # two static members and no transformer: nothing to export (the numpy path is already fast)
    statics_only = _blend(tmp_path / "statics-only", static_dirs, [0.5, 0.5])
    with pytest.raises(ConfigError, match="blend of 0 transformer members and 2 static"):
        export_query_encoder(ExportConfig(model=str(statics_only), out=str(tmp_path / "o1")), home)
    # a static member whose tokenizer keeps case: other token ids for the same text
    cased = tmp_path / "cased"
    shutil.copytree(static_dirs[0], cased)
    tokenizer = json.loads((cased / "tokenizer.json").read_text())
    tokenizer["normalizer"]["lowercase"] = False
    (cased / "tokenizer.json").write_text(json.dumps(tokenizer))
    mixed = _blend(tmp_path / "mixed", [student_dir, cased], [0.5, 0.5])
    with pytest.raises(ConfigError, match="cuts text into other tokens"):
        export_query_encoder(ExportConfig(model=str(mixed), out=str(tmp_path / "o2")), home)
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


@pytest.mark.slow
def test_static_student_with_its_own_numbering_exports(tmp_path, tiny_model_dir):
    """A static student as tava distils it (model2vec drops the tokenizer's unused slots, so the same
    token has another id) reads the transformer's ids through the export's index."""
    from tava_core.distill.students import StaticStudent

    static = StaticStudent.from_teacher(tiny_model_dir, static_dim=None, projection=False, teacher_dim=32,
                                        cache_dir=tmp_path / "cache")
    static_dir = static.save(tmp_path / "static")
    loaded = load_encoder(str(static_dir), cache=False)
    vocab = load_encoder(str(tiny_model_dir), cache=False).tokenizer.get_vocab()
    assert loaded.tokenizer.get_vocab()["the"] != vocab["the"]    # renumbered: the case this test is for
    blend_dir = _blend(tmp_path / "blend", [tiny_model_dir, static_dir], [0.6, 0.4])
    export_query_encoder(ExportConfig(model=str(blend_dir), out=str(tmp_path / "export")), TavaHome(tmp_path / "home"))
    expected = load_encoder(str(blend_dir), cache=False).encode(TEXTS, kind="query")
    assert np.abs(ExportedQueryEncoder(tmp_path / "export").encode(TEXTS) - expected).max() <= 1e-5


# Characters the tokenizer has no piece for ([UNK]) and special tokens written in the text itself: tava's
# static students read both (no special tokens added, none dropped), so the export's static members must too.
UNKNOWN = ["🦄 aspirin 🧪", "🙂", "Ünïcode, émojis 🙂 and CJK 文字", "what does 🧬 stand for?",
           "a [SEP] b [MASK] c [UNK] d", "[CLS]"]


def test_exported_blend_reads_unknown_tokens_as_tava_does(tmp_path, student_dir, static_dirs):
    blend_dir = _blend(tmp_path / "blend", [student_dir, static_dirs[0]], [0.5, 0.5])
    card = export_query_encoder(ExportConfig(model=str(blend_dir), out=str(tmp_path / "export")),
                                TavaHome(tmp_path / "home"))
    exported = ExportedQueryEncoder(tmp_path / "export")
    unk = exported.tokenizer.token_to_id("[UNK]")
    assert unk in exported.feeds(UNKNOWN[:1])["input_ids"][0]      # the case this test is for
    expected = load_encoder(str(blend_dir), cache=False).encode(UNKNOWN + TEXTS, kind="query")
    for batch_size in (64, 1):
        assert np.abs(exported.encode(UNKNOWN + TEXTS, batch_size=batch_size) - expected).max() <= 1e-4
    # the built-in agreement sample holds unknown characters too; only its texts past max_length differ
    assert card["agreement"]["min_cosine"] > 0.99


def test_exported_blend_keeps_its_static_members_own_max_length(tmp_path, student_dir, tiny_model_dir):
    static_dir = write_static_model(tmp_path / "static", tiny_model_dir, 24, seed=6)
    save_blend(tmp_path / "blend", [EncoderSpec(model=str(student_dir)),
                                    EncoderSpec(model=str(static_dir), max_length=8)], [0.5, 0.5])
    export_query_encoder(ExportConfig(model=str(tmp_path / "blend"), out=str(tmp_path / "export")),
                         TavaHome(tmp_path / "home"))
    expected = load_encoder(str(tmp_path / "blend"), cache=False).encode(UNKNOWN + TEXTS, kind="query")
    assert np.abs(ExportedQueryEncoder(tmp_path / "export").encode(UNKNOWN + TEXTS) - expected).max() <= 1e-4


def test_static_members_need_one_special_token_each_side_of_the_text(student_dir, static_dirs):
    """An unwindowed graph's static members find the text in input_ids between the template's first and last
    token: a tokenizer with another template (a T5-like "$A </s>") is refused, with a message; a windowed
    graph's members read ``static_ids``, which hold no special tokens, so it does not matter there."""
    from tokenizers import processors

    from tava_core.export.query_encoder import ExportParts, static_members

    student = load_encoder(str(student_dir), cache=False)
    static = load_encoder(str(static_dirs[0]), cache=False)
    parts = ExportParts(student, statics=[(static, 0.5)], weight=0.5)
    assert len(static_members(parts, UNKNOWN + TEXTS)) == 1
    student.tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="$A [SEP]", special_tokens=[("[SEP]", student.tokenizer.sep_token_id)])
    with pytest.raises(ConfigError, match="one special token before and one after"):
        static_members(parts, TEXTS)
    assert len(static_members(parts, TEXTS, whole=True)) == 1
