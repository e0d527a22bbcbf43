"""Specs: YAML load errors name the field path and value; dumps round-trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ecomine.datasets import resolve_data_spec_path
from ecomine.specs import DataSpec, SpecError, dump_spec, load_spec, spec_models

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "spec.yaml"
    p.write_text(text)
    return p


def test_online_retail_spec_round_trips(tmp_path: Path) -> None:
    spec = load_spec(resolve_data_spec_path("online-retail"), DataSpec)
    assert len(spec.sources) == 2
    again = load_spec(_write(tmp_path, dump_spec(spec)), DataSpec)
    assert again == spec
    assert dump_spec(again) == dump_spec(spec)


def test_error_names_field_path_and_value(tmp_path: Path) -> None:
    p = _write(tmp_path, """
sources:
  - uri: x.csv
    columns: {user_id: u, item_id: i, ts: t}
    format: xlsx
""")
    with pytest.raises(SpecError) as exc:
        load_spec(p, DataSpec)
    msg = str(exc.value)
    assert str(p) in msg and "sources.0.format" in msg and "'xlsx'" in msg


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    p = _write(tmp_path, "sources: [{uri: x.csv, columns: {user_id: u, item_id: i, ts: t}}]\ncleaning: {drop_dupes: true}\n")
    with pytest.raises(SpecError, match=r"cleaning\.drop_dupes: Extra inputs are not permitted"):
        load_spec(p, DataSpec)


def test_missing_required_mapping(tmp_path: Path) -> None:
    p = _write(tmp_path, "sources: [{uri: x.csv, columns: {user_id: u, item_id: i}}]\n")
    with pytest.raises(SpecError, match=r"sources\.0\.columns.*must map \['ts'\]"):
        load_spec(p, DataSpec)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "spec file is empty"),
        ("- a\n- b\n", "mapping at the top level"),
        ("sources: [\n", "not valid YAML"),
    ],
)
def test_unusable_yaml(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(SpecError, match=expected):
        load_spec(_write(tmp_path, text), DataSpec)


def test_condition_needs_exactly_one_test(tmp_path: Path) -> None:
    p = _write(tmp_path, """
sources: [{uri: x.csv, columns: {user_id: u, item_id: i, ts: t}}]
event_rules: [{when: {column: order_id, starts_with: C, equals: D}, event: return}]
""")
    with pytest.raises(SpecError, match=r"event_rules\.0\.when.*exactly one test"):
        load_spec(p, DataSpec)


def test_every_packaged_yaml_loads() -> None:
    """Walk the package recursively: every shipped YAML loads through load_spec."""
    models = spec_models()
    found = sorted((REPO / "ecomine").rglob("*.yaml"))
    assert found, "no packaged YAML found"
    for path in found:
        kind = yaml.safe_load(path.read_text()).get("kind", "data")
        load_spec(path, models[kind])


def test_json_schema_for_every_kind_is_an_object_schema() -> None:
    for name, model in spec_models().items():
        schema = model.model_json_schema(by_alias=True)
        assert schema["type"] == "object", name


def test_every_shipped_train_config_loads_and_round_trips() -> None:
    import yaml

    from ecomine.specs import TrainSpec, dump_spec, load_spec

    found = {p.stem: p for p in (REPO / "train_configs").glob("*.yaml")}
    assert {"recommend", "demand", "risk"} <= set(found)
    for name in ("recommend", "demand", "risk"):
        spec = load_spec(found[name], TrainSpec)
        assert spec.task == name and spec.model.kind == name
        again = TrainSpec.model_validate(yaml.safe_load(dump_spec(spec)))
        assert again == spec


def _yaml_as_an_editor_reads_it(path: Path):
    """The YAML's values as JSON types: dates stay strings (as a YAML language server sees them)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
        for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return yaml.load(path.read_text(), Loader=Loader)


SHIPPED = {
    "data": ["ecomine/datasets/*.yaml"], "train": ["train_configs/*.yaml"], "tune": ["tune/*.yaml"],
    "ensemble": ["ensembles/*.yaml"], "pipeline": ["pipelines/*.yaml"], "score": ["score_configs/*.yaml"],
}


@pytest.mark.parametrize("kind", sorted(SHIPPED))
def test_json_schema_accepts_every_shipped_example_and_refuses_bad_ones(kind: str) -> None:
    """The schema `ecomine schema` prints is the one an editor checks YAML against: it must accept
    every shipped file of its kind, and refuse an unknown key and a value of the wrong type."""
    import jsonschema

    model = spec_models()[kind]
    schema = model.model_json_schema(by_alias=True)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    files = sorted(p for pattern in SHIPPED[kind] for p in REPO.glob(pattern))
    assert files, kind
    for path in files:
        doc = _yaml_as_an_editor_reads_it(path)
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
        assert errors == [], (path.name, errors[:3])
        assert list(validator.iter_errors({**doc, "no_such_key": 1})), (path.name, "unknown key accepted")
        first = next(k for k, v in doc.items() if isinstance(v, (dict, list)))
        assert list(validator.iter_errors({**doc, first: 12345})), (path.name, f"{first}: 12345 accepted")


def test_overrides_index_lists_and_name_a_bad_path() -> None:
    from ecomine.specs import apply_overrides

    raw = {"members": [{"campaign": "a"}, {"version": "v1"}], "fit": None, "name": "x"}
    out = apply_overrides(raw, {"members.0.campaign": "b", "members.-1.version": "v2", "fit.method": "uniform"})
    assert out["members"] == [{"campaign": "b"}, {"version": "v2"}] and out["fit"] == {"method": "uniform"}
    assert raw["members"][0]["campaign"] == "a"  # the input is left as it was
    with pytest.raises(SpecError, match=r"override 'members.5.campaign': '5' is not an index of a list of 2"):
        apply_overrides(raw, {"members.5.campaign": "c"})
    with pytest.raises(SpecError, match=r"override 'name.first.x': 'name' is not a mapping or a list"):
        apply_overrides(raw, {"name.first.x": 1})


def test_set_pairs_parse_as_yaml_and_a_pair_without_equals_is_named() -> None:
    from ecomine.specs import parse_overrides

    assert parse_overrides(["optim.lr=0.002", "data={kind: spec, spec: amazon-toys}", "eval.ks=[5, 10]"]) == {
        "optim.lr": 0.002, "data": {"kind": "spec", "spec": "amazon-toys"}, "eval.ks": [5, 10]}
    with pytest.raises(SpecError, match=r"--set 'optim.lr': expected dotted.path=value"):
        parse_overrides(["optim.lr"])


def test_the_train_registry_honours_ecomine_registry_as_every_verb_does(monkeypatch) -> None:
    from ecomine.specs.train import RunSpec

    monkeypatch.delenv("ECOMINE_REGISTRY", raising=False)
    assert RunSpec().registry == "registry"
    monkeypatch.setenv("ECOMINE_REGISTRY", "/srv/models")
    assert RunSpec().registry == "/srv/models"
    assert RunSpec(registry="${ECOMINE_REGISTRY:-registry}").registry == "/srv/models"
    assert RunSpec(registry="s3://b/r").registry == "s3://b/r"  # an explicit root wins


def test_every_task_has_named_presets_and_the_spec_wins() -> None:
    from ecomine.specs.risk_model import RISK_PRESETS, RiskModelSpec
    from ecomine.specs.train import DEMAND_PRESETS, RECOMMEND_PRESETS

    assert set(RECOMMEND_PRESETS) == {"recommend_small", "recommend_base"}
    assert set(DEMAND_PRESETS) == {"demand_small", "demand_base"} and set(RISK_PRESETS) == {"risk_small", "risk_base"}
    base = RiskModelSpec(preset="risk_base")
    assert base.mode == "lora" and base.max_length == 128 and base.hidden == [256]
    assert RiskModelSpec(preset="risk_base", max_length=96).max_length == 96
    assert RiskModelSpec().mode == RiskModelSpec(preset="risk_small").mode == "frozen"


def test_a_daily_training_stride_of_whole_weeks_is_refused_naming_it() -> None:
    from ecomine.specs.train import DemandModelSpec

    assert DemandModelSpec(freq="1d", eval={"train_stride": 2}).eval.train_stride == 2
    assert DemandModelSpec(freq="1w", eval={"train_stride": 14}).eval.train_stride == 14  # weeks have no weekday
    with pytest.raises(ValueError, match=r"eval.train_stride \(14\): a multiple of 7 on daily data"):
        DemandModelSpec(freq="1d", eval={"train_stride": 14})
