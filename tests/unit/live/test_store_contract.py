"""One contract, both history-store backends (ecomine.live): SQLite (embedded) and a real Redis server."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ecomine.api.events import EventsRequest
from ecomine.live import SQLiteHistoryStore, StoredEvent, StoreUnavailable, stored_events, user_key


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path: Path):
    if request.param == "sqlite":
        s = SQLiteHistoryStore(tmp_path / "state" / "history.sqlite", max_len=5)
    else:
        from ecomine.live import RedisHistoryStore

        s = RedisHistoryStore(request.getfixturevalue("redis_url"), max_len=5, prefix=f"t{uuid.uuid4().hex}")
    yield s
    s.close()


def _ev(user: str, item: str, kind: str = "purchase", event_id: str | None = None, ts: float = 0.0) -> StoredEvent:
    return StoredEvent(user_key(user, "salt"), item, kind, ts, event_id)


def test_histories_are_per_user_in_order_and_bounded(store) -> None:
    got = store.append([_ev("u1", f"i{n}") for n in range(7)] + [_ev("u2", "x")])
    assert (got.accepted, got.duplicates) == (8, 0)
    assert store.history(user_key("u1", "salt")) == ["i2", "i3", "i4", "i5", "i6"]  # the newest max_len, oldest first
    assert store.history(user_key("u2", "salt")) == ["x"]
    assert store.history(user_key("u1", "salt"), limit=2) == ["i5", "i6"]
    assert store.history(user_key("nobody", "salt")) == []


def test_an_event_id_is_stored_once_whatever_the_retries(store) -> None:
    first = store.append([_ev("u", "a", event_id="e1"), _ev("u", "b", event_id="e2")])
    again = store.append([_ev("u", "a", event_id="e1"), _ev("u", "b", event_id="e2"), _ev("u", "c", event_id="e3")])
    assert (first.accepted, first.duplicates, again.accepted, again.duplicates) == (2, 0, 1, 2)
    store.append([_ev("u", "d"), _ev("u", "d")])  # no event_id: no deduplication
    assert store.history(user_key("u", "salt")) == ["a", "b", "c", "d", "d"]


def test_a_group_commit_counts_each_callers_batch_on_its_own(store) -> None:
    # three callers' batches in one write; the third retries the first's event_id (a client racing its own retry)
    got = store.append_many([[_ev("u", "a", event_id="g1"), _ev("v", "b")], [_ev("v", "c", event_id="g2")],
                             [_ev("u", "a", event_id="g1"), _ev("u", "d", event_id="g3")]])
    assert [(g.accepted, g.duplicates) for g in got] == [(2, 0), (1, 0), (1, 1)]
    assert store.history(user_key("u", "salt")) == ["a", "d"] and store.history(user_key("v", "salt")) == ["b", "c"]
    assert store.append_many([]) == []


def test_since_leaves_out_what_a_snapshot_already_holds(store) -> None:
    store.append([_ev("u", "old", ts=100.0), _ev("u", "edge", ts=200.0), _ev("u", "new", ts=300.0)])
    key = user_key("u", "salt")
    assert store.history(key, since=200.0) == ["new"]  # strictly after: the snapshot's newest event is in it
    assert store.history(key, since=50.0) == ["old", "edge", "new"] and store.history(key, since=None) == ["old", "edge", "new"]
    assert store.history(key, kinds=["view"], since=0.0) == [] and store.history(key, since=300.0) == []


def test_kinds_filter_what_a_recommender_reads(store) -> None:
    store.append([_ev("u", "seen", "view"), _ev("u", "bought", "purchase"), _ev("u", "back", "return")])
    key = user_key("u", "salt")
    assert store.history(key, kinds=["purchase"]) == ["bought"]
    assert store.history(key, kinds=["view", "purchase"]) == ["seen", "bought"]


def test_concurrent_writers_lose_nothing(store) -> None:
    def write(w: int) -> None:
        for n in range(20):
            store.append([_ev(f"w{w}-{n}", "i", event_id=f"w{w}-{n}")])

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(store.history(user_key(f"w{w}-{n}", "salt")) == ["i"] for w in range(4) for n in range(20))


def test_api_events_become_stored_events_under_the_salted_key() -> None:
    req = EventsRequest.model_validate({"events": [
        {"user_id": "u", "item_id": "i", "event": "cart", "event_id": "e", "ts": "2026-12-01T00:00:00Z", "quantity": 2},
        {"user_id": "u", "item_id": "j", "event": "view"},
    ]})
    now = datetime(2026, 12, 6, tzinfo=timezone.utc)
    a, b = stored_events(req.events, "salt", now=now)
    assert a == StoredEvent(user_key("u", "salt"), "i", "cart", datetime(2026, 12, 1, tzinfo=timezone.utc).timestamp(), "e", 2)
    assert b.ts == now.timestamp() and b.user_key == a.user_key != user_key("u", "other salt") and "u" not in a.user_key


def test_an_unreachable_store_is_store_unavailable_naming_it(tmp_path: Path) -> None:
    from ecomine.live import RedisHistoryStore

    dead = RedisHistoryStore("redis://127.0.0.1:9/0", timeout_s=0.5)  # port 9: nothing listens
    with pytest.raises(StoreUnavailable, match=r"history store redis://127.0.0.1:9/0: ConnectionError"):
        dead.append([_ev("u", "i")])
    with pytest.raises(StoreUnavailable, match="history store redis://127.0.0.1:9/0"):
        dead.history("k")
    (tmp_path / "not-a-db").write_text("this is not an SQLite file, " * 100)
    with pytest.raises(StoreUnavailable, match=r"history store .*not-a-db: file is not a database"):
        SQLiteHistoryStore(tmp_path / "not-a-db")


def _logged(user: str, item: str, event_id: str | None, ts: float = 1.7e9) -> StoredEvent:
    record = f'["{event_id}","{user}","{item}","purchase",{ts},1,2.5,null]' if event_id else \
        f'[null,"{user}","{item}","purchase",{ts},null,null,null]'
    return StoredEvent(user_key(user, "salt"), item, "purchase", ts, event_id, None, record)


def test_the_log_outbox_holds_each_accepted_event_once_until_acknowledged(store) -> None:
    store.append([_logged("u", "a", "e1"), _logged("u", "b", "e2"), _ev("u", "not-logged")])
    store.append([_logged("u", "a", "e1"), _logged("v", "c", None)])  # e1 again: a duplicate, not logged again
    pending = store.log_pending(10)
    assert [r.split(",")[2] for _, r in pending] == ['"a"', '"b"', '"c"']  # append order
    store.log_ack([pending[0][0]])
    assert [i for i, _ in store.log_pending(10)] == [i for i, _ in pending[1:]]
    assert len(store.log_pending(1)) == 1
    store.log_ack([i for i, _ in pending[1:]])
    assert store.log_pending(10) == []


def test_a_lease_has_one_holder_until_it_expires(store) -> None:
    assert store.lease("drain", "a", 0.3)
    assert store.lease("drain", "a", 0.3)  # renewed by its holder
    assert not store.lease("drain", "b", 0.3)
    assert store.lease("other", "b", 0.3)  # leases are by name
    deadline = time.monotonic() + 5
    while not store.lease("drain", "b", 10):
        assert time.monotonic() < deadline, "the lease never expired"
        time.sleep(0.05)
    assert not store.lease("drain", "a", 10)


def test_the_first_salt_stored_is_the_salt(store) -> None:
    first = store.ensure_salt("one")
    assert store.ensure_salt("two") == first == "one"


def test_a_full_sqlite_store_is_unavailable_and_keeps_what_it_had(tmp_path: Path) -> None:
    s = SQLiteHistoryStore(tmp_path / "full.sqlite")
    s.append([_ev("u", "kept", event_id="k")])
    pages = s._db.execute("PRAGMA page_count").fetchone()[0]
    s._db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own SQLITE_FULL, as a full disk gives it
    with pytest.raises(StoreUnavailable, match=r"full.sqlite: database or disk is full"):
        s.append([_ev(f"u{n}", "x" * 2000, event_id=f"e{n}") for n in range(50)])
    assert s.history(user_key("u", "salt")) == ["kept"] and s.log_pending(10) == []
    assert s.append([_ev("u", "kept", event_id="k")]).duplicates == 1  # the batch rolled back whole: e0.. unclaimed
    s.close()
