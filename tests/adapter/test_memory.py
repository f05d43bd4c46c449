"""Stage B's residual memory: the correction, its gate, and that it travels with the saved adapter."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from adapter_helpers import unit

from tava_core.adapter.config import AdapterConfig
from tava_core.adapter.io import adapter_weights_hash, load_adapter, save_adapter
from tava_core.adapter.memory import ResidualMemory, build_memory, memory_rows
from tava_core.adapter.model import Vec2VecAdapter
from tava_core.adapter.report import markdown_report
from tava_core.adapter.run import train_adapter_from_arrays
from tava_core.errors import ConfigError

FAST = dict(hidden_dims=[64], batch_size=64, eval_every=25, warmup_steps=10, holdout_fraction=0.1, patience=4,
            max_steps=50, init="identity")


def clustered(n: int = 3000, dim: int = 16, clusters: int = 60, local: bool = True, seed: int = 0):
    """(student, teacher, is_span) where the teacher is the student moved by an offset. ``local``: one offset
    per cluster of texts (what a memory of neighbours can learn and no single map can); else one offset per
    text (noise a neighbour's residual says nothing about)."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((clusters, dim)))
    label = rng.integers(0, clusters, n)
    student = unit(centres[label] + 0.15 * rng.standard_normal((n, dim)))
    offsets = 0.6 * rng.standard_normal((clusters if local else n, dim))
    teacher = unit(student + (offsets[label] if local else offsets))
    is_span = rng.random(n) < 0.5
    return student.astype(np.float32), teacher.astype(np.float32), is_span


def test_a_stored_text_is_corrected_onto_its_teacher_vector():
    rng = np.random.default_rng(0)
    student, teacher = unit(rng.standard_normal((50, 8))), unit(rng.standard_normal((50, 12)))
    mapped = unit(rng.standard_normal((50, 12)))
    memory = build_memory(student, teacher, mapped, k=5, temperature=1e-4, weight=1.0)
    out = memory(torch.as_tensor(student), torch.as_tensor(mapped)).numpy()
    # its own key wins the softmax at this temperature: mapped + (teacher - mapped) = teacher
    assert np.allclose(out, teacher, atol=1e-4)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    # weight scales the step: half way, renormalised
    half = build_memory(student, teacher, mapped, k=5, temperature=1e-4, weight=0.5)
    expected = unit(mapped + 0.5 * (teacher - mapped))
    assert np.allclose(half(torch.as_tensor(student), torch.as_tensor(mapped)).numpy(), expected, atol=1e-4)


def test_memory_rows_keep_all_that_fit_and_a_seeded_subset_beyond():
    assert memory_rows(10, 20, 0).tolist() == list(range(10))
    subset = memory_rows(1000, 100, 3)
    assert len(subset) == len(set(subset.tolist())) == 100 and np.all(np.diff(subset) > 0)
    assert subset.tolist() == memory_rows(1000, 100, 3).tolist()
    assert subset.tolist() != memory_rows(1000, 100, 4).tolist()
    with pytest.raises(ValueError):
        ResidualMemory(0, 4, 4)


@pytest.mark.parametrize("skip", ["identity", "linear", "full"])
def test_every_inference_path_applies_the_memory(skip):
    torch.manual_seed(0)
    adapter = Vec2VecAdapter(8, 8, hidden_dims=[16])
    net = adapter.net
    assert net is not None and net.skip is not None
    with torch.no_grad():
        net.skip.weight.copy_(torch.eye(8) if skip == "identity" else torch.randn(8, 8))
        if skip == "full":
            net.head.weight.normal_()
    assert adapter.inference_path() == skip
    rng = np.random.default_rng(1)
    x, y = unit(rng.standard_normal((40, 8))), unit(rng.standard_normal((40, 8)))
    before = adapter.map_numpy(x)
    adapter.attach_memory(build_memory(x, y, before, k=4, temperature=0.05, weight=0.75))
    after = adapter.map_numpy(x)
    with torch.no_grad():
        adapter.eval()
        forward = adapter(torch.as_tensor(x)).numpy()
    assert np.allclose(after, forward, atol=1e-5)  # the shortcut and the module agree
    assert np.abs(after - before).max() > 0.05
    assert (after * y).sum(1).mean() > (before * y).sum(1).mean() + 0.1
    # the reverse map never carries the memory
    assert adapter.make_reverse().memory is None


def test_a_saved_memory_loads_with_the_adapter_and_changes_its_hash(tmp_path):
    rng = np.random.default_rng(2)
    x, y = unit(rng.standard_normal((30, 6))), unit(rng.standard_normal((30, 6)))
    adapter = Vec2VecAdapter(6, 6, hidden_dims=[8])
    save_adapter(tmp_path / "bare", adapter)
    adapter.attach_memory(build_memory(x, y, adapter.map_numpy(x), k=3, temperature=0.1, weight=0.5))
    save_adapter(tmp_path / "with", adapter)
    loaded = load_adapter(tmp_path / "with")
    assert loaded.memory is not None and loaded.memory.settings() == adapter.memory.settings()
    assert np.array_equal(loaded.map_numpy(x), adapter.map_numpy(x))
    assert load_adapter(tmp_path / "bare").memory is None
    assert adapter_weights_hash(tmp_path / "with") != adapter_weights_hash(tmp_path / "bare")


def test_the_gate_keeps_the_memory_where_neighbours_share_a_correction_and_drops_it_where_they_do_not():
    gated = AdapterConfig(**FAST, memory_margin=0.005)
    student, teacher, is_span = clustered(local=True)
    run = train_adapter_from_arrays(student, teacher, gated, query_like=is_span)
    decision = run.report["memory"]
    assert decision["memory_kept"] is True and decision["with"] > decision["without"] + 0.005
    memory = run.result.adapter.memory
    # saved with every pair, held-out ones included, after the held-out figures were measured
    assert memory is not None and memory.rows == len(student) == decision["rows"]
    assert f"- residual memory: **kept**, {len(student)} texts" in markdown_report(run.report)
    gain = (run.result.adapter.map_numpy(student) * teacher).sum(1).mean()
    run.result.adapter.attach_memory(None)
    assert gain > (run.result.adapter.map_numpy(student) * teacher).sum(1).mean() + 0.05

    noise, noisy_teacher, noise_spans = clustered(local=False)
    dropped = train_adapter_from_arrays(noise, noisy_teacher, gated, query_like=noise_spans)
    assert dropped.report["memory"]["memory_kept"] is False and dropped.result.adapter.memory is None
    assert "does not beat" in dropped.report["memory"]["why"]
    assert dropped.report["memory"]["with"] < dropped.report["memory"]["without"] + 0.005
    # the default has no gate (bench/adapter_memory.py: held-out overlap did not track the queries' gain):
    # the same noise keeps its memory, and the report still says what the overlap did
    ungated = train_adapter_from_arrays(noise, noisy_teacher, AdapterConfig(**FAST), query_like=noise_spans)
    assert AdapterConfig().memory_margin is None and ungated.report["memory"]["memory_kept"] is True
    assert ungated.result.adapter.memory is not None and "no gate" in ungated.report["memory"]["why"]
    assert ungated.report["memory"]["with"] == pytest.approx(dropped.report["memory"]["with"])


def test_memory_off_and_unpaired_mode_train_without_one():
    student, teacher, is_span = clustered(n=800)
    off = train_adapter_from_arrays(student, teacher, AdapterConfig(**FAST, memory=False), query_like=is_span)
    assert off.report["memory"] == {"memory_kept": False, "why": "off"} and off.result.adapter.memory is None


def test_a_router_maps_the_adapters_own_training_texts_without_the_memory(tiny_model_dir):
    from tava_core.adapter.encoder import AdaptedEncoder
    from tava_core.encoders import load_encoder
    from tava_core.route.stored import _vector_map

    student = load_encoder(str(tiny_model_dir), cache=False)
    rng = np.random.default_rng(4)
    x, y = unit(rng.standard_normal((40, student.dim))), unit(rng.standard_normal((40, student.dim)))
    adapter = Vec2VecAdapter(student.dim, student.dim, hidden_dims=[8]).eval()
    adapter.attach_memory(build_memory(x, y, adapter.map_numpy(x), k=3, temperature=1e-4, weight=1.0))
    mapped = _vector_map(AdaptedEncoder(student, adapter, adapter_hash="h" * 64), student.fingerprint)(x, [""] * len(x))
    assert np.allclose(mapped, adapter.map_numpy(x, memory=False), atol=1e-6)
    assert not np.allclose(mapped, adapter.map_numpy(x), atol=1e-2)  # with it: the teacher's vectors back
    assert adapter.memory is not None


def test_a_router_over_a_blend_maps_stored_vectors_member_by_member(tiny_model_dir, tmp_path):
    """`tava run` routes over its blend: the stored bare-student vectors of the adapter's training texts go
    through the map alone (the memory would hand the teacher's vectors back), the static member encodes
    the texts, and the two are weighed as the blend weighs them."""
    from helpers import synthetic_texts, write_static_model

    from tava_core.adapter.encoder import AdaptedEncoder
    from tava_core.encoders import load_encoder
    from tava_core.encoders.blend import BlendEncoder
    from tava_core.route.stored import _vector_map

    student = load_encoder(str(tiny_model_dir), cache=False)
    texts = synthetic_texts(40, seed=6)
    x = student.encode(texts, kind="document")
    y = unit(np.random.default_rng(5).standard_normal((40, student.dim)))
    adapter = Vec2VecAdapter(student.dim, student.dim, hidden_dims=[8]).eval()
    adapter.attach_memory(build_memory(x, y, adapter.map_numpy(x), k=3, temperature=1e-4, weight=1.0))
    adapted = AdaptedEncoder(student, adapter, adapter_hash="h" * 64)
    static = load_encoder(str(write_static_model(tmp_path / "static", tiny_model_dir, student.dim, seed=1)), cache=False)
    blend = BlendEncoder([adapted, static], [0.7, 0.3])
    mapped = _vector_map(blend, student.fingerprint)(x, texts)
    expected = unit(0.7 * unit(adapter.map_numpy(x, memory=False)) + 0.3 * unit(static.encode(texts, kind="document")))
    np.testing.assert_allclose(mapped, expected, atol=1e-5)
    assert np.abs(mapped - blend.encode(texts, kind="document")).max() > 1e-2   # the memory's answer is not used
    with pytest.raises(ConfigError, match="were not made by the router's student"):   # no member from the vectors
        _vector_map(BlendEncoder([static, static], [0.5, 0.5]), student.fingerprint)


def test_a_memory_attached_to_an_adapter_on_another_device_moves_there():
    # the memory is built on the CPU from numpy; an adapter trained on a GPU must read it on the GPU. The
    # meta device stands in for one: torch refuses to mix its tensors with CPU ones as it refuses CUDA's.
    rng = np.random.default_rng(0)
    student, teacher = unit(rng.standard_normal((40, 8))), unit(rng.standard_normal((40, 12)))
    memory = build_memory(student, teacher, unit(rng.standard_normal((40, 12))), k=4, temperature=0.05, weight=1.0)
    adapter = Vec2VecAdapter(8, 12, hidden_dims=[16]).to("meta")
    adapter.attach_memory(memory)
    assert adapter.memory is not None and adapter.memory.keys.device.type == "meta"
    assert adapter(torch.zeros(3, 8, device="meta")).shape == (3, 12)
    assert adapter.config["memory_rows"] == 40
