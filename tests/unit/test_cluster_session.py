"""The Ray-session helper's log settings (ecomine.cluster.session), without starting Ray."""

from __future__ import annotations

import logging

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
