"""Training events for a TrainSpec's data: the synthetic log or a DataSpec, cleaned, windowed, fingerprinted.

Sits at the start of `train`, for every task: it calls `ecomine.data` (readers,
cleaning) and `ecomine.datasets`; each task's data preparation
(`recommend_data`, `demand_task`, `risk_task`) and batch scoring start here.
"""

from __future__ import annotations

import hashlib

import polars as pl

from ecomine.specs import DataSpec, DataWindow, SpecDataRef, SpecError, SyntheticDataRef, load_spec

__all__ = ["load_training_events", "window_events"]


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
