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


def test_metrics_never_break_serving_outside_ray() -> None:
    m = ServeMetrics()
    m.request("/v1/recommend", 200, "recommend/v1", "champion", 3.0)  # no Ray here: silently skipped
    m.batch("recommend-champion", 4)
