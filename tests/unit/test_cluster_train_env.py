"""ecomine.cluster.train_env: the Ray Train settings a run's `fit()` carries, and a user's own value winning."""

from __future__ import annotations

import os

from ecomine.cluster.train_env import POLL_ENV, TRAIN_POLL_S, train_env


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


def test_ray_train_still_reads_and_propagates_those_variables() -> None:
    """The names are Ray's, not ours (the poll here, the preemption watcher in cluster.session.ensure_ray):
    if Ray renames one, this fails instead of the setting silently doing nothing."""
    from ray.train.v2._internal import constants

    assert POLL_ENV == constants.HEALTH_CHECK_INTERVAL_S_ENV_VAR and POLL_ENV in constants.ENV_VARS_TO_PROPAGATE
    assert constants.ENABLE_PREEMPTION_WATCHER_ENV_VAR == "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"
