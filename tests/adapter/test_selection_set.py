"""In-domain selection rows (``AdapterConfig.selection_*_vectors``): they choose the adapter, never train it.

The cross-family case behind them: a map fitted on generic pairs keeps winning on held-out generic pairs
while it moves the target domain's queries away from where its start put them."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from adapter_helpers import unit, write_vector_dir

from tava_core.adapter import AdapterConfig
from tava_core.adapter.run import train_adapter_from_arrays, train_adapter_from_dirs
from tava_core.adapter.selection import SelectionSet
from tava_core.errors import ConfigError
from tava_core.home import TavaHome

torch.set_num_threads(1)
FAST = dict(hidden_dims=[64], batch_size=64, eval_every=25, warmup_steps=10, holdout_fraction=0.2, patience=100,
            init="identity", max_steps=150, lr=3e-3, paired_cosine_weight=1.0, ranking_documents=64,
            keep_learned_margin=0.0)
DIM = 16


def generic_pairs(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Generic text: the student squashes most of the teacher's axes, so a fitted map moves far from the identity."""
    rng = np.random.default_rng(seed)
    teacher = unit(rng.standard_normal((n, DIM)))
    student = teacher * np.geomspace(0.1, 2.0, DIM) + 0.02 * rng.standard_normal((n, DIM))
    return unit(student), teacher


def in_domain(n_docs: int = 400, n_spans: int = 300, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The target domain: the student already agrees with the teacher there (the identity is right)."""
    rng = np.random.default_rng(seed)
    teacher = unit(rng.standard_normal((n_docs + n_spans, DIM)))
    student = unit(teacher + 0.05 * rng.standard_normal(teacher.shape))
    return student, teacher, np.arange(len(teacher)) >= n_docs


def test_selection_rows_keep_the_start_that_held_out_generic_pairs_would_have_dropped():
    student, teacher = generic_pairs()
    config = AdapterConfig(**FAST)
    generic = train_adapter_from_arrays(student, teacher, config)
    # on held-out generic pairs the learned map beats the identity start and is kept
    assert generic.report["selection"]["metric"].startswith("retrieval_overlap@")
    assert generic.report["selection"]["learned_kept"] is True and generic.result.best_step > 0
    chosen = SelectionSet.from_rows(*in_domain())
    run = train_adapter_from_arrays(student, teacher, config, selection=chosen)
    keep = run.report["selection"]
    assert keep["metric"] == "selection_retrieval_overlap@10"
    assert run.report["data"]["selection_queries"] == 300 and run.report["data"]["selection_documents"] == 400
    # in the target domain the learned map is worse than the identity at every evaluation: the start is kept
    assert all(e["selection_retrieval_overlap@10"] < keep["start_value"] for e in run.result.evals if e["step"] > 0)
    assert keep["learned_kept"] is False and run.result.best_step == 0
    assert np.allclose(run.result.adapter.map_numpy(chosen.queries, memory=False), unit(chosen.queries), atol=1e-5)


def test_a_selection_set_needs_span_views_and_documents():
    student, teacher, is_span = in_domain(n_docs=400, n_spans=20)
    with pytest.raises(ConfigError, match="at least 50"):
        SelectionSet.from_rows(student, teacher, is_span)
    with pytest.raises(ConfigError, match="both sides"):
        AdapterConfig(selection_student_vectors=["a"])


def test_tava_adapt_reads_selection_directories_and_checks_their_encoders(tmp_path):
    student, teacher = generic_pairs(600)
    sel_student, sel_teacher, is_span = in_domain()
    docs, spans = np.flatnonzero(~is_span), np.flatnonzero(is_span)
    dirs: dict[str, list[str]] = {}
    for side, train, chosen, fingerprint in (("student", student, sel_student, "s" * 24),
                                             ("teacher", teacher, sel_teacher, "t" * 24)):
        dirs[side] = [str(write_vector_dir(tmp_path / side / "train", [f"g{i}" for i in range(len(train))], train,
                                           fingerprint=fingerprint, dataset="generic"))]
        dirs[f"selection_{side}"] = [
            str(write_vector_dir(tmp_path / side / "docs", [f"d{i}" for i in docs], chosen[docs],
                                 fingerprint=fingerprint, dataset="target", collection="corpus")),
            str(write_vector_dir(tmp_path / side / "spans", [f"d{i}#span0" for i in spans], chosen[spans],
                                 fingerprint=fingerprint, dataset="target.spans1-s0", collection="spans"))]
    config = AdapterConfig(**{**FAST, "max_steps": 25}, student_vectors=dirs["student"],
                           teacher_vectors=dirs["teacher"], selection_student_vectors=dirs["selection_student"],
                           selection_teacher_vectors=dirs["selection_teacher"])
    run = train_adapter_from_dirs(config, TavaHome(tmp_path / "home"))
    assert run.report["data"]["selection_queries"] == 300 and run.report["data"]["selection_documents"] == 400
    assert run.report["selection"]["metric"] == "selection_retrieval_overlap@10"
    swapped = config.model_copy(update={"selection_student_vectors": dirs["selection_teacher"],
                                        "selection_teacher_vectors": dirs["selection_student"]})
    with pytest.raises(ConfigError, match="selection-student-vectors come from encoder"):
        train_adapter_from_dirs(swapped, TavaHome(tmp_path / "home"))
