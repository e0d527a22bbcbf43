"""`explain: true` for risk without Ray: the served probabilities, per line what pushed them, ensembles weighted.

The model is the tiny trained one of tests/unit/models/test_risk_explain.py (its fixtures).
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from ecomine.api.schema import RiskResponse
from ecomine.predict.explain import explain_request
from ecomine.predict.runtime import build_state, run_jobs
from ecomine.predict.state import Member
from tests.unit.models.test_risk_explain import _orders, tiny_encoder, trained  # noqa: F401 (fixtures)


def _state(*members: tuple[object, float]):
    return build_state("risk", [Member(f"r{n}", f"r{n}", w, datetime.now(timezone.utc), [], obj, {})
                                for n, (obj, w) in enumerate(members)])


@pytest.mark.parametrize("tokens", [0, 4])
def test_the_answer_is_the_plain_one_with_each_lines_drivers(trained, tokens: int) -> None:  # noqa: F811
    model, data = trained
    orders = _orders(data, 4)
    state = _state((model, 1.0))
    answer, _ = explain_request(state, {"orders": orders, "explain": {}},
                                {"max_explain_lines": 2, "max_explain_tokens": tokens})
    parsed = RiskResponse.model_validate(answer)  # the route's response model takes it as it is
    assert np.allclose([r.probability for r in parsed.results], run_jobs([(state, orders)])[0])
    for order, r in zip(orders, parsed.results):
        assert r.lines is not None and len(r.lines) == min(2, len(order["lines"]))
        assert r.truncated == (len(order["lines"]) > 2)
        for line in r.lines:
            assert len(line.tokens) <= tokens and (tokens == 0) == (line.tokens == [])
            gap = line.probability - line.baseline_probability
            assert sum(f.contribution for f in line.features) + line.text_contribution + line.residual == pytest.approx(gap, abs=1e-6)
            assert abs(line.residual) <= 0.05 * abs(gap) + 1e-6


def test_an_ensemble_weights_its_members_contributions(trained) -> None:  # noqa: F811
    model, data = trained
    orders = _orders(data, 2)
    limits = {"max_explain_lines": 3}
    single, _ = explain_request(_state((model, 1.0)), {"orders": orders, "explain": {}}, limits)
    mixed, _ = explain_request(_state((model, 0.25), (model, 0.75)), {"orders": orders, "explain": {}}, limits)
    for a, b in zip(single["results"], mixed["results"]):
        for la, lb in zip(a["lines"], b["lines"]):
            assert lb["probability"] == pytest.approx(la["probability"])
            assert {f["name"]: f["contribution"] for f in lb["features"]} == pytest.approx(
                {f["name"]: f["contribution"] for f in la["features"]})
