"""Periods and calendar-aware comparison: the same weekday, the same month, the same holiday.

A retailer never compares raw calendar dates across years: 2026-03-07 is a Saturday and
2025-03-07 a Friday, and 春节 fell on 29 January 2025 but 17 February 2026. So a
comparison is built from a `Period` (the days being looked at, in the workspace's local
calendar) and a rule that says which earlier days stand for each of them:

- `wow`: the week before (every day 7 days back: weekdays line up by construction);
- `mom`: the month before, date for date (31 January compares with 31 December; the
  days a shorter month lacks are clamped to its last day, as `add_months` does);
- `yoy` aligned by `date` (whole months, quarters and years: March with March), by
  `weekday` (any other range: the same ISO week and weekday a year before, so a
  Saturday compares with a Saturday), or by `holiday` (a holiday window: the same days
  around the same holiday a year before, lunar holidays included).

Each rule becomes a few `Shift` rows (side, first day, last day, months and days to add
to reach the current period's calendar) that the cube's SQL joins on the local day, so
the comparison itself runs in the engine.
"""

from __future__ import annotations

import calendar as gregorian
import re
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Literal

from lunardate import LunarDate

from jingzhun.analytics.result import AnalyticsError

Against = Literal["yoy", "mom", "wow"]
Align = Literal["auto", "date", "weekday", "holiday"]
AGAINST: tuple[str, ...] = ("yoy", "mom", "wow")
ALIGN: tuple[str, ...] = ("auto", "date", "weekday", "holiday")


@dataclass(frozen=True)
class Holiday:
    """A festival retailers plan around: lunar (month, day of the lunar calendar) or fixed."""

    key: str
    name_zh: str
    name_en: str
    lunar: bool
    month: int
    day: int
    aliases: tuple[str, ...] = ()

    def on(self, year: int) -> date:
        """The festival's (solar) date in `year`."""
        if self.lunar:
            return LunarDate(year, self.month, self.day).to_solar_date()
        return date(year, self.month, self.day)


HOLIDAYS: tuple[Holiday, ...] = (
    Holiday("spring_festival", "春节", "Spring Festival", True, 1, 1, ("chunjie", "lunar_new_year")),
    Holiday("lantern", "元宵", "Lantern Festival", True, 1, 15, ("yuanxiao",)),
    Holiday("dragon_boat", "端午", "Dragon Boat Festival", True, 5, 5, ("duanwu",)),
    Holiday("qixi", "七夕", "Qixi", True, 7, 7, ()),
    Holiday("mid_autumn", "中秋", "Mid-Autumn Festival", True, 8, 15, ("zhongqiu",)),
    Holiday("womens_day", "38", "Women's Day (38)", False, 3, 8, ("女王节", "妇女节", "3.8")),
    Holiday("618", "618", "618", False, 6, 18, ("6.18",)),
    Holiday("double_11", "双11", "Double 11", False, 11, 11, ("双十一", "11.11", "1111")),
)


def find_holiday(name: str) -> Holiday:
    """A holiday by key, Chinese name or alias (case-insensitive)."""
    wanted = name.strip().lower()
    for holiday in HOLIDAYS:
        if wanted in {holiday.key, holiday.name_zh.lower(), *(a.lower() for a in holiday.aliases)}:
            return holiday
    known = ", ".join(f"{h.name_zh} ({h.key})" for h in HOLIDAYS)
    raise AnalyticsError(
        f"unknown holiday {name!r}.", field="holiday", fix=f"use one of: {known}",
        message_zh=f"未知节日 {name!r}。", fix_zh=f"可选：{known}",
    )


@dataclass(frozen=True)
class Period:
    """Local calendar days `start`..`end` (both included), with how the user named them.

    `holiday` is set for a window around a festival (`春节2026±7`): a year-on-year
    comparison then lines up the festival itself.
    """

    start: date
    end: date
    label: str
    holiday: str | None = None

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def whole_months(self) -> bool:
        """Starts on a 1st and ends on a month's last day (a month, quarter or year)."""
        return self.start.day == 1 and self.end == month_end(self.end)


def month_end(day: date) -> date:
    return day.replace(day=gregorian.monthrange(day.year, day.month)[1])


def add_months(day: date, months: int) -> date:
    """`day` moved by whole months, clamped to the target month's last day (as SQL's add_months)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, gregorian.monthrange(year, month + 1)[1]))


def holiday_period(name: str, year: int, before: int = 3, after: int = 3) -> Period:
    """The days from `before` days before the festival to `after` days after it."""
    holiday = find_holiday(name)
    if before < 0 or after < 0:
        raise AnalyticsError("a holiday window cannot have negative days.", field="window",
                             fix="use e.g. 春节2026±7 or 春节2026-3+7",
                             message_zh="节日窗口天数不能为负。", fix_zh="例如 春节2026±7 或 春节2026-3+7")
    day = holiday.on(year)
    window = f"±{before}" if before == after else f"-{before}+{after}"
    return Period(day - timedelta(days=before), day + timedelta(days=after),
                  f"{holiday.name_zh}{year}{window}", holiday=holiday.key)


_HOLIDAY_TEXT = re.compile(r"^(?P<name>.+?)[:@]?(?P<year>\d{4})(?:±(?P<both>\d+)|-(?P<before>\d+)\+(?P<after>\d+))?$")


def parse_period(text: str) -> Period:
    """A period from how analysts write it.

    `2026` · `2026-Q1` · `2026-03` · `2026-W12` (ISO week) · `2026-03-08` ·
    `2026-03-01..2026-03-31` · a holiday window `春节2026`, `双11:2025±3`,
    `mid_autumn:2026-2+5` (default ±3 days).

    Example:
        >>> parse_period("2026-Q1").end
        datetime.date(2026, 3, 31)
    """
    value = text.strip()
    try:
        found = _parse_calendar(value)
    except ValueError:
        found = None
    if found is not None:
        if found.end < found.start:
            raise _bad_period(text, "the end is before the start")
        return found
    holiday = _HOLIDAY_TEXT.match(value)
    if holiday and not holiday.group("name").isdigit():
        before = int(holiday.group("both") or holiday.group("before") or 3)
        after = int(holiday.group("both") or holiday.group("after") or 3)
        return holiday_period(holiday.group("name"), int(holiday.group("year")), before, after)
    raise _bad_period(text, "not a period")


def _parse_calendar(value: str) -> Period | None:
    if ".." in value:
        first, last = (part.strip() for part in value.split("..", 1))
        return Period(date.fromisoformat(first), date.fromisoformat(last), value)
    if re.fullmatch(r"\d{4}", value):
        return Period(date(int(value), 1, 1), date(int(value), 12, 31), value)
    if match := re.fullmatch(r"(\d{4})-?Q([1-4])", value, re.IGNORECASE):
        year, quarter = int(match.group(1)), int(match.group(2))
        start = date(year, 3 * quarter - 2, 1)
        return Period(start, month_end(add_months(start, 2)), f"{year}-Q{quarter}")
    if match := re.fullmatch(r"(\d{4})-W(\d{1,2})", value, re.IGNORECASE):
        start = date.fromisocalendar(int(match.group(1)), int(match.group(2)), 1)
        return Period(start, start + timedelta(days=6), value.upper())
    if match := re.fullmatch(r"(\d{4})-(\d{1,2})", value):
        start = date(int(match.group(1)), int(match.group(2)), 1)
        return Period(start, month_end(start), value)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return Period(date.fromisoformat(value), date.fromisoformat(value), value)
    return None


def _bad_period(text: str, why: str) -> AnalyticsError:
    examples = "2026, 2026-Q1, 2026-03, 2026-W12, 2026-03-08, 2026-03-01..2026-03-31, 春节2026±7"
    return AnalyticsError(
        f"cannot read period {text!r}: {why}.", field="period", fix=f"write it like one of: {examples}",
        message_zh=f"无法识别时间段 {text!r}。", fix_zh=f"请写成以下格式之一：{examples}",
    )


@dataclass(frozen=True)
class Shift:
    """Days `first`..`last` of one side, and what moves them onto the current calendar."""

    side: Literal["current", "base"]
    first: date
    last: date
    months: int = 0
    days: int = 0

    def aligned(self, day: date) -> date:
        return add_months(day, self.months) + timedelta(days=self.days)


@dataclass(frozen=True)
class Comparison:
    """The base period a period is compared with, and how its days line up."""

    current: Period
    base: Period
    against: str
    align: str
    shifts: tuple[Shift, ...]

    def pairs(self) -> list[tuple[date, date]]:
        """(base day, the current day it stands for), for tests and readers."""
        found = []
        for shift in self.shifts:
            if shift.side == "base":
                day = shift.first
                while day <= shift.last:
                    found.append((day, shift.aligned(day)))
                    day += timedelta(days=1)
        return found


def compare_to(period: Period, against: str, align: str = "auto") -> Comparison:
    """The base period for `period` and the shifts that align it.

    Example:
        >>> c = compare_to(parse_period("春节2026±1"), "yoy")
        >>> (c.align, c.base.start, c.base.end)
        ('holiday', datetime.date(2025, 1, 28), datetime.date(2025, 1, 30))
    """
    if against not in AGAINST:
        raise AnalyticsError(f"unknown comparison {against!r}.", field="against", fix="use yoy, mom or wow",
                             message_zh=f"未知对比方式 {against!r}。", fix_zh="可选 yoy（同比）、mom（环比）、wow（周环比）")
    if align not in ALIGN:
        raise AnalyticsError(f"unknown alignment {align!r}.", field="align",
                             fix="use auto, date, weekday or holiday",
                             message_zh=f"未知对齐方式 {align!r}。", fix_zh="可选 auto、date、weekday、holiday")
    chosen = _choose_alignment(period, against, align)
    current = Shift("current", period.start, period.end)
    if chosen == "weekday" and against == "yoy":
        shifts = _iso_weekday_shifts(period)
    elif chosen == "holiday":
        shifts = (_holiday_shift(period),)
    else:
        months, days = {"wow": (0, 7), "mom": (1, 0), "yoy": (12, 0)}[against]
        shifts = (Shift("base", add_months(period.start, -months) - timedelta(days=days),
                        _back(period.end, months, period.whole_months()) - timedelta(days=days), months, days),)
    first, last = min(s.first for s in shifts), max(s.last for s in shifts)
    base = Period(first, last, f"{first.isoformat()}..{last.isoformat()}", holiday=period.holiday)
    return Comparison(period, base, against, chosen, (current, *shifts))


def _back(day: date, months: int, whole: bool) -> date:
    """`day` `months` back; a month's last day stays a month's last day for whole months."""
    moved = add_months(day, -months)
    return month_end(moved) if whole else moved


def _choose_alignment(period: Period, against: str, align: str) -> str:
    if against == "wow":
        return "weekday"
    if against == "mom":
        if align in ("weekday", "holiday"):
            raise AnalyticsError(
                f"month-on-month comparison cannot align by {align}.", field="align",
                fix="use --align date (or auto) with mom; use yoy for weekday or holiday alignment",
                message_zh=f"环比无法按 {align} 对齐。", fix_zh="环比请用 date（或 auto）；按星期或节日对齐请用同比 yoy")
        return "date"
    if align == "holiday" or (align == "auto" and period.holiday):
        if not period.holiday:
            raise AnalyticsError(
                "holiday alignment needs a holiday period.", field="period",
                fix="write the period as a holiday window, e.g. 春节2026±7",
                message_zh="按节日对齐需要节日时间段。", fix_zh="请把时间段写成节日窗口，例如 春节2026±7")
        return "holiday"
    if align == "auto":
        return "date" if period.whole_months() else "weekday"
    return align


def _iso_weekday_shifts(period: Period) -> tuple[Shift, ...]:
    """Same ISO week and weekday one ISO year earlier: a constant 364 or 371 days within an
    ISO year, so a period across a year boundary gets one shift per ISO year. A week 53
    that the earlier year lacks has no base days."""
    shifts: list[Shift] = []
    day = period.start
    while day <= period.end:
        iso_year, week, weekday = day.isocalendar()
        year_end = date.fromisocalendar(iso_year + 1, 1, 1) - timedelta(days=1)
        last = min(period.end, year_end)
        weeks_before = _iso_weeks(iso_year - 1)
        if week <= weeks_before:
            usable_last = last if weeks_before >= _iso_weeks(iso_year) else \
                min(last, date.fromisocalendar(iso_year, weeks_before, 7))
            back = date.fromisocalendar(iso_year - 1, week, weekday)
            offset = (day - back).days
            shifts.append(Shift("base", back, usable_last - timedelta(days=offset), 0, offset))
        day = last + timedelta(days=1)
    shifts = _merged(shifts)
    if not shifts:
        raise AnalyticsError(f"{period.label} has no same-week days a year before.", field="period",
                             fix="use --align date", message_zh=f"{period.label} 在上一年没有对应的周。",
                             fix_zh="请使用 --align date")
    return tuple(shifts)


def _iso_weeks(year: int) -> int:
    """52 or 53: 28 December is always in the ISO year's last week."""
    return date(year, 12, 28).isocalendar()[1]


def _merged(shifts: list[Shift]) -> list[Shift]:
    """Adjacent shifts that move days by the same amount are one."""
    merged: list[Shift] = []
    for shift in shifts:
        last = merged[-1] if merged else None
        if last and (last.months, last.days) == (shift.months, shift.days) \
                and last.last + timedelta(days=1) == shift.first:
            merged[-1] = replace(last, last=shift.last)
        else:
            merged.append(shift)
    return merged


def _holiday_shift(period: Period) -> Shift:
    """The festival inside the window, and the same festival a year earlier."""
    holiday = find_holiday(period.holiday or "")
    inside = [holiday.on(year) for year in {period.start.year, period.end.year}
              if period.start <= holiday.on(year) <= period.end]
    if not inside:
        raise AnalyticsError(f"{period.label} does not contain {holiday.name_en}.", field="period",
                             fix="write the window as 春节2026±7", message_zh=f"{period.label} 不包含{holiday.name_zh}。",
                             fix_zh="请写成 春节2026±7 这样的节日窗口")
    offset = (inside[0] - holiday.on(inside[0].year - 1)).days
    return Shift("base", period.start - timedelta(days=offset), period.end - timedelta(days=offset), 0, offset)


def previous_period(period: Period) -> Period:
    """The same number of days immediately before `period` (a root-cause default base)."""
    end = period.start - timedelta(days=1)
    start = end - timedelta(days=period.days - 1)
    return replace(period, start=start, end=end, label=f"{start.isoformat()}..{end.isoformat()}", holiday=None)
