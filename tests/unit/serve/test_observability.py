"""Hashed user ids and the request log line (metrics need Ray and are exercised by the live apps)."""

from __future__ import annotations

import logging

from ecomine.serve.observability import DEFAULT_SALT, LOGGER_NAME, ServeMetrics, hash_user_id, log_event, resolve_salt


def test_user_hash_is_stable_salted_and_not_the_id() -> None:
    h = hash_user_id("12345", "salt-a")
    assert h == hash_user_id("12345", "salt-a") and h.startswith("u_") and len(h) == 18
    assert "12345" not in h and h != hash_user_id("12345", "salt-b") and h != hash_user_id("12346", "salt-a")
    assert hash_user_id(None, "s") is None
    assert resolve_salt("SALT", {"SALT": "x"}) == "x"


def test_a_missing_salt_fails_closed(caplog) -> None:
    import pytest

    with pytest.raises(ValueError, match=r"\$SALT is unset.*refusing to start"):
        resolve_salt("SALT", {}, required=True)
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        a, b = resolve_salt("SALT", {}), resolve_salt("SALT", {})
    assert a != b and DEFAULT_SALT not in (a, b) and len(a) == 32  # random per replica, never the public one
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all(w.startswith("ecomine.user_hash_salt_random") and "\n" not in w for w in warnings)


def test_log_line_format(caplog) -> None:
    with caplog.at_level(logging.INFO, logger=LOGGER_NAME):
        line = log_event("request", route="/v1/recommend", status=200, user=hash_user_id("alice", "s"), model=None,
                         note="two words")
    assert line.startswith("ecomine.request route=/v1/recommend status=200 user=u_")
    assert "model=" not in line and "note='two words'" in line and "alice" not in line
    assert caplog.records[-1].getMessage() == line


def _every_metric(m: ServeMetrics) -> list:
    return [
        m.request("/v1/recommend", 200, "recommend/v1", "champion", 3.0), m.fallback("/v1/recommend", "cold_start"),
        m.batch("recommend-champion", 4), m.shadow("recommend", 0.5), m.swap("recommend-champion"),
        m.reconfigure("recommend-champion", failed=True), m.reconfigure("recommend-champion", failed=False),
        m.shed("/v1/recommend"), m.drift("recommend-champion", "recommend", [{"feature": "n", "psi": 0.1, "ks": None}]),
    ]


def test_metrics_never_break_serving_outside_ray() -> None:
    import ray

    running = ray.is_initialized()  # the full suite runs this after the integration tests' session Ray
    m = ServeMetrics()
    assert _every_metric(m) == [None] * 9  # every metric records outside a Ray worker ...
    assert m._ready() and ray.is_initialized() == running  # ... and none of them starts Ray


class _NoMetricsBackend(ServeMetrics):
    """Ray's metrics failing to build (an old Ray, a worker without its metrics agent)."""

    def _make(self) -> None:
        raise RuntimeError("no metrics backend")


def test_metrics_that_cannot_be_built_are_skipped_not_raised() -> None:
    m = _NoMetricsBackend()
    assert _every_metric(m) == [None] * 9
    assert not m._ready()
