"""From a score vector over the catalogue to the items a caller gets back.

Sits in ``ecomine.predict``, between a model's scores (one row per request, from
the deployments, batch scoring or the retrain holdout) and the answer: exclusions, the category filter,
top-k, the popular-items fallback and the item metadata (title, category,
price) from the model's vocabulary and the optional catalogue table. Numpy and
polars only; Ray-free and torch-free, so unit tests check it directly.

Ids follow ``ecomine.models.recommend``: 0 is padding, items are 1..n.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["FALLBACK_REASONS", "ItemCatalogue", "top_k", "popular_fill", "Rejected"]

# reason code (metrics tag) -> message (response field)
FALLBACK_REASONS = {
    "unknown_user": "unknown user: no stored history for this user_id; popular items instead",
    "no_users_table": "no users table configured (recommend.users_uri): popular items instead",
    "no_known_items": "none of the history's items is in the model's catalogue; popular items instead",
    "empty_history": "the history is empty; popular items instead",
}


class Rejected(ValueError):
    """A request the model deployment refuses (answered 422): ``loc`` names the field."""

    def __init__(self, loc: list[str | int], msg: str) -> None:
        super().__init__(msg)
        self.loc = loc
        self.msg = msg

    def to_dict(self) -> dict[str, Any]:
        return {"loc": self.loc, "msg": self.msg, "type": "value_error"}


@dataclass
class ItemCatalogue:
    """Per-id metadata aligned with one vocabulary: titles, category codes, prices.

    ``category_code[i]`` is -1 where item i has no category; ``categories`` lists names by code.
    Titles and prices are plain Python values read by index on the request path (numpy scalar reads
    and NaN checks per answered item cost more than the rest of ``describe``).
    """

    titles: list[str | None]  # index = model id (0: padding, None)
    category_code: np.ndarray  # int32 [n + 1]: the category filter's mask is built from it
    categories: list[str]
    prices: list[float | None]  # [n + 1], None where unknown
    _code_of: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._code_of = {name: i for i, name in enumerate(self.categories)}
        self._category_of = [self.categories[c] if c >= 0 else None for c in self.category_code.tolist()]

    @classmethod
    def build(cls, items: list[str], texts: list[str | None], table: Any | None = None) -> ItemCatalogue:
        """Align a catalogue table (polars: item_id + optional category/item_text/median_price) with ``items``."""
        n = len(items)
        titles: list[str | None] = [None, *(texts if texts else [None] * n)]
        codes = np.full(n + 1, -1, dtype=np.int32)
        prices: list[float | None] = [None] * (n + 1)
        categories: list[str] = []
        if table is not None and table.height:
            index = {item: i + 1 for i, item in enumerate(items)}
            ids = table["item_id"].cast(str).to_list()
            rows = [(r, index[item]) for r, item in enumerate(ids) if item in index]
            if "category" in table.columns:
                values = table["category"].cast(str).to_list()
                names = sorted({values[r] for r, _ in rows if values[r] is not None})
                code_of = {name: c for c, name in enumerate(names)}
                categories = names
                for r, i in rows:
                    if values[r] is not None:
                        codes[i] = code_of[values[r]]
            if "item_text" in table.columns:
                values = table["item_text"].to_list()
                for r, i in rows:
                    if titles[i] is None and values[r]:
                        titles[i] = str(values[r])
            if "median_price" in table.columns:
                values = table["median_price"].cast(float).to_list()
                for r, i in rows:
                    if values[r] is not None and values[r] == values[r]:  # neither null nor NaN
                        prices[i] = float(values[r])
        return cls(titles=titles, category_code=codes, categories=categories, prices=prices)

    def allowed(self, categories: list[str] | None) -> np.ndarray | None:
        """Boolean mask of the items in ``categories`` (None: everything); unknown names are Rejected."""
        if categories is None:
            return None
        if not self.categories:
            raise Rejected(
                ["body", "categories"],
                "this deployment has no item categories (configure recommend.catalogue_uri with a 'category' column)",
            )
        codes = []
        for pos, name in enumerate(categories):
            code = self._code_of.get(name)
            if code is None:
                shown = ", ".join(self.categories[:20]) + (" ..." if len(self.categories) > 20 else "")
                raise Rejected(["body", "categories", pos], f"unknown category {name!r}; known: {shown}")
            codes.append(code)
        return np.isin(self.category_code, np.array(codes, dtype=np.int32))

    def describe(self, i: int) -> dict[str, Any]:
        return {
            "title": self.titles[i] if i < len(self.titles) else None,
            "category": self._category_of[i],
            "price": self.prices[i],
        }


def top_k(
    scores: np.ndarray, k: int, *, banned: np.ndarray | None = None, allowed: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best ids of one score row (id 0 never), best first, skipping banned / not-allowed ids.

    Returns (ids, scores); fewer than ``k`` when fewer ids remain.
    """
    s = np.array(scores, dtype=np.float64, copy=True)
    s[0] = -np.inf
    if banned is not None and len(banned):
        s[banned] = -np.inf
    if allowed is not None:
        s[~allowed] = -np.inf
    n_ok = int(np.isfinite(s).sum())
    k = min(k, n_ok)
    if k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    part = np.argpartition(-s, k - 1)[:k]
    order = part[np.argsort(-s[part], kind="stable")]
    return order.astype(np.int64), s[order]


def popular_fill(
    popular: np.ndarray, k: int, *, banned: np.ndarray | None = None, allowed: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The fallback answer: the first ``k`` popular ids that pass the filters.

    Scores are popularity ranks scaled to (0, 1]: 1 for the most popular id, then
    ``1 - rank / len(popular)``.
    """
    n = len(popular)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    keep = np.ones(n, dtype=bool)
    if banned is not None and len(banned):
        keep &= ~np.isin(popular, banned)
    if allowed is not None:
        keep &= allowed[popular]
    ranks = np.flatnonzero(keep)[:k]
    return popular[ranks].astype(np.int64), 1.0 - ranks / n
