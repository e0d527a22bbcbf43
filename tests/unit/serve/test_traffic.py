"""The traffic split (sticky, weighted, salted), shadow sampling, answer agreement, the shadow record."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ecomine.serve.traffic import ShadowRecorder, TrafficPolicy, agreement, assign, bucket, routing_key, shadow_sampled

USERS = [f"user-{n}" for n in range(1000)]


@pytest.mark.parametrize("weight", [0.05, 0.1, 0.3, 0.5, 0.9])
def test_split_over_1000_users_is_within_5_points_of_the_weight(weight: float) -> None:
    policy = TrafficPolicy(mode="ab", weight=weight, salt="exp-1")
    share = sum(assign(routing_key(u), policy) == "challenger" for u in USERS) / len(USERS)
    assert abs(share - weight) <= 0.05, share


def test_split_is_sticky_and_nested_when_the_weight_grows() -> None:
    small, big = TrafficPolicy(weight=0.1, salt="s"), TrafficPolicy(weight=0.3, salt="s")
    for user in USERS[:200]:
        key = routing_key(user)
        assert assign(key, small) == assign(key, small)
        if assign(key, small) == "challenger":  # ramping a canary up never moves a user back
            assert assign(key, big) == "challenger"


def test_salt_redraws_the_split_and_extremes_are_exact() -> None:
    a = [assign(routing_key(u), TrafficPolicy(weight=0.5, salt="a")) for u in USERS]
    b = [assign(routing_key(u), TrafficPolicy(weight=0.5, salt="b")) for u in USERS]
    same = sum(x == y for x, y in zip(a, b)) / len(USERS)
    assert 0.4 < same < 0.6  # independent draws agree about half the time
    assert {assign(routing_key(u), TrafficPolicy(weight=0.0)) for u in USERS} == {"champion"}
    assert {assign(routing_key(u), TrafficPolicy(weight=1.0)) for u in USERS} == {"challenger"}


def test_bucket_is_uniform_and_deterministic() -> None:
    values = [bucket(u, "x") for u in USERS]
    assert values == [bucket(u, "x") for u in USERS]
    assert all(0.0 <= v < 1.0 for v in values)
    deciles = [sum(d / 10 <= v < (d + 1) / 10 for v in values) for d in range(10)]
    assert min(deciles) > 60 and max(deciles) < 140


def test_shadow_mode_always_serves_the_champion_and_samples_copies() -> None:
    policy = TrafficPolicy(mode="shadow", weight=0.25)
    assert {assign(routing_key(u), policy) for u in USERS} == {"champion"}
    copied = sum(shadow_sampled(routing_key(u), f"r{n}", policy) for n, u in enumerate(USERS)) / len(USERS)
    assert abs(copied - 0.25) < 0.05
    assert all(shadow_sampled("k", f"r{n}", TrafficPolicy(mode="shadow", weight=1.0)) for n in range(50))
    assert not shadow_sampled("k", "r", TrafficPolicy(mode="ab", weight=1.0))


def test_routing_key_uses_the_user_else_the_content() -> None:
    assert routing_key("u1", ["a"]) == routing_key("u1", ["b"]) == "u:u1"
    assert routing_key(None, ["a", "b"]) != routing_key(None, ["b", "a"])


def test_policy_validation() -> None:
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        TrafficPolicy(weight=1.5)
    with pytest.raises(ValidationError):
        TrafficPolicy(mode="blue-green")
    with pytest.raises(ValidationError, match="Extra inputs"):
        TrafficPolicy.model_validate({"mode": "ab", "wieght": 0.2})


def test_agreement_per_task() -> None:
    rec = lambda *ids: {"items": [{"item_id": i} for i in ids]}  # noqa: E731
    assert agreement("recommend", rec("a", "b", "c"), rec("c", "b", "x")) == pytest.approx(2 / 3)
    assert agreement("recommend", rec(), rec()) == 1.0
    dem = lambda v: {"quantiles": [0.1, 0.5, 0.9], "forecasts": [{"item_id": "a", "values": [[0], v, [9]]}]}  # noqa: E731
    assert agreement("demand", dem([2.0, 2.0]), dem([2.0, 2.0])) == 1.0
    assert agreement("demand", dem([2.0, 2.0]), dem([3.0, 1.0])) == pytest.approx(0.5)
    risk = lambda *f: {"results": [{"flagged": x} for x in f]}  # noqa: E731
    assert agreement("risk", risk(True, False), risk(True, True)) == 0.5
    with pytest.raises(ValueError):
        agreement("churn", {}, {})


def test_shadow_recorder_is_bounded_and_summarises() -> None:
    rec = ShadowRecorder(keep=3)
    for n in range(5):
        rec.record({"request_id": str(n), "agreement": n / 4})
    rec.record_failure({"request_id": "x", "error": "boom"})
    s = rec.summary()
    assert s["compared"] == 5 and s["failed"] == 1 and s["mean_agreement"] == pytest.approx(0.5)
    assert [r["request_id"] for r in s["recent"]] == ["3", "4", "x"]
