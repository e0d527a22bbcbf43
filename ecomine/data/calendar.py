"""The calendar: England & Wales bank holidays and the calendar covariates of period starts.

Sits in `ecomine.data` beside the feature builders: `demand_series` adds these
covariates to every (item, period) row, and the demand model
(`ecomine.models.demand.calendar_features`) encodes the same ones for the periods
it forecasts after its data.
"""

from __future__ import annotations

import datetime as dt

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


def _easter(year: int) -> dt.date:
    # Anonymous Gregorian algorithm (Meeus/Jones/Butcher).
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    g = (b - (b + 8) // 25 + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l_) // 451
    month, day = divmod(h + l_ - 7 * m + 114, 31)
    return dt.date(year, month, day + 1)


def _observed(days: list[dt.date]) -> list[dt.date]:
    """Move weekend holidays to the next weekday not already a holiday."""
    taken = {d for d in days if d.weekday() < 5}
    out = sorted(taken)
    for d in sorted(x for x in days if x.weekday() >= 5):
        s = d
        while s.weekday() >= 5 or s in taken:
            s += dt.timedelta(days=1)
        taken.add(s)
        out.append(s)
    return sorted(out)


def _first_monday(year: int, month: int) -> dt.date:
    d = dt.date(year, month, 1)
    return d + dt.timedelta(days=(7 - d.weekday()) % 7)


def _last_monday(year: int, month: int) -> dt.date:
    d = dt.date(year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1)
    return d - dt.timedelta(days=d.weekday())


# One-off changes to the England & Wales calendar (moved or extra days).
_MOVED = {
    dt.date(2012, 5, 28): dt.date(2012, 6, 4),  # Spring holiday -> Diamond Jubilee weekend
    dt.date(2020, 5, 4): dt.date(2020, 5, 8),  # Early May -> VE Day 75
    dt.date(2022, 5, 30): dt.date(2022, 6, 2),  # Spring holiday -> Platinum Jubilee
}
_EXTRA = (
    dt.date(2011, 4, 29),  # Royal wedding
    dt.date(2012, 6, 5),  # Diamond Jubilee
    dt.date(2022, 6, 3),  # Platinum Jubilee
    dt.date(2022, 9, 19),  # State funeral of Queen Elizabeth II
    dt.date(2023, 5, 8),  # Coronation of King Charles III
)


def uk_bank_holidays(start_year: int = 2009, end_year: int = 2027) -> list[dt.date]:
    """England & Wales bank holidays, computed from the statutory rules.

    Rules (New Year, Good Friday, Easter Monday, early-May, spring, summer,
    Christmas, Boxing Day, with weekend substitutes) hold for any year; the
    one-off moves and extra days (jubilees, royal events) are hard-coded and
    known for 2009-2027 only.
    """
    out: list[dt.date] = []
    for y in range(start_year, end_year + 1):
        easter = _easter(y)
        fixed = [
            easter - dt.timedelta(days=2),
            easter + dt.timedelta(days=1),
            _first_monday(y, 5),
            _last_monday(y, 5),
            _last_monday(y, 8),
        ]
        days = _observed([dt.date(y, 1, 1)]) + fixed + _observed(
            [dt.date(y, 12, 25), dt.date(y, 12, 26)]
        )
        days = [_MOVED.get(d, d) for d in days] + [d for d in _EXTRA if d.year == y]
        out.extend(days)
    return sorted(set(out))


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
