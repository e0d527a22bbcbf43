"""`explain: true` for demand without Ray: the served answer is the plain one, the drivers add up to its p50.

The forecaster is the tiny trained one of tests/unit/models/test_demand_explain.py (its fixtures).
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from ecomine.predict.demand_task import explain_demand
from ecomine.predict.explain import explain_refusal, explain_request
from ecomine.predict.ranking import Rejected
from ecomine.predict.runtime import build_state, run_jobs
from ecomine.predict.state import Member
from tests.unit.models.test_demand_explain import H, data, fc, known, spec  # noqa: F401 (fixtures)


def _state(*members: tuple[object, float]):
    return build_state("demand", [Member(f"d{n}", f"d{n}", w, datetime.now(timezone.utc), [], obj, {})
                                  for n, (obj, w) in enumerate(members)])


def test_the_explained_answer_is_the_plain_one_and_its_drivers_add_up(fc) -> None:  # noqa: F811
    items = known(fc)[:4] + ["NO-SUCH-ITEM"]
    state = _state((fc, 1.0))
    job = (items, H, [0.1, 0.5, 0.9])
    plain = run_jobs([(state, job)])[0]
    answer = explain_demand(state, job)
    for p, e in zip(plain["forecasts"], answer["forecasts"]):
        assert np.allclose(p["values"], e["values"]) and p["fallback"] == e["fallback"]
        if e["fallback"]:
            assert e["drivers"] == []
            continue
        assert [d["input"] for d in e["drivers"]] and len(e["baseline"]) == H
        total = np.asarray(e["baseline"]) + np.sum([d["by_step"] for d in e["drivers"]], axis=0)
        assert np.allclose(total, e["values"][1], atol=1e-4)  # p50 = baseline + every driver
        effects = [abs(d["effect"]) for d in e["drivers"]]
        assert effects == sorted(effects, reverse=True)


def test_an_ensemble_weights_its_members_drivers(fc) -> None:  # noqa: F811
    items = known(fc)[:3]
    single = explain_demand(_state((fc, 1.0)), (items, H, [0.5]))
    mixed = explain_demand(_state((fc, 0.3), (fc, 0.7)), (items, H, [0.5]))  # one model twice: the same drivers
    for a, b in zip(single["forecasts"], mixed["forecasts"]):
        assert {d["input"]: round(d["effect"], 6) for d in a["drivers"]} == {d["input"]: round(d["effect"], 6) for d in b["drivers"]}


def test_a_model_without_explain_is_refused_naming_the_field(fc) -> None:  # noqa: F811
    class Plain:
        max_horizon, freq = H, "1d"

        def forecast(self, items, horizon, quantiles):
            return np.ones((len(items), len(quantiles), horizon))

    state = _state((fc, 0.5), (Plain(), 0.5))
    assert "demand/d1 cannot explain: its model (Plain) has no explain method" in explain_refusal(state)
    with pytest.raises(Rejected) as caught:
        explain_request(state, {"item_ids": known(fc)[:1], "horizon": H, "quantiles": [0.5], "explain": {}}, {})
    assert caught.value.loc == ["body", "explain"]
