"""POST /v1/events on a served app: the next recommendation reads the event, the event log gets it once."""

from __future__ import annotations

import time
import uuid

import polars as pl
import pytest

from ecomine.api.events import EventsResponse
from tests.integration.serve.conftest import ServeTarget, live_paths

pytestmark = pytest.mark.integration


def _ev(user: str, item: str, kind: str = "purchase", **kw) -> dict:
    return {"user_id": user, "item_id": item, "event": kind, "event_id": f"{user}:{item}:{kind}", **kw}


def _ranking(body: dict) -> list[tuple[str, float]]:
    return [(i["item_id"], round(i["score"], 6)) for i in body["items"]]


def test_a_new_users_first_events_give_them_a_personal_ranking(full: ServeTarget, serving_data) -> None:
    user = f"new-{uuid.uuid4().hex[:8]}"
    before = full.post("/v1/recommend", {"user_id": user, "k": 5}).json()
    assert before["fallback"] is True and before["history_source"] == "none"
    items = serving_data.items[3:6]
    r = full.post("/v1/events", {"events": [_ev(user, i) for i in items] + [_ev(user, "not-in-the-catalogue", "view")]})
    assert r.status_code == 200, r.text
    got = EventsResponse.model_validate(r.json())
    assert (got.accepted, got.duplicates, got.unknown_items, got.items_checked) == (4, 0, ["not-in-the-catalogue"], True)
    after = full.post("/v1/recommend", {"user_id": user, "k": 5}).json()  # the very next call
    assert after["fallback"] is False and after["history_source"] == "live"
    assert _ranking(after) != _ranking(before)
    assert after["unknown_items"] == ["not-in-the-catalogue"]  # the view was read, the model ignored the item
    # the same call as an explicit history: the live history is exactly the events, oldest first
    explicit = full.post("/v1/recommend", {"history": [*items, "not-in-the-catalogue"], "k": 5}).json()
    assert _ranking(explicit) == _ranking(after) and explicit["history_source"] == "request"
    again = full.post("/v1/events", {"events": [_ev(user, i) for i in items]}).json()  # a retry: stored once
    assert (again["accepted"], again["duplicates"]) == (0, 3)


def test_a_known_users_snapshot_is_extended_by_their_events(full: ServeTarget, serving_data) -> None:
    user, history = list(serving_data.users.items())[-1]
    before = full.post("/v1/recommend", {"user_id": user, "k": 5}).json()
    assert before["history_source"] == "snapshot"
    new = [i for i in serving_data.items if i not in history][:4]
    assert full.post("/v1/events", {"events": [_ev(user, i, "cart") for i in new]}).status_code == 200
    after = full.post("/v1/recommend", {"user_id": user, "k": 5}).json()
    assert after["history_source"] == "live+snapshot" and _ranking(after) != _ranking(before)
    insights = full.post("/v1/insights", {"user_id": user, "k": 5}).json()  # its recommend signal reads the same
    assert insights["history_source"] == "live+snapshot", insights
    cap = full.args["limits"]["max_history"]
    explicit = full.post("/v1/recommend", {"history": (history + new)[-cap:], "k": 5}).json()
    assert _ranking(explicit) == _ranking(after)
    # a return is logged but not read as interest
    full.post("/v1/events", {"events": [_ev(user, serving_data.items[0], "return")]})
    assert _ranking(full.post("/v1/recommend", {"user_id": user, "k": 5}).json()) == _ranking(after)


def test_accepted_events_reach_the_event_log_once_and_a_data_spec_reads_them(full: ServeTarget, serving_data) -> None:
    from ecomine.data.cleaning import load_events
    from ecomine.live.event_log import read_event_log
    from ecomine.specs import DataSpec

    user = f"logged-{uuid.uuid4().hex[:8]}"
    events = [_ev(user, serving_data.items[n], ts=f"2026-12-0{n + 1}T12:00:00Z", price=2.5, quantity=2)
              for n in range(3)]
    assert full.post("/v1/events", {"events": events}).json()["accepted"] == 3
    assert full.post("/v1/events", {"events": events}).json()["duplicates"] == 3
    _, log = live_paths(serving_data)
    deadline = time.monotonic() + 30
    while True:  # the replica drains every 0.5 s
        logged = read_event_log(str(log)).filter(pl.col("user_id") == user) if log.exists() else None  # one read
        if logged is not None and logged.height == 3:
            break
        assert time.monotonic() < deadline, "the events never reached the log"
        time.sleep(0.25)
    assert sorted(logged["event_id"].to_list()) == sorted(e["event_id"] for e in events)
    assert logged["price"].to_list() == [2.5] * 3  # (other tests' events share the log: only this user's are read)
    assert {"date=2026-12-01", "date=2026-12-02", "date=2026-12-03"} <= {p.name for p in log.iterdir()}
    assert not list(log.rglob("*.tmp"))
    spec = DataSpec.model_validate({"sources": [{"uri": str(log), "format": "event_log"}]})
    clean, _ = load_events(spec)
    assert clean.filter(clean["user_id"] == user).height == 3
    # what `ecomine retrain` trains on: a DataSpec file naming the log, cut to the pipeline's data window
    import yaml

    from ecomine.specs.train import SpecDataRef
    from ecomine.train.events import load_training_events

    path = log.parent / f"{user}.yaml"
    path.write_text(yaml.safe_dump({"kind": "data", "sources": [{"uri": str(log), "format": "event_log"}]}))
    windowed, _ = load_training_events(SpecDataRef(kind="spec", spec=str(path),
                                                   window={"since": "2026-12-02", "until": "2026-12-04"}))
    mine = windowed.filter(windowed["user_id"] == user)
    assert sorted(mine["item_id"].to_list()) == sorted(serving_data.items[n] for n in (1, 2))


@pytest.mark.parametrize("events, loc", [
    ([{"user_id": "", "item_id": "a", "event": "view"}], ["body", "events", 1, "user_id"]),
    ([{"user_id": "u", "item_id": "a", "event": "wishlist"}], ["body", "events", 1, "event"]),
    ([{"user_id": "u", "item_id": "a", "event": "view", "ts": "2099-01-01T00:00:00Z"}], ["body", "events", 1, "ts"]),
    ([{"user_id": "u", "item_id": "a", "event": "view", "price": -1}], ["body", "events", 1, "price"]),
])
def test_a_bad_event_is_a_422_naming_it_and_nothing_of_its_batch_is_stored(full: ServeTarget, events, loc) -> None:
    user = f"bad-{uuid.uuid4().hex[:8]}"
    good = {"user_id": user, "item_id": "x", "event": "view"}
    r = full.post("/v1/events", {"events": [good, *events]})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][:4] == loc
    assert full.post("/v1/recommend", {"user_id": user, "k": 3}).json()["history_source"] == "none"


def test_a_batch_over_the_limit_or_not_json_is_refused(full: ServeTarget) -> None:
    over = [{"user_id": "u", "item_id": f"i{n}", "event": "view"} for n in range(21)]
    r = full.post("/v1/events", {"events": over})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "events"]
    assert "limit of 20" in r.json()["detail"][0]["msg"]
    r = full.post("/v1/events", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert full.post("/v1/events", {"events": []}).status_code == 422


def test_an_app_without_a_store_answers_503_naming_the_setting(lean: ServeTarget) -> None:
    r = lean.post("/v1/events", {"events": [{"user_id": "u", "item_id": "a", "event": "view"}]})
    assert r.status_code == 503 and "args.live.store" in r.json()["detail"]
