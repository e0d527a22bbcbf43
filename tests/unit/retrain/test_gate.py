"""ecomine.retrain.gate: the paired bootstrap and the promotion rule, on values whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from ecomine.retrain.gate import decide, mean_statistic, paired_bootstrap


def _pair(n: int, lift: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    champion = rng.uniform(0, 1, n)
    return champion, np.clip(champion * (1 + lift) + rng.normal(0, 0.02, n), 0, None)


def test_identical_versions_are_refused_and_the_interval_holds_zero():
    c = np.random.default_rng(1).uniform(0, 1, 500)
    comp = paired_bootstrap("ndcg@10", mean_statistic(c, c.copy()), 500, resamples=300)
    assert comp.improvement == 0 and comp.ci_low <= 0 <= comp.ci_high
    decision = decide(comp, [], min_improvement=0.0)
    assert not decision.promote and "does not clear the margin" in decision.reason


def test_a_clear_improvement_is_promoted_with_an_interval_around_it():
    c, h = _pair(800, 0.10)
    comp = paired_bootstrap("ndcg@10", mean_statistic(c, h), 800, resamples=400)
    assert comp.ci_low < comp.improvement < comp.ci_high
    assert 0.08 < comp.improvement < 0.12 and comp.ci_low > 0.05
    assert decide(comp, [], min_improvement=0.02).promote
    # the same lift does not clear a margin above it
    assert not decide(comp, [], min_improvement=0.2).promote


def test_pairing_is_what_makes_a_small_lift_significant():
    """A 3 % lift on noisy but paired units is significant; the same units unpaired would not be."""
    rng = np.random.default_rng(2)
    c = rng.uniform(0, 1, 2000)
    h = c * 1.03
    paired = paired_bootstrap("m", mean_statistic(c, h), 2000, resamples=300)
    assert paired.ci_low > 0.02
    shuffled = h[rng.permutation(2000)]
    unpaired = paired_bootstrap("m", mean_statistic(c, shuffled), 2000, resamples=300)
    assert unpaired.ci_low < 0 < unpaired.ci_high


def test_a_guard_that_regresses_refuses_a_winner():
    c, h = _pair(500, 0.2)
    primary = paired_bootstrap("ndcg@10", mean_statistic(c, h), 500, resamples=200)
    g_c, g_h = _pair(500, -0.1, seed=3)
    guard = paired_bootstrap("hr@20", mean_statistic(g_c, g_h), 500, resamples=200)
    decision = decide(primary, [(guard, 0.05)], min_improvement=0.0)
    assert not decision.promote and "hr@20" in decision.reason
    assert decision.guards[0]["ok"] is False
    assert decide(primary, [(guard, 0.2)], min_improvement=0.0).promote


def test_smaller_is_better_metrics_count_a_drop_as_improvement():
    c = np.random.default_rng(4).uniform(1, 2, 400)
    comp = paired_bootstrap("pinball", mean_statistic(c, c * 0.9), 400, mode="min", resamples=200)
    assert comp.improvement == pytest.approx(0.1) and comp.ci_low > 0.05


def test_the_bootstrap_is_seeded_and_rejects_unpaired_shapes():
    c, h = _pair(300, 0.05)
    a = paired_bootstrap("m", mean_statistic(c, h), 300, resamples=200, seed=7)
    b = paired_bootstrap("m", mean_statistic(c, h), 300, resamples=200, seed=7)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    with pytest.raises(ValueError, match="same 1-d shape"):
        mean_statistic(c, h[:-1])
    with pytest.raises(ValueError, match="at least 2"):
        paired_bootstrap("m", mean_statistic(c[:1], h[:1]), 1)


def test_a_collapsed_level_refuses_even_a_significant_winner():
    """Both versions far below what the champion scored when promoted: the feed, not the model, changed."""
    c, h = _pair(800, 0.15)
    comp = paired_bootstrap("ndcg@10", mean_statistic(c * 0.2, h * 0.2), 800, resamples=200)
    assert comp.ci_low > 0.05  # a clear relative win on the broken holdout
    previous = float(np.mean(h))
    decision = decide(comp, [], 0.0, level=(previous, 0.5))
    assert not decision.promote and "looks broken" in decision.reason
    # a level within the allowed drop passes through to the usual rule
    assert decide(comp, [], 0.0, level=(comp.challenger * 1.5, 0.5)).promote


def test_the_spec_admits_exactly_the_tasks_the_gate_scores() -> None:
    from ecomine.retrain.holdout import GATED_TASKS
    from ecomine.specs.pipeline import GATE_TASKS

    assert set(GATED_TASKS) == set(GATE_TASKS)
