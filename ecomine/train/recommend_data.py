"""The recommender's training data for a TrainSpec: events -> vocabulary -> leakage-free id splits.

Sits at the start of `train` for the recommend task: it reads the events
(`train.events`), calls `ecomine.data` (features, splits) and hands the
per-worker loop plain numpy arrays, so the loop never touches polars or the
source files.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from ecomine.specs import TrainSpec
from ecomine.train.events import load_training_events

if TYPE_CHECKING:
    from ecomine.models.item_tokens import ItemTokens

__all__ = ["RecommendData", "prepare_recommend_data"]


@dataclass
class RecommendData:
    """Everything the recommender's loop and evaluation need, as ids."""

    vocab_items: list[str]
    vocab_texts: list[str | None]
    train_sequences: list[np.ndarray]  # per user, items[:-2] (all items for short users)
    valid_histories: list[np.ndarray]
    valid_targets: np.ndarray
    test_histories: list[np.ndarray]
    test_targets: np.ndarray
    test_users: list[str]
    fingerprint: str
    n_users: int
    n_events: int
    test_target_ts: np.ndarray | None = None  # datetime64[us] of each test target (the retraining gate's newest holdout)

    @property
    def n_items(self) -> int:
        return len(self.vocab_items)

    @cached_property
    def item_tokens(self) -> ItemTokens:
        """The items' text tokens (`models.item_tokens`), cut once per data set: every model, window cut and
        warm start of a run reads this one (`RecommendTask.prepare` cuts it on the driver when the spec uses it)."""
        from ecomine.models.item_tokens import item_tokens

        return item_tokens(self.vocab_texts)


def prepare_recommend_data(spec: TrainSpec, events: pl.DataFrame | None = None, fingerprint: str = "") -> RecommendData:
    """Purchase sequences -> item vocabulary -> leave-one-out id splits."""
    from ecomine.data.features import item_catalogue, user_sequences
    from ecomine.data.splits import leave_one_out

    if events is None:
        events, fingerprint = load_training_events(spec.data)
    # Consecutive repeats are kept: buying the same item again is one of the
    # behaviours the model exists to predict.
    seqs = user_sequences(events, event="purchase", dedupe_consecutive=False, min_len=1)
    splits = leave_one_out(seqs, min_len=spec.eval.min_len)
    catalogue = item_catalogue(events).sort("item_id")
    items = catalogue["item_id"].to_list()
    texts = catalogue["item_text"].to_list() if "item_text" in catalogue.columns else [None] * len(items)
    index = {item: i + 1 for i, item in enumerate(items)}  # 0 is padding (models.recommend.PAD_ID)

    def ids(xs: list[str]) -> np.ndarray:
        return np.fromiter((index[x] for x in xs), dtype=np.int64, count=len(xs))

    valid, test = splits.valid, splits.test
    if spec.eval.max_users is not None and test.height > spec.eval.max_users:
        test = test.sample(spec.eval.max_users, seed=spec.optim.seed).sort("user_id")
        valid = valid.join(test.select("user_id"), on="user_id", how="semi")
    return RecommendData(
        vocab_items=items,
        vocab_texts=texts,
        train_sequences=[ids(s) for s in splits.train["items"].to_list() if len(s) >= 2],
        valid_histories=[ids(h) for h in valid["history"].to_list()],
        valid_targets=ids(valid["target"].to_list()),
        test_histories=[ids(h) for h in test["history"].to_list()],
        test_targets=ids(test["target"].to_list()),
        test_users=test["user_id"].to_list(),
        fingerprint=fingerprint,
        n_users=seqs.height,
        n_events=events.height,
        test_target_ts=test["target_ts"].dt.replace_time_zone(None).to_numpy() if "target_ts" in test.columns else None,
    )
