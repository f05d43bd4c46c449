"""`tava export` of a confidence router: the ONNX graph gives each query's vector and confidence,
equal to tava's own router on the same queries; int8 keeps the router part in fp32; routers whose
signals read words (or a clustered bank) are refused with the fix, and nothing is saved."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import add_dense, synthetic_texts, write_static_model
from route_helpers import TEXTS

from tava_core.config import EncoderSpec
from tava_core.encoders import load_encoder
from tava_core.encoders.blend import save_blend
from tava_core.errors import ConfigError
from tava_core.export.config import ExportConfig
from tava_core.export.query_encoder import export_query_encoder
from tava_core.export.standalone import ExportedQueryEncoder
from tava_core.home import TavaHome
from tava_core.route.build import TextVectors, fit_router
from tava_core.route.config import RouterSettings
from tava_core.route.router import save_router, threshold_from

pytest.importorskip("onnxruntime")
torch.set_num_threads(1)
DOCUMENTS = synthetic_texts(120, seed=5)
QUERIES = synthetic_texts(30, seed=9) + ["x", "how does the gene change the memory"]


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny BERT with a Dense 32 -> 384: a transformer student in the teacher's dimension."""
    out = tmp_path_factory.mktemp("tiny-384") / "model"
    shutil.copytree(tiny_model_dir, out)
    return add_dense(out, 384, seed=4)


def _router(tmp_path: Path, student_dir: Path, settings: RouterSettings, budget: float = 0.3) -> Path:
    student = load_encoder(str(student_dir), cache=False)
    teacher = load_encoder("all-MiniLM-L6-v2")
    reference = TextVectors(TEXTS, student.encode(TEXTS), teacher.encode(TEXTS))
    calib = TEXTS[::-1] + DOCUMENTS[:20]
    calibration = TextVectors(calib, student.encode(calib, kind="query"), teacher.encode(calib, kind="query"))
    model, fitted = fit_router(reference, calibration, teacher.encode(DOCUMENTS), settings)
    out = tmp_path / "router"
    save_router(out, student=EncoderSpec(model=str(student_dir)), student_fingerprint=student.fingerprint,
                teacher=EncoderSpec(model="all-MiniLM-L6-v2"), teacher_fingerprint=teacher.fingerprint,
                signal_model=model, calibration=fitted, threshold=threshold_from(fitted, teacher_budget=budget))
    return out


SETTINGS = {
    "default (retrieval entropy, full bank)": RouterSettings(),
    "vector + retrieval signals, PCA bank rescored": RouterSettings(
        signals=["head_disagreement", "cycle_error", "knn_distance", "retrieval_top_score", "retrieval_margin",
                 "retrieval_boundary", "retrieval_contrast", "retrieval_entropy", "retrieval_cell_margin"],
        vector_components=3, bank_size=32, pca_dim=8, doc_pca_dim=16, doc_rescore=60),
    "contrast on the full bank": RouterSettings(signals=["retrieval_contrast", "knn_distance"], bank_size=32,
                                                pca_dim=8),
    "cell margin on the full bank": RouterSettings(signals=["retrieval_cell_margin", "retrieval_entropy"],
                                                   bank_size=32, pca_dim=8),
}


@pytest.mark.parametrize("name", list(SETTINGS))
def test_exported_router_equals_tava_router(tmp_path, student_dir, name):
    router_dir = _router(tmp_path, student_dir, SETTINGS[name])
    card = export_query_encoder(ExportConfig(model=str(router_dir), out=str(tmp_path / "export")),
                                TavaHome(tmp_path / "home"))
    router = load_encoder(str(router_dir), cache=False)
    assert card["outputs"] == ["embeddings", "confidence"] and card["encoder"]["router"] is True
    assert card["router"]["threshold"] == pytest.approx(router.threshold.threshold)
    assert card["router"]["signals"] == list(router.calibration.signals)
    assert card["teacher"]["fingerprint"] == router.teacher.fingerprint
    assert card["router"]["agreement"]["max_abs_diff_confidence"] <= 1e-4
    assert card["router"]["agreement"]["same_decisions_as_fp32_torch"] == 1.0

    routed = ExportedQueryEncoder(tmp_path / "export").route(QUERIES)
    vectors = router.student.encode(QUERIES, kind="query")
    expected = router.confidence(QUERIES, vectors)
    assert np.abs(routed["vectors"] - vectors).max() <= 1e-4
    assert np.abs(routed["confidence"] - expected).max() <= 1e-4
    # the scores spread (a constant would pass the equality above), and both sides of the threshold occur
    assert np.ptp(expected) > 1e-3
    fixed = expected < router.threshold.threshold
    assert routed["to_teacher"].tolist() == fixed.tolist() and 0 < fixed.sum() < len(QUERIES)
    # one query at a time, as a server sees live traffic
    single = ExportedQueryEncoder(tmp_path / "export").route(QUERIES[:3], batch_size=1)
    assert np.abs(single["confidence"] - expected[:3]).max() <= 1e-4


@pytest.mark.parametrize("bank", [{}, {"doc_pca_dim": 16, "doc_rescore": 60}])
def test_card_gives_the_default_confidence_from_a_servers_own_search(tmp_path, student_dir, bank):
    """The README's snippet: from the card's numbers and a search's top results, a server without
    tava computes the confidence the router computes (the default score, the cell margin alone)."""
    settings = RouterSettings(signals=["retrieval_cell_margin"], bank_size=32, pca_dim=8, **bank)
    router_dir = _router(tmp_path, student_dir, settings)
    card = export_query_encoder(ExportConfig(model=str(router_dir), out=str(tmp_path / "export")),
                                TavaHome(tmp_path / "home"))
    fr = card["router"]["from_results"]
    assert fr["results_needed"] == 11
    router = load_encoder(str(router_dir), cache=False)
    vectors = router.student.encode(QUERIES, kind="query")
    documents = router.teacher.encode(DOCUMENTS)
    documents /= np.linalg.norm(documents, axis=1, keepdims=True)

    def confidence_from_results(scores: np.ndarray, doc_vectors: np.ndarray) -> float:   # as the README has it
        order = np.argsort(-scores)[: fr["results_needed"]]
        s, d = scores[order], doc_vectors[order]
        depth = (s[0] - s[1:]) / np.maximum(np.linalg.norm(d[1:] - d[0], axis=1), 1e-6)
        return fr["bias"] + fr["cell_margin_weight"] * -depth.mean()

    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    got = np.array([confidence_from_results(row, documents) for row in unit @ documents.T])
    expected = router.confidence(QUERIES, vectors)
    assert np.ptp(expected) > 1e-3
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_card_has_no_from_results_rule_for_other_scores(tmp_path, student_dir):
    router_dir = _router(tmp_path, student_dir, SETTINGS["cell margin on the full bank"])
    card = export_query_encoder(ExportConfig(model=str(router_dir), out=str(tmp_path / "export")),
                                TavaHome(tmp_path / "home"))
    assert card["router"]["from_results"] is None


def test_int8_export_keeps_the_router_in_fp32(tmp_path, student_dir, caplog):
    import onnx

    router_dir = _router(tmp_path, student_dir, SETTINGS["default (retrieval entropy, full bank)"])
    card = export_query_encoder(ExportConfig(model=str(router_dir), precision="int8", min_mean_cosine=0.9,
                                             out=str(tmp_path / "int8")), TavaHome(tmp_path / "home"))
    # ONNX Runtime's advice to pre-process first is not printed: measured, it gains nothing here
    assert not any("pre-processing before quantization" in m for m in caplog.messages), caplog.messages
    graph = onnx.load(str(tmp_path / "int8" / "model.onnx")).graph
    router_ops = {n.op_type for n in graph.node if n.name.startswith("/confidence/")}
    encoder_ops = {n.op_type for n in graph.node if not n.name.startswith("/confidence/")}
    assert "MatMul" in router_ops and "MatMulInteger" in encoder_ops   # only the encoder is quantised
    assert not any("Integer" in op or "Quant" in op for op in router_ops)
    # the confidence of the int8 vectors is exactly tava's score of those vectors
    routed = ExportedQueryEncoder(tmp_path / "int8").route(QUERIES)
    router = load_encoder(str(router_dir), cache=False)
    assert np.abs(routed["confidence"] - router.confidence(QUERIES, routed["vectors"])).max() <= 1e-4
    assert card["router"]["agreement"]["max_abs_diff_confidence"] <= 1e-4
    assert card["quantization"]["kept_fp32"] == "the router's confidence nodes"
    # the sample's share sent to the teacher says what it is a share of (a user read it as the router's rate)
    assert "not of your queries" in card["router"]["agreement"]["sent_to_teacher_note"]
    assert card["agreement"]["sample"] == "built-in"


@pytest.mark.parametrize("settings, match", [
    (RouterSettings(signals=["word_trust", "retrieval_entropy"]), r"\['word_trust'\] cannot go into an ONNX graph"),
    (RouterSettings(signals=["retrieval_entropy"], doc_clusters=4, doc_probe=2), "clustered document bank"),
])
def test_unexportable_router_is_refused_and_nothing_saved(tmp_path, student_dir, settings, match):
    router_dir = _router(tmp_path, student_dir, settings)
    with pytest.raises(ConfigError, match=match):
        export_query_encoder(ExportConfig(model=str(router_dir), out=str(tmp_path / "export")),
                             TavaHome(tmp_path / "home"))
    assert not (tmp_path / "export").exists()


def test_router_over_a_blend_exports_as_one_graph(tmp_path, student_dir, tiny_model_dir):
    """`tava run` calibrates its router over the blend when it makes one: the graph blends the transformer
    student with the static student, then scores the blended vector."""
    static_dir = write_static_model(tmp_path / "static", tiny_model_dir, 384, seed=2)
    blend_dir = tmp_path / "blend"
    save_blend(blend_dir, [EncoderSpec(model=str(student_dir)), EncoderSpec(model=str(static_dir))], [0.5, 0.5])
    router_dir = _router(tmp_path, blend_dir, SETTINGS["cell margin on the full bank"])
    card = export_query_encoder(ExportConfig(model=str(router_dir), out=str(tmp_path / "export")),
                                TavaHome(tmp_path / "home"))
    router = load_encoder(str(router_dir), cache=False)
    assert [m["kind"] for m in card["encoder"]["blend"]] == ["transformer", "static"]
    routed = ExportedQueryEncoder(tmp_path / "export").route(QUERIES)
    vectors = router.student.encode(QUERIES, kind="query")
    assert np.abs(routed["vectors"] - vectors).max() <= 1e-4
    # the blend's vectors, not its transformer member's: the static member moved them
    assert np.abs(vectors - load_encoder(str(student_dir), cache=False).encode(QUERIES, kind="query")).max() > 0.05
    expected = router.confidence(QUERIES, vectors)
    assert np.abs(routed["confidence"] - expected).max() <= 1e-4 and np.ptp(expected) > 1e-3
    assert card["router"]["agreement"]["same_decisions_as_fp32_torch"] == 1.0


def test_encoder_export_has_no_route(tmp_path, student_dir):
    export_query_encoder(ExportConfig(model=str(student_dir), out=str(tmp_path / "plain")), TavaHome(tmp_path / "h"))
    exported = ExportedQueryEncoder(tmp_path / "plain")
    assert exported.card["router"] is None and exported.card["outputs"] == ["embeddings"]
    with pytest.raises(ValueError, match="without a router"):
        exported.route(["a query"])
