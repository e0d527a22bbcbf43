"""The synthetic log's parameters (`SynthParams`) and what `generate` returns (`SynthLog`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

# Bumped whenever the same params would give a different log (fingerprints should include it).
GENERATOR_VERSION = 1


class SynthParams(BaseModel):
    """Sizes and knobs of the synthetic log; the same params give the same log."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    users: int = Field(1000, ge=1, description="number of users")
    items: int = Field(300, ge=1, description="number of items")
    days: int = Field(365, ge=1, description="length of the log in days")
    seed: int = Field(0, ge=0, description="numpy default_rng seed")
    start: date = Field(date(2023, 1, 1), description="first day of the log (UTC)")
    n_categories: int = Field(12, ge=1, le=60, description="number of item categories")
    orders_per_year: float = Field(6.0, gt=0, description="mean orders per user per year")
    repeat_prob: float = Field(0.08, ge=0, le=1, description="P(line repeats an earlier order's line)")
    successor_prob: float = Field(0.3, ge=0, le=1, description="P(line is the successor of the previous line)")
    return_rate: float = Field(0.05, ge=0, lt=1, description="mean return probability of a purchase line")
    wholesale_share: float = Field(0.05, ge=0, le=1, description="share of wholesale users")
    drift: float = Field(0.5, ge=0, le=1, description="how far interests move from start to end")
    browse_rate: float = Field(0.25, ge=0, le=1, description="share of orders preceded by views/carts")
    closed_weekday: int | None = Field(5, ge=0, le=6, description="weekday without orders (0=Mon), or null")

    @model_validator(mode="before")
    @classmethod
    def _fewer_categories_for_few_items(cls, data: Any) -> Any:
        # `--items 5` without an explicit n_categories: use one category per item
        if isinstance(data, dict) and "n_categories" not in data and isinstance(data.get("items"), int):
            if 1 <= data["items"] < cls.model_fields["n_categories"].default:
                data = {**data, "n_categories": data["items"]}
        return data

    @model_validator(mode="after")
    def _check(self) -> "SynthParams":
        if self.items < self.n_categories:
            raise ValueError(
                f"items={self.items} must be >= n_categories={self.n_categories} (one item per category at least)"
            )
        if self.repeat_prob + self.successor_prob > 1:
            raise ValueError(
                f"repeat_prob + successor_prob = {self.repeat_prob + self.successor_prob} must be <= 1"
            )
        return self


@dataclass(frozen=True)
class SynthLog:
    """A generated log: canonical `events` plus the ground truth behind them.

    - `events`: canonical events + `country`, `category` (validate_events passes).
    - `user_interests`: user_id, category, phase ("start" | "end"), date, weight.
    - `item_rates`: item_id, date, expected_units (expected gross purchased units).
    - `return_propensity`: one row per purchase line: order_id, item_id, user_id,
      probability, the factor flags of RETURN_FACTORS, returned (bool, observed).
    - `items`: item_id, category, title, base_price, popularity (within category,
      while on sale), collection, successor_item_id, on_sale_from / on_sale_to
      (first / last day on sale; null where the window reaches past the span).
    - `users`: user_id, country, wholesale, orders_per_year.
    - `returns_truth`: return order_id, item_id, user_id, quantity,
      purchase_order_id (the order the return cancels).
    """

    params: SynthParams
    events: pl.DataFrame
    user_interests: pl.DataFrame
    item_rates: pl.DataFrame
    return_propensity: pl.DataFrame
    items: pl.DataFrame
    users: pl.DataFrame
    returns_truth: pl.DataFrame

    def truth(self) -> dict[str, pl.DataFrame]:
        """The truth frames by name (as written under `truth/`)."""
        return {
            "user_interests": self.user_interests,
            "item_rates": self.item_rates,
            "return_propensity": self.return_propensity,
            "items": self.items,
            "users": self.users,
            "returns_truth": self.returns_truth,
        }
