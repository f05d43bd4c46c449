"""`tava export` of a student that reads long texts in windows (``window.json``, tava_core/encoders/windows.py):
the graph takes each text's pieces and ``piece_weights`` and pools them as ``pool_windows`` does, so the
exported encoder gives tava's vectors on texts several times longer than the window too -- a plain student,
one with an adapter, a blend with a static student (which reads the whole text: ``static_ids``) and a router.
The standalone runner cuts texts with the one ``split_windows``, as tava's encoder does; an export of a student
without a window keeps its two inputs."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import add_dense, synthetic_texts, write_static_model

from tava_core.config import EncoderSpec
from tava_core.encoders import TransformerEncoder, load_encoder
from tava_core.encoders import windows as tava_windows
from tava_core.encoders.blend import save_blend
from tava_core.encoders.windows import WINDOW_FILE
from tava_core.export import standalone
from tava_core.export.config import ExportConfig
from tava_core.export.query_encoder import export_query_encoder
from tava_core.export.standalone import ExportedQueryEncoder
from tava_core.home import TavaHome

pytest.importorskip("onnxruntime")
torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
WINDOW = 12
TOLERANCE = 1e-4
# Several times the window (words cut into word pieces, so pieces start inside words), past the tiny
# model's max_length (128: pieces cover its first 126 tokens, the static member reads all of it), unknown
# characters ([UNK], which a static student reads), and texts that fit in one window.
LONG = [("Mitochondrial deoxyribonucleic acid mutations accumulate with age in human skeletal muscle, and "
         "the researchers' hypotheses about antidisestablishmentarianism were unfalsifiable. ") * 2,
        "retrieval " * 300 + "and the end of a very long query",
        "Ünïcode, émojis 🙂 and CJK 文字 go through the same tokenizer, " * 4,
        " ".join(synthetic_texts(6, seed=4))]
SHORT = ["x", "", "what is a vector?", "Mitochondrial DNA in Human Muscle"]
TEXTS = synthetic_texts(16, seed=11) + LONG + SHORT


def _windowed(directory: Path, window: int = WINDOW) -> Path:
    (directory / WINDOW_FILE).write_text(json.dumps({"window_tokens": window}))
    return directory


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny BERT with a Dense 32 -> 24 and a window of 12 tokens."""
    out = tmp_path_factory.mktemp("windowed-24") / "student"
    shutil.copytree(tiny_model_dir, out)
    return _windowed(add_dense(out, 24, seed=3))


@pytest.fixture(scope="module")
def prefixed_dir(tmp_path_factory, student_dir) -> Path:
    """The windowed student with a query prompt: every piece carries its tokens, the window counts them."""
    out = tmp_path_factory.mktemp("windowed-prefixed") / "student"
    shutil.copytree(student_dir, out)
    (out / "config_sentence_transformers.json").write_text(json.dumps({"prompts": {"query": "query: ",
                                                                                   "document": ""}}))
    return out


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, student_dir) -> Path:
    from tava_core.adapter import Vec2VecAdapter, save_adapter

    torch.manual_seed(2)
    adapter = Vec2VecAdapter(24, 16, [32]).eval()
    with torch.no_grad():  # a non-trivial correction (the head starts at zero)
        adapter.net.head.weight.normal_(0, 0.2)
    return save_adapter(tmp_path_factory.mktemp("windowed-adapter") / "adapter", adapter,
                        student=EncoderSpec(model=str(student_dir)).model_dump(mode="json"))


@pytest.fixture(scope="module")
def blend_dir(tmp_path_factory, student_dir, tiny_model_dir) -> Path:
    root = tmp_path_factory.mktemp("windowed-blend")
    static_dir = write_static_model(root / "static", tiny_model_dir, 24, seed=5)
    save_blend(root / "blend", [EncoderSpec(model=str(student_dir)), EncoderSpec(model=str(static_dir))], [0.6, 0.4])
    return root / "blend"


def _export(model: Path, out: Path, **options) -> dict:
    return export_query_encoder(ExportConfig(model=str(model), out=str(out), **options), TavaHome(out.parent / "home"))


def _pieces_per_text(exported: ExportedQueryEncoder, texts: list[str]) -> np.ndarray:
    _, owner, _ = exported.windows(texts)
    return np.bincount(owner, minlength=len(texts))


@pytest.mark.parametrize("which", ["student_dir", "prefixed_dir", "adapter_dir", "blend_dir"])
def test_windowed_export_equals_tava(tmp_path, request, which):
    model = request.getfixturevalue(which)
    card = _export(model, tmp_path / "export")
    exported = ExportedQueryEncoder(tmp_path / "export")
    assert card["window_tokens"] == WINDOW and exported.window == WINDOW
    assert card["window_prefix_tokens"] == (2 if which == "prefixed_dir" else 0)   # "query", ":"
    blend = which == "blend_dir"
    assert card["inputs"] == ["input_ids", "attention_mask", "piece_weights"] + (["static_ids"] if blend else [])
    assert [i.name for i in exported.session.get_inputs()] == card["inputs"]
    # the long texts are read in several pieces, the short ones whole
    pieces = _pieces_per_text(exported, TEXTS)
    assert (pieces[-len(SHORT):] == 1).all() and (pieces[-len(SHORT) - len(LONG):-len(SHORT)] >= 4).all()
    encoder = load_encoder(str(model), cache=False)
    expected = encoder.encode(TEXTS, kind="query")
    for batch_size in (64, 5):      # one run, and several runs of different piece counts
        got = exported.encode(TEXTS, batch_size=batch_size)
        assert np.abs(got - expected).max() <= TOLERANCE
    assert card["agreement"]["max_abs_diff"] <= TOLERANCE      # the built-in sample has long texts too
    if which in ("student_dir", "prefixed_dir"):
        # the pooling is what makes them equal: read whole, the long texts get other vectors
        whole = load_encoder(EncoderSpec(model=str(model), window=0), cache=False).encode(LONG, kind="query")
        assert np.abs(whole - expected[-len(SHORT) - len(LONG):-len(SHORT)]).max() > 1e-2


def test_windowed_blend_reads_the_whole_text_in_its_static_member(tmp_path, blend_dir):
    """The static member reads every token of the text, past the transformer's max_length, and [UNK]s,
    as tava's static student does (so the blend's static part is exact, not the sum of its pieces')."""
    card = _export(blend_dir, tmp_path / "export")
    assert card["encoder"]["blend"][1]["note"].startswith("reads the whole text")
    exported = ExportedQueryEncoder(tmp_path / "export")
    feeds = exported.feeds(LONG)
    assert feeds["static_ids"].shape[1] > 300 and (feeds["static_ids"][:, -1] == -1).any()
    assert exported.tokenizer.token_to_id("[UNK]") in feeds["static_ids"][2]     # 🙂: tava's static reads it
    blend = load_encoder(str(blend_dir), cache=False)
    text = LONG[1] + " and then some more words"
    both = [text, LONG[2] + " 🙂🙂"]
    assert np.abs(exported.encode(both) - blend.encode(both, kind="query")).max() <= TOLERANCE
    # read up to the transformer's max_length only, the static part (and so the blend) would differ
    offsets = exported.plain.encode(text, add_special_tokens=False).offsets
    cut = text[:offsets[card["max_length"] - 3][1]]
    assert np.abs(blend.encode([cut], kind="query") - blend.encode([text], kind="query")).max() > 1e-3


def test_windowed_blend_keeps_its_static_members_own_max_length(tmp_path, student_dir, tiny_model_dir):
    static_dir = write_static_model(tmp_path / "static", tiny_model_dir, 24, seed=6)
    save_blend(tmp_path / "blend", [EncoderSpec(model=str(student_dir)),
                                    EncoderSpec(model=str(static_dir), max_length=20)], [0.5, 0.5])
    _export(tmp_path / "blend", tmp_path / "export")
    expected = load_encoder(str(tmp_path / "blend"), cache=False).encode(TEXTS, kind="query")
    assert np.abs(ExportedQueryEncoder(tmp_path / "export").encode(TEXTS) - expected).max() <= TOLERANCE


def test_windowed_router_export_equals_tava(tmp_path, tiny_model_dir):
    from route_helpers import TEXTS as ROUTE_TEXTS

    from tava_core.route.build import TextVectors, fit_router
    from tava_core.route.config import RouterSettings
    from tava_core.route.router import save_router, threshold_from

    student_dir = tmp_path / "student"
    shutil.copytree(tiny_model_dir, student_dir)
    _windowed(add_dense(student_dir, 384, seed=4))
    student = load_encoder(str(student_dir), cache=False)
    teacher = load_encoder("all-MiniLM-L6-v2")
    documents = synthetic_texts(80, seed=5)
    calib = ROUTE_TEXTS[::-1] + documents[:20]
    fitted_model, fitted = fit_router(
        TextVectors(ROUTE_TEXTS, student.encode(ROUTE_TEXTS), teacher.encode(ROUTE_TEXTS)),
        TextVectors(calib, student.encode(calib, kind="query"), teacher.encode(calib, kind="query")),
        teacher.encode(documents), RouterSettings(signals=["retrieval_cell_margin", "retrieval_entropy"],
                                                  bank_size=32, pca_dim=8))
    router_dir = tmp_path / "router"
    save_router(router_dir, student=EncoderSpec(model=str(student_dir)), student_fingerprint=student.fingerprint,
                teacher=EncoderSpec(model="all-MiniLM-L6-v2"), teacher_fingerprint=teacher.fingerprint,
                signal_model=fitted_model, calibration=fitted, threshold=threshold_from(fitted, teacher_budget=0.3))
    card = _export(router_dir, tmp_path / "export")
    assert card["window_tokens"] == WINDOW and card["outputs"] == ["embeddings", "confidence"]
    router = load_encoder(str(router_dir), cache=False)
    routed = ExportedQueryEncoder(tmp_path / "export").route(TEXTS)
    vectors = router.student.encode(TEXTS, kind="query")
    assert np.abs(routed["vectors"] - vectors).max() <= TOLERANCE
    confidence = router.confidence(TEXTS, vectors)      # scored on the pooled vectors, as tava scores them
    assert np.abs(routed["confidence"] - confidence).max() <= TOLERANCE and np.ptp(confidence) > 1e-3
    assert card["router"]["agreement"]["same_decisions_as_fp32_torch"] == 1.0


@pytest.mark.parametrize("which", ["student_dir", "prefixed_dir"])
def test_standalone_cuts_texts_into_the_pieces_tava_encodes(tmp_path, request, monkeypatch, which):
    model = request.getfixturevalue(which)
    _export(model, tmp_path / "export")
    exported = ExportedQueryEncoder(tmp_path / "export")
    seen: list[list[str]] = []
    real = TransformerEncoder._encode_whole

    def spy(self, texts, **kwargs):
        seen.append(list(texts))
        return real(self, texts, **kwargs)

    monkeypatch.setattr(TransformerEncoder, "_encode_whole", spy)
    load_encoder(str(model), cache=False).encode(TEXTS, kind="query")
    pieces, owner, weight = exported.windows(TEXTS)
    assert seen == [pieces] and len(pieces) > len(TEXTS) + 3 * len(LONG)
    # one split_windows: tava's encoder cuts with the standalone runner's own, and the same offsets give the same pieces
    assert tava_windows.split_windows is standalone.split_windows
    offsets = load_encoder(str(model), cache=False).tokenizer(TEXTS, add_special_tokens=False,
                                                              return_offsets_mapping=True)["offset_mapping"]
    for window, prefix_tokens in ((16, 0), (12, 2), (5, 0), (400, 0)):
        ours = standalone.split_windows(TEXTS, offsets, window, prefix_tokens)
        theirs = tava_windows.split_windows(TEXTS, offsets, window, prefix_tokens)
        assert ours[0] == theirs[0] and np.array_equal(ours[1], theirs[1]) and np.array_equal(ours[2], theirs[2])


def test_int8_windowed_export_is_gated_like_any_export(tmp_path, student_dir):
    card = _export(student_dir, tmp_path / "int8", precision="int8", min_mean_cosine=0.9)
    assert card["precision"] == "int8" and card["window_tokens"] == WINDOW
    got = ExportedQueryEncoder(tmp_path / "int8").encode(TEXTS)
    expected = load_encoder(str(student_dir), cache=False).encode(TEXTS, kind="query")
    assert float(np.mean(np.sum(got * expected, axis=1))) >= 0.9


def test_unwindowed_export_keeps_its_two_inputs(tmp_path, student_dir):
    plain = tmp_path / "plain"
    shutil.copytree(student_dir, plain)
    (plain / WINDOW_FILE).unlink()
    card = _export(plain, tmp_path / "export")
    exported = ExportedQueryEncoder(tmp_path / "export")
    assert card["inputs"] == ["input_ids", "attention_mask"] and not any(k.startswith("window") for k in card)
    assert [i.name for i in exported.session.get_inputs()] == ["input_ids", "attention_mask"]
    assert exported.window is None
    expected = load_encoder(str(plain), cache=False).encode(TEXTS[:-len(SHORT) - len(LONG)], kind="query")
    assert np.abs(exported.encode(TEXTS[:-len(SHORT) - len(LONG)]) - expected).max() <= TOLERANCE


def _run_without_tava(program: str) -> subprocess.CompletedProcess:
    banned = ("import sys\n"
              "for banned in ('torch', 'transformers', 'sentence_transformers', 'tava_core'):\n"
              "    sys.modules[banned] = None  # any import of them raises ImportError\n")
    return subprocess.run([sys.executable, "-c", banned + program], capture_output=True, text=True, timeout=300)


def test_standalone_file_runs_a_windowed_blend_without_tava_and_the_readme_snippet_refuses_it(tmp_path, blend_dir):
    """standalone.py, copied alone, serves a windowed export (onnxruntime, tokenizers, numpy); the README's
    snippet, which reads texts whole, says so instead of returning other vectors."""
    _export(blend_dir, tmp_path / "export")
    shutil.copy(ROOT / "tava_core" / "export" / "standalone.py", tmp_path / "served.py")
    result = _run_without_tava(
        f"sys.path.insert(0, {str(tmp_path)!r})\nimport numpy\nfrom served import ExportedQueryEncoder\n"
        f"numpy.save({str(tmp_path / 'v.npy')!r}, ExportedQueryEncoder({str(tmp_path / 'export')!r})"
        f".encode({TEXTS!r}))\n")
    assert result.returncode == 0, result.stderr
    expected = load_encoder(str(blend_dir), cache=False).encode(TEXTS, kind="query")
    assert np.abs(np.load(tmp_path / "v.npy") - expected).max() <= TOLERANCE
    readme = (ROOT / "README.md").read_text()
    snippet = re.search(r"<!-- onnx-snippet -->\s*```python\n(.*?)```", readme, re.S).group(1)
    result = _run_without_tava(snippet.replace('"path/to/export"', repr(str(tmp_path / "export"))))
    assert result.returncode != 0 and "standalone.py" in result.stderr
    # the README's first block, which a user of `tava run`'s exports copies, runs it as written
    shutil.copy(ROOT / "tava_core" / "export" / "standalone.py", tmp_path / "standalone.py")
    first = re.search(r"<!-- standalone-snippet -->\s*```python\n(.*?)```", readme, re.S).group(1)
    result = _run_without_tava(
        f"import os\nos.chdir({str(tmp_path)!r})\nsys.path.insert(0, '')\n"
        + first.replace('"path/to/export"', repr(str(tmp_path / "export")))
        + f"\nimport numpy\nnumpy.save({str(tmp_path / 'first.npy')!r}, vectors)\n")
    assert result.returncode == 0, result.stderr
    asked = load_encoder(str(blend_dir), cache=False).encode(["what causes antibiotic resistance?"], kind="query")
    assert np.abs(np.load(tmp_path / "first.npy") - asked).max() <= TOLERANCE
