"""The live threshold: a budget holds on traffic whose confidence differs from the calibration
texts' (the adaptive policy), where the threshold fixed at calibration does not."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tava_core.errors import ModelLoadError
from tava_core.route.config import RouterConfig, ThresholdPolicy
from tava_core.route.threshold import LiveThreshold, simulate_stream, sorted_quantile, weighted_quantile

# Calibration texts (span views) look more confident than the live queries: the situation on the
# built-in data, where the threshold saved for 10% sent 22% of the real queries to the teacher.
CALIBRATION = np.percentile(np.random.default_rng(0).normal(0.7, 0.1, 5000), np.arange(101))
BUDGETS = (0.1, 0.2)
BATCH_SIZES = (1, 32)


def _fixed_threshold(budget: float) -> float:
    return float(np.interp(budget * 100, np.arange(101), CALIBRATION))


def _stream(n: int, mean: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, 0.1, n)


def test_weighted_quantile_matches_the_plain_quantile_for_equal_weights():
    values = np.random.default_rng(1).normal(size=1001)
    for level in (0.05, 0.1, 0.5, 0.9):
        # midpoint rule: the share of samples below the quantile is the level
        q = weighted_quantile(values, np.ones_like(values), level)
        assert abs((values < q).mean() - level) < 2 / len(values)
    for level in (0.0, 0.003, 0.1, 0.5, 0.999, 1.0):   # the sorted form agrees, ends included
        assert sorted_quantile(np.sort(values), level) == pytest.approx(weighted_quantile(values, np.ones_like(values), level))
    # ten times the weight on the upper half: the weighted median is its 0.45 point, the 0.725 quantile
    weights = np.where(values > np.median(values), 10.0, 1.0)
    assert weighted_quantile(values, weights, 0.5) == pytest.approx(np.quantile(values, 0.725), abs=0.02)


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
@pytest.mark.parametrize("budget", BUDGETS)
def test_adaptive_share_converges_to_the_budget_where_the_fixed_threshold_does_not(budget, batch_size):
    scores = _stream(3000, 0.62, seed=2)        # live queries: less confident than the calibration texts
    fixed = simulate_stream(ThresholdPolicy(mode="fixed"), budget, CALIBRATION, scores, batch_size,
                            _fixed_threshold(budget))
    adaptive = simulate_stream(ThresholdPolicy(), budget, CALIBRATION, scores, batch_size, _fixed_threshold(budget))
    assert fixed.mean() > budget + 0.15                      # the saved threshold overshoots by far
    assert abs(adaptive.mean() - budget) < 0.01              # the live one holds the budget over the stream
    assert abs(adaptive[-1000:].mean() - budget) < 0.02      # and keeps holding it
    # it routes the least confident queries: every routed score is low
    assert np.quantile(scores[adaptive], 0.9) < np.quantile(scores, budget + 0.1)


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_adaptive_share_recovers_after_the_traffic_shifts(batch_size):
    """SciFact-like traffic, then a batch from elsewhere (much less confident): the fixed threshold
    sends most of the new traffic to the teacher, the adaptive one returns to the budget within a
    window, and the total stays near it (feedback pays back the overshoot of the transition)."""
    budget, policy = 0.1, ThresholdPolicy(window=300)
    scores = np.concatenate([_stream(2000, 0.7, seed=3), _stream(3000, 0.5, seed=4)])
    fixed = simulate_stream(ThresholdPolicy(mode="fixed"), budget, CALIBRATION, scores, batch_size,
                            _fixed_threshold(budget))
    adaptive = simulate_stream(policy, budget, CALIBRATION, scores, batch_size, _fixed_threshold(budget))
    assert abs(fixed[:2000].mean() - budget) < 0.03 and fixed[2000:].mean() > 0.6
    assert abs(adaptive[:2000].mean() - budget) < 0.02
    assert abs(adaptive[-2000:].mean() - budget) < 0.02       # a window after the shift: the budget again
    assert abs(adaptive.mean() - budget) < 0.02


def test_feedback_pays_back_what_the_prior_overshot():
    """The first queries are routed with the calibration distribution standing in for the window;
    on traffic unlike the calibration texts that overshoots, and feedback takes it back."""
    budget = 0.1
    scores = _stream(400, 0.6, seed=5)
    with_feedback = simulate_stream(ThresholdPolicy(prior=100, feedback=1.0), budget, CALIBRATION, scores, 1, 0.0)
    without = simulate_stream(ThresholdPolicy(prior=100, feedback=0.0), budget, CALIBRATION, scores, 1, 0.0)
    assert without[:100].mean() > budget + 0.05               # the prior's overshoot at the start
    assert abs(with_feedback.mean() - budget) < abs(without.mean() - budget)


def test_zero_and_full_budgets_and_state():
    scores = _stream(100, 0.6, seed=6)
    assert not simulate_stream(ThresholdPolicy(), 0.0, CALIBRATION, scores, 8, -np.inf).any()
    assert simulate_stream(ThresholdPolicy(), 1.0, CALIBRATION, scores, 8, np.inf).all()
    live = LiveThreshold(ThresholdPolicy(window=50), 0.2, CALIBRATION)
    assert live.threshold == pytest.approx(_fixed_threshold(0.2), abs=0.005)   # before any query: the calibrated one
    for start in range(0, 100, 10):
        live.decide(scores[start:start + 10])
    state = live.state()
    assert state["window_fill"] == 50 and state["queries_seen"] == 100
    assert live.decide(np.zeros(0)).shape == (0,)
    with pytest.raises(ValueError, match="adaptive"):
        LiveThreshold(ThresholdPolicy(mode="fixed"), 0.1, CALIBRATION)


def test_policy_is_a_router_setting_with_checked_bounds():
    config = RouterConfig(student="s", dataset="d", routing={"mode": "fixed", "window": 200})
    assert config.routing.mode == "fixed" and config.routing.window == 200
    assert RouterConfig(student="s", dataset="d").routing.mode == "adaptive"
    with pytest.raises(ValueError, match="window"):
        ThresholdPolicy(window=1)
    with pytest.raises(ValueError, match="mode"):
        ThresholdPolicy(mode="sometimes")


def test_saved_router_keeps_its_policy_and_an_old_one_stays_fixed(router_dir, tmp_path):
    import shutil

    from tava_core.route.router import load_router

    router = load_router(router_dir)
    assert router.routing.mode == "adaptive" and router.live is not None   # saved by this version: the default
    queries = [f"what does the {w} do" for w in ("cell", "gene", "parser", "optimizer", "protein", "kernel")] * 4
    out = router.route(queries)
    assert out["routed"].tolist() == (out["confidence"] < router.live.threshold).tolist()
    assert router.info()["live"]["queries_seen"] == len(queries)
    # streamed in batches of 4 from a fresh start, the encoder decides what simulate_stream replays
    fresh = router.with_budget(0.25, routing=ThresholdPolicy(prior=8, window=12))
    routed = np.concatenate([fresh.route(queries[i:i + 4])["routed"] for i in range(0, len(queries), 4)])
    scores = fresh.confidence(queries, fresh.student.encode(queries, kind="query"))
    replay = simulate_stream(fresh.routing, 0.25, fresh.calibration.quantiles, scores, 4, fresh.threshold.threshold)
    assert routed.tolist() == replay.tolist() and fresh.routed_share == pytest.approx(routed.mean())
    fixed = load_router(router_dir, routing=ThresholdPolicy(mode="fixed"))
    assert fixed.live is None and fixed.fingerprint != router.fingerprint
    old = tmp_path / "old"
    shutil.copytree(router_dir, old)
    meta = json.loads((old / "router.json").read_text())
    del meta["routing"]                       # what a router saved before the policy existed holds
    (old / "router.json").write_text(json.dumps(meta))
    before = load_router(old)
    assert before.routing.mode == "fixed" and before.fingerprint == fixed.fingerprint
    assert (before.route(queries)["routed"] == (fixed.confidence(queries, fixed.student.encode(queries, kind="query"))
                                                < fixed.threshold.threshold)).all()
    meta["routing"] = {"mode": "sometimes"}
    (old / "router.json").write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="routing") as err:
        load_router(old)
    assert "router.json" in str(err.value)
