"""The embedded history store: one SQLite file in WAL mode (``live.store.HistoryStore``).

Sits in ``ecomine.live`` beside ``redis`` (the production backend, same contract). The
standard library's ``sqlite3``, so the default needs no service: WAL lets readers go on while a
batch commits, ``synchronous=FULL`` makes a commit durable before ``append`` returns, and one
transaction per call stores all of it or none (``append_many``: every caller's batch of a group
commit in one transaction, one fsync). A locked file (another writer past ``timeout_s``) or a
full disk is ``StoreUnavailable``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from ecomine.live.store import Appended, StoredEvent, StoreUnavailable

__all__ = ["SQLiteHistoryStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user_key TEXT NOT NULL, item_id TEXT NOT NULL, event TEXT NOT NULL, ts REAL NOT NULL, quantity INTEGER
);
CREATE INDEX IF NOT EXISTS events_by_user ON events (user_key, seq);
CREATE TABLE IF NOT EXISTS seen (event_id TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY AUTOINCREMENT, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS lease (name TEXT PRIMARY KEY, owner TEXT NOT NULL, until REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class SQLiteHistoryStore:
    """Histories in ``path`` (created with its folder), at most ``max_len`` events per user."""

    def __init__(self, path: str | Path, *, max_len: int = 200, dedupe_s: float = 7 * 86400.0,
                 timeout_s: float = 2.0) -> None:
        self.path = Path(path)
        self.max_len = max_len
        self.dedupe_s = dedupe_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # one connection, used under a lock: sqlite3 connections are not for concurrent threads
        self._db = sqlite3.connect(str(self.path), timeout=timeout_s, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock, self._errors():
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        self._appends = 0

    def _errors(self):
        return _Unavailable(self.path)

    def append(self, events: Sequence[StoredEvent]) -> Appended:
        return self.append_many([events])[0]

    def append_many(self, batches: Sequence[Sequence[StoredEvent]]) -> list[Appended]:
        now = time.time()
        counts = []
        with self._lock, self._errors():
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                touched = set()
                for events in batches:
                    accepted = duplicates = 0
                    for e in events:
                        if e.event_id is not None:
                            cur.execute("INSERT OR IGNORE INTO seen (event_id, at) VALUES (?, ?)", (e.event_id, now))
                            if cur.rowcount == 0:
                                duplicates += 1
                                continue
                        cur.execute("INSERT INTO events (user_key, item_id, event, ts, quantity) "
                                    "VALUES (?, ?, ?, ?, ?)", (e.user_key, e.item_id, e.event, e.ts, e.quantity))
                        if e.record is not None:  # the event log's outbox, in the same transaction
                            cur.execute("INSERT INTO log (record) VALUES (?)", (e.record,))
                        touched.add(e.user_key)
                        accepted += 1
                    counts.append(Appended(accepted, duplicates))
                for key in touched:  # keep each user's newest max_len
                    cur.execute(
                        "DELETE FROM events WHERE user_key = ? AND seq <= (SELECT seq FROM events WHERE user_key = ? "
                        "ORDER BY seq DESC LIMIT 1 OFFSET ?)", (key, key, self.max_len))
                self._appends += 1
                if self._appends % 1000 == 0:  # ids older than the window can no longer be retried
                    cur.execute("DELETE FROM seen WHERE at < ?", (now - self.dedupe_s,))
                cur.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # SQLite rolls back itself on some errors (a full disk): keep the cause
                    cur.execute("ROLLBACK")
                raise
        return counts

    def history(self, key: str, kinds: Sequence[str] | None = None, limit: int | None = None,
                since: float | None = None) -> list[str]:
        sql, params = "SELECT item_id FROM events WHERE user_key = ?", [key]
        if kinds is not None:
            sql += f" AND event IN ({', '.join('?' * len(kinds))})"
            params += list(kinds)
        if since is not None:
            sql += " AND ts > ?"
            params.append(float(since))
        sql += " ORDER BY seq DESC LIMIT ?"
        params.append(min(limit or self.max_len, self.max_len))
        with self._lock, self._errors():
            rows = self._db.execute(sql, params).fetchall()
        return [r[0] for r in reversed(rows)]

    def log_pending(self, limit: int) -> list[tuple[str, str]]:
        with self._lock, self._errors():
            rows = self._db.execute("SELECT seq, record FROM log ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [(str(seq), record) for seq, record in rows]

    def log_ack(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        with self._lock, self._errors():
            self._db.executemany("DELETE FROM log WHERE seq = ?", [(int(i),) for i in ids])

    def ensure_salt(self, candidate: str) -> str:
        with self._lock, self._errors():
            self._db.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('salt', ?)", (candidate,))
            return self._db.execute("SELECT value FROM meta WHERE name = 'salt'").fetchone()[0]

    def lease(self, name: str, owner: str, ttl_s: float) -> bool:
        now = time.time()
        with self._lock, self._errors():
            cur = self._db.execute(
                "INSERT INTO lease (name, owner, until) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "owner = excluded.owner, until = excluded.until WHERE lease.owner = excluded.owner OR lease.until < ?",
                (name, owner, now + ttl_s, now))
            return cur.rowcount == 1

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _Unavailable:
    """sqlite3's operational errors (locked, full, read-only, gone) as StoreUnavailable naming the file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if isinstance(exc, (sqlite3.OperationalError, sqlite3.DatabaseError)) and not isinstance(exc, sqlite3.IntegrityError):
            raise StoreUnavailable(f"history store {self.path}: {exc}") from exc
        return False
