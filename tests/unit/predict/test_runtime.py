"""The model runtime without Ray: building states, ensembles, batches and answers, on tiny models.

The recommend model here is a numpy stand-in with the loader protocol's ``score``; the real
model and the registry path are exercised in tests/integration/serve.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from ecomine.models.recommend import ItemVocab
from ecomine.predict.ranking import Rejected
from ecomine.predict.answers import demand_job, finish_demand, finish_recommend, finish_risk, plan_recommend
from ecomine.predict.runtime import build_state, import_loader, run_jobs
from ecomine.predict.state import Member, ModelLoadError

ITEMS = ["a", "b", "c", "d", "e"]


class LastItemModel:
    """Logits: item (last + 1) scores 3, every other item 1; padding -inf."""

    def __init__(self, shift: int = 1) -> None:
        self.shift = shift

    def score(self, histories, device="cpu"):
        out = np.ones((len(histories), len(ITEMS) + 1))
        out[:, 0] = -np.inf
        for r, h in enumerate(histories):
            if len(h):
                out[r, (int(h[-1]) - 1 + self.shift) % len(ITEMS) + 1] = 3.0
        return out


def member(version: str, obj, weight: float = 1.0, spec=None) -> Member:
    return Member(version, version, weight, datetime.now(timezone.utc), [], obj, spec or {})


def rec_state(*members: Member):
    return build_state("recommend", list(members))


def vocab(items=ITEMS) -> ItemVocab:
    return ItemVocab(items=list(items), texts=[f"title {i}" for i in items])


def test_single_model_answer_with_exclusions() -> None:
    state = rec_state(member("v1", (LastItemModel(), vocab()), spec={"model": {"exclude_history": True}}))
    assert state.label == "recommend/v1" and state.extra["device"] == "cpu"
    job, ctx = plan_recommend(state, {"history": ["a", "zz"], "k": 2, "exclude": ["e"]})
    assert job.tolist() == [1] and ctx["unknown"] == ["zz"]
    (row,) = run_jobs([(state, job)])
    answer = finish_recommend(state, ctx, row)
    ids = [i["item_id"] for i in answer["items"]]
    assert ids[0] == "b" and "a" not in ids and "e" not in ids  # history excluded by the spec's default
    assert answer["items"][0]["title"] == "title b" and answer["fallback"] is False
    job, ctx = plan_recommend(state, {"history": ["a"], "k": 5, "exclude_history": False})
    assert "a" in [i["item_id"] for i in finish_recommend(state, ctx, run_jobs([(state, job)])[0])["items"]]


def test_fallbacks_and_rejections() -> None:
    state = rec_state(member("v1", (LastItemModel(), vocab())))
    state.extra["popular"] = np.array([3, 1, 2])
    job, ctx = plan_recommend(state, {"history": ["zz"], "k": 2})
    assert job is None
    answer = finish_recommend(state, ctx, None)
    assert answer["fallback_code"] == "no_known_items" and [i["item_id"] for i in answer["items"]] == ["c", "a"]
    job, ctx = plan_recommend(state, {"history": ["a"], "fallback_reason": "unknown_user"})
    assert job is None and "unknown user" in finish_recommend(state, ctx, None)["fallback_reason"]
    with pytest.raises(Rejected, match="no item categories"):
        plan_recommend(state, {"history": ["a"], "categories": ["toys"]})


def test_ensemble_means_probabilities_and_checks_vocabularies() -> None:
    a, b = member("va", (LastItemModel(1), vocab()), 1.0), member("vb", (LastItemModel(2), vocab()), 3.0)
    state = rec_state(a, b)
    assert state.label == "ensemble(recommend/va*0.25+recommend/vb*0.75)"
    job, ctx = plan_recommend(state, {"history": ["a"], "k": 2})
    ids = [i["item_id"] for i in finish_recommend(state, ctx, run_jobs([(state, job)])[0])["items"]]
    assert ids == ["c", "b"]  # vb (weight 0.75) prefers c, va prefers b
    with pytest.raises(ModelLoadError, match=r"recommend/va \(5 items\) and recommend/vx \(4 items\) have different"):
        rec_state(a, member("vx", (LastItemModel(), vocab(ITEMS[:4]))))
    with pytest.raises(ModelLoadError, match="must return \\(model, vocab\\)"):
        rec_state(member("bad", LastItemModel()))


def test_a_batch_split_by_a_swap_runs_each_part_on_its_own_snapshot() -> None:
    old = rec_state(member("old", (LastItemModel(1), vocab())))
    new = rec_state(member("new", (LastItemModel(2), vocab())))
    h = np.array([1])
    rows = run_jobs([(old, h), (new, h), (old, h)])
    assert [int(np.argmax(r)) for r in rows] == [2, 3, 2]


class Forecaster:
    freq = "1w"

    def __init__(self, level: float, max_horizon: int | None = None) -> None:
        self.level = level
        self.max_horizon = max_horizon

    def known_items(self, items):
        return [i != "new" for i in items]

    def forecast(self, items, horizon, quantiles):
        return np.full((len(items), len(quantiles), horizon), self.level) * np.array(quantiles)[None, :, None]


class RiskNet:
    threshold = 0.3

    def __init__(self, p: float) -> None:
        self.p = p

    def score(self, orders):
        return np.full(len(orders), self.p)


def test_demand_and_risk_ensembles_and_batches() -> None:
    state = build_state("demand", [member("d1", Forecaster(10.0), 1), member("d2", Forecaster(20.0), 1)])
    reqs = [{"item_ids": ["x", "new"], "horizon": 2, "quantiles": [0.5]},
            {"item_ids": ["y"], "horizon": 3, "quantiles": [0.1, 0.9]}]
    answers = run_jobs([(state, demand_job(state, r)) for r in reqs])
    first = finish_demand(state, reqs[0], answers[0])
    assert first["freq"] == "1w" and first["fallback"] is True
    assert first["forecasts"][0]["values"] == [[7.5, 7.5]] and first["forecasts"][1]["fallback"] is True
    assert answers[1]["forecasts"][0]["values"] == [[1.5] * 3, [13.5] * 3]
    risk = build_state("risk", [member("r1", RiskNet(0.2), 1), member("r2", RiskNet(0.6), 1)])
    assert risk.extra["threshold"] == pytest.approx(0.3)
    orders = [{"order_id": "o1"}, {"order_id": "o2"}]
    (probs,) = run_jobs([(risk, orders)])
    out = finish_risk(risk, orders, probs)
    assert [r["probability"] for r in out["results"]] == pytest.approx([0.4, 0.4]) and out["results"][0]["flagged"]
    assert build_state("risk", [member("r1", RiskNet(0.2))], threshold=0.9).extra["threshold"] == 0.9


def test_a_quantile_outside_the_trained_levels_is_rejected_naming_the_field() -> None:
    wide, narrow = Forecaster(1.0, max_horizon=14), Forecaster(1.0, max_horizon=14)
    wide.quantiles, narrow.quantiles = [0.05, 0.5, 0.95], [0.1, 0.5, 0.9]
    state = build_state("demand", [member("d1", wide), member("d2", narrow)])
    assert state.extra["quantile_range"] == (0.1, 0.9)  # an ensemble answers the levels every member has
    assert demand_job(state, {"item_ids": ["x"], "horizon": 7, "quantiles": [0.1, 0.3, 0.9]})[2] == [0.1, 0.3, 0.9]
    for asked in ([0.99], [0.05, 0.5]):  # once answered as the p90 (p10) values under the asked label
        with pytest.raises(Rejected, match=r"outside the levels .* trained for \(0.1 to 0.9\)") as e:
            demand_job(state, {"item_ids": ["x"], "horizon": 7, "quantiles": asked})
        assert e.value.loc == ["body", "quantiles"]


def test_demand_horizon_beyond_the_model_is_rejected_naming_the_field() -> None:
    state = build_state("demand", [member("d1", Forecaster(1.0, max_horizon=14)), member("d2", Forecaster(1.0, max_horizon=28))])
    assert state.extra["max_horizon"] == 14  # an ensemble answers what every member can
    assert demand_job(state, {"item_ids": ["x"], "horizon": 14, "quantiles": [0.5]})[1] == 14
    with pytest.raises(Rejected, match=r"horizon 15 is beyond .*\(at most 14 periods of 1w\)") as e:
        demand_job(state, {"item_ids": ["x"], "horizon": 15, "quantiles": [0.5]})
    assert e.value.loc == ["body", "horizon"]
    daily = Forecaster(1.0)
    daily.freq = "1d"
    with pytest.raises(ModelLoadError, match="different periods"):
        build_state("demand", [member("d1", Forecaster(1.0)), member("d2", daily)])


def test_loader_import_errors_name_the_loader(monkeypatch) -> None:
    import ecomine.serve.config as config

    monkeypatch.setitem(config.DEFAULT_LOADERS, "demand", "ecomine.models.no_such_module:load_forecaster")
    with pytest.raises(ModelLoadError, match="is not importable.*has not landed yet, or set demand.loader"):
        import_loader("ecomine.models.no_such_module:load_forecaster", "demand")
    with pytest.raises(ModelLoadError, match="is not importable: No module named") as e:
        import_loader("ecomine.models.other_missing:load", "demand")
    assert "landed" not in str(e.value)
    with pytest.raises(ModelLoadError, match="has no function 'nope'"):
        import_loader("ecomine.predict.runtime:nope", "risk")
    assert import_loader("ecomine.models.recommend:load_recommender", "recommend").__name__ == "load_recommender"


def test_the_task_list_and_the_task_registry_agree() -> None:
    # `state.TASKS` sits below `tasks` (config validation reads it without loading any task's code)
    from ecomine.predict.state import TASKS
    from ecomine.predict.tasks import PREDICT_TASKS

    assert tuple(PREDICT_TASKS) == TASKS
