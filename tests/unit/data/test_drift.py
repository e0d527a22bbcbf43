"""ecomine.data.drift: PSI and KS against known values, the reservoir's uniformity, profiles and compare."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import ks_2samp, kstest

from ecomine.data import drift
from ecomine.data.drift import (
    FEATURES,
    FeatureReference,
    LiveWindow,
    ProfileError,
    ReferenceProfile,
    Reservoir,
    bin_shares,
    build_profile,
    compare,
    demand_observation,
    ks,
    popularity_ranks,
    psi,
    recommend_observation,
    risk_observation,
)


def test_all_is_complete() -> None:
    public = {n for n, v in vars(drift).items() if not n.startswith("_") and getattr(v, "__module__", None) == drift.__name__}
    assert public <= set(drift.__all__)


def test_psi_of_known_shares() -> None:
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5)
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * np.log(2) + 0.25 * np.log(1.5))
    assert psi([0.1, 0.2, 0.7], [0.1, 0.2, 0.7]) == 0.0
    # an empty bin counts as 1e-4, so a share moving into it is large but finite
    assert psi([1.0, 0.0], [0.95, 0.05]) == pytest.approx(-0.05 * np.log(0.95) + (0.05 - 1e-4) * np.log(0.05 / 1e-4))


def test_bin_shares_use_right_closed_bins() -> None:
    edges = np.array([1.0, 3.0])
    # (-inf, 1], (1, 3], (3, inf)
    assert bin_shares(np.array([0.0, 1.0, 2.0, 3.0, 4.0]), edges).tolist() == [0.4, 0.4, 0.2]


def test_ks_matches_scipy_and_known_extremes() -> None:
    assert ks([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])[0] == 1.0
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 300), rng.normal(0.5, 1, 400)
    ref = ks_2samp(a, b)
    assert ks(a, b) == pytest.approx((ref.statistic, ref.pvalue))


def test_reference_points_stand_in_for_the_full_sample_in_ks() -> None:
    rng = np.random.default_rng(1)
    full, live = rng.lognormal(0, 1, 20_000), rng.lognormal(0.3, 1, 2_000)
    ref = FeatureReference.of(full)
    assert len(ref.points) == 256 and len(ref.edges) == 9
    assert ks(ref.points, live)[0] == pytest.approx(ks_2samp(full, live).statistic, abs=0.01)


def test_reference_of_a_point_mass_flags_any_mass_beside_it() -> None:
    ref = FeatureReference.of(np.zeros(500))
    assert ref.edges == [0.0] and ref.shares == [1.0, 0.0]
    live = np.r_[np.zeros(95), np.full(5, 0.5)]
    assert psi(ref.shares, bin_shares(live, np.asarray(ref.edges))) > drift.PSI_THRESHOLD


def test_reservoir_keeps_a_uniform_sample_of_the_stream() -> None:
    r = Reservoir(1000, seed=3)
    for chunk in np.array_split(np.arange(100_000, dtype=np.float64), 700):
        r.add(chunk)
    kept = r.values()
    assert r.seen == 100_000 and kept.size == 1000 and np.unique(kept).size == 1000
    assert kstest(kept / 100_000, "uniform").pvalue > 0.001
    one = Reservoir(1000, seed=4)
    for v in range(5000):
        one.add(v)
    assert kstest(one.values() / 5000, "uniform").pvalue > 0.001


def test_reservoir_below_its_size_keeps_everything_in_order() -> None:
    r = Reservoir(10)
    r.add([1, 2, 3])
    r.add(4)
    assert r.values().tolist() == [1, 2, 3, 4] and r.seen == 4


def test_popularity_ranks() -> None:
    ranks = popularity_ranks([np.array([3, 3, 1]), np.array([3, 2])], n_items=4)
    # counts: 1 -> 1, 2 -> 1, 3 -> 3, 4 -> 0; ties by id; padding 0
    assert ranks.tolist() == [0, 2, 3, 1, 4]


def test_observations_of_the_three_tasks() -> None:
    ranks = np.array([0, 2, 3, 1, 4])
    obs = recommend_observation(4, np.array([3, 1]), ranks, np.array([0.1, 0.7, 0.2]))
    assert obs["history_length"] == 4 and obs["unknown_item_share"] == 0.5
    assert obs["item_popularity_rank"].tolist() == [1, 2] and obs["top1_probability"] == 0.7
    assert recommend_observation(0, None, ranks, None) == {"history_length": 0}

    obs = demand_observation(["a", "b", "z"], [True, True, False], np.array([1.0, 2.0]), {"a": 5.0, "b": 7.0})
    assert obs["unknown_item_share"] == pytest.approx(1 / 3) and obs["series_level"].tolist() == [5.0, 7.0]

    orders = [{"lines": [{"quantity": 2, "price": 3.0}, {"quantity": 1, "price": None}]}, {"lines": [{"quantity": 5, "price": 1.0}]}]
    obs = risk_observation(orders, np.array([0.1, 0.4]))
    assert obs["order_value"].tolist() == [6.0, 5.0] and obs["lines_per_order"].tolist() == [2, 1]
    assert obs["quantity"].tolist() == [2, 1, 5] and obs["price"].tolist() == [3.0, 1.0]


def _orders(rng: np.random.Generator, n: int, *, shifted: bool = False) -> list[dict]:
    if shifted:  # single big lines of dearer items
        return [{"lines": [{"quantity": int(rng.integers(10, 40)), "price": float(rng.lognormal(2, 0.5))}]} for _ in range(n)]
    return [{"lines": [{"quantity": int(rng.integers(1, 12)), "price": float(rng.lognormal(1, 0.5))}
                       for _ in range(int(rng.integers(1, 6)))]} for _ in range(n)]


def _risk_profile(rng: np.random.Generator) -> ReferenceProfile:
    obs = risk_observation(_orders(rng, 3000), rng.beta(1, 9, 3000))
    return build_profile("risk", obs, source="test")


def test_compare_flags_a_shifted_window_and_passes_a_like_one() -> None:
    rng = np.random.default_rng(5)
    profile = _risk_profile(rng)
    like, shifted = LiveWindow("risk", size=2048, seed=1), LiveWindow("risk", size=2048, seed=2)
    for _ in range(600):  # one order per request, as a live stream
        like.observe(risk_observation(_orders(rng, 1), rng.beta(1, 9, 1)))
        shifted.observe(risk_observation(_orders(rng, 1, shifted=True), rng.beta(3, 3, 1)))
    calm, moved = compare(profile, like.arrays()), compare(profile, shifted.arrays())
    assert calm.status == "ok" and calm.drifted == []
    assert max(f.psi for f in calm.features) < 0.1
    assert moved.status == "drift"
    assert set(moved.drifted) == set(FEATURES["risk"])


def test_compare_too_few_and_skipped() -> None:
    profile = _risk_profile(np.random.default_rng(6))
    report = compare(profile, {"quantity": [1.0] * 10}, skip={"probability": "ensemble"})
    status = {f.feature: f.status for f in report.features}
    assert status["quantity"] == "too_few" and status["probability"] == "skipped" and report.status == "too_few"
    json.dumps(report.to_json(), allow_nan=False)  # NaN means are written as null


def test_profile_round_trips_and_refuses_other_files() -> None:
    profile = _risk_profile(np.random.default_rng(7))
    back = ReferenceProfile.loads(profile.dumps())
    assert back.to_json() == profile.to_json()
    assert len(profile.dumps()) < 20_000  # small: bins and 256 points per feature
    with pytest.raises(ProfileError, match="format-1"):
        ReferenceProfile.from_json({"format": 9, "task": "risk", "features": {}})
    with pytest.raises(ProfileError, match="not JSON"):
        ReferenceProfile.loads("{")
    with pytest.raises(ProfileError, match="no values for"):
        build_profile("demand", {"series_level": [1.0]})


def test_every_task_declares_inputs_and_a_prediction() -> None:
    for task, feats in FEATURES.items():
        roles = {role for role, _ in feats.values()}
        assert roles == {"input", "prediction"}, task
