"""The demand model's time axis: period dates, calendar covariates, the season and the year in periods.

Sits in `models` under `demand` (which re-exports these names): computed from dates
alone, the same for training and serving, so a served model builds the calendar of
periods after its data. `data.calendar` holds the calendar itself (holidays,
Christmas); this module encodes it for the network.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from ecomine.data.calendar import calendar_columns

__all__ = ["N_CALENDAR", "year_lag_periods", "season_length", "period_dates", "calendar_features"]

N_CALENDAR = 13  # columns of calendar_features


def year_lag_periods(freq: str) -> int:
    """Periods one year back: 52 weeks, or 364 days (the same weekday)."""
    return 364 if freq == "1d" else 52


def season_length(freq: str) -> int:
    """Seasonal period used by the seasonal-naive features and baselines: a week of days, or 1 week."""
    return 7 if freq == "1d" else 1


def period_dates(start: dt.date, n: int, freq: str) -> np.ndarray:
    """`n` period start dates from `start` as datetime64[D]."""
    step = 7 if freq == "1w" else 1
    return np.datetime64(start, "D") + np.arange(n) * step


def calendar_features(dates: np.ndarray, freq: str) -> np.ndarray:
    """Calendar covariates of period starts [T, N_CALENDAR] (float32), the same for training and serving.

    Day of week one-hot (7; constant Monday for weekly), UK bank holiday in the
    period, weeks to the next Christmas / 52 and its inverse 1/(1+weeks) (sharp
    near the peak), month as sin/cos, weekend (daily). An encoding of the one
    calendar (`ecomine.data.calendar.calendar_columns`), computed from dates alone,
    so the served model can build it for periods after its data.
    """
    d = np.asarray(dates, dtype="datetime64[D]")
    if d.size == 0:
        return np.zeros((0, N_CALENDAR), np.float32)
    cal = calendar_columns(d, freq)
    dow = cal["day_of_week"] - 1  # 0 = Monday
    weeks = cal["days_to_christmas"] / 7.0
    month = cal["month"] - 1
    out = np.zeros((d.size, N_CALENDAR), np.float32)
    out[np.arange(d.size), dow] = 1.0
    out[:, 7] = cal["is_uk_holiday"]
    out[:, 8] = weeks / 52.0
    out[:, 9] = 1.0 / (1.0 + weeks)
    out[:, 10] = np.sin(2 * np.pi * month / 12)
    out[:, 11] = np.cos(2 * np.pi * month / 12)
    out[:, 12] = cal["is_weekend"] & (freq == "1d")
    return out
