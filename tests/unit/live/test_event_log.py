"""The event log (ecomine.live.event_log): the store's outbox drained into date-partitioned parquet, read back."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from ecomine.api.events import EventsRequest
from ecomine.live import SQLiteHistoryStore, stored_events
from ecomine.live.event_log import LOG_SCHEMA, drain, read_event_log


def _events(*rows: tuple[str, str, str | None, str]) -> list:
    req = EventsRequest.model_validate({"events": [
        {"user_id": u, "item_id": i, "event": "purchase", "event_id": e, "ts": ts, "quantity": 2, "price": 1.5,
         "order_id": "o1"} if e else {"user_id": u, "item_id": i, "event": "view", "ts": ts}
        for u, i, e, ts in rows
    ]})
    return stored_events(req.events, "salt", log=True)


@pytest.fixture
def store(tmp_path: Path):
    s = SQLiteHistoryStore(tmp_path / "history.sqlite")
    yield s
    s.close()


def test_drained_events_land_by_day_and_read_back_once(store, tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    store.append(_events(("u1", "a", "e1", "2026-12-01T10:00:00Z"), ("u2", "b", None, "2026-12-02T09:00:00Z")))
    assert drain(store, log, owner="r1") == 2
    assert store.log_pending(10) == []
    days = sorted(p.name for p in (tmp_path / "log").iterdir())
    assert days == ["date=2026-12-01", "date=2026-12-02"]
    got = read_event_log(log)
    assert got.schema == pl.Schema(LOG_SCHEMA)
    assert got.select("user_id", "item_id", "event", "event_id", "quantity", "price", "order_id").rows() == [
        ("u1", "a", "purchase", "e1", 2, 1.5, "o1"), ("u2", "b", "view", None, None, None, None)]
    assert got["ts"].to_list()[0] == datetime(2026, 12, 1, 10, tzinfo=timezone.utc)
    since = read_event_log(log, since=datetime(2026, 12, 2, tzinfo=timezone.utc))
    assert since["item_id"].to_list() == ["b"]
    assert read_event_log(str(tmp_path / "nothing-yet")).height == 0


def test_a_drain_that_dies_before_the_ack_rewrites_the_same_file(store, tmp_path: Path, monkeypatch) -> None:
    log = str(tmp_path / "log")
    store.append(_events(("u1", "a", "e1", "2026-12-01T10:00:00Z")))
    real_ack = store.log_ack

    def crash(ids):
        raise RuntimeError("killed between the write and the ack")

    monkeypatch.setattr(store, "log_ack", crash)
    with pytest.raises(RuntimeError):
        drain(store, log, owner="r1")
    monkeypatch.setattr(store, "log_ack", real_ack)
    files = sorted((tmp_path / "log").rglob("*"))
    assert drain(store, log, owner="r1") == 1  # the same records again ...
    assert sorted((tmp_path / "log").rglob("*")) == files  # ... under the same name: no second file
    assert read_event_log(log)["event_id"].to_list() == ["e1"]
    assert not [p for p in (tmp_path / "log").rglob("*.tmp")]


def test_one_replica_drains_at_a_time(store, tmp_path: Path) -> None:
    store.append(_events(("u1", "a", "e1", "2026-12-01T10:00:00Z")))
    assert store.lease("event-log", "other-replica", 60)
    assert drain(store, str(tmp_path / "log"), owner="r1") == 0
    assert len(store.log_pending(10)) == 1


def test_a_data_spec_reads_the_log_as_a_source(store, tmp_path: Path) -> None:
    from ecomine.data.cleaning import load_events
    from ecomine.data.readers import DataError
    from ecomine.specs import DataSpec

    log = tmp_path / "log"
    spec = DataSpec.model_validate({"sources": [{"uri": str(log), "format": "event_log"}]})
    with pytest.raises(DataError, match="holds no events yet"):
        load_events(spec)
    store.append(_events(("u1", "a", "e1", "2026-12-01T10:00:00Z"), ("u1", "b", "e2", "2026-12-01T11:00:00Z"),
                         ("u2", "c", "e3", "2026-12-02T09:00:00Z")))
    drain(store, str(log), owner="r1")
    events, report = load_events(spec)
    assert report.rows_out == 3
    assert events.sort("ts").select("user_id", "item_id", "event").rows() == [
        ("u1", "a", "purchase"), ("u1", "b", "purchase"), ("u2", "c", "purchase")]
    with pytest.raises(ValueError, match="fixed columns"):
        DataSpec.model_validate({"sources": [{"uri": str(log), "format": "event_log", "columns": {"user_id": "u"}}]})


def test_an_old_event_lands_in_a_zero_padded_day(store, tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    store.append(_events(("u1", "a", "e1", "0159-06-03T00:00:00Z"), ("u1", "b", "e2", "2026-12-01T00:00:00Z")))
    drain(store, log, owner="r1")
    assert sorted(p.name for p in (tmp_path / "log").iterdir()) == ["date=0159-06-03", "date=2026-12-01"]
    assert read_event_log(log, since=datetime(2026, 1, 1, tzinfo=timezone.utc))["item_id"].to_list() == ["b"]


def test_a_retrain_window_over_a_data_spec_naming_the_log(store, tmp_path: Path) -> None:
    import yaml

    from ecomine.specs.train import SpecDataRef
    from ecomine.train.events import load_training_events

    store.append(_events(*[(f"u{n % 2}", f"i{n}", f"e{n}", f"2026-12-0{n + 1}T12:00:00Z") for n in range(4)]))
    drain(store, str(tmp_path / "log"), owner="r1")
    path = tmp_path / "live.yaml"
    path.write_text(yaml.safe_dump({"kind": "data", "sources": [{"uri": str(tmp_path / "log"), "format": "event_log"}]}))
    got, fingerprint = load_training_events(SpecDataRef(kind="spec", spec=str(path),
                                                        window={"since": "2026-12-02", "until": "2026-12-04"}))
    assert sorted(got["item_id"].to_list()) == ["i1", "i2"] and fingerprint
