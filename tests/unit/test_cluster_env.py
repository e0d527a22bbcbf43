"""ecomine.cluster.env: the variables ecomine sets for Ray's processes - set for a scope and put back,
a user's own value winning - and that Ray still reads them by these names."""

from __future__ import annotations

import os

from ecomine.cluster.env import ONE_NODE_ENV, POLL_ENV, PREEMPTION_ENV, TRAIN_POLL_S, scoped_env, train_env


def test_the_poll_interval_is_set_for_the_run_and_gone_after(monkeypatch) -> None:
    monkeypatch.delenv(POLL_ENV, raising=False)
    with train_env():
        assert float(os.environ[POLL_ENV]) == TRAIN_POLL_S < 2.0  # Ray's own default is 2 s
    assert POLL_ENV not in os.environ


def test_a_value_the_user_exported_wins_and_stays(monkeypatch) -> None:
    monkeypatch.setenv(POLL_ENV, "5")
    with train_env():
        assert os.environ[POLL_ENV] == "5"
    assert os.environ[POLL_ENV] == "5"


def test_a_forced_value_replaces_the_users_and_puts_it_back(monkeypatch) -> None:
    monkeypatch.setenv("ECOMINE_TEST_SCOPED", "theirs")
    monkeypatch.delenv("ECOMINE_TEST_UNSET", raising=False)
    with scoped_env({"ECOMINE_TEST_SCOPED": "ours", "ECOMINE_TEST_UNSET": "x"}, exported_wins=False):
        assert os.environ["ECOMINE_TEST_SCOPED"] == "ours" and os.environ["ECOMINE_TEST_UNSET"] == "x"
    assert os.environ["ECOMINE_TEST_SCOPED"] == "theirs" and "ECOMINE_TEST_UNSET" not in os.environ


def test_ray_train_still_reads_and_propagates_those_variables() -> None:
    """The names are Ray's, not ours: if Ray renames one, this fails instead of the setting silently doing nothing."""
    from ray.train.v2._internal import constants

    assert POLL_ENV == constants.HEALTH_CHECK_INTERVAL_S_ENV_VAR and POLL_ENV in constants.ENV_VARS_TO_PROPAGATE
    assert PREEMPTION_ENV == constants.ENABLE_PREEMPTION_WATCHER_ENV_VAR and ONE_NODE_ENV == {PREEMPTION_ENV: "0"}
