"""The calendar: England & Wales bank holidays and the calendar covariates of period starts.

Sits in `ecomine.data` beside the feature builders: `demand_series` adds these
covariates to every (item, period) row, and the demand model
(`ecomine.models.demand.calendar_features`) encodes the same ones for the periods
it forecasts after its data.
"""

from __future__ import annotations

import datetime as dt

import holidays
import numpy as np
import polars as pl

__all__ = ["uk_bank_holidays", "DEMAND_COVARIATES", "calendar_columns", "calendar_covariates"]

# Calendar covariates `demand_series` adds to every (item, period) row.
DEMAND_COVARIATES: tuple[str, ...] = (
    "day_of_week",
    "is_weekend",
    "week_of_year",
    "month",
    "day_of_year",
    "days_to_christmas",
    "is_uk_holiday",
)


def uk_bank_holidays(start_year: int = 2009, end_year: int = 2030) -> list[dt.date]:
    """England & Wales bank holidays in [start_year, end_year], sorted: the days banks close.

    From the `holidays` package (statutory rules, substitute days and the one-off
    changes - jubilees, royal events - it keeps up to date). It also lists a
    holiday that falls on a weekend on its calendar date; only its weekday
    substitute is a bank holiday, so weekend dates are left out.
    """
    days = holidays.country_holidays("GB", subdiv="ENG", years=range(start_year, end_year + 1))
    return sorted(d for d in days if d.weekday() < 5)


def calendar_columns(dates: np.ndarray, freq: str) -> dict[str, np.ndarray]:
    """The `DEMAND_COVARIATES` of period starts (datetime64[D]) as numpy arrays, one per name.

    day_of_week 1=Mon..7=Sun, is_weekend, ISO week_of_year, month, day_of_year,
    days_to_christmas (to the next Dec 25, 0 on the day), is_uk_holiday (weekly
    periods, `freq="1w"`: any bank holiday in the 7 days from the start). The one
    calendar of the package: `demand_series` adds these columns, the demand model
    encodes them for the periods it forecasts (`models.demand.calendar_features`).
    """
    d = np.asarray(dates, dtype="datetime64[D]")
    if d.size == 0:
        empty = np.zeros(0, np.int64)
        return {name: empty.astype(bool) if name.startswith("is_") else empty for name in DEMAND_COVARIATES}
    years = d.astype("datetime64[Y]").astype(np.int64) + 1970
    hol = np.array(uk_bank_holidays(int(years.min()) - 1, int(years.max()) + 1), dtype="datetime64[D]")
    is_hol = np.zeros(d.shape, bool)
    for k in range(7 if freq == "1w" else 1):
        is_hol |= np.isin(d + k, hol)
    dow = (d.astype(np.int64) + 3) % 7 + 1  # 1970-01-01 was a Thursday
    december = d.astype("datetime64[Y]").astype("datetime64[M]") + 11
    xmas = december.astype("datetime64[D]") + 24
    next_xmas = (december + 12).astype("datetime64[D]") + 24
    to_xmas = np.where(d <= xmas, xmas - d, next_xmas - d).astype(np.int64)
    year_start = d.astype("datetime64[Y]").astype("datetime64[D]")
    iso_thursday = d + (4 - dow)  # ISO week: the week of its Thursday
    week = (iso_thursday - iso_thursday.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.int64) // 7 + 1
    return {
        "day_of_week": dow,
        "is_weekend": dow >= 6,
        "week_of_year": week,
        "month": d.astype("datetime64[M]").astype(np.int64) % 12 + 1,
        "day_of_year": (d - year_start).astype(np.int64) + 1,
        "days_to_christmas": to_xmas,
        "is_uk_holiday": is_hol,
    }


_DTYPES = {"day_of_week": pl.Int8, "is_weekend": pl.Boolean, "week_of_year": pl.Int8, "month": pl.Int8,
           "day_of_year": pl.Int16, "days_to_christmas": pl.Int32, "is_uk_holiday": pl.Boolean}


def calendar_covariates(dates: pl.DataFrame, freq: str) -> pl.DataFrame:
    """`dates` (a Date column `date` of period starts) with the `DEMAND_COVARIATES` columns added."""
    cols = calendar_columns(dates["date"].to_numpy().astype("datetime64[D]"), freq)
    return dates.with_columns(pl.Series(name, cols[name], dtype=_DTYPES[name]) for name in DEMAND_COVARIATES)
