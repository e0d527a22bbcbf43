"""Live user state: the online history store that `POST /v1/events` writes and recommendations read.

Sits above ``api`` (whose ``Event`` it stores) and below ``serve``. ``store`` is the interface and
its guarantees; ``sqlite`` the embedded default, ``redis`` the production backend. Nothing here
imports Ray, and a backend's client library only when that backend is built.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = [
    "Appended", "HistoryStore", "StoredEvent", "StoreUnavailable", "stored_events", "user_key",
    "SQLiteHistoryStore", "RedisHistoryStore",
]

_WHERE = {
    "Appended": "store", "HistoryStore": "store", "StoredEvent": "store", "StoreUnavailable": "store",
    "stored_events": "store", "user_key": "store",
    "SQLiteHistoryStore": "sqlite", "RedisHistoryStore": "redis",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"ecomine.live.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'ecomine.live' has no attribute {name!r}")
