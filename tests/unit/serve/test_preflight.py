"""What a Serve config will serve, resolved before it is sent (ecomine.serve.preflight): no Ray, a folder registry."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from ecomine.registry import Registry
from ecomine.serve.control import ServeConfigError, read_serve_config, validate_serve_config
from ecomine.serve.preflight import pin_paths, preflight

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture()
def registry(tmp_path: Path) -> tuple[Path, str]:
    files = tmp_path / "files"
    files.mkdir()
    (files / "weights.json").write_text("{}")
    reg = Registry(str(tmp_path / "registry"))
    mv = reg.register("recommend", files, spec={}, data_fingerprint="x", metrics={})
    return tmp_path / "registry", mv.version


def _local(registry: Path, **recommend) -> dict:
    raw = copy.deepcopy(read_serve_config(REPO / "serve_configs" / "local.yaml"))
    raw["applications"][0]["args"]["registry"] = str(registry)
    raw["applications"][0]["args"]["recommend"].update(recommend)
    return raw


def test_an_unpromoted_registry_fails_naming_app_arm_stage_and_fix(registry) -> None:
    root, version = registry
    schema = validate_serve_config(_local(root), "local.yaml")
    with pytest.raises(ServeConfigError, match=r"^local.yaml: application 'ecomine': recommend\.champion\.version: stage "
                                               r"'production' of task 'recommend' holds no version; promote one first "
                                               r"\(ecomine registry promote VERSION production --task recommend\)$"):
        preflight(schema, "local.yaml")
    Registry(str(root)).promote("recommend", version, "production")
    (plan,) = preflight(schema, "local.yaml")
    assert plan.served == {"recommend.champion": [version]} and set(plan.skipped) == {"demand", "risk"}
    assert plan.lines()[0] == f"recommend.champion: production -> {version}"


def test_a_version_named_in_a_deployments_user_config_is_resolved_too(registry) -> None:
    root, version = registry
    Registry(str(root)).promote("recommend", version, "production")
    raw = _local(root)
    raw["applications"][0]["deployments"] = [
        {"name": "Ingress", "user_config": {"recommend-champion": {"version": "v20990101-000000-deadbeef"}}}]
    with pytest.raises(ServeConfigError, match=r"deployments\.Ingress\.user_config\.recommend-champion: .*v20990101-000000-deadbeef"):
        preflight(validate_serve_config(raw, "x.yaml"), "x.yaml")
    raw["applications"][0]["deployments"][0]["user_config"] = {"demand-champion": {"version": version}}
    with pytest.raises(ServeConfigError, match=r"demand is left out of this app \(if_missing: skip"):
        preflight(validate_serve_config(raw, "x.yaml"), "x.yaml")


def test_pin_paths_uses_this_shell_for_a_local_cluster_and_leaves_a_remote_one_alone(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ECOMINE_REGISTRY", "rel/registry")
    monkeypatch.chdir(tmp_path)
    raw = read_serve_config(REPO / "serve_configs" / "local.yaml")
    local = pin_paths(raw, "http://127.0.0.1:8265")
    assert local["applications"][0]["args"]["registry"] == str(tmp_path / "rel" / "registry")
    assert raw["applications"][0]["args"]["registry"] == "${ECOMINE_REGISTRY:-registry}"  # the input is untouched
    remote = pin_paths(raw, "http://10.1.2.3:8265")
    assert remote["applications"][0]["args"]["registry"] == "rel/registry"
    monkeypatch.setenv("ECOMINE_REGISTRY", "s3://bucket/reg")
    assert pin_paths(raw, None)["applications"][0]["args"]["registry"] == "s3://bucket/reg"


def test_a_failed_build_message_becomes_one_line() -> None:
    from ecomine.serve.control import failure_line

    ours = "Deploying app 'ecomine' failed with exception:\necomine: recommend.champion.version: task 'recommend' has no version 'x'"
    assert failure_line(ours) == "ecomine: recommend.champion.version: task 'recommend' has no version 'x'"
    theirs = "Deploying app 'a' failed with exception:\nTraceback (most recent call last):\n  File \"m.py\", line 1\nImportError: no module m"
    assert failure_line(theirs) == "ImportError: no module m"
    assert failure_line("replica died\\n twice") == "replica died\\n twice"
