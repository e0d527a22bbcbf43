"""The Ray environment ecomine serves under (ecomine.serve.launch): defaults on, the caller's values win."""

from __future__ import annotations

from ecomine.serve.launch import SERVE_ENV, apply_serve_env, serve_env


def test_defaults_turn_on_ray_serves_high_throughput_mode() -> None:
    assert serve_env({}) == {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1"}


def test_a_value_already_in_the_environment_wins() -> None:
    env = {"RAY_SERVE_ENABLE_HA_PROXY": "0", "PATH": "/bin"}
    chosen = apply_serve_env(env)
    assert chosen == {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "0"}
    assert env == {**chosen, "PATH": "/bin"}
    assert set(SERVE_ENV) == set(chosen)
