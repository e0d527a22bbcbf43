"""PipelineSpec and DataWindow: what a retraining pipeline accepts, and the errors that name the field."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import yaml

from ecomine.specs import DataWindow, PipelineSpec, SpecError, SyntheticDataRef, load_spec
from ecomine.train.events import load_training_events

REPO = Path(__file__).resolve().parents[3]
TRAIN = {"kind": "train", "task": "recommend", "data": {"kind": "synthetic", "users": 60, "items": 20, "days": 90}}


def _pipeline(**kw):
    return PipelineSpec.model_validate({"name": "p", "task": "recommend", "train": TRAIN, **kw})


def test_the_shipped_pipeline_loads_and_resolves_its_train_spec():
    path = REPO / "pipelines" / "recommend.yaml"
    spec = load_spec(path, PipelineSpec)
    train = spec.train_spec(path)
    assert train.task == "recommend" and train.data.window == spec.window
    assert spec.gate_metric() == "ndcg@10" and [g.metric for g in spec.guards()] == ["hr@20"]


def test_window_and_data_replace_the_train_spec_fields():
    spec = _pipeline(window={"last_days": 30, "until": "2023-03-01"}, data={"kind": "synthetic", "users": 70, "items": 20},
                     registry="/tmp/elsewhere")
    train = spec.train_spec()
    assert train.data.users == 70 and train.data.window.last_days == 30 and train.run.registry == "/tmp/elsewhere"


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"gate": {"metric": "ndcg@7"}}, "gate.metric: task recommend does not report 'ndcg@7'"),
        ({"gate": {"guards": [{"metric": "auc"}]}}, "gate.guards[0].metric"),
        ({"window": {"since": "2023-02-01", "last_days": 3}}, "since or last_days"),
        ({"window": {"since": "2023-02-01", "until": "2023-01-01"}}, "must be before until"),
        ({"warm_start": "yesterday"}, "warm_start"),
        ({"name": "bad name"}, "pipeline name"),
    ],
)
def test_bad_pipelines_name_the_field(extra, needle, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"kind": "pipeline", "name": "p", "task": "recommend", "train": TRAIN, **extra}))
    with pytest.raises(SpecError, match="p.yaml") as err:
        load_spec(path, PipelineSpec)
    assert needle in str(err.value)


def test_a_task_the_gate_cannot_score_is_refused_up_front():
    with pytest.raises(ValueError, match="scores held-out units of \\['recommend', 'risk'\\] only"):
        PipelineSpec.model_validate({"name": "p", "task": "demand", "train": {**TRAIN, "task": "demand"}})


def test_a_train_file_of_another_task_names_the_file(tmp_path):
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({**TRAIN, "task": "risk"}))
    spec = PipelineSpec.model_validate({"name": "p", "task": "recommend", "train": "t.yaml"})
    with pytest.raises(SpecError, match="train.task 'risk' does not match task 'recommend'"):
        spec.train_spec(tmp_path / "p.yaml")


def test_the_window_keeps_only_its_days_and_changes_the_fingerprint():
    ref = SyntheticDataRef(kind="synthetic", users=60, items=20, days=90)
    events, fp = load_training_events(ref)
    until = (events["ts"].max().date())
    windowed, fp2 = load_training_events(ref.model_copy(update={"window": DataWindow(last_days=20, until=until)}))
    assert 0 < windowed.height < events.height and fp2 != fp
    assert windowed["ts"].max().date() < until
    assert (until - windowed["ts"].min().date()).days <= 20


def test_an_empty_window_is_a_spec_error_naming_it():
    ref = SyntheticDataRef(kind="synthetic", users=60, items=20, days=90, window=DataWindow(until=date(2001, 1, 1)))
    with pytest.raises(SpecError, match=r"data.window \(start .. 2001-01-01\): no events"):
        load_training_events(ref)
