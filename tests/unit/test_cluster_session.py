"""The Ray-session helper (ecomine.cluster.session) without starting Ray: its log settings, and how an error raised in an actor comes out."""

from __future__ import annotations

import logging

import pytest

from ecomine.cluster.session import quiet_token_notice

TOKEN_LOGGER = "ray._private.authentication.authentication_token_setup"


def test_the_token_enabled_notice_is_dropped_and_nothing_else(caplog) -> None:
    quiet_token_notice()
    quiet_token_notice()  # idempotent: one filter
    log = logging.getLogger(TOKEN_LOGGER)
    assert len(log.filters) == 1
    with caplog.at_level(logging.WARNING, logger=TOKEN_LOGGER):
        log.warning("Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out.")
        log.warning("Token authentication is disabled for this Ray cluster. Anyone with network access ...")
    assert [r.getMessage()[:40] for r in caplog.records] == ["Token authentication is disabled for thi"]


def test_an_error_of_ours_raised_in_an_actor_comes_out_as_one_line_of_ours() -> None:
    from ray.exceptions import RayTaskError

    from ecomine.cluster.session import surfaced

    class Refused(ValueError):
        pass

    # what Ray (and Ray Data, which appends its retry advice) hands back for an actor's Refused: a RayTaskError
    # that is also a Refused, whose message is Ray's traceback
    cause = Refused("horizon: 7 is too far\nFailed to apply UDF transform after 1/1 attempts (total backoff 0.0s).")
    wrapped = RayTaskError("MapWorker.submit", "Traceback (most recent call last): ...", cause).as_instanceof_cause()
    assert isinstance(wrapped, Refused)
    with pytest.raises(Refused) as got, surfaced((Refused,), Refused):
        raise wrapped
    assert str(got.value) == "horizon: 7 is too far" and not isinstance(got.value, RayTaskError)
    with pytest.raises(Refused) as plain, surfaced((Refused,), Refused):
        raise Refused("ours, raised here")
    assert str(plain.value) == "ours, raised here"
