"""The production history store: Redis, one list per user (``live.store.HistoryStore``).

Sits in ``ecomine.live`` beside ``sqlite`` (the embedded default, same contract). Each event is
appended by one Lua script, atomic on the server: claim the ``event_id`` (``SET NX`` with the
dedupe window as its TTL), append to the user's list, trim it to ``max_len``, and refresh its
TTL (``ttl_s``, 0: none), and add the event's log record to one stream (``XADD``), the event log's
outbox. A call is one pipeline of script calls (``append_many``: every caller's batch of a group
commit), so it costs one round trip; Redis runs each script whole, so a concurrent reader sees
an event entirely or not at all. A batch that fails half-way is not rolled back by Redis: its
events that were stored keep their ``event_id`` claims, so the caller's retry of the whole batch
stores the rest and no event twice.
Durability is the server's: run it with ``appendonly yes`` and ``appendfsync always`` where an
acknowledged event must survive a crash (the tests do). A connection or server error is
``StoreUnavailable``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ecomine.live.store import Appended, StoredEvent, StoreUnavailable

__all__ = ["RedisHistoryStore"]

# KEYS: the event id's claim (or "" for none), the user's list, the log stream.
# ARGV: entry, max_len, dedupe_s, ttl_s, log record ("" for none).
_APPEND = """
if KEYS[1] ~= '' then
  if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[3]) then return 0 end
end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
if tonumber(ARGV[4]) > 0 then redis.call('EXPIRE', KEYS[2], ARGV[4]) end
if ARGV[5] ~= '' then redis.call('XADD', KEYS[3], '*', 'r', ARGV[5]) end
return 1
"""

# KEYS: the lease. ARGV: owner, ttl in ms. Take it when free, renew it when ours.
_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""


class RedisHistoryStore:
    """Histories in the Redis at ``url`` (``redis://host:port/db``), keys under ``prefix``."""

    def __init__(self, url: str, *, max_len: int = 200, dedupe_s: float = 7 * 86400.0, ttl_s: float = 0.0,
                 prefix: str = "ecomine", timeout_s: float = 2.0) -> None:
        import redis

        self.url = url
        self.max_len = max_len
        self.dedupe_s = int(max(1, dedupe_s))
        self.ttl_s = int(ttl_s)
        self.prefix = prefix
        self._errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                        redis.exceptions.ResponseError, redis.exceptions.BusyLoadingError)
        self._redis = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._append = self._redis.register_script(_APPEND)
        self._lease = self._redis.register_script(_LEASE)
        self._log = f"{prefix}:log"

    def _key(self, user_key: str) -> str:
        return f"{self.prefix}:h:{user_key}"

    def append(self, events: Sequence[StoredEvent]) -> Appended:
        return self.append_many([events])[0]

    def append_many(self, batches: Sequence[Sequence[StoredEvent]]) -> list[Appended]:
        pipe = self._redis.pipeline(transaction=False)
        for events in batches:
            for e in events:
                entry = json.dumps([e.item_id, e.event, e.ts, e.quantity], separators=(",", ":"))
                claim = f"{self.prefix}:e:{e.event_id}" if e.event_id is not None else ""
                self._append(keys=[claim, self._key(e.user_key), self._log],
                             args=[entry, self.max_len, self.dedupe_s, self.ttl_s, e.record or ""], client=pipe)
        try:
            stored = iter(pipe.execute())
        except self._errors as exc:
            raise StoreUnavailable(f"history store {self._where()}: {type(exc).__name__}: {exc}") from exc
        counts = []
        for events in batches:
            accepted = sum(int(next(stored)) for _ in events)
            counts.append(Appended(accepted, len(events) - accepted))
        return counts

    def history(self, key: str, kinds: Sequence[str] | None = None, limit: int | None = None,
                since: float | None = None) -> list[str]:
        try:
            raw: list[Any] = self._redis.lrange(self._key(key), 0, -1)
        except self._errors as exc:
            raise StoreUnavailable(f"history store {self._where()}: {type(exc).__name__}: {exc}") from exc
        wanted = None if kinds is None else set(kinds)
        items = [entry[0] for entry in map(json.loads, raw)
                 if (wanted is None or entry[1] in wanted) and (since is None or entry[2] > since)]
        return items[-min(limit or self.max_len, self.max_len):]

    def log_pending(self, limit: int) -> list[tuple[str, str]]:
        try:
            entries = self._redis.xrange(self._log, count=limit)
        except self._errors as exc:
            raise StoreUnavailable(f"history store {self._where()}: {type(exc).__name__}: {exc}") from exc
        return [(_text(i), _text(fields[b"r"])) for i, fields in entries]

    def log_ack(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        try:
            self._redis.xdel(self._log, *ids)
        except self._errors as exc:
            raise StoreUnavailable(f"history store {self._where()}: {type(exc).__name__}: {exc}") from exc

    def ensure_salt(self, candidate: str) -> str:
        key = f"{self.prefix}:salt"
        try:
            self._redis.set(key, candidate, nx=True)
            return _text(self._redis.get(key))
        except self._errors as exc:
            raise StoreUnavailable(f"history store {self._where()}: {type(exc).__name__}: {exc}") from exc

    def lease(self, name: str, owner: str, ttl_s: float) -> bool:
        try:
            return bool(self._lease(keys=[f"{self.prefix}:lease:{name}"], args=[owner, max(1, int(ttl_s * 1000))]))
        except self._errors as exc:
            raise StoreUnavailable(f"history store {self._where()}: {type(exc).__name__}: {exc}") from exc

    def _where(self) -> str:
        kw = self._redis.connection_pool.connection_kwargs
        return f"redis://{kw.get('host')}:{kw.get('port')}/{kw.get('db', 0)}"

    def close(self) -> None:
        self._redis.close()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
