"""Funnels: how many persons go through a sequence of steps within a conversion window.

A step is an event (by name, with property and product filters: "Product Viewed" of a
cosmetics product) or an order (by platform, status, product). A person enters the
funnel with a step-1 record inside the date range and converts to step k when steps
2..k follow within the conversion window of that entry. Every step-1 record is tried
as the entry and a person keeps the one that reaches furthest (the earliest among
equals), so one unlucky first visit does not hide a later conversion.

Two step orders:

* `strict` — the steps in the given order, each strictly after the previous one
  (other events may happen in between). From a fixed entry, taking the earliest next
  step each time reaches at least as far as any other choice, so the chain is found
  with window functions, not by pairing every record with every other:

      moments  (person, instant, which steps happened then)
      next_k   = first instant with step k after this one   (MIN … OVER ROWS 1 FOLLOWING …)
      t1 = entry, t2 = next_2(t1), t3 = next_3 at t2, …      (an equi-join per step)
      kept while t_k − t1 ≤ window

* `any` — any k of the steps within the window after the entry, in any order (a
  RANGE window over the entry's next `window` seconds); step k means "k of N steps".

Per step: persons, conversion from step 1 and from the previous step, and the median
time from the previous step (strict order). A breakdown splits persons by the entry's
`channel` or `platform`, or by a person attribute (gender, age band, audience, …).
All of it is one SELECT the engine runs; `Analysis.sql["funnel"]` reruns it as is.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlglot import exp

from jingzhun.analytics.behaviour_common import (
    DEFAULT_TIMEZONE,
    EVENT_OWNER,
    LINE_CATEGORY,
    ORDER_OWNER,
    PERSON_DIMENSIONS,
    UNKNOWN,
    analytics_error,
    bind,
    check_range,
    choose,
    day_start,
    person_groups_sql,
    ratio,
    rounded,
)
from jingzhun.analytics.result import Analysis, Chart
from jingzhun.engine import Engine, json_text, parse_sql
from jingzhun.profiles.rules import NO_VALUE_OPS, ProductFilter, PropertyFilter, parse_duration
from jingzhun.profiles.rules_compiler import compare, literal

MAX_STEPS = 10
STEP_ORDERS = ("strict", "any")
ENTRY_DIMENSIONS = ("channel", "platform")
BREAKDOWNS = (*ENTRY_DIMENSIONS, *PERSON_DIMENSIONS)
_NOT_PURCHASES = ("cancelled", "refunded")
Names = str | list[str]

# The entry's channel and platform: an event's `channel` (web, app, miniprogram) and its
# device platform (the SDK's context.os.name; browsers send none); an order's `channel`
# (online, offline) and `platform` (web, app, tmall, jd, douyin_shop, pos, ...).
_ENTRY_COLUMNS = {
    "event": {"channel": "e.channel",
              "platform": "COALESCE(e.context->>'$.os.name', e.channel)"},
    "order": {"channel": "o.channel", "platform": "o.platform"},
}


class FunnelStep(BaseModel):
    """One step: an event (names and filters) or an order (platform, status, product)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["event", "order"] = "event"
    event: Names | None = None
    where: list[PropertyFilter] = Field(default_factory=list)
    product: ProductFilter | None = None
    channel: Names | None = None
    platform: Names | None = None
    status: Names | None = None
    label: str | None = None

    @model_validator(mode="after")
    def _fits_kind(self) -> FunnelStep:
        if self.kind == "event" and not self.event:
            raise ValueError("an event step needs `event` (an event name or a list of names)")
        if self.kind == "event" and (self.platform or self.status):
            raise ValueError("`platform` and `status` filter order steps; events take `channel`")
        if self.kind == "order" and (self.event or self.where):
            raise ValueError("an order step takes no `event` or `where`; filter with platform, "
                             "channel, status or product")
        return self

    @property
    def name(self) -> str:
        """How the step is shown: its label, else its event name(s), else "order"."""
        if self.label:
            return self.label
        if self.kind == "order":
            return "order" if self.platform is None else f"order ({_text(self.platform)})"
        return _text(self.event)


def _text(names: Names | None) -> str:
    return names if isinstance(names, str) else " | ".join(names or [])


def _names(names: Names) -> list[str]:
    return [names] if isinstance(names, str) else list(names)


def parse_step(value: object, index: int = 0) -> FunnelStep:
    """A step from its short forms: "Product Viewed", "order", {"event": …, "where": […]},
    {"order": {"platform": "tmall"}} (optionally with "label")."""
    if isinstance(value, FunnelStep):
        return value
    try:
        if isinstance(value, str):
            return FunnelStep(kind="order") if value.strip().lower() == "order" \
                else FunnelStep(event=value.strip())
        if isinstance(value, dict) and "order" in value:
            spec = dict(value["order"] or {})
            return FunnelStep(kind="order", label=value.get("label"), **spec)
        if isinstance(value, dict):
            return FunnelStep(**value)
    except (ValidationError, TypeError) as invalid:
        raise analytics_error(
            f"step {index + 1} is not a valid funnel step: {invalid}",
            f"第 {index + 1} 步不是有效的漏斗步骤：{invalid}", f"steps[{index}]",
            'e.g. "Product Viewed", {"event": "Product Viewed", "where": [{"property": '
            '"category", "op": "=", "value": "cosmetics"}]} or {"order": {"platform": "tmall"}}',
            '例如 "Product Viewed"，或 {"order": {"platform": "tmall"}}') from None
    raise analytics_error(f"step {index + 1} must be an event name or an object, not {value!r}.",
                          f"第 {index + 1} 步应为事件名或对象，而不是 {value!r}。", f"steps[{index}]",
                          'write "Product Viewed" or {"order": {}}', '写成 "Product Viewed" 或 {"order": {}}')


def conversion_window(window: str | dt.timedelta) -> dt.timedelta:
    """The window as a timedelta ("7d", "24h", "2w"); it must be positive."""
    if isinstance(window, dt.timedelta):
        span = window
    else:
        try:
            span = parse_duration(window)
        except ValueError:
            span = dt.timedelta(0)
    if span <= dt.timedelta(0):
        raise analytics_error(f"the conversion window {window!r} is not a positive duration.",
                              f"转化窗口 {window!r} 不是正的时长。", "window",
                              "write a number and a unit: 24h, 7d, 2w", "写成数字加单位：24h、7d、2w")
    return span


# ---- step filters ---------------------------------------------------------------------------


def _property(item: PropertyFilter) -> exp.Expression:
    """An event property compared with the filter's value (numbers compared as numbers)."""
    prop = json_text(exp.column("properties", table="e"), f"$.{item.property}")
    values = item.value if isinstance(item.value, list) else [item.value]
    numeric = item.value is not None and item.op != "contains" and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    column = exp.TryCast(this=prop, to=exp.DataType.build("DOUBLE"), safe=True) if numeric else prop
    typed = values if numeric else [str(v).lower() if isinstance(v, bool) else str(v) for v in values]
    found = compare(column, item.op, typed if isinstance(item.value, list) else typed[0])
    return found if item.op in NO_VALUE_OPS else exp.Coalesce(this=found, expressions=[exp.false()])


def _isin(column: str, values: Names) -> exp.Expression:
    return exp.column(*reversed(column.split("."))).isin(*[literal(v) for v in _names(values)])


def _products(product: ProductFilter) -> exp.Select:
    """The product_ids a product filter keeps."""
    return exp.select("product_id").from_("products").where(
        *[_isin(name, values) for name, values in product.filters()])


def step_filter(step: FunnelStep) -> exp.Expression:
    """The WHERE condition of one step over `events AS e` or `orders AS o`."""
    if step.kind == "event":
        found = [_isin("e.event", step.event or []), *[_property(item) for item in step.where]]
        if step.channel is not None:
            found.append(_isin("e.channel", step.channel))
        if step.product is not None:
            product_id = json_text(exp.column("properties", table="e"), "$.product_id")
            found.append(product_id.isin(query=_products(step.product)))
        return exp.and_(*found)
    found = [_isin(f"o.{name}", getattr(step, name)) for name in ("channel", "platform", "status")
             if getattr(step, name) is not None]
    if step.status is None:  # a purchase: cancelled and refunded orders do not count
        kept = exp.not_(_isin("o.status", list(_NOT_PURCHASES)))
        found.append(exp.or_(exp.column("status", table="o").is_(exp.null()), kept))
    if step.product is not None:
        product_id = exp.condition("COALESCE(oi.product_id, pb.product_id, ps.product_id)")
        lines = parse_sql(f"SELECT oi.order_id FROM {LINE_CATEGORY}").where(
            product_id.isin(query=_products(step.product)))
        found.append(exp.column("order_id", table="o").isin(query=lines))
    return exp.and_(*found) if found else exp.true()


# ---- the query ------------------------------------------------------------------------------


def _step_sql(step: FunnelStep, number: int, entry_column: str | None, bounds: list[str]) -> str:
    """SELECT person_id, ts, step, via for the records of one step."""
    kind = step.kind
    ts = "e.timestamp" if kind == "event" else "o.placed_at"
    via = _ENTRY_COLUMNS[kind][entry_column] if entry_column else "NULL"
    source = f"events AS e {EVENT_OWNER}" if kind == "event" else f"orders AS o {ORDER_OWNER}"
    where = " AND ".join([*(bound.format(ts=ts) for bound in bounds), f":step_{number}"])
    return (f"SELECT rp.person_id, {ts} AS ts, {number} AS step, CAST({via} AS VARCHAR) AS via "
            f"FROM {source} WHERE {where}")


def _strict_ctes(count: int, entry: str) -> str:
    """moments → next_k → each entry's greedy chain t1..tN (NULL once out of the window)."""
    nexts = ", ".join(
        f"MIN(CASE WHEN is_{k} = 1 THEN ts END) OVER (PARTITION BY person_id ORDER BY ts "
        f"ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) AS next_{k}" for k in range(2, count + 1))

    def reached(k: int) -> str:
        holder = "s" if k == 2 else f"n{k - 1}"
        return (f"CASE WHEN EPOCH({holder}.next_{k}) - EPOCH(s.ts) <= :window "
                f"THEN {holder}.next_{k} END")

    joins = " ".join(f"LEFT JOIN nexts AS n{k} ON n{k}.person_id = s.person_id AND n{k}.ts = {reached(k)}"
                     for k in range(2, count))
    times = ", ".join(f"{reached(k)} AS t{k}" for k in range(2, count + 1))
    depth = " + ".join(["1", *(f"CASE WHEN t{k} IS NULL THEN 0 ELSE 1 END" for k in range(2, count + 1))])
    return (f"nexts AS (SELECT *, {nexts} FROM moments),\n"
            f"chains AS (SELECT s.person_id, s.via, s.ts AS t1, {times} FROM nexts AS s {joins} "
            f"WHERE s.is_1 = 1 AND {entry}),\n"
            f"reached AS (SELECT c.*, {depth} AS depth FROM chains AS c)")


def _any_ctes(count: int, entry: str) -> str:
    """Each entry with the number of distinct steps done within the window after it."""
    spans = ", ".join(f"MAX(is_{k}) OVER (PARTITION BY person_id ORDER BY EPOCH(ts) "
                      f"RANGE BETWEEN CURRENT ROW AND :window FOLLOWING) AS has_{k}"
                      for k in range(1, count + 1))
    depth = " + ".join(f"has_{k}" for k in range(1, count + 1))
    return (f"spans AS (SELECT person_id, ts, via, {spans} FROM moments AS s WHERE {entry}),\n"
            f"reached AS (SELECT person_id, via, ts AS t1, {depth} AS depth FROM spans)")


def _grouped(count: int, order: str, breakdown: str | None) -> str:
    """Persons per step (and median seconds from the previous step) per breakdown value."""
    if order == "strict":
        persons = [f"COUNT(b.t{k}) AS persons_{k}" for k in range(2, count + 1)]
        seconds = [f"MEDIAN(EPOCH(b.t{k}) - EPOCH(b.t{'1' if k == 2 else k - 1})) AS seconds_{k}"
                   for k in range(2, count + 1)]
    else:
        persons = [f"CAST(SUM(CASE WHEN b.depth >= {k} THEN 1 ELSE 0 END) AS BIGINT) AS persons_{k}"
                   for k in range(2, count + 1)]
        seconds = [f"CAST(NULL AS DOUBLE) AS seconds_{k}" for k in range(2, count + 1)]
    columns = ", ".join(["COUNT(*) AS persons_1", *persons, *seconds])
    if breakdown is None:
        return f"grouped AS (SELECT '(all)' AS breakdown, {columns} FROM best AS b)"
    if breakdown in ENTRY_DIMENSIONS:
        value = f"COALESCE(b.via, '{UNKNOWN}')"
        return f"grouped AS (SELECT {value} AS breakdown, {columns} FROM best AS b GROUP BY {value})"
    value = f"COALESCE(g.group_value, '{UNKNOWN}')"
    return (f"grouped AS (SELECT {value} AS breakdown, {columns} FROM best AS b "
            f"LEFT JOIN ({person_groups_sql(breakdown)}) AS g ON g.person_id = b.person_id "
            f"GROUP BY {value})")


def _steps_out(count: int) -> str:
    """One row per breakdown value and step: persons, conversions, median seconds."""
    rows = ["SELECT breakdown, 1 AS step, :name_1 AS step_name, persons_1 AS persons, "
            "CAST(1 AS DOUBLE) AS conversion, CAST(1 AS DOUBLE) AS step_conversion, "
            "CAST(NULL AS DOUBLE) AS median_seconds FROM grouped"]
    rows += [f"SELECT breakdown, {k} AS step, :name_{k} AS step_name, persons_{k} AS persons, "
             f"{ratio(f'persons_{k}', 'persons_1')} AS conversion, "
             f"{ratio(f'persons_{k}', f'persons_{k - 1}')} AS step_conversion, "
             f"CAST(seconds_{k} AS DOUBLE) AS median_seconds FROM grouped" for k in range(2, count + 1)]
    return "\nUNION ALL\n".join(rows) + "\nORDER BY breakdown, step"


def funnel_sql(steps: list[FunnelStep], *, window: dt.timedelta, order: str = "strict",
               breakdown: str | None = None, start: dt.datetime | None = None,
               end: dt.datetime | None = None) -> exp.Expression:
    """The funnel's SELECT: breakdown, step, step_name, persons, conversion, step_conversion,
    median_seconds. `start`/`end` bound the entries (UTC instants, end exclusive); later steps
    may fall up to `window` after `end`.

    Example:
        >>> sql = funnel_sql([FunnelStep(event="Product Viewed"), FunnelStep(kind="order")],
        ...                  window=dt.timedelta(days=7))
        >>> "next_2" in sql.sql("duckdb")
        True
    """
    count = len(steps)
    entry_column = breakdown if breakdown in ENTRY_DIMENSIONS else None
    bounds = [*(["{ts} >= :lo"] if start else []), *(["{ts} < :hi"] if end else [])]
    events = "\nUNION ALL\n".join(_step_sql(step, k, entry_column, bounds)
                                  for k, step in enumerate(steps, start=1))
    flags = ", ".join(f"MAX(CASE WHEN step = {k} THEN 1 ELSE 0 END) AS is_{k}" for k in range(1, count + 1))
    entry_via = "MIN(CASE WHEN step = 1 THEN via END)" if order == "strict" else "MIN(via)"
    entry = " AND ".join([*(["s.ts >= :lo"] if start else []), *(["s.ts < :end"] if end else [])])
    body = (_strict_ctes if order == "strict" else _any_ctes)(count, entry or "TRUE")
    sql = (f"WITH step_events AS ({events}),\n"
           f"moments AS (SELECT person_id, ts, {flags}, {entry_via} AS via FROM step_events "
           f"GROUP BY person_id, ts),\n{body},\n"
           "best AS (SELECT * FROM (SELECT r.*, ROW_NUMBER() OVER (PARTITION BY person_id "
           "ORDER BY depth DESC, t1) AS pick FROM reached AS r) AS ranked WHERE pick = 1),\n"
           f"{_grouped(count, order, breakdown)}\n{_steps_out(count)}")
    values: dict[str, object] = {
        "window": int(window.total_seconds()),
        **{f"step_{k}": step_filter(step) for k, step in enumerate(steps, start=1)},
        **{f"name_{k}": name for k, name in enumerate(step_names(steps, order), start=1)},
    }
    if start:
        values["lo"] = start
    if end:
        values["end"], values["hi"] = end, end + window
    return bind(sql, **values)


def step_names(steps: list[FunnelStep], order: str) -> list[str]:
    """Row labels: the steps' names in strict order; "any k of N" when the order is free."""
    if order == "strict":
        return [step.name for step in steps]
    return [f"any {k} of {len(steps)}" for k in range(1, len(steps) + 1)]


def _check(steps: list[object], order: str, breakdown: str | None) -> list[FunnelStep]:
    if not 2 <= len(steps) <= MAX_STEPS:
        raise analytics_error(f"a funnel needs 2 to {MAX_STEPS} steps, not {len(steps)}.",
                              f"漏斗需要 2 到 {MAX_STEPS} 步，而不是 {len(steps)} 步。", "steps",
                              "list the steps in order, e.g. Product Viewed, Product Added, order",
                              "按顺序列出步骤，例如 Product Viewed、Product Added、order")
    choose(order, STEP_ORDERS, "order")
    if breakdown is not None:
        choose(breakdown, BREAKDOWNS, "breakdown")
    return [parse_step(step, index) for index, step in enumerate(steps)]


def funnel(engine: Engine, steps: list[object], *, window: str | dt.timedelta = "7d",
           order: str = "strict", breakdown: str | None = None, start: dt.date | None = None,
           end: dt.date | None = None, timezone: str = DEFAULT_TIMEZONE) -> Analysis:
    """Persons at each step of a funnel, with conversions and median times between steps.

    Args:
        steps: 2-10 steps: event names, "order", or step objects (see `parse_step`).
        window: the conversion window after the entry ("7d", "24h", "2w").
        order: `strict` (the given order) or `any` (any k of the steps).
        breakdown: `channel` / `platform` of the entry, or a person attribute (gender,
            age_band, member_level, province, city, preferred_channel, audience).
        start, end: local days (workspace time zone) the entry must fall in, inclusive.

    Returns:
        `Analysis` "funnel": one row per (breakdown value,) step.
    """
    parsed = _check(steps, order, breakdown)
    check_range(start, end)
    span = conversion_window(window)
    first = day_start(start, timezone) if start else None
    after = day_start(end + dt.timedelta(days=1), timezone) if end else None
    query = funnel_sql(parsed, window=span, order=order, breakdown=breakdown, start=first, end=after)
    frame = rounded(engine.query(query).to_pandas(), ["conversion", "step_conversion"])
    frame["median_seconds"] = frame["median_seconds"].round(1)
    if breakdown is None:
        frame = frame.drop(columns="breakdown")
    else:
        frame = frame.rename(columns={"breakdown": breakdown})
    params = {"steps": [step.name for step in parsed], "window": str(span), "order": order,
              "breakdown": breakdown, "start": start, "end": end, "timezone": timezone}
    return Analysis(name="funnel", frame=frame, sql={"funnel": engine.render(query)},
                    chart=_chart(breakdown), readings=funnel_readings(frame, breakdown), params=params)


def _chart(breakdown: str | None) -> Chart:
    if breakdown is None:
        return Chart(kind="funnel", x="step_name", y=("persons",), title_zh="转化漏斗", title_en="Funnel")
    return Chart(kind="bar", x="step_name", y=("conversion",), series=breakdown,
                 title_zh=f"转化漏斗（按 {breakdown}）", title_en=f"Funnel by {breakdown}")


def funnel_readings(frame, breakdown: str | None) -> list[tuple[str, str]]:
    """Overall conversion, the steepest drop, and (with a breakdown) the best and worst group."""
    totals = frame.groupby(["step", "step_name"], as_index=False)["persons"].sum().sort_values("step")
    entered, converted = int(totals["persons"].iloc[0]), int(totals["persons"].iloc[-1])
    if entered == 0:
        return [("没有人进入漏斗第一步。", "Nobody entered the funnel's first step.")]
    share = converted / entered
    readings = [(f"{entered} 人进入漏斗，{converted} 人完成全部步骤（{share:.1%}）。",
                 f"{entered} persons entered, {converted} completed every step ({share:.1%}).")]
    kept = totals["persons"].to_numpy()
    rates = [kept[k] / kept[k - 1] if kept[k - 1] else 1.0 for k in range(1, len(kept))]
    worst = min(range(len(rates)), key=rates.__getitem__)
    step, previous = totals["step_name"].iloc[worst + 1], totals["step_name"].iloc[worst]
    readings.append((f"流失最多的一步：{previous} → {step}，仅 {rates[worst]:.1%} 继续。",
                     f"Steepest drop: {previous} → {step}, only {rates[worst]:.1%} go on."))
    if breakdown is not None:
        readings += _breakdown_readings(frame, breakdown)
    return readings


def _breakdown_readings(frame, breakdown: str) -> list[tuple[str, str]]:
    last = frame[frame["step"] == frame["step"].max()]
    entered = last[breakdown].map(frame[frame["step"] == 1].set_index(breakdown)["persons"])
    last = last[(last[breakdown] != UNKNOWN) & (entered >= 20)]  # too few entries say nothing
    if len(last) < 2:
        return []
    best, worst = last.loc[last["conversion"].idxmax()], last.loc[last["conversion"].idxmin()]
    return [(f"{breakdown} = {best[breakdown]} 转化最高（{best['conversion']:.1%}），"
             f"{worst[breakdown]} 最低（{worst['conversion']:.1%}）。",
             f"{breakdown} = {best[breakdown]} converts best ({best['conversion']:.1%}), "
             f"{worst[breakdown]} worst ({worst['conversion']:.1%}).")]
