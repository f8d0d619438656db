"""Shopping holidays and the daily traffic curve of the demo period.

Holidays drive the planted "women buy more apparel and cosmetics around holidays"
pattern; public holidays and weekends (from `chinese_calendar`, which knows the
official 调休 make-up working days) shape the everyday traffic.
"""

from __future__ import annotations

from datetime import date, timedelta

import chinese_calendar
import numpy as np
from lunardate import LunarDate

HOLIDAY_WINDOW_DAYS = 3  # the pattern window is holiday ± 3 days (7 days)
HOLIDAY_MULTIPLIER = 2.5  # women's apparel+cosmetics shopping intensity inside the window


def holidays(start: date, end: date) -> list[tuple[str, date]]:
    """(name, date) of 妇女节, 618, 双11 and 春节 falling in [start - window, end + window]."""
    out: list[tuple[str, date]] = []
    for year in range(start.year, end.year + 1):
        out += [("womens_day", date(year, 3, 8)), ("618", date(year, 6, 18)),
                ("double_11", date(year, 11, 11)),
                ("spring_festival", LunarDate(year, 1, 1).to_solar_date())]
    pad = timedelta(days=HOLIDAY_WINDOW_DAYS)
    return sorted((n, d) for n, d in out if start - pad <= d <= end + pad)


def holiday_dates(start: date, end: date) -> list[date]:
    return [d for _, d in holidays(start, end)]


def day_index(start: date, end: date) -> np.ndarray:
    """All days of the period as datetime64[D]."""
    return np.arange(np.datetime64(start, "D"), np.datetime64(end, "D") + 1)


def holiday_window_mask(start: date, end: date) -> np.ndarray:
    """True on days within ± HOLIDAY_WINDOW_DAYS of a pattern holiday."""
    days = day_index(start, end)
    mask = np.zeros(len(days), dtype=bool)
    for h in holiday_dates(start, end):
        offset = (days - np.datetime64(h, "D")).astype(int)
        mask |= np.abs(offset) <= HOLIDAY_WINDOW_DAYS
    return mask


def daily_traffic(start: date, end: date) -> np.ndarray:
    """Relative traffic per day (mean 1): weekends +25%, public holidays +10%,
    and a mild annual cycle (winter and spring higher). Years `chinese_calendar`
    does not know yet fall back to plain weekends."""
    days = day_index(start, end)
    py_days = [date.fromordinal(int(d.astype(int)) + 719163) for d in days]  # ~730 days
    off = np.array([_is_day_off(d) for d in py_days])
    holiday = off & np.array([d.weekday() < 5 for d in py_days])
    doy = np.array([d.timetuple().tm_yday for d in py_days])
    curve = 1.0 + 0.25 * off + 0.10 * holiday + 0.12 * np.cos(2 * np.pi * (doy - 20) / 365)
    return curve / curve.mean()


def _is_day_off(day: date) -> bool:
    """Official day off (holidays and 调休) where known, else Saturday/Sunday."""
    try:
        return not chinese_calendar.is_workday(day)
    except NotImplementedError:  # "no available data for year 2027, only year between …"
        return day.weekday() >= 5
