"""Hypothesis checks: which candidate cause explains a KPI's drop between two periods.

An operator who sees a KPI fall (GMV, orders, our brands' search index, or a daily series
of their own) checks the usual suspects instead of everything. Each is a daily *driver*
the data holds, compared between the baseline and the current period with Welch's t test
on its daily values (Hedges' g as effect size), turned into the KPI change it would cause
by a stated mechanism, and set against the KPI's actual change:

| hypothesis | driver | KPI change it would cause |
|---|---|---|
| market_decline | the industry index of the category (`benchmarks`) | the market's change (share held) |
| competitor_launch | the competitor brand whose search index rose most | −its gain ÷ our brands' search base |
| ctr_drop | ad clicks ÷ impressions (`ad_spend`) | CTR change × ad share |
| spend_cut | the channel whose spend change costs most | spend change × its click share × ad share |
| stockouts | sales-weighted share of SKU × locations out of stock | −the change in that share |
| price_change | quantity-weighted unit price of the KPI's order lines | price change × elasticity (−1) |
| (yours) | a read-only SELECT of (period, value) | its change × its elasticity (1) |

`explained_share` = that change ÷ the KPI's change, clipped to [0, 1]. The *ad share*
(how much of the KPI ads bring) is the ads' platform-reported conversions over our kept
orders (conversion value over GMV for a GMV KPI) in the baseline, capped at 1; platforms
over-attribute, so it is an upper bound, and 1 for a search index or a custom KPI.

Timing is evidence too: the day each series breaks (the split of the periods' days with
the largest Welch t between before and after) is compared with the day the KPI breaks.
A hypothesis is `supported` when its driver changed significantly (p < alpha), explains
at least `min_share` of the change and did not break more than `tolerance_days` away
from the KPI; `partial` when it changed significantly and explains some of it; `refuted`
otherwise. Ranked by verdict, then explained share, then p-value. Every series is a
SELECT kept in `Analysis.sql`; see `hypotheses_series`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlglot import exp

from jingzhun.analytics.behaviour_common import DEFAULT_TIMEZONE, analytics_error, choose
from jingzhun.analytics.calendar import Period, parse_period
from jingzhun.analytics.hypotheses_series import (
    INDUSTRY_SERIES,
    INDUSTRY_SUBJECT,
    ads_sql,
    brand_search_sql,
    category_aliases,
    evaluate,
    industry_sql,
    kpi_sql,
    price_sql,
    stockout_sql,
)
from jingzhun.analytics.result import Analysis, Chart
from jingzhun.collect.inventory import LINES, compute_stockouts
from jingzhun.core.errors import JingzhunError
from jingzhun.engine import Engine, TableHandle
from jingzhun.engine.dialects import parse_read_only

KPIS = ("gmv", "orders", "search_index", "custom")
VERDICTS = ("supported", "partial", "refuted")
TITLES = {
    "market_decline": ("市场整体下滑", "market-wide decline"),
    "competitor_launch": ("竞品上新分流", "a competitor launch"),
    "ctr_drop": ("广告点击率下降", "click-through drop"),
    "spend_cut": ("渠道削减投放", "a channel's spend cut"),
    "stockouts": ("缺货", "stock-outs"),
    "price_change": ("价格变动", "price change"),
}
_VERDICT_ZH = {"supported": "成立", "partial": "部分成立", "refuted": "不成立"}
_KPI_NAMES = {"gmv": ("GMV", "GMV"), "orders": ("订单数", "orders"),
              "search_index": ("我方品牌搜索指数", "our brands' search index"), "custom": ("自定义指标", "custom KPI")}


class UserHypothesis(BaseModel):
    """A hypothesis of the user's: one read-only SELECT returning `period` and `value` rows.

    `period` is a date (rows are split by the two periods' days) or the text `baseline` /
    `current`; the rows of a period are the samples the test compares. `elasticity`
    turns the value's relative change into the KPI's.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    sql: str
    elasticity: float = 1.0
    title_zh: str | None = None
    title_en: str | None = None


@dataclass
class Evidence:
    """One hypothesis evaluated: the driver's numbers, the test and what it explains."""

    hypothesis: str
    subject: str
    driver: tuple[str, str]  # (zh, en)
    baseline: float
    current: float
    expected_change: float | None
    statistic: float | None = None
    p_value: float | None = None
    effect_size: float | None = None
    driver_break: dt.date | None = None
    title: tuple[str, str] | None = None
    test: str = "Welch t (daily values)"
    explained_share: float = 0.0
    aligned: bool | None = None
    verdict: str = "refuted"

    @property
    def change(self) -> float | None:
        ok = self.baseline and math.isfinite(self.baseline) and math.isfinite(self.current)
        return self.current / self.baseline - 1 if ok else None


@dataclass
class _Context:
    """What every check needs: the engine, the periods, the category and the KPI."""

    engine: Engine
    baseline: Period
    current: Period
    aliases: list[str]
    timezone: str
    kpi: str
    sql: dict[str, str] = field(default_factory=dict)
    kpi_series: pd.DataFrame | None = None

    @property
    def first(self) -> dt.date:
        return min(self.baseline.start, self.current.start)

    @property
    def last(self) -> dt.date:
        return max(self.baseline.end, self.current.end)

    def series(self, name: str, query: exp.Expression) -> pd.DataFrame:
        """Run a (day, …) query, keep its SQL under `name`, tag each row with its period."""
        self.sql[name] = self.engine.render(query)
        frame = self.engine.query(query).to_pandas()
        frame["day"] = pd.to_datetime(frame["day"]).dt.date
        frame["period"] = frame["day"].map(self.period_of)
        return frame[frame["period"].notna()].reset_index(drop=True)

    def period_of(self, day: dt.date) -> str | None:
        for name, period in (("baseline", self.baseline), ("current", self.current)):
            if period.start <= day <= period.end:
                return name
        return None

    def kpi_total(self, period: str) -> float:
        assert self.kpi_series is not None
        return float(self.kpi_series.loc[self.kpi_series["period"] == period, "value"].sum())


def _evidence(hypothesis: str, subject: str, driver: tuple[str, str], frame: pd.DataFrame,
              expected, column: str = "value") -> Evidence:
    """Evidence from a daily series; `expected(found)` gives the KPI change it implies."""
    if frame.empty or frame[column].notna().sum() == 0:
        return Evidence(hypothesis, subject, driver, math.nan, math.nan, None)
    found = evaluate(frame, column)
    evidence = Evidence(hypothesis, subject, driver, expected_change=None, **found)  # type: ignore[arg-type]
    evidence.expected_change = expected(evidence)
    return evidence


# ---- the checks ---------------------------------------------------------------------------------


def check_market(ctx: _Context) -> Evidence:
    """The industry index of the category: if the whole market moved, so would we."""
    series = INDUSTRY_SERIES["search" if ctx.kpi == "search_index" else "trade"]
    frame = ctx.series("market_decline", industry_sql(series, ctx.aliases, ctx.first, ctx.last))
    driver = (f"行业指数（{series}）", f"industry index ({series})")
    return _evidence("market_decline", INDUSTRY_SUBJECT, driver, frame, lambda found: found.change)


def check_competitor(ctx: _Context) -> Evidence:
    """The competitor whose search index gained most: searches that moved to it left us."""
    frame = ctx.series("competitor_launch", brand_search_sql(ctx.aliases, ctx.first, ctx.last, ours=False))
    ours = ctx.series("our_brand_search", brand_search_sql(ctx.aliases, ctx.first, ctx.last, ours=True))
    if frame.empty:
        return Evidence("competitor_launch", "", ("竞品搜索指数", "competitor search index"), math.nan, math.nan, None)
    means = frame.groupby(["subject", "period"])["value"].mean().unstack()
    gains = means.get("current", np.nan) - means.get("baseline", np.nan)
    subject = str(gains.idxmax()) if gains.notna().any() else str(means.index[0])
    our_base = ours.loc[ours["period"] == "baseline", "value"].mean()

    def expected(found: Evidence) -> float | None:
        if not our_base or not math.isfinite(our_base):
            return None
        return -(found.current - found.baseline) / our_base

    driver = (f"{subject} 搜索指数", f"{subject} search index")
    return _evidence("competitor_launch", subject, driver, frame[frame["subject"] == subject], expected)


def _ad_share(ctx: _Context, ads: pd.DataFrame) -> float:
    """How much of the KPI ads claim in the baseline (an upper bound; 1 with no sales link)."""
    base = ads[ads["period"] == "baseline"]
    if ctx.kpi not in ("gmv", "orders"):
        return 1.0
    claimed = base["conversion_value" if ctx.kpi == "gmv" else "conversions"].sum()
    total = ctx.kpi_total("baseline")
    return float(min(1.0, claimed / total)) if total > 0 else 1.0


def check_ads(ctx: _Context) -> list[Evidence]:
    """CTR of all ads, and the channel whose spend change would cost the KPI most."""
    ads = ctx.series("ads", ads_sql(ctx.first, ctx.last))
    ctr_driver = ("广告点击率", "ad click-through rate")
    if ads.empty:
        return [Evidence("ctr_drop", "", ctr_driver, math.nan, math.nan, None),
                Evidence("spend_cut", "", ("渠道投放", "channel spend"), math.nan, math.nan, None)]
    share = _ad_share(ctx, ads)
    daily = ads.groupby(["day", "period"], as_index=False)[["clicks", "impressions"]].sum()
    daily["value"] = daily["clicks"] / daily["impressions"].where(daily["impressions"] > 0)
    ctr = _evidence("ctr_drop", "all", ctr_driver, daily, lambda found: _times(found.change, share))
    clicks = ads[ads["period"] == "baseline"].groupby("channel")["clicks"].sum()
    candidates = []
    for channel, rows in ads.groupby("channel"):
        click_share = clicks.get(channel, 0.0) / clicks.sum() if clicks.sum() > 0 else 0.0
        driver = (f"{channel} 投放金额", f"{channel} spend")
        candidates.append(_evidence("spend_cut", str(channel), driver, rows.reset_index(drop=True),
                                    lambda found, c=click_share: _times(found.change, c * share),
                                    column="spend"))
    spend = min(candidates, key=lambda e: e.expected_change if e.expected_change is not None else math.inf)
    return [ctr, spend]


def _times(change: float | None, factor: float) -> float | None:
    return None if change is None else change * factor


def check_stockouts(ctx: _Context, spells: TableHandle | None = None) -> Evidence:
    """Stock-out exposure of the KPI's products: the share of sales whose shelf was empty.

    `spells`: a `compute_stockouts` result to reuse (its ledger lines must still exist);
    by default the spells are computed afresh (materializing `inventory_stockouts`).
    """
    spells = spells or compute_stockouts(ctx.engine, timezone=ctx.timezone)
    ctx.sql["stockout_spells"] = spells.sql
    query = stockout_sql(ctx.aliases, ctx.first, ctx.last, ctx.baseline, ctx.timezone,
                         spells.logical_name, LINES)
    frame = ctx.series("stockouts", query)
    driver = ("缺货暴露（按销量加权的缺货比例）", "stock-out exposure (sales-weighted share out of stock)")
    return _evidence("stockouts", "", driver, frame, lambda found: -(found.current - found.baseline))


def check_price(ctx: _Context, elasticity: float) -> Evidence:
    """Unit prices of the KPI's order lines: dearer goods sell less (elasticity × change)."""
    frame = ctx.series("price_change", price_sql(ctx.aliases, ctx.first, ctx.last, ctx.timezone))
    driver = ("成交单价（按件加权）", "unit price (quantity-weighted)")
    return _evidence("price_change", "", driver, frame, lambda found: _times(found.change, elasticity))


def read_only_select(sql: str, field: str) -> exp.Expression:
    """The user's query if it is exactly one SELECT; anything that could write is refused."""
    try:
        statement = parse_read_only(sql)
    except JingzhunError as refused:
        raise analytics_error(refused.message, refused.message_zh, field, "write one SELECT period, value FROM …",
                              "只写一条 SELECT period, value FROM …") from None
    if not isinstance(statement, exp.Query):
        raise analytics_error(f"a hypothesis query must be one SELECT, not {type(statement).__name__.upper()}.",
                              f"假设的查询必须是一条 SELECT，而不是 {type(statement).__name__.upper()}。", field,
                              "write SELECT period, value FROM …", "写成 SELECT period, value FROM …")
    return statement


def check_user(ctx: _Context, hypothesis: UserHypothesis, index: int) -> Evidence:
    """The user's (period, value) rows, split by period and compared like the others."""
    field_name = f"hypotheses[{index}].sql"
    statement = read_only_select(hypothesis.sql, field_name)
    ctx.sql[hypothesis.name] = ctx.engine.render(statement)
    frame = ctx.engine.query(statement).to_pandas()
    frame.columns = [str(name).lower() for name in frame.columns]
    if not {"period", "value"} <= set(frame.columns):
        raise analytics_error(f"hypothesis {hypothesis.name!r} must return columns period and value, "
                              f"not {', '.join(frame.columns)}.", f"假设 {hypothesis.name!r} 须返回 period 和 value 两列。",
                              field_name, "alias them: SELECT day AS period, … AS value",
                              "用别名：SELECT day AS period, … AS value")
    frame = _user_periods(ctx, frame)
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce")
    title = (hypothesis.title_zh or hypothesis.name, hypothesis.title_en or hypothesis.name)
    evidence = _evidence(hypothesis.name, "", title, frame,
                         lambda found: _times(found.change, hypothesis.elasticity))
    evidence.title = title
    return evidence


def _user_periods(ctx: _Context, frame: pd.DataFrame) -> pd.DataFrame:
    """Rows tagged baseline/current: by their date when `period` holds dates, else by name."""
    named = frame["period"].map(lambda v: str(v).strip().lower())
    if named.isin(["baseline", "current"]).all():
        return frame.assign(period=named)
    days = pd.to_datetime(frame["period"], errors="coerce")
    if days.isna().any():
        raise analytics_error("a hypothesis's period must be a date or 'baseline' / 'current'.",
                              "假设的 period 须为日期，或 'baseline' / 'current'。", "hypotheses.sql",
                              "return the day as period, or label rows baseline / current",
                              "以日期作为 period，或标注 baseline / current")
    tagged = frame.assign(day=days.dt.date)
    tagged["period"] = tagged["day"].map(ctx.period_of)
    return tagged[tagged["period"].notna()].reset_index(drop=True)


# ---- judging and ranking ----------------------------------------------------------------------


def judge(evidence: Evidence, kpi_change: float, kpi_break: dt.date | None, *, alpha: float,
          min_share: float, tolerance_days: int) -> Evidence:
    """Set the explained share, the timing and the verdict of one hypothesis."""
    expected = evidence.expected_change
    if expected is not None and math.isfinite(expected) and kpi_change:
        evidence.explained_share = float(min(1.0, max(0.0, expected / kpi_change)))
    if evidence.driver_break is not None and kpi_break is not None:
        evidence.aligned = abs((evidence.driver_break - kpi_break).days) <= tolerance_days
    significant = evidence.p_value is not None and evidence.p_value < alpha
    if significant and evidence.explained_share >= min_share and evidence.aligned is not False:
        evidence.verdict = "supported"
    elif significant and evidence.explained_share > 0:
        evidence.verdict = "partial"
    return evidence


def rank(found: Sequence[Evidence]) -> list[Evidence]:
    """Supported before partial before refuted; then more explained; then more significant."""
    return sorted(found, key=lambda e: (VERDICTS.index(e.verdict), -e.explained_share,
                                        e.p_value if e.p_value is not None else 2.0))


def reading(evidence: Evidence, position: int) -> tuple[str, str]:
    """One sentence per hypothesis: the driver's change, its test, what it explains, the verdict."""
    title_zh, title_en = evidence.title or TITLES[evidence.hypothesis]
    change = evidence.change
    if change is None:
        return (f"{position}. {title_zh}：没有可用数据，无法检验。", f"{position}. {title_en}: no data to test.")
    p = "n/a" if evidence.p_value is None else f"{evidence.p_value:.2g}"
    timing_zh = timing_en = ""
    if evidence.driver_break is not None:
        timing_zh = f"，{evidence.driver_break} 起{'与 KPI 同步' if evidence.aligned else '变化'}"
        timing_en = f", breaking on {evidence.driver_break}{' with the KPI' if evidence.aligned else ''}"
    zh = (f"{position}. {title_zh}：{evidence.driver[0]} {change:+.1%}（p={p}{timing_zh}），"
          f"可解释 KPI 变化的 {evidence.explained_share:.0%}，{_VERDICT_ZH[evidence.verdict]}。")
    en = (f"{position}. {title_en}: {evidence.driver[1]} {change:+.1%} (p={p}{timing_en}), explains "
          f"{evidence.explained_share:.0%} of the KPI's change: {evidence.verdict}.")
    return zh, en


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _significant(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.3g}")


def evidence_frame(ranked: Sequence[Evidence]) -> pd.DataFrame:
    """One row per hypothesis, best first, with its reading in both languages."""
    rows = []
    for position, e in enumerate(ranked, start=1):
        zh, en = reading(e, position)
        rows.append({"rank": position, "hypothesis": e.hypothesis, "subject": e.subject, "driver": e.driver[1],
                     "baseline": _round(e.baseline), "current": _round(e.current), "change": _round(e.change),
                     "expected_kpi_change": _round(e.expected_change), "explained_share": _round(e.explained_share),
                     "test": e.test, "statistic": _round(e.statistic), "p_value": _significant(e.p_value),
                     "effect_size": _round(e.effect_size), "driver_break": e.driver_break, "aligned": e.aligned,
                     "verdict": e.verdict, "reading_zh": zh, "reading_en": en})
    return pd.DataFrame(rows)


# ---- the analysis -------------------------------------------------------------------------------


PeriodSpec = tuple[dt.date, dt.date] | str | Period


def as_period(value: PeriodSpec, name: str) -> Period:
    """A period from (first, last) days, a `Period`, or text `parse_period` reads
    ("2025-04", "2025-W16", "2025-03-03..2025-04-13", "春节2026±7")."""
    if isinstance(value, Period):
        found = value
    elif isinstance(value, str):
        found = parse_period(value)
    else:
        first, last = value
        found = Period(first, last, f"{first}..{last}")
    if found.end < found.start:
        raise analytics_error(f"the {name} period ends ({found.end}) before it starts ({found.start}).",
                              f"{name} 时段的结束日 {found.end} 早于开始日 {found.start}。", name,
                              "give the first day, then the last day", "请先给开始日，再给结束日")
    return found


def _periods(baseline: PeriodSpec, current: PeriodSpec) -> tuple[Period, Period]:
    first, second = as_period(baseline, "baseline"), as_period(current, "current")
    if first.start <= second.end and second.start <= first.end:
        raise analytics_error("the baseline and current periods overlap.", "基准期与当前期重叠。", "current",
                              "choose two periods that share no day", "请选择没有重叠日期的两个时段")
    return first, second


def _kpi(ctx: _Context, kpi_query: str | None) -> pd.DataFrame:
    if ctx.kpi == "custom":
        if not kpi_query:
            raise analytics_error("a custom KPI needs its query.", "自定义指标需要给出查询。", "kpi_sql",
                                  "give SELECT day, value FROM … (one row per day)", "给出 SELECT day, value FROM …（每天一行）")
        statement = read_only_select(kpi_query, "kpi_sql")
    else:
        statement = kpi_sql(ctx.kpi, ctx.aliases, ctx.first, ctx.last, ctx.timezone)
    frame = ctx.series("kpi", statement)
    if frame.loc[frame["period"] == "baseline", "value"].sum() == 0:
        raise analytics_error(f"the KPI {ctx.kpi} has no values in the baseline period.",
                              f"指标 {ctx.kpi} 在基准期没有数据。", "baseline",
                              "choose a baseline the data covers, or another KPI / category",
                              "请选择数据覆盖的基准期，或换一个指标/品类")
    return frame


def hypothesis_checks(engine: Engine, *, baseline: PeriodSpec, current: PeriodSpec,
                      kpi: str = "gmv", category: str | None = None, kpi_query: str | None = None,
                      user_hypotheses: Sequence[UserHypothesis | dict] = (), alpha: float = 0.05,
                      min_share: float = 0.2, tolerance_days: int = 7, price_elasticity: float = -1.0,
                      stockouts: TableHandle | None = None, timezone: str = DEFAULT_TIMEZONE) -> Analysis:
    """Evaluate and rank the candidate causes of a KPI's change from `baseline` to `current`.

    Args:
        baseline, current: each period's local days, both ends included: (first, last), a
            `Period`, or text such as "2025-04", "2025-03-03..2025-04-13", "春节2026±7".
        kpi: `gmv`, `orders`, `search_index` (our brands' search index) or `custom`.
        category: a product category (catalogue code or the market's name, 美妆 = cosmetics).
        kpi_query: for `custom`: one read-only SELECT of day, value.
        user_hypotheses: extra hypotheses, each a read-only SELECT of period, value.
        alpha, min_share, tolerance_days: the verdict's thresholds (see the module).
        price_elasticity: KPI change per unit of relative price change.
        stockouts: stock-out spells (`collect.inventory.compute_stockouts`) to reuse; by
            default they are computed, which materializes `inventory_stockouts`.

    Returns:
        `Analysis` "hypotheses": one row per hypothesis, best-supported first.
    """
    choose(kpi, KPIS, "kpi")
    first, second = _periods(baseline, current)
    extra = [_user(h, i) for i, h in enumerate(user_hypotheses)]
    for index, hypothesis in enumerate(extra):  # refuse a writing query before running anything
        read_only_select(hypothesis.sql, f"hypotheses[{index}].sql")
    ctx = _Context(engine, first, second, category_aliases(category), timezone, kpi)
    ctx.kpi_series = _kpi(ctx, kpi_query)
    summary = evaluate(ctx.kpi_series)
    kpi_change = summary["current"] / summary["baseline"] - 1
    found = [check_market(ctx), check_competitor(ctx), *check_ads(ctx), check_stockouts(ctx, stockouts),
             check_price(ctx, price_elasticity), *(check_user(ctx, h, i) for i, h in enumerate(extra))]
    ranked = rank([judge(e, kpi_change, summary["driver_break"], alpha=alpha, min_share=min_share,
                         tolerance_days=tolerance_days) for e in found])
    frame = evidence_frame(ranked)
    params = {"kpi": kpi, "category": category, "baseline": (first.start, first.end),
              "current": (second.start, second.end),
              "kpi_baseline": summary["baseline"], "kpi_current": summary["current"], "kpi_change": kpi_change,
              "kpi_p_value": summary["p_value"], "kpi_break": summary["driver_break"], "alpha": alpha,
              "min_share": min_share, "tolerance_days": tolerance_days, "price_elasticity": price_elasticity}
    chart = Chart(kind="bar", x="hypothesis", y=("explained_share",), title_zh="各假设可解释的变化占比",
                  title_en="Share of the KPI change each hypothesis explains")
    readings = [_kpi_reading(kpi, category, summary, kpi_change), *(reading(e, i) for i, e in enumerate(ranked, 1))]
    return Analysis(name="hypotheses", frame=frame, sql=ctx.sql, chart=chart, readings=readings, params=params)


def _user(value: UserHypothesis | dict, index: int) -> UserHypothesis:
    try:
        return value if isinstance(value, UserHypothesis) else UserHypothesis(**value)
    except (ValidationError, TypeError) as invalid:
        raise analytics_error(f"hypothesis {index + 1} is not valid: {invalid}", f"第 {index + 1} 个假设无效：{invalid}",
                              f"hypotheses[{index}]", "give name and sql (and optionally elasticity)",
                              "给出 name 和 sql（可选 elasticity）") from None


def _kpi_reading(kpi: str, category: str | None, summary: dict, change: float) -> tuple[str, str]:
    zh, en = _KPI_NAMES[kpi]
    scope_zh, scope_en = (f"（{category}）", f" ({category})") if category else ("", "")
    p = "n/a" if summary["p_value"] is None else f"{summary['p_value']:.2g}"
    when_zh = f"，{summary['driver_break']} 起出现断点" if summary["driver_break"] else ""
    when_en = f", breaking on {summary['driver_break']}" if summary["driver_break"] else ""
    return (f"{zh}{scope_zh}日均从 {summary['baseline']:,.1f} 变为 {summary['current']:,.1f}"
            f"（{change:+.1%}，p={p}{when_zh}）。",
            f"{en}{scope_en} went from {summary['baseline']:,.1f} to {summary['current']:,.1f} a day "
            f"({change:+.1%}, p={p}{when_en}).")
