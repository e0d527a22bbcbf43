"""Ensemble arithmetic: fitted weights and temperatures do what they claim (tests that fail if fitting does nothing)."""

from __future__ import annotations

import numpy as np
import pytest

from ecomine.predict.combine import (
    apply_platt,
    combine_quantiles,
    fit_mixture_weights,
    fit_platt,
    fit_quantile_weights,
    fit_shrunk_quantile_weights,
    fit_temperature,
    mix,
    softmax_rows,
    target_probabilities,
)


def _informative_logits(rng, n=600, v=50, signal=3.0):
    targets = rng.integers(0, v, n)
    logits = rng.normal(0, 1, (n, v))
    logits[np.arange(n), targets] += signal
    return logits, targets


def test_a_pure_noise_member_gets_weight_near_zero():
    rng = np.random.default_rng(0)
    logits, targets = _informative_logits(rng)
    good = target_probabilities(logits, targets, 1.0)
    noise = target_probabilities(rng.normal(0, 1, logits.shape), targets, 1.0)
    fit = fit_mixture_weights(np.stack([good, noise], 1))
    assert abs(fit.weights.sum() - 1) < 1e-9
    assert fit.weights[1] < 0.02 and fit.weights[0] > 0.98
    # and the fitted mixture is at least as likely as the uniform one
    assert fit.log_likelihood >= np.mean(np.log(0.5 * good + 0.5 * noise))


def test_two_complementary_members_share_the_weight():
    rng = np.random.default_rng(1)
    n, v = 800, 40
    targets = rng.integers(0, v, n)
    a, b = rng.normal(0, 1, (n, v)), rng.normal(0, 1, (n, v))
    half = np.arange(n) < n // 2
    a[np.arange(n)[half], targets[half]] += 4  # a knows the first half, b the second
    b[np.arange(n)[~half], targets[~half]] += 4
    p = np.stack([target_probabilities(a, targets, 1.0), target_probabilities(b, targets, 1.0)], 1)
    w = fit_mixture_weights(p).weights
    assert 0.35 < w[0] < 0.65
    mixed = p @ w
    assert np.mean(np.log(mixed)) > max(np.mean(np.log(p[:, 0])), np.mean(np.log(p[:, 1])))


def test_fit_temperature_recovers_a_scaled_scorer():
    rng = np.random.default_rng(2)
    logits, targets = _informative_logits(rng, signal=2.0)
    t = fit_temperature(logits / 50.0, targets)  # an item-kNN-like score range: ~50x too flat
    assert 25 < t < 100
    assert np.allclose(softmax_rows(np.array([[0.0, -np.inf]])), [[1.0, 0.0]])


def test_platt_recalibrates_an_overconfident_mixture():
    rng = np.random.default_rng(3)
    true_p = rng.uniform(0.01, 0.3, 5000)
    y = rng.random(5000) < true_p
    over = np.clip(true_p * 2.5, 0, 0.99)
    a, b = fit_platt(over, y)
    fixed = apply_platt(over, a, b)
    brier = lambda p: float(np.mean((p - y) ** 2))  # noqa: E731
    assert brier(fixed) < brier(over)


def test_quantile_weights_prefer_the_calibrated_member_and_stay_monotone():
    rng = np.random.default_rng(4)
    qs = [0.1, 0.5, 0.9]
    y = rng.gamma(2.0, 3.0, 400)
    z = np.array([-1.2816, 0.0, 1.2816])
    good = np.maximum(0, y[:, None] + rng.normal(0, 1, (400, 1)) + z * 1.5)
    bad = np.tile(np.array([0.0, 20.0, 40.0]), (400, 1))
    w = fit_quantile_weights(np.stack([good, bad]), y, qs)
    assert abs(w.sum() - 1) < 1e-9 and w[0] > 0.9
    mixed = combine_quantiles([good[:, ::-1], good], [0.5, 0.5], axis=-1)  # a member with crossed quantiles
    assert np.all(np.diff(mixed, axis=-1) >= 0)


def test_quantile_weights_minimise_the_pinball_itself_not_its_mirror():
    # two members biased in opposite directions: the best mix is interior and known by search; a fit
    # that charged tau for overshooting (the levels mirrored) would pick a corner here
    from ecomine.models.demand import pinball_loss

    rng = np.random.default_rng(7)
    qs = [0.1, 0.5, 0.9]
    y = rng.gamma(2.0, 3.0, 600)
    z = np.array([-1.2816, 0.0, 1.2816])
    low = np.maximum(0, 0.7 * y[:, None] + z * 1.0 + rng.normal(0, 1, (600, 1)))
    high = np.maximum(0, 1.4 * y[:, None] + z * 3.0 + rng.normal(0, 1, (600, 1)))
    preds = np.stack([low, high])
    w = fit_quantile_weights(preds, y, qs)
    grid = np.linspace(0, 1, 101)
    losses = [pinball_loss(g * low + (1 - g) * high, y, qs) for g in grid]
    assert pinball_loss(w[0] * low + w[1] * high, y, qs) <= min(losses) + 1e-9
    assert 0.05 < w[0] < 0.95


def test_softmax_and_weighted_combination() -> None:
    p = softmax_rows(np.array([[-np.inf, 0.0, 0.0], [-np.inf, 1.0, -np.inf]]))
    assert p.tolist() == [[0.0, 0.5, 0.5], [0.0, 1.0, 0.0]]
    mixed = mix([p, p[::-1]], [1.0, 3.0])
    assert mixed[0].tolist() == pytest.approx([0.0, 0.875, 0.125]) and mixed.sum(axis=1) == pytest.approx([1, 1])
    assert softmax_rows(np.array([[-np.inf, -np.inf]])).tolist() == [[0.0, 0.0]]  # no NaN from an all-banned row


def _fold(rng, n, err_a, err_b):
    """One validation origin: members a and b whose median errors have the given scales."""
    y = rng.gamma(2.0, 3.0, n)
    z = np.array([-1.2816, 0.0, 1.2816])
    a = np.maximum(0, y[:, None] + rng.normal(0, err_a, (n, 1)) + z * err_a)
    b = np.maximum(0, y[:, None] + rng.normal(0, err_b, (n, 1)) + z * err_b)
    return np.stack([a, b]), y


def test_shrunk_weights_keep_a_fit_the_origins_agree_on():
    rng = np.random.default_rng(11)
    folds = [_fold(rng, 300, 0.5, 4.0) for _ in range(3)]  # member a far better on every origin
    fit = fit_shrunk_quantile_weights(folds, [0.1, 0.5, 0.9])
    assert fit.shrink <= 0.25 and fit.weights[0] > 0.8
    assert abs(fit.weights.sum() - 1) < 1e-9 and len(fit.held_out_weights) == 3 and set(fit.cv_pinball) == {0, .25, .5, .75, 1}


def test_shrunk_weights_go_uniform_when_the_origins_disagree():
    # member a is best on one origin, member b on the other: a fit on one origin is wrong on the next
    rng = np.random.default_rng(12)
    folds = [_fold(rng, 300, 0.3, 5.0), _fold(rng, 300, 5.0, 0.3)]
    fit = fit_shrunk_quantile_weights(folds, [0.1, 0.5, 0.9])
    # fitted without origin 0 (so on origin 1) the weights pick member b, and the other way round
    assert fit.held_out_weights[0][1] > 0.9 and fit.held_out_weights[1][0] > 0.9
    assert fit.shrink >= 0.75 and abs(fit.weights[0] - 0.5) <= 0.15


def test_shrunk_weights_with_one_origin_keep_the_fit():
    rng = np.random.default_rng(13)
    fit = fit_shrunk_quantile_weights([_fold(rng, 200, 0.5, 4.0)], [0.1, 0.5, 0.9])
    assert fit.shrink == 0.0 and fit.cv_pinball == {} and np.allclose(fit.weights, fit.fitted)
