"""Comparisons: year on year, month on month, week on week, and against the market.

`compare_periods` runs a cube query over a period and its comparison period in one
engine query: each fact row is joined to the side its local day belongs to (current or
base, see `calendar.compare_to`) and moved onto the current calendar, so a series
compares 2026-02-17 (春节) with 2025-01-29 (春节), or a Saturday with a Saturday, and a
ratio such as AOV is recomputed from its parts on each side.

`compare_with_benchmark` puts our measure beside an imported competitor or industry
series (`benchmarks`: series, subject, category, day, value) as indexed growth (first
bucket = 100) and reads the growth of both over the same comparison.
"""

from __future__ import annotations

import pandas as pd
from sqlglot import exp

from jingzhun.analytics.calendar import Comparison, compare_to, parse_period
from jingzhun.analytics.cube import SIDE, CubeQuery, Plan, build_cube_sql, shift_values, to_frame
from jingzhun.analytics.measures import TIME_GRAINS, Measure, find_measure
from jingzhun.analytics.result import Analysis, AnalyticsError, Chart
from jingzhun.engine import Engine
from jingzhun.profiles.rules_compiler import literal

AGAINST_ZH = {"yoy": "同比", "mom": "环比", "wow": "周环比"}
ALIGN_ZH = {"date": "按日期对齐", "weekday": "按 ISO 周与星期对齐", "holiday": "按节日对齐"}


def _comparison(query: CubeQuery, against: str, align: str) -> Comparison:
    if not query.period:
        raise AnalyticsError("a comparison needs a period.", field="period",
                             fix="give --period, e.g. 2026-03 or 春节2026±7",
                             message_zh="对比需要指定时间段。", fix_zh="请指定 --period，例如 2026-03 或 春节2026±7")
    return compare_to(parse_period(query.period), against, align)


def build_compare_sql(query: CubeQuery, comparison: Comparison, timezone: str = "Asia/Shanghai") -> exp.Select:
    """Each cell's measures on both sides, the change and the relative change.

    Columns: the dimensions, then per measure `m`, `m_base`, `m_change`, `m_change_pct`.
    """
    plan = Plan(query.measures, query.by, query.where)
    sides = build_cube_sql(query, timezone, comparison.shifts)
    sides.set("order", None)
    dims = [exp.column(c) for c in plan.columns()]
    picked = []
    for measure in plan.measures:
        for side, suffix in (("current", ""), ("base", "_base")):
            value = exp.If(this=exp.column(SIDE).eq(exp.Literal.string(side)), true=exp.column(measure.name))
            picked.append(exp.alias_(exp.func("MAX", exp.Case(ifs=[value])), measure.name + suffix))
    pivot = exp.select(*dims, *picked).from_(sides.subquery("sides"))
    pivot = pivot.group_by(*dims) if dims else pivot
    changes = []
    for measure in plan.measures:
        now, then = exp.column(measure.name), exp.column(measure.name + "_base")
        as_double = exp.DataType.build("DOUBLE")
        changes += [now, then, exp.alias_(exp.Sub(this=now.copy(), expression=then.copy()), f"{measure.name}_change"),
                    exp.alias_(exp.Div(this=exp.cast(exp.Sub(this=now.copy(), expression=then.copy()), as_double),
                                       expression=exp.func("NULLIF", exp.cast(then.copy(), as_double),
                                                           exp.Literal.number(0))), f"{measure.name}_change_pct")]
    select = exp.select(*[d.copy() for d in dims], *changes).from_(pivot.subquery("paired"))
    return select.order_by(*[d.copy() for d in dims]) if dims else select


def compare_periods(engine: Engine, query: CubeQuery, against: str = "yoy", align: str = "auto",
                    timezone: str = "Asia/Shanghai") -> Analysis:
    """`query`'s measures in its period against the same period a year, month or week before.

    Example: GMV by category in 春节2026±7 against 春节2025±7 (`against="yoy"`, the
    holiday aligns itself), or daily views in 2026-W12 against 2026-W11 (`"wow"`).
    """
    comparison = _comparison(query, against, align)
    sql = build_compare_sql(query, comparison, timezone)
    frame = to_frame(engine.query(sql))
    plan = Plan(query.measures, query.by, query.where)
    measure = plan.measures[0]
    time = query.time_grain()
    chart = Chart("line" if time else "bar", time or (plan.columns() or [measure.name])[0],
                  (measure.name, f"{measure.name}_base"), None,
                  title_zh=f"{measure.label_zh}{AGAINST_ZH[against]}", title_en=f"{measure.label_en} {against}") \
        if plan.columns() else None
    return Analysis(name="compare", frame=frame, sql={"compare": engine.render(sql)}, chart=chart,
                    readings=_readings(frame, plan, comparison),
                    params={"measures": list(query.measures), "by": list(query.by), "period": query.period,
                            "base_period": comparison.base.label, "against": against, "align": comparison.align,
                            "timezone": timezone})


def _readings(frame: pd.DataFrame, plan: Plan, comparison: Comparison) -> list[tuple[str, str]]:
    current, base = comparison.current, comparison.base
    against, align = comparison.against, comparison.align
    readings = [(f"{current.label} 对比 {base.label}（{AGAINST_ZH[against]}，{ALIGN_ZH[align]}）",
                 f"{current.label} against {base.label} ({against}, aligned by {align})")]
    if frame.empty:
        return readings + [("两个时间段都没有数据。", "Neither period has data.")]
    measure = plan.measures[0]
    name = measure.name
    if not plan.columns():
        row = frame.iloc[0]
        return readings + [_change_sentence(measure, row[name], row[f"{name}_base"], "")]
    change = pd.to_numeric(frame[f"{name}_change"], errors="coerce")
    if change.isna().all():
        return readings
    rise = ("增长最多", "largest rise") if change.max() > 0 else ("下降最少", "smallest fall")
    fall = ("下降最多", "largest fall") if change.min() < 0 else ("增长最少", "smallest rise")
    for index, words in ((change.idxmax(), rise), (change.idxmin(), fall)):
        cell = ", ".join(f"{c}={frame.at[index, c]}" for c in plan.columns())
        zh, en = _change_sentence(measure, frame.at[index, name], frame.at[index, f"{name}_base"], cell)
        readings.append((f"{words[0]}：{zh}", f"{words[1].capitalize()}: {en}"))
    return readings


def _change_sentence(measure: Measure, now: object, then: object, cell: str) -> tuple[str, str]:
    now_v = 0.0 if now is None or pd.isna(now) else float(now)  # type: ignore[arg-type]
    then_v = 0.0 if then is None or pd.isna(then) else float(then)  # type: ignore[arg-type]
    pct = f"{(now_v - then_v) / then_v:+.1%}" if then_v else "n/a"
    prefix = f"{cell} " if cell else ""
    return (f"{prefix}{measure.label_zh} {now_v:,.2f}，对比期 {then_v:,.2f}（{pct}）",
            f"{prefix}{measure.label_en} {now_v:,.2f} against {then_v:,.2f} ({pct})")


# ---- horizontal comparison: our measure beside a benchmark series ------------------------


def _benchmark_filter(series: str, subject: str | None, category: str | None) -> exp.Expression:
    condition = exp.column("series", "b").eq(literal(series))
    for column, value in (("subject", subject), ("category", category)):
        if value is not None:
            condition = exp.and_(condition, exp.column(column, "b").eq(literal(value)))
    return condition


def _check_benchmark(engine: Engine, series: str, subject: str | None, category: str | None) -> None:
    """Exactly one (subject, category) of `series` must match, else name the choices."""
    found = engine.query(exp.select("b.subject", "b.category").distinct().from_("benchmarks AS b")
                         .where(_benchmark_filter(series, subject, category))).to_pylist()
    if len(found) == 1:
        return
    if found:
        listed = "; ".join(f"subject={r['subject']}, category={r['category']}" for r in found[:12])
        raise AnalyticsError(f"benchmark {series!r} has {len(found)} series matching.", field="subject",
                             fix=f"choose one with --subject/--benchmark-category: {listed}",
                             message_zh=f"基准 {series!r} 有 {len(found)} 条序列匹配。",
                             fix_zh=f"请用 --subject/--benchmark-category 选定一条：{listed}")
    names = engine.query(exp.select("b.series").distinct().from_("benchmarks AS b").order_by("b.series")).to_pylist()
    listed = ", ".join(r["series"] for r in names) or "(none imported)"
    raise AnalyticsError(f"no benchmark series {series!r} with those filters.", field="series",
                         fix=f"import one (jingzhun import) or use: {listed}",
                         message_zh=f"没有符合条件的基准序列 {series!r}。", fix_zh=f"请先导入，或选用：{listed}")


def build_benchmark_sql(query: CubeQuery, series: str, subject: str | None, category: str | None,
                        timezone: str = "Asia/Shanghai") -> exp.Select:
    """Our measure and the benchmark per time bucket, each indexed to its first bucket = 100."""
    grain = query.time_grain() or "week"
    ours = build_cube_sql(query if query.time_grain() else query.drill_down(grain), timezone)
    ours.set("order", None)
    measure = query.measures[0]
    period = parse_period(query.period or "")
    bucket = exp.cast(exp.func("DATE_TRUNC", exp.Literal.string(grain), exp.column("day", "b")),
                      exp.DataType.build("DATE"))
    bench = (exp.select(bucket.as_("bucket"), exp.func("AVG", exp.column("value", "b")).as_("benchmark"))
             .from_("benchmarks AS b")
             .where(exp.and_(_benchmark_filter(series, subject, category),
                             exp.Between(this=exp.column("day", "b"), low=literal(period.start),
                                         high=literal(period.end))))
             .group_by(bucket))
    at = exp.Coalesce(this=exp.column(grain, "ours"), expressions=[exp.column("bucket", "bm")])

    def index(value: exp.Expression) -> exp.Expression:
        window = exp.Window(this=exp.func("FIRST_VALUE", value.copy()), order=exp.Order(expressions=[at.copy()]),
                            spec=exp.WindowSpec(kind="ROWS", start="UNBOUNDED", start_side="PRECEDING",
                                                end="UNBOUNDED", end_side="FOLLOWING"))
        return exp.Div(this=exp.Mul(this=exp.Literal.number(100), expression=exp.cast(value, exp.DataType.build("DOUBLE"))),
                       expression=exp.func("NULLIF", window, exp.Literal.number(0)))

    mine, theirs = exp.column(measure, "ours"), exp.column("benchmark", "bm")
    return (exp.select(at.as_(grain), mine.as_(measure), index(mine).as_(f"{measure}_index"),
                       theirs.as_("benchmark"), index(theirs).as_("benchmark_index"))
            .from_(ours.subquery("ours"))
            .join(bench.subquery("bm"), on=exp.column(grain, "ours").eq(exp.column("bucket", "bm")), join_type="full")
            .order_by(at.copy()))


def build_growth_sql(series: str, subject: str | None, category: str | None, comparison: Comparison) -> exp.Select:
    """The benchmark's mean value on each side of the comparison."""
    day = exp.column("day", "b")
    on = exp.Between(this=day, low=exp.column("first_day", "cmp"), high=exp.column("last_day", "cmp"))
    return (exp.select(exp.column(SIDE, "cmp").as_(SIDE), exp.func("AVG", exp.column("value", "b")).as_("benchmark"))
            .from_("benchmarks AS b").join(shift_values(comparison.shifts), on=on)
            .where(_benchmark_filter(series, subject, category)).group_by(exp.column(SIDE, "cmp")))


def compare_with_benchmark(engine: Engine, query: CubeQuery, series: str, subject: str | None = None,
                           category: str | None = None, against: str = "yoy", align: str = "auto",
                           timezone: str = "Asia/Shanghai") -> Analysis:
    """Our measure beside a competitor or industry series: indexed growth per time bucket,
    and both growths over `against` ("we grew 12% while the industry grew 20%")."""
    if len(query.measures) != 1 or [d for d in query.by if d not in TIME_GRAINS]:
        raise AnalyticsError("a benchmark comparison takes one measure and at most a time dimension.",
                             field="by", fix="filter with --where instead of breaking down, e.g. --where category=cosmetics",
                             message_zh="与基准对比只支持一个指标和一个时间维度。",
                             fix_zh="请用 --where 过滤，例如 --where category=cosmetics")
    _check_benchmark(engine, series, subject, category)
    comparison = _comparison(query, against, align)
    series_sql = build_benchmark_sql(query, series, subject, category, timezone)
    ours_sql = build_compare_sql(CubeQuery(measures=query.measures, where=query.where, period=query.period),
                                 comparison, timezone)
    growth_sql = build_growth_sql(series, subject, category, comparison)
    frame = to_frame(engine.query(series_sql))
    ours = engine.query(ours_sql).to_pylist()
    theirs = {row[SIDE]: row["benchmark"] for row in engine.query(growth_sql).to_pylist()}
    measure = find_measure(query.measures[0])
    who = " / ".join(v for v in (subject, category) if v) or series
    grain = query.time_grain() or "week"
    return Analysis(
        name="compare_benchmark", frame=frame,
        sql={"series": engine.render(series_sql), "our_growth": engine.render(ours_sql),
             "benchmark_growth": engine.render(growth_sql)},
        chart=Chart("line", grain, (f"{measure.name}_index", "benchmark_index"),
                    title_zh=f"{measure.label_zh} 对比 {series}（{who}），指数化", title_en=f"{measure.label_en} vs {series} ({who}), indexed"),
        readings=_benchmark_readings(measure, ours[0] if ours else {}, theirs, series, who, comparison),
        params={"measure": measure.name, "series": series, "subject": subject, "category": category,
                "period": query.period, "base_period": comparison.base.label, "against": against,
                "where": {k: list(v) for k, v in query.where.items()}, "timezone": timezone})


def _growth(now: object, then: object) -> float | None:
    if now is None or then is None or pd.isna(now) or pd.isna(then) or float(then) == 0:  # type: ignore[arg-type]
        return None
    return float(now) / float(then) - 1  # type: ignore[arg-type]


def _benchmark_readings(measure: Measure, ours: dict, theirs: dict, series: str, who: str,
                        comparison: Comparison) -> list[tuple[str, str]]:
    mine = _growth(ours.get(measure.name), ours.get(f"{measure.name}_base"))
    market = _growth(theirs.get("current"), theirs.get("base"))
    span = f"{comparison.current.label} vs {comparison.base.label}"
    if mine is None or market is None:
        return [(f"{span}：数据不足，无法计算增长。", f"{span}: not enough data to compute growth.")]
    gap = (mine - market) * 100
    verdict_zh = "跑赢" if gap > 0 else "跑输"
    verdict_en = "outgrew" if gap > 0 else "lagged"
    return [
        (f"{span}：我们的{measure.label_zh}增长 {mine:+.1%}，{who} 的 {series} 增长 {market:+.1%}。",
         f"{span}: our {measure.label_en} grew {mine:+.1%} while {who} {series} grew {market:+.1%}."),
        (f"我们{verdict_zh}基准 {abs(gap):.1f} 个百分点。", f"We {verdict_en} the benchmark by {abs(gap):.1f} points."),
    ]

