"""Stage B's selection on query-like rows and the keep-learned gate, on synthetic pairs whose best map is known.

The nightly-refresh case: a student already near the teacher on short query-like texts (span views)
but tilted on documents. A map fitted on all pairs follows the documents; the adapter maps queries."""
from __future__ import annotations

import numpy as np
import torch
from adapter_helpers import synthetic, unit, write_vector_dir

from tava_core.adapter import AdapterConfig
from tava_core.adapter.run import train_adapter_from_arrays, train_adapter_from_dirs
from tava_core.adapter.start import closed_form_overlaps, resolve_init
from tava_core.home import TavaHome

torch.set_num_threads(1)
FAST = dict(hidden_dims=[64], batch_size=64, eval_every=25, warmup_steps=10, holdout_fraction=0.2, patience=4,
            selection_rows="query_like")


def documents_tilted(n_docs: int = 1600, n_spans: int = 800, dim: int = 16, seed: int = 0):
    """(student, teacher, is_span): spans = the teacher plus noise (identity is right for them); documents =
    the teacher squashed along most axes (a fitted map undoes it, and tilts the spans)."""
    rng = np.random.default_rng(seed)
    teacher = unit(rng.standard_normal((n_docs + n_spans, dim)))
    is_span = np.zeros(len(teacher), dtype=bool)
    is_span[rng.permutation(len(teacher))[:n_spans]] = True
    student = teacher + 0.05 * rng.standard_normal(teacher.shape)
    squash = np.geomspace(0.1, 2.0, dim)
    student[~is_span] = teacher[~is_span] * squash + 0.02 * rng.standard_normal((int((~is_span).sum()), dim))
    return unit(student).astype(np.float32), teacher.astype(np.float32), is_span


def test_the_auto_start_compares_maps_on_query_like_rows_when_it_has_them():
    student, teacher, is_span = documents_tilted()
    everything = closed_form_overlaps(student, teacher)
    spans_only = closed_form_overlaps(student, teacher, query_like=is_span)
    # on all rows (two thirds documents) a fitted map wins; on the spans the identity does
    assert everything["ridge"] > everything["identity"] + 0.03
    assert spans_only["identity"] > spans_only["ridge"] + 0.05
    assert spans_only["procrustes"] < spans_only["identity"] + 0.03  # no gain worth leaving the identity for
    config = AdapterConfig(**FAST)
    start, evidence = resolve_init(config, student, teacher, query_like=is_span)
    assert start == "identity" and set(evidence) == {"identity_query_overlap", "procrustes_query_overlap",
                                                      "ridge_query_overlap"}
    assert resolve_init(config, student, teacher)[0] != "identity"  # without the rows: today's choice
    assert resolve_init(config.model_copy(update={"selection_rows": "all"}), student, teacher,
                        query_like=is_span)[0] != "identity"
    assert AdapterConfig().selection_rows == "query_like"  # the paired default (bench/adapt_selection.py)
    assert AdapterConfig(mode="unpaired").selection_rows == "all"  # unpaired: not measured, all rows as before
    # so a default paired config keeps the identity here, where comparing on all rows would tilt the queries
    defaults = AdapterConfig(**{k: v for k, v in FAST.items() if k != "selection_rows"})
    assert resolve_init(defaults, student, teacher, query_like=is_span)[0] == "identity"
    # too few query-like rows to check on: all rows, and the evidence says so by its keys
    few = is_span & (np.cumsum(is_span) <= 30)
    assert "identity_overlap" in resolve_init(config, student, teacher, query_like=few)[1]


def test_the_learned_part_is_dropped_when_it_does_not_beat_an_identity_start():
    student, teacher, is_span = documents_tilted()
    config = AdapterConfig(**FAST, max_steps=150, lr=1e-3, keep_learned_margin=0.02)
    run = train_adapter_from_arrays(student, teacher, config, query_like=is_span)
    keep = run.report["selection"]
    assert run.report["seed_runs"][0]["start"] == "identity"
    assert keep["rows"] == "query_like" and keep["metric"].startswith("query_retrieval_overlap@")
    assert run.report["data"]["heldout_query_like"] == int(run.data.heldout_query_like.sum()) > 50
    assert keep["learned_kept"] is False and run.result.best_step == 0
    # the saved adapter is the identity map itself
    assert np.allclose(run.result.adapter.map_numpy(student[:50], memory=False), unit(student[:50]), atol=1e-5)
    assert run.result.best_metrics == run.result.initial_metrics


def test_a_learned_adapter_that_beats_its_start_on_query_like_rows_is_kept():
    # a non-linear distortion: the MLP on top of the ridge start has something to learn
    student, teacher = synthetic(3000, 12, "nonlinear")
    is_span = np.random.default_rng(3).random(len(student)) < 0.4
    config = AdapterConfig(**{**FAST, "hidden_dims": [128], "batch_size": 128, "eval_every": 50, "patience": 20},
                           init="ridge", max_steps=400, lr=3e-3, paired_cosine_weight=1.0, keep_learned_margin=0.01)
    run = train_adapter_from_arrays(student, teacher, config, query_like=is_span)
    keep = run.report["selection"]
    assert keep["learned_kept"] is True and run.result.best_step > 0
    assert keep["learned_value"] > keep["start_value"] + 0.01
    assert run.result.best_metrics[keep["metric"]] == keep["learned_value"]


def test_without_the_gate_the_best_state_stands_and_an_unreachable_margin_keeps_the_start():
    from tava_core.adapter.baselines import fit_ridge

    student, teacher = synthetic(1500, 12, "nonlinear")
    is_span = np.random.default_rng(3).random(len(student)) < 0.4
    settings = dict(**FAST, max_steps=100, lr=3e-3, init="ridge")
    free = train_adapter_from_arrays(student, teacher, AdapterConfig(**settings, keep_learned_margin=None),
                                     query_like=is_span)
    metric = free.report["selection"]["metric"]
    best_eval = max(free.result.evals, key=lambda e: (round(e[metric], 4), e["mean_cosine"]))
    assert free.result.best_step == best_eval["step"]  # training's own choice, untouched
    assert AdapterConfig().keep_learned_margin == 0.005  # the paired default gate (bench/adapt_selection.py)
    assert AdapterConfig(mode="unpaired").keep_learned_margin is None  # unpaired: no gate, as before
    # no overlap gains more than 1: the gate keeps the ridge start, fitted on the same training pairs
    gated = train_adapter_from_arrays(student, teacher, AdapterConfig(**settings, keep_learned_margin=1.0),
                                      query_like=is_span)
    assert gated.result.best_step == 0 and gated.report["selection"]["learned_kept"] is False
    ridge = fit_ridge(gated.data.student, gated.data.teacher)
    assert np.allclose(gated.result.adapter.map_numpy(student[:50], memory=False), ridge(student[:50]), atol=1e-4)


def test_span_collections_are_the_query_like_rows_of_tava_adapt(tmp_path):
    student, teacher, is_span = documents_tilted(n_docs=600, n_spans=800)
    docs, spans = np.flatnonzero(~is_span), np.flatnonzero(is_span)
    dirs = {}
    for side, vectors, fingerprint in (("student", student, "s" * 24), ("teacher", teacher, "t" * 24)):
        dirs[side] = [
            str(write_vector_dir(tmp_path / side / "texts", [f"d{i}" for i in docs], vectors[docs],
                                 fingerprint=fingerprint, dataset="corpus", collection="texts")),
            str(write_vector_dir(tmp_path / side / "spans", [f"d{i}#span0" for i in spans], vectors[spans],
                                 fingerprint=fingerprint, dataset="corpus.spans2-s0", collection="spans"))]
    config = AdapterConfig(**FAST, max_steps=25, student_vectors=dirs["student"], teacher_vectors=dirs["teacher"])
    run = train_adapter_from_dirs(config, TavaHome(tmp_path / "home"))
    assert run.report["data"]["heldout_query_like"] == int(run.data.heldout_query_like.sum()) > 0
    assert len(run.data.heldout_query_like) == run.report["data"]["heldout_pairs"]
    assert "identity_query_overlap" in run.report["seed_runs"][0]["start_evidence"]
    report = (run.directory / "report.md").read_text()
    assert "- learned part: **" in report and "query_like held-out rows" in report
