"""Drift of live events: the served event log (``POST /v1/events``) as the recommender's request features.

Sits in ``ecomine.data`` beside ``drift`` (whose features, observations and reference profiles it
reuses) and above ``ecomine.live`` (whose event log it reads). ``ecomine monitor --events`` calls
``event_log_window``: each user's logged history (the kinds a live history holds, oldest first,
cut to the newest ``max_history``) becomes one ``recommend_observation`` - its length, the
training-popularity rank of each known item, the share of unknown items - so the log compares
with a version's ``profile.json`` the way the served app's live window does, before any request
reads it. Predictions are not observed (no model runs here).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from ecomine.api.events import HISTORY_KINDS
from ecomine.data.drift import LiveWindow, recommend_observation

__all__ = ["event_log_window"]


def event_log_window(events: pl.DataFrame, vocab_items: Sequence[str], item_rank: Sequence[int], *,
                     kinds: Sequence[str] = HISTORY_KINDS, max_history: int = 200,
                     since: datetime | None = None, size: int = 2048) -> tuple[dict[str, Any], int]:
    """``(LiveWindow.snapshot(), users)`` of the log's per-user histories (``live.event_log.read_event_log``'s frame)."""
    index = {item: i + 1 for i, item in enumerate(vocab_items)}  # 0 is padding (models.recommend.PAD_ID)
    ranks = np.asarray(item_rank, dtype=np.int64)
    rows = events.filter(pl.col("event").is_in(list(kinds)))
    if since is not None:
        rows = rows.filter(pl.col("ts") >= since)
    per_user = (rows.sort("ts", maintain_order=True).group_by("user_id", maintain_order=True)
                .agg(pl.col("item_id").tail(max_history)))
    window = LiveWindow("recommend", size=size)
    for items in per_user["item_id"].to_list():
        ids = np.array([index[i] for i in items if i in index], dtype=np.int64)
        window.observe(recommend_observation(len(items), ids, ranks, None))
    return window.snapshot(), per_user.height
