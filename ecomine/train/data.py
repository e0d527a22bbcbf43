"""Training data for a TrainSpec: events -> vocabulary -> leakage-free id splits.

Sits at the start of `train`: it calls `ecomine.data` (readers, cleaning,
features, splits) and hands the per-worker loop plain numpy arrays, so the loop
never touches polars or the source files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import polars as pl

from ecomine.specs import DataSpec, DataWindow, SpecDataRef, SpecError, SyntheticDataRef, TrainSpec, load_spec

__all__ = ["RecommendData", "load_training_events", "window_events", "prepare_recommend_data"]


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


def load_training_events(ref: SyntheticDataRef | SpecDataRef) -> tuple[pl.DataFrame, str]:
    """Clean canonical events (inside `ref.window` when set) and a fingerprint of where they came from."""
    events, fp = _load_all_events(ref)
    if ref.window is None:
        return events, fp
    windowed = window_events(events, ref.window)
    return windowed, hashlib.sha256(f"{fp}:window:{ref.window.model_dump_json()}".encode()).hexdigest()


def window_events(events: pl.DataFrame, window: DataWindow) -> pl.DataFrame:
    """The events inside `window` (cleaning ran on the whole log first, so returns still link to
    purchases made before the window opened). SpecError naming the window when none are left."""
    from datetime import datetime, time, timedelta, timezone

    def day(d) -> datetime:
        return datetime.combine(d, time(0), tzinfo=timezone.utc)

    if events.height == 0:
        raise SpecError(f"data.window ({window.describe()}): the log has no events")
    end = day(window.until) if window.until is not None else events["ts"].max() + timedelta(microseconds=1)
    start = day(window.since) if window.since is not None else (
        end - timedelta(days=window.last_days) if window.last_days is not None else None
    )
    keep = pl.col("ts") < end
    if start is not None:
        keep = keep & (pl.col("ts") >= start)
    out = events.filter(keep)
    if out.height == 0:
        raise SpecError(
            f"data.window ({window.describe()}): no events in [{start or '-'}, {end}); "
            f"the log spans {events['ts'].min()} .. {events['ts'].max()}"
        )
    return out


def _load_all_events(ref: SyntheticDataRef | SpecDataRef) -> tuple[pl.DataFrame, str]:
    if isinstance(ref, SyntheticDataRef):
        from ecomine.data.cleaning import clean_frame
        from ecomine.datasets.synthetic import GENERATOR_VERSION, SynthParams, generate

        params = SynthParams(users=ref.users, items=ref.items, days=ref.days, seed=ref.seed)
        events, _ = clean_frame(generate(params).events, name="synthetic")  # links returns like real data
        fp = hashlib.sha256(f"synthetic:{GENERATOR_VERSION}:{params.model_dump_json()}".encode()).hexdigest()
        return events, fp
    from ecomine.data.build import clean_events
    from ecomine.datasets import resolve_data_spec_path

    # the DataSpec's engine decides: in this process, or through Ray Data (same events either way)
    events, report = clean_events(load_spec(resolve_data_spec_path(ref.spec), DataSpec))
    return events, report.fingerprint


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
