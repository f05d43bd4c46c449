"""`tava run --blend-static`: a static student from the same texts, blended with student + adapter
into one query encoder and scored as its own row."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError


def test_blend_static_needs_a_transformer_student():
    from flows.pipeline import PipelineConfig

    assert PipelineConfig().blend_static is False
    with pytest.raises(ValidationError, match="blends a static student with the transformer student"):
        PipelineConfig.model_validate({"blend_static": True, "distill": {"student": "static"}})


@pytest.mark.parametrize("weight, ok", [(None, True), (0.6, True), (0.0, False), (1.0, False)])
def test_a_fixed_blend_weight_lies_strictly_between_0_and_1(weight, ok):
    from flows.pipeline import PipelineConfig

    if ok:
        assert PipelineConfig.model_validate({"blend_weight": weight}).blend_weight == weight
    else:
        with pytest.raises(ValidationError, match="blend_weight"):
            PipelineConfig.model_validate({"blend_weight": weight})


@pytest.mark.slow
def test_pipeline_blends_a_static_student_with_student_and_adapter(prefect_harness, tava_home, tiny_model_dir,
                                                                   monkeypatch):
    from flows.pipeline import BLEND, PipelineConfig, tava_pipeline
    from tava_core.distill import residual
    from tava_core.encoders import load_encoder
    from tava_core.encoders.blend import BlendEncoder

    read_from_cache: list[bool] = []   # the partner's vectors of the training texts: those Stage B embedded
    real_cached = residual.cached_vectors
    monkeypatch.setattr(residual, "cached_vectors",
                        lambda *a, **k: (lambda got: read_from_cache.append(got is not None) or got)(real_cached(*a, **k)))

    config = PipelineConfig.model_validate({
        "teacher": {"model": str(tiny_model_dir)}, "blend_static": True,
        "router": {"budgets": [0.1], "calibration_texts": 64, "max_reference_texts": 200},
        "distill": {"layers": [1], "steps": 8, "batch_size": 16, "eval_every": 4, "checkpoint_every": 4,
                    "warmup_steps": 2, "max_length": 32, "span_views": 0, "max_texts": 600},
        "adapter": {"hidden_dims": [32], "max_steps": 10, "eval_every": 5, "batch_size": 64}})
    result = tava_pipeline(config, home=str(tava_home))
    row = result.system(BLEND)
    assert row.queries_documents == "blend / teacher" and 0.0 < row.ndcg_at_10 <= 1.0 and row.speedup > 0
    blend = load_encoder(result.blend_dir, cache=False)
    assert isinstance(blend, BlendEncoder)
    # its weight chosen for the corpus without labels: the record says which and why, and the blend holds it
    chosen = json.loads((tava_home / "reports" / "blend" / config.registry_adapter / "weight.json").read_text())
    cosines = {float(w): c for w, c in chosen["mean_cosine_to_teacher"].items()}
    assert chosen["weight"] == max(cosines, key=lambda w: (round(cosines[w], 6), w)) and len(cosines) == 9
    assert blend.weights == pytest.approx([chosen["weight"], 1.0 - chosen["weight"]])
    assert f"student + adapter {chosen['weight']:g}, static" in result.work["blend (static student)"]
    adapted, static = blend.members
    members = [m["encoder"]["model"] for m in json.loads((Path(result.blend_dir) / "tava_encoder.json").read_text())["members"]]
    static_dir = tava_home / "artifacts" / "students" / f"{config.distill.name}-static"
    assert members == [result.adapter_dir, str(static_dir)]
    card = json.loads((static_dir / "model_card.json").read_text())
    assert card["training"]["config"]["student"] == "static" and card["corpus"]["texts"] == 600   # the same texts
    # trained towards what student + adapter misses, not towards the teacher alone
    assert card["targets"]["kind"] == "residual" and card["targets"]["partner"] == result.adapter_dir
    assert card["targets"]["weight"] == config.distill.blend_partner_weight == 0.7
    assert read_from_cache == [True]
    texts = ["how are vectors cached", "parse a config file"]
    a, s = adapted.encode(texts, kind="query"), static.encode(texts, kind="query")
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)   # noqa: E731
    w = blend.weights[0]
    np.testing.assert_allclose(blend.encode(texts, kind="query"), unit(w * unit(a) + (1 - w) * unit(s)), atol=1e-5)
    assert "blend (static student)" in result.seconds
    # published with the adapter, in the same registry version (blend/, the adapter named ".."): what the
    # nightly refresh rebuilds around each new adapter
    from tava_core.encoders.blend import attached_blend
    from tava_core.registry import Registry

    published = Registry(tava_home).record("adapters", config.registry_adapter)
    served = load_encoder(str(attached_blend(published.path)), cache=False)
    np.testing.assert_allclose(served.encode(texts, kind="query"), blend.encode(texts, kind="query"), atol=1e-5)
    assert published.lineage["blend"] == result.blend_dir and BLEND in " ".join(published.metrics)
    # the router sits on the blend (the best query encoder the run made), published beside it as ../blend
    from tava_core.route.publish import attached_router
    from tava_core.route.router import RoutedEncoder

    router_dir = attached_router(published.path)
    assert router_dir is not None
    assert json.loads((router_dir / "router.json").read_text())["student"]["spec"]["model"] == "../blend"
    router = load_encoder(str(router_dir), cache=False)
    assert isinstance(router, RoutedEncoder) and router.student.fingerprint == blend.fingerprint
    routed = result.system("router, 10% to teacher")
    assert routed.speedup < row.speedup          # the blend's cost plus the confidence and the teacher's calls
    assert "over the blend" in result.work["router"]
