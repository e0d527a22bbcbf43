"""The ingress's live-events parts without Ray: LiveEvents over a store, UserHistories over it and a snapshot."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ecomine.api.events import EventsRequest
from ecomine.serve.histories import UserHistories
from ecomine.serve.live_args import LiveArgs
from ecomine.serve.live_events import LiveEvents
from ecomine.serve.router import HTTPError


def _events(*rows: tuple[str, str, str]):
    return EventsRequest.model_validate({"events": [
        {"user_id": u, "item_id": i, "event": k, "event_id": f"{u}-{i}-{k}"} for u, i, k in rows]}).events


def test_live_history_follows_the_snapshot_and_the_store_keeps_one_salt(tmp_path: Path) -> None:
    async def go():
        args = LiveArgs(store="sqlite", path=str(tmp_path / "h.sqlite"), max_len=3)
        live = await LiveEvents.open(args, None)
        got = await live.accept(_events(("u1", "a", "view"), ("u1", "b", "return"), ("new", "c", "cart")))
        assert (got.accepted, got.duplicates) == (3, 0)
        hist = UserHistories({"u1": ("x", "y")}, live, cap=3)
        r1, r2, r3 = [await hist.resolve(u, None) for u in ("u1", "new", "nobody")]
        assert (r1.history, r1.source) == (["x", "y", "a"], "live+snapshot")  # the return is not interest
        assert (r2.history, r2.source) == (["c"], "live")
        assert (r3.history, r3.source, r3.fallback) == ([], "none", "unknown_user")
        assert (await hist.resolve("u1", ["z"])).source == "request"
        first_salt = live.salt()
        live.close()
        again = await LiveEvents.open(args, "an-app-salt-set-later")  # a restart finds the same histories
        assert again.salt() == first_salt and await again.history("new", 10) == ["c"]
        again.close()

    asyncio.run(go())


def test_after_a_retrain_the_snapshot_and_the_live_store_do_not_count_an_event_twice(tmp_path: Path) -> None:
    import datetime as dt

    import polars as pl

    from ecomine.serve.histories import load_snapshot

    t = [dt.datetime(2026, 12, 1, h, tzinfo=dt.timezone.utc) for h in (9, 10, 11)]

    async def go():
        live = await LiveEvents.open(LiveArgs(store="sqlite", path=str(tmp_path / "h.sqlite"), max_len=10), "salt")
        req = EventsRequest.model_validate({"events": [
            {"user_id": "u1", "item_id": i, "event": "purchase", "ts": ts.isoformat(), "event_id": f"e{i}"}
            for i, ts in zip(("a", "b", "c"), t)] + [
            {"user_id": "fresh", "item_id": "z", "event": "view", "ts": t[0].isoformat(), "event_id": "ez"}]})
        await live.accept(req.events)
        # the retrained version's users table (as `ecomine data build` writes it) read a and b from the event log
        pl.DataFrame({"user_id": ["u1"], "items": [["x", "a", "b"]], "ts": [[t[0] - dt.timedelta(days=3), t[0], t[1]]]}
                     ).write_parquet(tmp_path / "users.parquet")
        snapshot, ends = load_snapshot(str(tmp_path / "users.parquet"), 10)
        assert snapshot == {"u1": ("x", "a", "b")} and ends == {"u1": t[1].timestamp()}
        hist = await UserHistories.load(str(tmp_path / "users.parquet"), live, cap=10)
        got = await hist.resolve("u1", None)
        assert (got.history, got.source) == (["x", "a", "b", "c"], "live+snapshot")  # not x a b a b c
        assert (await hist.resolve("fresh", None)).history == ["z"]  # no snapshot: every live event
        live.close()

    asyncio.run(go())


def test_a_store_down_at_start_is_503s_then_snapshot_answers_with_the_reason(monkeypatch) -> None:
    async def go():
        args = LiveArgs(store="redis", redis_url_env="ECOMINE_TEST_DEAD_REDIS", timeout_s=0.3)
        live = await LiveEvents.open(args, "salt", retry_after_s=3)  # starts: the store may come back
        with pytest.raises(HTTPError) as refused:
            await live.accept(_events(("u1", "a", "view")))
        assert refused.value.status == 503 and refused.value.headers == {"Retry-After": "3"}
        assert "nothing of this batch was stored" in refused.value.detail
        hist = UserHistories({"u1": ("x",)}, live, cap=5)
        got = await hist.resolve("u1", None)
        assert (got.history, got.source) == (["x"], "snapshot") and "redis://127.0.0.1:9/0" in got.live_error
        live.close()

    monkeypatch.setenv("ECOMINE_TEST_DEAD_REDIS", "redis://127.0.0.1:9/0")  # port 9: nothing listens
    asyncio.run(go())


def test_concurrent_calls_are_written_in_group_commits_each_answered_with_its_own_counts(tmp_path: Path) -> None:
    async def go(commit_events: int) -> tuple[list[tuple[int, int]], list[int]]:
        live = await LiveEvents.open(LiveArgs(store="sqlite", path=str(tmp_path / f"h{commit_events}.sqlite"),
                                              commit_events=commit_events), "salt")
        writes: list[int] = []
        append_many = live.store.append_many

        def counted(batches):  # the real store's write, counted
            writes.append(len(batches))
            return append_many(batches)

        live.store.append_many = counted
        calls = [_events((f"u{n}", f"i{n}", "view")) for n in range(20)] + [_events(("u0", "i0", "view"))]
        got = await asyncio.gather(*(live.accept(c) for c in calls))
        assert await live.history("u0", 10) == ["i0"]  # the retried event_id is stored once
        live.close()
        return [(g.accepted, g.duplicates) for g in got], writes

    grouped, writes = asyncio.run(go(5000))
    assert grouped == [(1, 0)] * 20 + [(0, 1)] and sum(writes) == 21
    assert len(writes) < 21 and max(writes) > 1  # calls that queued behind a write went together in the next
    capped, writes = asyncio.run(go(4))
    assert capped == grouped and sum(writes) == 21 and max(writes) == 4  # no write over commit_events events
    one_by_one, writes = asyncio.run(go(1))
    assert one_by_one == grouped and writes == [1] * 21
