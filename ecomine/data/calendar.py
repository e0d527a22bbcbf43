"""The calendar: England & Wales bank holidays and the calendar covariates of period starts.

Sits in `ecomine.data` beside the feature builders: `demand_series` adds these
covariates to every (item, period) row, and the demand model
(`ecomine.models.demand.calendar_features`) encodes the same ones for the periods
it forecasts after its data.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

__all__ = ["uk_bank_holidays", "DEMAND_COVARIATES", "calendar_covariates"]

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


def calendar_covariates(dates: pl.DataFrame, freq: str) -> pl.DataFrame:
    """`dates` (a Date column `date` of period starts) with the `DEMAND_COVARIATES` columns added."""
    d = pl.col("date")
    xmas = pl.date(d.dt.year(), 12, 25)
    next_xmas = pl.when(d <= xmas).then(xmas).otherwise(pl.date(d.dt.year() + 1, 12, 25))
    hol = uk_bank_holidays()
    if freq == "1w":
        hol_s = pl.Series(hol, dtype=pl.Date).dt.truncate("1w").unique()
    else:
        hol_s = pl.Series(hol, dtype=pl.Date)
    return dates.with_columns(
        d.dt.weekday().alias("day_of_week"),
        (d.dt.weekday() >= 6).alias("is_weekend"),
        d.dt.week().alias("week_of_year"),
        d.dt.month().alias("month"),
        d.dt.ordinal_day().alias("day_of_year"),
        (next_xmas - d).dt.total_days().cast(pl.Int32).alias("days_to_christmas"),
        d.is_in(hol_s.implode()).alias("is_uk_holiday"),
    )
