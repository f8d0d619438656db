"""Holiday and promotion days, for the holiday-shopper share of a person's orders.

Chinese retail sells most on two kinds of days: the official public holidays
(春节, 国庆, 劳动节 … with the make-up 调休 days off, which `chinese_calendar` knows
for the years it covers) and the e-commerce promotion peaks (618, 双11, and
妇女节/女王节 for a beauty and apparel brand). This module lists those days for a
range of years; the traits SQL joins orders to them by local calendar day.
"""

from __future__ import annotations

from datetime import date, timedelta

import pyarrow as pa
from chinese_calendar.constants import holidays as OFFICIAL_HOLIDAYS
from lunardate import LunarDate

# Promotion peaks (month, first day, last day): the days a marketplace's sale festival
# sells most, not the whole pre-sale season (618 runs from late May, 双11 from late October).
PROMOTIONS: dict[str, tuple[int, int, int]] = {
    "womens_day": (3, 7, 8),  # 妇女节 / 女王节
    "618": (6, 16, 18),
    "double_11": (11, 9, 11),
}

_KNOWN_YEARS = range(min(d.year for d in OFFICIAL_HOLIDAYS), max(d.year for d in OFFICIAL_HOLIDAYS) + 1)


def _official_days(year: int) -> dict[date, str]:
    """Public holidays (days off) of `year`: from `chinese_calendar` when it knows the
    year, else the fixed core of the calendar (元旦, 春节 week, 劳动节, 国庆 week)."""
    if year in _KNOWN_YEARS:
        return {
            day: _holiday_key(name)
            for day, name in OFFICIAL_HOLIDAYS.items()
            if day.year == year
        }
    spring = LunarDate(year, 1, 1).to_solar_date() if 1900 < year < 2100 else None
    days = {date(year, 1, 1): "new_years_day"}
    days |= {date(year, 5, d): "labour_day" for d in range(1, 6)}
    days |= {date(year, 10, d): "national_day" for d in range(1, 8)}
    if spring is not None:
        days |= {spring + timedelta(days=k): "spring_festival" for k in range(-1, 6)}
    return days


def _holiday_key(name: object) -> str:
    """`chinese_calendar`'s English holiday name as a snake_case key."""
    text = getattr(name, "value", name)
    return str(text).lower().replace("'", "").replace("-", "_").replace(" ", "_")


def holiday_days(first_year: int, last_year: int) -> dict[date, str]:
    """Every holiday or promotion day of the years, with its name (a public holiday
    wins when a promotion falls on it, e.g. 618 on the Dragon Boat Festival)."""
    days: dict[date, str] = {}
    for year in range(first_year, last_year + 1):
        for name, (month, first, last) in PROMOTIONS.items():
            days |= {date(year, month, d): name for d in range(first, last + 1)}
        days |= _official_days(year)
    return dict(sorted(days.items()))


def holiday_table(first_year: int, last_year: int) -> pa.Table:
    """`holiday_days` as an Arrow table (day DATE, name VARCHAR) for the engine."""
    days = holiday_days(first_year, last_year)
    return pa.table({"day": pa.array(list(days), pa.date32()), "name": pa.array(list(days.values()), pa.string())})


def is_holiday(day: date) -> bool:
    """True on a holiday or promotion day (the same rule the SQL applies)."""
    return day in holiday_days(day.year, day.year)


__all__ = ["PROMOTIONS", "holiday_days", "holiday_table", "is_holiday"]
