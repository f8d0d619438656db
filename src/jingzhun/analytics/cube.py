"""The cube: measures by time × place × channel × people × product, in one engine query.

A `CubeQuery` names measures, the dimensions to break them down by, filters (dice),
and a period. `build_cube_sql` compiles it to one sqlglot SELECT that runs unchanged on
DuckDB and Spark:

    per fact:  SELECT dims, aggregates FROM fact + only the joins asked for
               WHERE the fact's rows AND period (as UTC instants) AND filters GROUP BY dims
    facts > 1: UNION ALL the per-fact rows, SUM again by dims (each fact gave one row per cell)
    outside:   ratios from their parts (AOV = GMV / orders), ORDER BY dims

Time dimensions are local calendar days of the workspace time zone (`week` is the ISO
week starting Monday). Roll-up, drill-down, slice and dice return new queries; pivot
turns the long result wide. A comparison (`compare.py`) passes `Shift` rows: each
fact row is joined to the side (current/base) its local day belongs to and its day is
moved onto the current calendar before the time dimension truncates it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import sqlglot
from pydantic import BaseModel, ConfigDict, Field
from sqlglot import exp

from jingzhun.analytics.calendar import Period, Shift, parse_period
from jingzhun.analytics.measures import (
    FACTS,
    LATEST_AUDIENCES,
    MEASURES,
    PERSON_JOINS,
    PRODUCT_JOINS,
    TIME_GRAINS,
    DimensionRef,
    Fact,
    Measure,
    base_measures,
    check_dimensions,
    choose_fact,
    fact_dimensions,
    find_measure,
    parse_dimension,
)
from jingzhun.analytics.result import Analysis, AnalyticsError, Chart
from jingzhun.engine import Engine, to_local_time
from jingzhun.profiles.rules_compiler import instant, literal

SIDE = "side"  # the column that says current or base in a comparison
NONE = "(none)"  # a missing dimension value, where values are text


class CubeQuery(BaseModel):
    """What to aggregate: measures, dimensions (`by`), filters (`where`) and a period.

    `where` maps a dimension to the values kept (`{"category": ["cosmetics"]}`);
    `period` is any text `parse_period` reads (`2026-Q1`, `春节2026±7`), None for all time.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    measures: tuple[str, ...] = Field(min_length=1)
    by: tuple[str, ...] = ()
    where: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    period: str | None = None

    # ---- OLAP operations: each returns a new query --------------------------------

    def roll_up(self, dimension: str) -> CubeQuery:
        """Coarser: remove `dimension`, or move time up to the grain `dimension` names."""
        grain = self.time_grain()
        if dimension in TIME_GRAINS and grain is not None and dimension != grain:
            if TIME_GRAINS.index(dimension) < TIME_GRAINS.index(grain):
                raise _grain_error(dimension, grain, "coarser")
            return self._with_time(dimension)
        if dimension not in self.by:
            raise _not_in_query(dimension, self.by)
        return self.model_copy(update={"by": tuple(d for d in self.by if d != dimension)})

    def drill_down(self, dimension: str) -> CubeQuery:
        """Finer: add `dimension`, or move time down to the grain `dimension` names."""
        parse_dimension(dimension)
        grain = self.time_grain()
        if dimension in TIME_GRAINS and grain is not None:
            if TIME_GRAINS.index(dimension) > TIME_GRAINS.index(grain):
                raise _grain_error(dimension, grain, "finer")
            return self._with_time(dimension)
        return self.model_copy(update={"by": tuple(dict.fromkeys((*self.by, dimension)))})

    def slice(self, dimension: str, value: str) -> CubeQuery:
        """One value of `dimension`: kept as a filter, dropped from the breakdown."""
        where = {**self.where, dimension: (value,)}
        return self.model_copy(update={"where": where, "by": tuple(d for d in self.by if d != dimension)})

    def dice(self, filters: dict[str, Sequence[str]]) -> CubeQuery:
        """Keep only the listed values of each dimension (added to existing filters)."""
        return self.model_copy(update={"where": {**self.where, **{k: tuple(v) for k, v in filters.items()}}})

    def time_grain(self) -> str | None:
        return next((d for d in self.by if d in TIME_GRAINS), None)

    def _with_time(self, grain: str) -> CubeQuery:
        return self.model_copy(update={"by": tuple(grain if d in TIME_GRAINS else d for d in self.by)})


def _grain_error(asked: str, grain: str, direction: str) -> AnalyticsError:
    zh = "更粗" if direction == "coarser" else "更细"
    return AnalyticsError(
        f"{asked} is not {direction} than {grain}.", field="dimension",
        fix=f"time grains from fine to coarse: {', '.join(TIME_GRAINS)}",
        message_zh=f"{asked} 并不比 {grain} {zh}。", fix_zh=f"时间粒度由细到粗：{', '.join(TIME_GRAINS)}")


def _not_in_query(dimension: str, by: Iterable[str]) -> AnalyticsError:
    listed = ", ".join(by) or "(none)"
    return AnalyticsError(f"{dimension!r} is not a dimension of this query.", field="dimension",
                          fix=f"roll up one of: {listed}", message_zh=f"{dimension!r} 不在本查询的维度中。",
                          fix_zh=f"可上卷的维度：{listed}")


# ---- compiling --------------------------------------------------------------------------


def fragment(sql: str) -> exp.Expression:
    """A DuckDB-dialect SQL fragment of our own definitions as an expression."""
    return sqlglot.parse_one(sql, read="duckdb")


class FactSql:
    """Builds one fact's SELECT, adding each join once, after the joins it needs."""

    def __init__(self, fact: Fact, timezone: str) -> None:
        self.fact = fact
        self.timezone = timezone
        self.joins: dict[str, tuple[exp.Expression | str, exp.Expression, str]] = {}
        for name in fact.always:
            self.need(name)

    def resolve(self, sql: str) -> exp.Expression:
        """A fragment with `__person__`/`__product__` replaced and their joins added."""
        tree = fragment(sql)
        for placeholder, column in (("__person__", self.fact.person), ("__product__", self.fact.product)):
            if any(c.name == placeholder for c in tree.find_all(exp.Column)):
                if column is None:  # guarded by supports(): a fact without persons never gets here
                    raise AnalyticsError(f"{self.fact.name} has no {placeholder.strip('_')}.")
                for name in column.needs:
                    self.need(name)
                replacement = fragment(column.sql)
                tree = tree.transform(lambda node, p=placeholder, r=replacement:
                                      r.copy() if isinstance(node, exp.Column) and node.name == p else node)
        return tree

    def need(self, name: str) -> None:
        if name in self.joins:
            return
        join = self.fact.joins.get(name) or PERSON_JOINS.get(name) or PRODUCT_JOINS.get(name)
        if join is None:
            raise AnalyticsError(f"fact {self.fact.name} has no join {name!r}.")
        for earlier in join.needs:
            self.need(earlier)
        table = sqlglot.parse_one(join.table, read="duckdb").subquery(join.alias) if join.alias else join.table
        self.add_join(name, table, self.resolve(join.on), join.kind)

    def add_join(self, name: str, table: exp.Expression | str, on: exp.Expression, kind: str = "left") -> None:
        if name not in self.joins:
            self.joins[name] = (table, on, kind)

    def column(self, dimension: DimensionRef, day: exp.Expression) -> exp.Expression:
        """The expression of `dimension` on this fact (time dimensions truncate `day`)."""
        if dimension.is_time:
            if dimension.name == "day":
                return day
            trunc = exp.func("DATE_TRUNC", exp.Literal.string(dimension.name), day)
            return exp.cast(trunc, exp.DataType.build("DATE"))
        if dimension.name == "tag":
            return self._tag(dimension.param)
        if dimension.name == "audience":
            latest = sqlglot.parse_one(LATEST_AUDIENCES, read="duckdb").subquery("aud")
            self.add_join("aud", latest, self.resolve("aud.person_id = __person__"))
            return exp.column("segment_id", "aud")
        column = fact_dimensions(self.fact)[dimension.name]
        for name in column.needs:
            self.need(name)
        return self.resolve(column.sql)

    def _tag(self, tag_id: str | None) -> exp.Expression:
        """A current tag: every tag a person holds (`tag`), or one tag's value (`tag:<id>`;
        a tag without values shows its id for holders)."""
        alias = f"tg_{tag_id}" if tag_id else "tg"
        on = self.resolve(f"{alias}.person_id = __person__ AND {alias}.valid_to IS NULL")
        if tag_id:
            on = exp.and_(on, exp.column("tag_id", alias).eq(literal(tag_id)))
        self.add_join(alias, f"tags AS {alias}", on)
        if tag_id:
            return exp.Coalesce(this=exp.column("value", alias), expressions=[exp.column("tag_id", alias)])
        return exp.column("tag_id", alias)

    def local_day(self) -> exp.Expression:
        """The row's calendar day in the workspace time zone."""
        if self.fact.day is not None:
            return exp.cast(fragment(self.fact.day), exp.DataType.build("DATE"))
        local = to_local_time(fragment(self.fact.instant or ""), self.timezone)
        return exp.cast(local, exp.DataType.build("DATE"))

    def period_filter(self, first: date, last: date) -> exp.Expression:
        """Days first..last, on the stored UTC instants (so engines can skip by zone maps)."""
        if self.fact.day is not None:
            return exp.Between(this=fragment(self.fact.day), low=literal(first), high=literal(last))
        zone = ZoneInfo(self.timezone)
        start = datetime.combine(first, time(), tzinfo=zone).astimezone(UTC)
        stop = datetime.combine(last + timedelta(days=1), time(), tzinfo=zone).astimezone(UTC)
        column = fragment(self.fact.instant or "")
        return exp.and_(exp.GTE(this=column, expression=instant(start)),
                        exp.LT(this=column.copy(), expression=instant(stop)))

    def build(self, projections: list[exp.Expression], conditions: list[exp.Expression],
              shifts: Sequence[Shift] = ()) -> exp.Select:
        """SELECT projections FROM the fact and its joins WHERE conditions."""
        select = exp.select(*projections).from_(self.fact.source, dialect="duckdb")
        for table, on, kind in self.joins.values():
            select = select.join(table, on=on, join_type=None if kind == "inner" else kind, dialect="duckdb")
        if shifts:
            day = self.local_day()
            on = exp.Between(this=day, low=exp.column("first_day", "cmp"), high=exp.column("last_day", "cmp"))
            select = select.join(shift_values(shifts), on=on)
        where = [fragment(self.fact.where)] if self.fact.where else []
        where += conditions
        return select.where(exp.and_(*[exp.paren(w) for w in where])) if where else select


def shift_values(shifts: Sequence[Shift]) -> exp.Expression:
    """The comparison's sides as an inline table the fact joins on its local day."""
    rows = [(exp.Literal.string(s.side), literal(s.first), literal(s.last), exp.Literal.number(s.months),
             exp.Literal.number(s.days)) for s in shifts]
    return exp.values([exp.Tuple(expressions=list(row)) for row in rows], alias="cmp",
                      columns=["side", "first_day", "last_day", "shift_months", "shift_days"])


def aligned_day(day: exp.Expression) -> exp.Expression:
    """`day` moved onto the current period's calendar by its side's shift."""
    moved = exp.cast(exp.func("ADD_MONTHS", day, exp.column("shift_months", "cmp")), exp.DataType.build("DATE"))
    return exp.Add(this=moved, expression=exp.cast(exp.column("shift_days", "cmp"), exp.DataType.build("INT")))


class Plan:
    """A query's checked parts: dimensions, filters, and which fact reads each base measure."""

    def __init__(self, measures: Sequence[str], by: Sequence[str], where: dict[str, Sequence[str]]) -> None:
        self.measures: list[Measure] = [find_measure(m) for m in measures]
        self.dimensions = [parse_dimension(d) for d in by]
        self.filters = {parse_dimension(k): [str(v) for v in values] for k, values in where.items()}
        self._check()
        self.reads: dict[str, list[tuple[str, str]]] = {}
        asked = self.dimensions + list(self.filters)
        for measure in self.measures:
            for part in base_measures(measure):
                fact, aggregate = choose_fact(part, asked)
                if part.name not in [name for names in self.reads.values() for name, _ in names]:
                    self.reads.setdefault(fact.name, []).append((part.name, aggregate))

    def _check(self) -> None:
        times = [d for d in self.dimensions if d.is_time]
        if len(times) > 1:
            raise AnalyticsError("a cube has at most one time dimension.", field="by",
                                 fix=f"keep one of {', '.join(str(t) for t in times)}",
                                 message_zh="一次查询最多一个时间维度。", fix_zh=f"请只保留 {', '.join(map(str, times))} 之一")
        for dimension, values in self.filters.items():
            if dimension.is_time:
                raise AnalyticsError(f"filter on {dimension} is not allowed.", field="where",
                                     fix="give the time range as the period", message_zh=f"不能按 {dimension} 过滤。",
                                     fix_zh="时间范围请用时间段（period）指定")
            if not values:
                raise AnalyticsError(f"filter on {dimension} has no values.", field="where",
                                     fix=f"write {dimension}=VALUE", message_zh=f"{dimension} 过滤条件没有取值。",
                                     fix_zh=f"请写成 {dimension}=取值")
        for measure in self.measures:  # name the measure asked for, not a ratio's part
            check_dimensions(measure, [*self.dimensions, *self.filters])

    def columns(self) -> list[str]:
        return [d.column for d in self.dimensions]


def fact_select(plan: Plan, fact: Fact, parts: list[tuple[str, str]], timezone: str, span: Period | None,
                shifts: Sequence[Shift] = (), all_parts: Sequence[str] = (),
                as_text: bool = False) -> tuple[exp.Select, list[exp.Expression]]:
    """One fact's rows for the plan (not yet grouped): dimension columns, side, aggregates.

    Returns the SELECT and the expressions to group by. `all_parts` lists every part of
    the query so this fact's row carries NULL for the parts other facts give. `as_text`
    gives dimension values as text with NULL spelled `(none)`, so grouping sets can tell
    a missing value from a dimension not grouped.
    """
    builder = FactSql(fact, timezone)
    day = aligned_day(builder.local_day()) if shifts else builder.local_day()
    keys = [builder.column(d, day) for d in plan.dimensions]
    if as_text:
        keys = [exp.Coalesce(this=exp.cast(key, exp.DataType.build("VARCHAR")), expressions=[exp.Literal.string(NONE)])
                for key in keys]
    projections = [key.as_(d.column) for key, d in zip(keys, plan.dimensions, strict=True)]
    if shifts:
        keys.append(exp.column(SIDE, "cmp"))
        projections.append(exp.column(SIDE, "cmp").as_(SIDE))
    own = dict(parts)
    for name in all_parts or own:
        value = builder.resolve(own[name]) if name in own else exp.Null()
        projections.append(exp.alias_(value, name))
    conditions = [builder.column(d, day).isin(*[literal(v) for v in values]) for d, values in plan.filters.items()]
    if span is not None:
        conditions.insert(0, builder.period_filter(span.start, span.end))
    return builder.build(projections, conditions, shifts), keys


def parts_sql(plan: Plan, timezone: str, span: Period | None, shifts: Sequence[Shift] = ()) -> exp.Select:
    """Every base measure by the plan's dimensions (and side): one row per cell."""
    every = [name for names in plan.reads.values() for name, _ in names]
    if len(plan.reads) == 1:
        fact_name, parts = next(iter(plan.reads.items()))
        select, keys = fact_select(plan, FACTS[fact_name], parts, timezone, span, shifts)
        return select.group_by(*keys) if keys else select
    branches = []
    for fact_name, parts in plan.reads.items():
        select, keys = fact_select(plan, FACTS[fact_name], parts, timezone, span, shifts, every)
        branches.append(select.group_by(*keys) if keys else select)
    union = branches[0]
    for branch in branches[1:]:
        union = exp.union(union, branch, distinct=False)
    names = plan.columns() + ([SIDE] if shifts else [])
    outer = exp.select(*[exp.column(n) for n in names],
                       *[exp.alias_(exp.func("SUM", exp.column(n)), n) for n in every])
    outer = outer.from_(union.subquery("by_fact"))
    return outer.group_by(*[exp.column(n) for n in names]) if names else outer


def measure_expression(measure: Measure) -> exp.Expression:
    """A measure over the parts table: its column, or numerator / denominator as DOUBLE."""
    if measure.ratio is None:
        return exp.column(measure.name)
    numerator, denominator = (measure_expression(MEASURES[name]) for name in measure.ratio)
    as_double = exp.DataType.build("DOUBLE")
    return exp.Div(this=exp.cast(numerator, as_double),
                   expression=exp.func("NULLIF", exp.cast(denominator, as_double), exp.Literal.number(0)))


def build_cube_sql(query: CubeQuery, timezone: str = "Asia/Shanghai", shifts: Sequence[Shift] = ()) -> exp.Select:
    """The cube query as one SELECT: dimension columns, then one column per measure.

    With `shifts` (a comparison), rows of both sides come back with a `side` column and
    the time dimension on the current period's calendar.

    Example:
        >>> sql = build_cube_sql(CubeQuery(measures=("gmv",), by=("month",)), "Asia/Shanghai")
        >>> "SUM(o.net_amount)" in sql.sql("duckdb")
        True
    """
    plan = Plan(query.measures, query.by, query.where)
    span = _span(query.period, shifts)
    parts = parts_sql(plan, timezone, span, shifts).subquery("cube_parts")
    names = plan.columns() + ([SIDE] if shifts else [])
    select = exp.select(*[exp.column(n) for n in names],
                        *[exp.alias_(measure_expression(m), m.name) for m in plan.measures]).from_(parts)
    if len(plan.reads) > 1:  # a cell only another fact has (conversion of pos orders: no visitors) is empty
        select = select.where(exp.or_(*[exp.Not(this=exp.Is(this=measure_expression(m), expression=exp.Null()))
                                        for m in plan.measures]))
    return select.order_by(*[exp.column(n) for n in names]) if names else select


def _span(period: str | None, shifts: Sequence[Shift]) -> Period | None:
    if shifts:
        first, last = min(s.first for s in shifts), max(s.last for s in shifts)
        return Period(first, last, f"{first}..{last}")
    return parse_period(period) if period else None


def run_cube(engine: Engine, query: CubeQuery, timezone: str = "Asia/Shanghai",
             pivot: str | None = None) -> Analysis:
    """Run a cube query: one row per cell, one column per measure (wide if `pivot` names a
    dimension whose values become columns)."""
    sql = build_cube_sql(query, timezone)
    long = to_frame(engine.query(sql))
    plan = Plan(query.measures, query.by, query.where)
    frame = long
    if pivot is not None:
        frame = pivot_frame(frame, parse_dimension(pivot).column, plan.columns(), list(query.measures))
    return Analysis(name="cube", frame=frame, sql={"cube": engine.render(sql)}, chart=_chart(plan, pivot),
                    readings=_readings(long, plan),
                    params={"measures": list(query.measures), "by": list(query.by),
                            "where": {k: list(v) for k, v in query.where.items()}, "period": query.period,
                            "timezone": timezone, "pivot": pivot})


def to_frame(table: pa.Table) -> pd.DataFrame:
    """Arrow rows as pandas, money (DECIMAL) as float so charts and arithmetic work; the
    exact decimals stay in the SQL."""
    for index, column in enumerate(table.schema):
        if pa.types.is_decimal(column.type):
            table = table.set_column(index, column.name, table.column(index).cast(pa.float64()))
    return table.to_pandas()


def pivot_frame(frame: pd.DataFrame, column: str, dimensions: list[str], measures: list[str]) -> pd.DataFrame:
    """Long → wide: the values of `column` become columns (`measure|value` when several
    measures), the other dimensions stay as rows."""
    if column not in dimensions:
        raise _not_in_query(column, dimensions)
    rows = [d for d in dimensions if d != column]
    values = measures if len(measures) > 1 else measures[0]
    source = frame.assign(**{column: frame[column].astype("string").fillna("(none)")})
    if rows:
        wide = source.pivot_table(index=rows, columns=column, values=values, aggfunc="first", dropna=False)
    else:
        wide = source.set_index(column)[values].to_frame().T if isinstance(values, str) else \
            source.set_index(column)[values].stack().to_frame().T
    if isinstance(wide.columns, pd.MultiIndex):
        wide.columns = ["|".join(str(part) for part in key) for key in wide.columns]
    wide.columns = [str(c) for c in wide.columns]
    return wide.reset_index(drop=not rows).dropna(how="all", axis=0) if rows else wide.reset_index(drop=True)


def _chart(plan: Plan, pivot: str | None) -> Chart | None:
    """A line over time when there is a time dimension, else bars; a second dimension
    becomes the series (more than two are left to the table)."""
    if pivot is not None or not plan.dimensions:
        return None
    measure = plan.measures[0]
    time = next((d for d in plan.dimensions if d.is_time), None)
    x = time or plan.dimensions[0]
    series = next((d.column for d in plan.dimensions if d != x), None) if len(plan.dimensions) <= 2 else None
    return Chart("line" if time is not None else "bar", x.column, (measure.name,), series,
                 title_zh=f"{measure.label_zh}：按 {x.column}", title_en=f"{measure.label_en} by {x.column}")


def _readings(frame: pd.DataFrame, plan: Plan) -> list[tuple[str, str]]:
    """The highest and lowest cell of the first measure, and the total where it adds up."""
    if frame.empty:
        return [("没有数据：时间段或过滤条件内没有记录。", "No data: nothing matches the period and filters.")]
    measure = plan.measures[0]
    values = pd.to_numeric(frame[measure.name], errors="coerce")
    if not plan.dimensions:
        value = _number(values.iloc[0], measure)
        return [(f"{measure.label_zh}：{value}", f"{measure.label_en}: {value}")]
    top, low = values.idxmax(), values.idxmin()

    def cell(index: object) -> str:
        return ", ".join(f"{c}={frame.at[index, c]}" for c in plan.columns())

    readings = [(f"{measure.label_zh}最高：{cell(top)}（{_number(values[top], measure)}）",
                 f"Highest {measure.label_en}: {cell(top)} ({_number(values[top], measure)})"),
                (f"{measure.label_zh}最低：{cell(low)}（{_number(values[low], measure)}）",
                 f"Lowest {measure.label_en}: {cell(low)} ({_number(values[low], measure)})")]
    if measure.ratio is None and measure.additive and len(plan.dimensions) == 1 and values.sum() > 0:
        share = values[top] / values.sum()
        readings.append((f"{cell(top)} 占合计的 {share:.1%}", f"{cell(top)} is {share:.1%} of the total"))
    return readings


def _number(value: object, measure: Measure) -> str:
    if value is None or pd.isna(value):
        return "—"
    number = float(value)  # type: ignore[arg-type]
    if measure.unit == "ratio":
        return f"{number:.2%}" if measure.name in ("conversion", "ctr", "message_ctr") else f"{number:.2f}"
    if measure.unit == "money":
        return f"¥{number:,.2f}"
    return f"{number:,.0f}"
