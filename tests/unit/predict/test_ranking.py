"""From score rows to answers: top-k with exclusions and filters, the popular fallback, the catalogue."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from ecomine.predict.ranking import ItemCatalogue, Rejected, popular_fill, top_k


def test_top_k_skips_padding_banned_and_filtered_ids() -> None:
    scores = np.array([99.0, 1.0, 5.0, 3.0, 4.0, 2.0])
    ids, vals = top_k(scores, 3)
    assert ids.tolist() == [2, 4, 3] and vals.tolist() == [5.0, 4.0, 3.0]
    ids, _ = top_k(scores, 3, banned=np.array([2, 4]))
    assert ids.tolist() == [3, 5, 1]
    allowed = np.array([True, True, False, False, True, True])
    ids, _ = top_k(scores, 10, allowed=allowed)
    assert ids.tolist() == [4, 5, 1]  # fewer than k when fewer remain
    assert top_k(scores, 5, banned=np.arange(6))[0].tolist() == []


def test_popular_fallback_keeps_popularity_order() -> None:
    popular = np.array([4, 2, 5, 1])
    ids, scores = popular_fill(popular, 3, banned=np.array([2]))
    assert ids.tolist() == [4, 5, 1] and scores.tolist() == [1.0, 0.5, 0.25]
    allowed = np.array([False, True, False, False, False, True])
    assert popular_fill(popular, 3, allowed=allowed)[0].tolist() == [5, 1]
    assert popular_fill(np.array([], dtype=np.int64), 3)[0].tolist() == []


def test_catalogue_aligns_with_the_vocabulary() -> None:
    table = pl.DataFrame({
        "item_id": ["b", "a", "zz"], "item_text": [None, "A title", "?"], "category": ["toys", "bags", "x"],
        "median_price": [2.5, float("nan"), 1.0],
    })
    cat = ItemCatalogue.build(["a", "b", "c"], ["vocab a", None, None], table)
    assert cat.categories == ["bags", "toys"]  # only categories of known items
    assert cat.describe(1) == {"title": "vocab a", "category": "bags", "price": None}
    assert cat.describe(2) == {"title": None, "category": "toys", "price": 2.5}
    assert cat.describe(3) == {"title": None, "category": None, "price": None}
    assert cat.allowed(["toys"]).tolist() == [False, False, True, False]
    assert cat.allowed(None) is None
    with pytest.raises(Rejected) as e:
        cat.allowed(["toys", "cars"])
    assert e.value.loc == ["body", "categories", 1] and "known: bags, toys" in e.value.msg
    with pytest.raises(Rejected, match="no item categories"):
        ItemCatalogue.build(["a"], [], None).allowed(["toys"])


def test_undated_orders_are_placed_now_and_dated_ones_kept() -> None:
    from datetime import datetime, timezone

    from ecomine.predict.answers import dated_orders

    placed = datetime(2024, 5, 1, tzinfo=timezone.utc)
    now = datetime(2026, 1, 2, tzinfo=timezone.utc)
    out = dated_orders([{"order_id": "a", "ts": placed}, {"order_id": "b", "ts": None}, {"order_id": "c", "ts": None}], now)
    assert [o["ts"] for o in out] == [placed, now, now]
    assert datetime.now(timezone.utc) - dated_orders([{"ts": None}])[0]["ts"] < (now - placed)  # default: the clock
