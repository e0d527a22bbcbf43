"""AppArgs validation, and every YAML in serve_configs/ through the loader the CLI uses.

The YAML walk imports ``ray.serve.schema`` (Ray's own ServeDeploySchema) but starts nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from ecomine.serve.config import AppArgs, ModelResources, TaskArgs, deployment_name

REPO = Path(__file__).resolve().parents[3]
# Serve configs (a Serve config or a RayService carrying one); the retrain RayCronJob is tested in tests/unit/retrain.
CONFIGS = sorted(p for p in (REPO / "serve_configs").rglob("*.yaml") if "retrain" not in p.name)
MINIMAL = {"registry": "registry", "recommend": {"champion": {"version": "latest"}}}


def _errors(data: dict) -> list[str]:
    with pytest.raises(ValidationError) as e:
        AppArgs.model_validate(data)
    return [".".join(str(p) for p in err["loc"]) + ": " + err["msg"] for err in e.value.errors()]


def test_minimal_args_and_the_user_config_they_give() -> None:
    args = AppArgs.model_validate(MINIMAL)
    assert list(args.tasks()) == ["recommend"] and args.demand is None and args.risk is None
    assert args.loader("recommend") == "ecomine.models.recommend:load_recommender"
    assert args.recommend.settings("champion").model_dump(exclude_none=True) == {
        "version": "latest", "max_batch_size": 32, "batch_wait_timeout_s": 0.0,
    }
    assert args.recommend.resources.num_cpus < 1  # fractional by default (shared 2-core machines)
    assert deployment_name("recommend", "champion") == "recommend-champion"


@pytest.mark.parametrize(
    ("recommend", "expected"),
    [
        ({"champion": {}}, "recommend.champion: Value error, set exactly one of 'version'"),
        ({"champion": {"version": "v1", "members": [{"version": "a"}, {"version": "b"}]}}, "set exactly one"),
        ({"champion": {"members": [{"version": "a"}]}}, "recommend.champion.members: List should have at least 2"),
        ({"champion": {"version": "Prod!"}}, "recommend.champion.version: Value error, 'Prod!' is not a version id"),
        ({"champion": {"version": "a"}, "challenger": {"version": "b"}}, "a challenger needs a traffic policy"),
        ({"champion": {"version": "a"}, "traffic": {"mode": "ab"}}, "there is no challenger"),
        ({"champion": {"version": "a"}, "batching": {"max_batch_size": 128}}, "exceeds resources.max_ongoing_requests"),
        ({"champion": {"version": "a"}, "loader": "not a path"}, "must be 'package.module:function'"),
        ({"champion": {"version": "a"}, "resources": {"num_replicas": 0}}, "num_replicas must be >= 1"),
        ({"champion": {"version": "a"}, "champoin": {}}, "recommend.champoin: Extra inputs are not permitted"),
        ({"champion": {"version": "a"}, "traffic": None, "challenger": {"members": [{"version": "a", "weight": 0}]}},
         "greater than 0"),
    ],
)
def test_bad_args_name_the_field(recommend: dict, expected: str) -> None:
    errors = _errors({"registry": "r", "recommend": recommend})
    assert any(expected in e for e in errors), errors


def test_recommend_is_required_and_limits_are_checked() -> None:
    assert any(e.startswith("recommend: Field required") for e in _errors({"registry": "r"}))
    assert any("limits.max_k" in e for e in _errors({**MINIMAL, "limits": {"max_k": 0}}))
    assert any("auth.api_keys" in e for e in _errors({**MINIMAL, "auth": {"api_keys": "one-key"}}))


def test_resources_become_ray_actor_options() -> None:
    assert ModelResources().actor_options() == {"num_cpus": 0.25}
    opts = ModelResources(num_cpus=1, num_gpus=0.5, runtime_env={"env_vars": {"A": "1"}}).actor_options()
    assert opts == {"num_cpus": 1, "num_gpus": 0.5, "runtime_env": {"env_vars": {"A": "1"}}}
    with pytest.raises(ValidationError, match="autoscaling_config replaces num_replicas"):
        ModelResources(num_replicas=3, autoscaling_config={"min_replicas": 1, "max_replicas": 4})
    task = TaskArgs.model_validate({"champion": {"members": [{"version": "a"}, {"version": "b", "weight": 3}]}})
    assert task.settings("champion").members[1].weight == 3


def test_inline_api_keys_are_hashes_only_and_never_echoed() -> None:
    from ecomine.serve.security import key_hash

    hashed = key_hash("s3cr3t")
    args = AppArgs.model_validate({**MINIMAL, "auth": {"api_keys": [hashed]}})
    assert hashed not in args.model_dump_json() and hashed not in repr(args)
    with pytest.raises(ValidationError) as e:
        AppArgs.model_validate({**MINIMAL, "auth": {"api_keys": ["s3cr3t"]}})
    assert "auth.api_keys" in _errors({**MINIMAL, "auth": {"api_keys": ["s3cr3t"]}})[0]
    assert "not a sha256 hash" in str(e.value) and "s3cr3t" not in str(e.value)  # the error hides the input


def test_production_configs_refuse_to_start_without_the_salt() -> None:
    from ecomine.serve.control import read_serve_config

    for name in ("production.yaml", "kuberay-rayservice.yaml"):
        args = AppArgs.model_validate(read_serve_config(REPO / "serve_configs" / name)["applications"][0]["args"])
        assert args.observability.require_salt is True, name
    local = AppArgs.model_validate(read_serve_config(REPO / "serve_configs" / "local.yaml")["applications"][0]["args"])
    assert local.observability.require_salt is False


# --------------------------------------------------------------------------- the shipped configs


def test_there_are_the_three_configs() -> None:
    assert {p.name for p in CONFIGS} >= {"local.yaml", "production.yaml", "kuberay-rayservice.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_config_validates_against_rays_schema_and_app_args(path: Path) -> None:
    from ray.serve.schema import ServeDeploySchema

    from ecomine.serve.control import ECOMINE_IMPORT_PATH, load_serve_config, read_serve_config

    schema = load_serve_config(path)  # what `ecomine serve up/check` does first
    assert isinstance(schema, ServeDeploySchema)
    raw = read_serve_config(path)
    ServeDeploySchema.model_validate(raw)
    apps = [a for a in schema.applications if a.import_path == ECOMINE_IMPORT_PATH]
    assert apps, f"{path.name} runs no ecomine application"
    for app in apps:
        args = AppArgs.model_validate(app.args)
        names = {d.name for d in app.deployments}
        known = {"Ingress"} | {deployment_name(t, arm) for t, task in args.tasks().items() for arm in task.arms()}
        assert names <= known, f"{path.name}: deployments {names - known} are not in the app"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_config_says_what_it_is_and_how_to_run_it(path: Path) -> None:
    head = path.read_text().splitlines()[:6]
    assert head[0].startswith("# ") and any("ecomine serve" in line or "kubectl" in line for line in head), head


def test_local_config_is_the_embedded_default(tmp_path: Path) -> None:
    from ecomine.serve.control import load_serve_config

    app = load_serve_config(REPO / "serve_configs" / "local.yaml").applications[0]
    args = AppArgs.model_validate(app.args)
    assert args.registry == "${ECOMINE_REGISTRY:-registry}" and args.recommend.champion.version == "production"
    assert args.recommend.resources.num_cpus < 1 and args.ingress.num_cpus < 1
    # demand and risk are served when the registry has them, left out (503) when it does not
    assert args.demand.if_missing == "skip" and args.risk.if_missing == "skip"


def test_every_shipped_config_serves_a_stage_never_latest() -> None:
    """An unpromoted version must not reach users by default: every arm names a stage or pins a version."""
    from ecomine.serve.control import ECOMINE_IMPORT_PATH, read_serve_config

    for path in CONFIGS:
        for app in read_serve_config(path)["applications"]:
            if app["import_path"] != ECOMINE_IMPORT_PATH:
                continue
            args = AppArgs.model_validate(app["args"])
            refs = {m.version for t in args.tasks().values() for a in t.arms().values() for m in a.refs()}
            assert refs and "latest" not in refs and "production" in refs, (path.name, refs)


def test_if_missing_skip_leaves_out_only_what_the_registry_lacks(tmp_path: Path) -> None:
    from ecomine.registry import Registry
    from ecomine.serve.app import check_versions, drop_missing_optional

    files = tmp_path / "files"
    files.mkdir()
    (files / "weights.json").write_text("{}")
    reg = Registry(str(tmp_path / "registry"))
    rec = reg.register("recommend", files, spec={}, data_fingerprint="x", metrics={})
    risk = reg.register("risk", files, spec={}, data_fingerprint="x", metrics={})
    args = AppArgs.model_validate({
        **MINIMAL, "registry": str(tmp_path / "registry"),
        "demand": {"champion": {"version": "latest"}, "if_missing": "skip"},
        "risk": {"champion": {"version": "latest"}, "if_missing": "skip"},
    })
    kept, why = drop_missing_optional(args)
    assert list(kept.tasks()) == ["recommend", "risk"] and set(why) == {"demand"} and "demand" in why["demand"]
    assert check_versions(kept) == {"recommend.champion": [rec.version], "risk.champion": [risk.version]}
    strict = AppArgs.model_validate({**args.model_dump(), "demand": {"champion": {"version": "latest"}}})
    assert drop_missing_optional(strict)[1] == {}  # if_missing: error (the default) keeps it, and the build fails


def test_kuberay_carries_the_production_config() -> None:
    from ecomine.serve.control import read_serve_config

    prod = read_serve_config(REPO / "serve_configs" / "production.yaml")
    assert read_serve_config(REPO / "serve_configs" / "kuberay-rayservice.yaml") == prod
    outer = yaml.safe_load((REPO / "serve_configs" / "kuberay-rayservice.yaml").read_text())
    assert outer["apiVersion"] == "ray.io/v1" and outer["kind"] == "RayService"
    app = prod["applications"][0]
    assert app["args"]["registry"].startswith("s3://")
    assert all("autoscaling_config" in d for d in app["deployments"])
    assert prod["http_options"]["request_timeout_s"] > 0


def test_a_broken_config_names_the_file_and_field(tmp_path: Path) -> None:
    from ecomine.serve.control import ServeConfigError, load_serve_config

    raw = yaml.safe_load((REPO / "serve_configs" / "local.yaml").read_text())
    raw["applications"][0]["args"]["recommend"]["champion"] = {"version": "latest", "members": []}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ServeConfigError, match=r"bad\.yaml: application 'ecomine': applications\.0\.args\.recommend\.champion"):
        load_serve_config(bad)
    raw["applications"][0]["args"]["recommend"]["champion"] = {"version": "latest"}
    raw["http_options"]["port"] = "eighty"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ServeConfigError, match=r"not a valid Serve config: http_options\.port"):
        load_serve_config(bad)
    with pytest.raises(ServeConfigError, match="config file not found"):
        load_serve_config(tmp_path / "missing.yaml")


def test_colocated_apps_carry_every_arm_in_the_ingress_user_config() -> None:
    from ecomine.serve.arm_options import arm_init_kwargs, colocated_user_config

    args = AppArgs.model_validate({
        "registry": "/r",
        "recommend": {"champion": {"version": "a"}, "challenger": {"members": [{"version": "a"}, {"version": "b"}]},
                      "traffic": {"mode": "shadow"}, "catalogue_uri": "/c.parquet"},
        "risk": {"champion": {"version": "production"}, "threshold": 0.4},
        "ingress": {"colocate": True},
    })
    config = colocated_user_config(args)
    assert set(config) == {"recommend-champion", "recommend-challenger", "risk-champion"}
    assert config["recommend-challenger"]["members"][1] == {"version": "b", "weight": 1.0}
    assert arm_init_kwargs(args, "recommend", "champion")["catalogue_uri"] == "/c.parquet"
    assert arm_init_kwargs(args, "risk", "champion")["threshold"] == 0.4
    assert "catalogue_uri" not in arm_init_kwargs(args, "risk", "champion")


def test_admission_limit_is_what_the_models_hold_and_below_the_ingress_queue() -> None:
    from ecomine.serve.arm_options import admission_limit
    from ecomine.serve.config import AppArgs

    def args(**over):
        base = {"registry": "r", "recommend": {"champion": {"version": "latest"}, "batching": {"max_batch_size": 4},
                                                "resources": {"max_ongoing_requests": 4, "num_replicas": 3}}}
        base.update(over)
        return AppArgs.model_validate(base)

    assert admission_limit(args()) == 12  # 4 in flight x 3 replicas, one ingress replica
    assert admission_limit(args(ingress={"num_replicas": 2})) == 6  # shared by two ingress replicas
    one = {"champion": {"version": "latest"}, "batching": {"max_batch_size": 4}, "resources": {"max_ongoing_requests": 4}}
    # colocated arms scale with the ingress (their own num_replicas is refused): the arms of each ingress replica
    assert admission_limit(args(ingress={"colocate": True}, recommend=one)) == 4
    assert admission_limit(args(ingress={"max_ongoing_requests": 8})) == 7  # always below Serve's own queue
    assert admission_limit(args(ingress={"max_in_flight": 5})) == 5
    assert admission_limit(args(ingress={"max_in_flight": 0})) is None  # off
    auto = {"champion": {"version": "latest"}, "batching": {"max_batch_size": 4},
            "resources": {"max_ongoing_requests": 8, "autoscaling_config": {"min_replicas": 1, "max_replicas": 4}}}
    assert admission_limit(args(recommend=auto)) == 32
    with pytest.raises(ValueError, match=r"max_in_flight \(256\) must be below max_ongoing_requests \(256\)"):
        args(ingress={"max_in_flight": 256})


def test_hash_key_prints_what_auth_api_keys_takes() -> None:
    from typer.testing import CliRunner

    from ecomine.serve.security import key_hash
    from ecomine.cli.serve import serve_app

    out = CliRunner().invoke(serve_app, ["hash-key"], input="my-key\n")
    assert out.exit_code == 0 and out.output.strip() == key_hash("my-key")
    assert AppArgs.model_validate({**MINIMAL, "auth": {"api_keys": [out.output.strip()]}})


def test_live_args_default_off_and_refuse_what_their_store_cannot_do() -> None:
    from ecomine.serve.config import AppArgs

    base = {"registry": "r", "recommend": {"champion": {"version": "latest"}}}
    assert AppArgs.model_validate(base).live.store == "off"
    on = AppArgs.model_validate({**base, "live": {"store": "sqlite", "log_uri": "s3://b/events"}})
    assert on.live.history_events == ["view", "click", "cart", "purchase"]  # returns are logged, not read
    for live, field in [({"store": "sqlite", "ttl_days": 1}, "ttl_days"), ({"log_uri": "x"}, "log_uri"),
                        ({"store": "sqlite", "history_events": ["wish"]}, "history_events"),
                        ({"store": "postgres"}, "store")]:
        with pytest.raises(Exception, match=field):
            AppArgs.model_validate({**base, "live": live})
    with pytest.raises(Exception, match="max_events"):
        AppArgs.model_validate({**base, "limits": {"max_events": 5000}})


def test_the_live_store_needs_its_redis_url_in_the_environment(monkeypatch) -> None:
    from ecomine.serve.live_args import LiveArgs
    from ecomine.serve.live_events import open_store

    monkeypatch.delenv("ECOMINE_REDIS_URL", raising=False)
    with pytest.raises(ValueError, match=r"live.redis_url_env: \$ECOMINE_REDIS_URL is unset"):
        open_store(LiveArgs(store="redis"))
