"""Text serialisations: exact strings on hand-made frames."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from ecomine.data.features import item_catalogue, risk_examples
from ecomine.data.schema import EVENT_COLUMNS, validate_events
from ecomine.data.text import order_line_text, user_behaviour_text

UTC = dt.timezone.utc
T0 = dt.datetime(2011, 12, 7, 8, 26, tzinfo=UTC)  # a Wednesday


def at(days: float) -> dt.datetime:
    return T0 + dt.timedelta(days=days)


def events(rows: list[dict], **extra: pl.DataType) -> pl.DataFrame:
    defaults = dict.fromkeys(EVENT_COLUMNS) | {"user_id": "u1", "event": "purchase", "quantity": 1, "price": 1.0}
    return validate_events(pl.DataFrame([defaults | r for r in rows], schema={**EVENT_COLUMNS, **extra}))


@pytest.fixture
def log() -> pl.DataFrame:
    return events(
        [
            {"item_id": "85123A", "ts": at(0), "order_id": "o1", "quantity": 6, "price": 2.55,
             "item_text": "WHITE HANGING  HEART T-LIGHT HOLDER ", "country": "United Kingdom"},
            {"item_id": "22423", "ts": at(0), "order_id": "o1", "quantity": 1, "price": 12.75,
             "item_text": "REGENCY CAKESTAND 3 TIER", "country": "United Kingdom"},
            {"item_id": "22423", "ts": at(7), "event": "return", "order_id": "C1", "quantity": 1, "price": 12.75,
             "country": "United Kingdom"},
            {"item_id": "84029E", "ts": at(9.5), "event": "view", "price": 4.25, "country": "United Kingdom"},
            {"item_id": "85123A", "ts": at(10), "order_id": "o2", "quantity": 12, "price": 2.5,
             "country": "France"},
            {"user_id": "u2", "item_id": "22423", "ts": at(3), "order_id": "o3", "quantity": 2, "price": 10.0},
        ],
        country=pl.String,
    )


def test_user_behaviour_text_exact(log: pl.DataFrame) -> None:
    out = user_behaviour_text(log)
    assert out.columns == ["user_id", "text"] and out["user_id"].to_list() == ["u1", "u2"]
    assert out["text"][0] == (
        "customer from United Kingdom; 2 orders over 10 days; spent 58.05; returns 1; "
        "recent: bought 12 x WHITE HANGING HEART T-LIGHT HOLDER (2.50) today; "
        "viewed 84029E (4.25) today; "
        "returned 1 x REGENCY CAKESTAND 3 TIER (12.75) 3 days ago; "
        "bought 1 x REGENCY CAKESTAND 3 TIER (12.75) 10 days ago; "
        "bought 6 x WHITE HANGING HEART T-LIGHT HOLDER (2.55) 10 days ago"
    )
    assert out["text"][1] == (
        "customer; 1 order over 7 days; spent 20.00; returns 0; "
        "recent: bought 2 x REGENCY CAKESTAND 3 TIER (10.00) 7 days ago"
    )


def test_user_behaviour_text_as_of_max_events_catalogue(log: pl.DataFrame) -> None:
    cat = pl.DataFrame({"item_id": ["84029E"], "item_text": ["RED WOOLLY HOTTIE"]})
    out = user_behaviour_text(log, as_of=dt.datetime(2011, 12, 17), max_events=2, catalogue=cat)
    u1 = out.filter(pl.col("user_id") == "u1")["text"][0]
    # as_of (naive = UTC, day 9.65) drops the day-10 order; reference time is as_of
    assert u1 == (
        "customer from United Kingdom; 1 order over 9 days; spent 28.05; returns 1; "
        "recent: viewed RED WOOLLY HOTTIE (4.25) today; "
        "returned 1 x REGENCY CAKESTAND 3 TIER (12.75) 2 days ago"
    )
    none_before = user_behaviour_text(log, as_of=at(-1))
    assert none_before.height == 0
    # the catalogue's text wins over the event's
    cat2 = item_catalogue(log).with_columns(pl.lit("X").alias("item_text"))
    assert "bought 12 x X (2.50)" in user_behaviour_text(log, catalogue=cat2)["text"][0]


def test_user_behaviour_text_deterministic(log: pl.DataFrame) -> None:
    a = user_behaviour_text(log)
    assert a.equals(user_behaviour_text(log))
    # row order only breaks ties between same-instant events (here the two day-0 lines)
    b = user_behaviour_text(log.reverse())
    assert a["text"][1] == b["text"][1]
    assert sorted(a["text"][0].split("; ")) == sorted(b["text"][0].split("; "))
    assert a["text"][0] != b["text"][0]


def test_order_line_text_exact_and_label_free(log: pl.DataFrame) -> None:
    r = risk_examples(log)
    texts = order_line_text(r)
    assert texts.name == "text" and texts.len() == r.height
    assert texts[0] == (
        "6 x WHITE HANGING HEART T-LIGHT HOLDER at 2.55 each, line 15.30; country United Kingdom; "
        "Wednesday 08:26, December; first order of this customer; item never bought before"
    )
    last = r.filter(pl.col("order_id") == "o2")
    assert order_line_text(last)[0] == (
        "12 x 85123A at 2.50 each, line 30.00; country France; Saturday 08:26, December; "
        "customer: 1 prior order, 2 prior lines, 1 prior return (50.0%), previous order 10 days before, "
        "customer for 10 days; quantity 3.43x the customer's usual; "
        "item: 1 prior purchase, return rate 0.0%; price 0.98x the item's usual"
    )
    flipped = r.with_columns(1 - pl.col("returned"), pl.col("label_closed_at") + dt.timedelta(days=9))
    assert order_line_text(flipped).equals(texts)


def test_order_line_text_minimal_columns() -> None:
    rows = pl.DataFrame({"quantity": [3], "price": [0.125], "item_id": ["A1"]})
    assert order_line_text(rows).to_list() == ["3 x A1 at 0.13 each, line 0.38"]
    with pytest.raises(ValueError, match="price"):
        order_line_text(rows.drop("price"))
