"""The Ray environment ecomine serves under (ecomine.serve.launch): defaults on, the caller's values win."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecomine.serve.control import read_serve_config
from ecomine.serve.launch import SERVE_ENV, SERVE_LOGGING, apply_serve_env, serve_env

CONFIGS = Path(__file__).resolve().parents[3] / "serve_configs"


def test_defaults_turn_on_ray_serves_high_throughput_mode() -> None:
    assert serve_env({}) == {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1"}


def test_a_value_already_in_the_environment_wins() -> None:
    env = {"RAY_SERVE_ENABLE_HA_PROXY": "0", "PATH": "/bin"}
    chosen = apply_serve_env(env)
    assert chosen == {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "0"}
    assert env == {**chosen, "PATH": "/bin"}
    assert set(SERVE_ENV) == set(chosen)


@pytest.mark.parametrize("name", ["local.yaml", "production.yaml", "kuberay-rayservice.yaml"])
def test_every_shipped_config_logs_as_the_apps_ecomine_runs_itself(name: str) -> None:
    # the demo and the serving benchmarks run their apps with SERVE_LOGGING (serve.run); a shipped config that
    # said otherwise would make the benchmarks measure something `ecomine serve up` does not run
    logging_config = read_serve_config(CONFIGS / name)["logging_config"]
    assert {k: logging_config.get(k) for k in SERVE_LOGGING} == SERVE_LOGGING, name
