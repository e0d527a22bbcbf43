"""What the app builder checks before Serve starts a replica: versions resolve and verify,
and every deployment surges through a redeploy."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecomine.serve.config import AppArgs


def _registry(tmp_path: Path):
    from ecomine.registry import Registry

    files = tmp_path / "files"
    files.mkdir()
    (files / "weights.json").write_text('{"w": [1, 2, 3]}')
    reg = Registry(str(tmp_path / "registry"))
    return reg, reg.register("recommend", files, spec={}, data_fingerprint="x", metrics={})


def test_check_versions_refuses_a_tampered_version_naming_the_field_and_the_file(tmp_path: Path) -> None:
    from ecomine import storage
    from ecomine.serve.app import BuildError, check_versions

    reg, mv = _registry(tmp_path)
    args = AppArgs.model_validate({"registry": str(tmp_path / "registry"), "recommend": {"champion": {"version": mv.version}}})
    assert check_versions(args) == {"recommend.champion": [mv.version]}
    (storage.local_path(mv.uri) / "weights.json").write_text('{"w": [1, 2, 4]}')  # one byte differs
    with pytest.raises(BuildError, match=rf"recommend\.champion\.version: recommend/{mv.version}: file weights\.json .* has sha256"):
        check_versions(args)


def test_every_deployment_surges_through_a_redeploy_unless_told_not_to(tmp_path: Path) -> None:
    from ecomine.serve.app import build

    _, mv = _registry(tmp_path)
    base = {"registry": str(tmp_path / "registry"), "check_versions": False, "auth": {"api_keys_env": None}}
    split = build({**base, "recommend": {"champion": {"version": mv.version}}, "ingress": {"colocate": False}})
    ingress = split._bound_deployment
    assert ingress._deployment_config.max_surge_percent == 100
    arms = [d for d in split._bound_deployment.init_args[1]["recommend"].values()]
    assert all(a._bound_deployment._deployment_config.max_surge_percent == 100 for a in arms)
    off = build({**base, "recommend": {"champion": {"version": mv.version}, "resources": {"max_surge_percent": 0}},
                 "ingress": {"colocate": False, "max_surge_percent": 0}})
    assert off._bound_deployment._deployment_config.max_surge_percent == 0
