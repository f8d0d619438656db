"""Root cause: which dimension values explain a KPI's change between two periods.

Adtributor (Bhagwan et al., "Adtributor: Revenue Debugging in Advertising Systems",
NSDI 2014). For every dimension and each of its values ("elements"), with `F` the
expected value (the base period, scaled to the current period's length) and `A` the
actual one:

- **explanatory power** EP = (A_ij − F_ij) / (A − F): the element's share of the change
  (for a ratio such as AOV: the change of the ratio when only that element's numerator
  and denominator move, over the total change — the paper's derived-measure rule);
- **surprise** S = the element's term of the Jensen-Shannon divergence between its share
  of the base (p) and of the current period (q): ½(p·log 2p/(p+q) + q·log 2q/(p+q));
  summed over a ratio's parts.

Per dimension, elements are taken in order of surprise, skipping those with EP below
`element_ep` (0.1), until their EP adds up to `set_ep` (0.67); a dimension explained
by at most `max_elements` values is a candidate, ranked by the summed surprise of
its set (succinctness: few, surprising elements). The top candidate's strongest element
becomes a filter and the analysis recurses into the remaining dimensions (`max_depth`),
while that element explains at least `min_share` of the change. When even the best
candidate's surprise is below `min_surprise`, the mix did not change: the whole
account moved. A product among the causes is dated by `products.launch_date`: launched
within `recent_days` before the period it is a recent item (a hot topic), else long-tail.

The per-dimension aggregates are one engine query per level (GROUPING SETS over the
fact, both periods); the scoring over that small table is pandas.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date

import pandas as pd
from sqlglot import exp

from jingzhun.analytics.calendar import Period, Shift, parse_period, previous_period
from jingzhun.analytics.cube import NONE, SIDE, Plan, fact_select
from jingzhun.analytics.measures import (
    FACTS,
    MEASURES,
    TIME_GRAINS,
    Measure,
    allowed_dimensions,
    base_measures,
    find_measure,
    parse_dimension,
)
from jingzhun.analytics.result import Analysis, AnalyticsError, Chart
from jingzhun.engine import Engine
from jingzhun.profiles.rules_compiler import literal

TOTAL = "(total)"
OTHERS_SHOWN = 5
# Dimensions a drill-down tries unless told otherwise: every single-valued one (a person
# holds many tags and audiences, so those would count a person in several elements).
SKIPPED_BY_DEFAULT = (*TIME_GRAINS, "tag", "audience")


@dataclass(frozen=True)
class Thresholds:
    """Adtributor's thresholds and the recursion's limits (the paper's defaults where it has them)."""

    element_ep: float = 0.1
    set_ep: float = 0.67
    max_elements: int = 3
    min_surprise: float = 0.02
    min_share: float = 0.5
    max_depth: int = 3
    recent_days: int = 30


@dataclass
class Level:
    """One step of the drill-down: the filters it ran under and its scored elements."""

    depth: int
    filters: dict[str, str]
    scores: pd.DataFrame  # one row per element, with its dimension's rank and set membership
    candidates: list[dict]  # dimension, elements, ep, surprise — ranked
    sql: str = ""
    expected: float = 0.0
    actual: float = 0.0


@dataclass
class Drill:
    levels: list[Level] = field(default_factory=list)
    expected: float = 0.0
    actual: float = 0.0


Fetch = Callable[[dict[str, str], list[str]], tuple[pd.DataFrame, str]]


# ---- the engine's part: per-dimension aggregates of both periods ----------------------------


def build_breakdown_sql(measure: Measure, dimensions: Sequence[str], filters: dict[str, str],
                        current: Period, base: Period, timezone: str = "Asia/Shanghai") -> exp.Select:
    """Rows (dimension, value, side, parts…): each dimension's values and the total, per period.

    Example:
        >>> sql = build_breakdown_sql(MEASURES["views"], ["platform"], {}, parse_period("2025-09-27"),
        ...                           parse_period("2025-09-26"))
        >>> "GROUPING SETS" in sql.sql("duckdb")
        True
    """
    plan = Plan((measure.name,), dimensions, {k: (v,) for k, v in filters.items()})
    shifts = (Shift("current", current.start, current.end), Shift("base", base.start, base.end))
    span = Period(min(current.start, base.start), max(current.end, base.end), "span")
    every = [name for names in plan.reads.values() for name, _ in names]
    branches = [_unpivoted(plan, fact_name, parts, every, timezone, span, shifts)
                for fact_name, parts in plan.reads.items()]
    union = branches[0]
    for branch in branches[1:]:
        union = exp.union(union, branch, distinct=False)
    keys = [exp.column("dimension"), exp.column("value"), exp.column(SIDE)]
    return (exp.select(*keys, *[exp.alias_(exp.func("SUM", exp.column(n)), n) for n in every])
            .from_(union.subquery("by_fact")).group_by(*[k.copy() for k in keys]))


def _unpivoted(plan: Plan, fact_name: str, parts: list[tuple[str, str]], every: list[str], timezone: str,
               span: Period, shifts: Sequence[Shift]) -> exp.Select:
    select, keys = fact_select(plan, FACTS[fact_name], parts, timezone, span, shifts, every, as_text=True)
    side = keys[-1]
    sets = [exp.Tuple(expressions=[side.copy(), key.copy()]) for key in keys[:-1]]
    grouped = select.group_by(exp.GroupingSets(expressions=[*sets, exp.Tuple(expressions=[side.copy()])]))
    columns = plan.columns()
    which = exp.Case(ifs=[exp.If(this=exp.column(c).is_(exp.null()).not_(), true=exp.Literal.string(c))
                          for c in columns], default=exp.Literal.string(TOTAL))
    value = exp.Coalesce(this=exp.column(columns[0]),
                         expressions=[*[exp.column(c) for c in columns[1:]], exp.Literal.string(TOTAL)])
    return exp.select(which.as_("dimension"), value.as_("value"), exp.column(SIDE),
                      *[exp.column(n) for n in every]).from_(grouped.subquery("grouped"))


# ---- Python's part: Adtributor over the small aggregated table ------------------------------


def _value(measure: Measure, parts: pd.DataFrame | pd.Series) -> pd.Series | float:
    if measure.ratio is None:
        return parts[measure.name]
    numerator, denominator = (_value(MEASURES[n], parts) for n in measure.ratio)
    return numerator / denominator


def _js_term(p: pd.Series, q: pd.Series) -> pd.Series:
    """Each element's term of the Jensen-Shannon divergence between shares p and q (0·log 0 = 0)."""
    def part(x: float, m: float) -> float:
        return x * math.log(x / m) if x > 0 and m > 0 else 0.0
    return pd.Series([0.5 * (part(a, (a + b) / 2) + part(b, (a + b) / 2)) for a, b in zip(p, q, strict=True)],
                     index=p.index)


def score_level(table: pd.DataFrame, measure: Measure, scale: float) -> tuple[pd.DataFrame, float, float]:
    """Every element's expected and actual value, EP and surprise; and the totals (F, A)."""
    parts = [p.name for p in base_measures(measure)]
    wide = table.pivot_table(index=["dimension", "value"], columns=SIDE, values=parts, aggfunc="sum")
    get = lambda part, side: (wide[(part, side)] if (part, side) in wide.columns  # noqa: E731
                              else pd.Series(0.0, index=wide.index)).astype(float).fillna(0.0)
    actual = pd.DataFrame({p: get(p, "current") for p in parts})
    expected = pd.DataFrame({p: get(p, "base") * scale for p in parts})
    total_a, total_f = actual.loc[("(total)", TOTAL)], expected.loc[("(total)", TOTAL)]
    elements = actual.index.get_level_values("dimension") != "(total)"
    actual, expected = actual[elements], expected[elements]
    big_a, big_f = float(_value(measure, total_a)), float(_value(measure, total_f))
    change = big_a - big_f
    if measure.ratio is None:
        ep = (actual[measure.name] - expected[measure.name]) / change if change else actual[measure.name] * 0
    else:
        moved = total_f + (actual - expected)
        ep = ((_value(measure, moved) - big_f) / change) if change else actual[parts[0]] * 0
    surprise = sum(_js_term(_share(expected[p], total_f[p]), _share(actual[p], total_a[p])) for p in parts)
    scores = pd.DataFrame({
        "expected": _value(measure, expected), "actual": _value(measure, actual),
        "explanatory_power": ep, "surprise": surprise,
        "share_base": _share(expected[parts[0]], total_f[parts[0]]),
        "share_actual": _share(actual[parts[0]], total_a[parts[0]]),
    }).reset_index()
    scores["change"] = scores["actual"] - scores["expected"]
    return scores, big_f, big_a


def _share(values: pd.Series, total: float) -> pd.Series:
    return values / total if total else values * 0.0


def candidate_sets(scores: pd.DataFrame, thresholds: Thresholds) -> list[dict]:
    """Each dimension's explanatory set (by surprise, EP ≥ element_ep, until set_ep), ranked."""
    found = []
    for dimension, rows in scores.groupby("dimension", sort=False):
        if len(rows) < 2:  # one value in both periods (a product's category): nothing to tell apart
            continue
        chosen, total_ep = [], 0.0
        for row in rows.sort_values(["surprise", "explanatory_power"], ascending=False).itertuples():
            if row.explanatory_power < thresholds.element_ep:
                continue
            chosen.append(row.value)
            total_ep += row.explanatory_power
            if total_ep >= thresholds.set_ep:
                break
        if total_ep >= thresholds.set_ep and len(chosen) <= thresholds.max_elements:
            in_set = rows[rows["value"].isin(chosen)]
            found.append({"dimension": dimension, "elements": chosen, "explanatory_power": total_ep,
                          "surprise": float(in_set["surprise"].sum())})
    return sorted(found, key=lambda c: (-c["surprise"], len(c["elements"])))


def drill(measure: Measure, dimensions: list[str], current: Period, base: Period, fetch: Fetch,
          thresholds: Thresholds = Thresholds()) -> Drill:
    """Adtributor level by level: score, pick the top cause, filter to it, go on."""
    scale = current.days / base.days
    result, filters, remaining = Drill(), {}, list(dimensions)
    for depth in range(1, thresholds.max_depth + 1):
        table, sql = fetch(filters, remaining)
        if table.empty:
            break
        scores, expected, actual = score_level(table, measure, scale)
        if depth == 1:
            result.expected, result.actual = expected, actual
            if actual == expected:
                result.levels.append(Level(depth, dict(filters), scores, [], sql))
                break
        # Inside a cause that had nothing in the base period (a new item) every share is new:
        # there is no mix to compare, so the drill stops there.
        candidates = candidate_sets(scores, thresholds) if expected or depth == 1 else []
        result.levels.append(Level(depth, dict(filters), _marked(scores, candidates), candidates, sql,
                                   expected, actual))
        cause = _next_cause(scores, candidates, thresholds)
        if cause is None:
            break
        filters[cause[0]] = cause[1]
        remaining = [d for d in remaining if d != cause[0]]
        if not remaining:
            break
    return result


def _next_cause(scores: pd.DataFrame, candidates: list[dict], thresholds: Thresholds) -> tuple[str, str] | None:
    """The top candidate's strongest element, if it explains enough to look inside."""
    if not candidates or candidates[0]["surprise"] < thresholds.min_surprise:
        return None
    top = candidates[0]
    rows = scores[(scores["dimension"] == top["dimension"]) & scores["value"].isin(top["elements"])]
    best = rows.sort_values("explanatory_power", ascending=False).iloc[0]
    if best["explanatory_power"] < thresholds.min_share or best["value"] == NONE:
        return None
    return top["dimension"], str(best["value"])


def _marked(scores: pd.DataFrame, candidates: list[dict]) -> pd.DataFrame:
    ranks = {c["dimension"]: i + 1 for i, c in enumerate(candidates)}
    members = {(c["dimension"], v) for c in candidates for v in c["elements"]}
    marked = scores.assign(dimension_rank=scores["dimension"].map(ranks),
                           in_explanation=[(d, v) in members for d, v in zip(scores["dimension"], scores["value"],
                                                                               strict=True)])
    return marked


# ---- the analysis -------------------------------------------------------------------------------


def find_root_cause(engine: Engine, measure: str, period: str, base: str | None = None,
                    dimensions: Sequence[str] | None = None, where: dict[str, str] | None = None,
                    thresholds: Thresholds = Thresholds(), timezone: str = "Asia/Shanghai") -> Analysis:
    """Rank the dimension values that explain `measure`'s change from `base` to `period`.

    `base` defaults to the same number of days just before `period`; a base of another
    length is scaled to the current period's length (14 days of views → per day).
    """
    chosen = find_measure(measure)
    current = parse_period(period)
    before = parse_period(base) if base else previous_period(current)
    dims = _dimensions(chosen, dimensions)
    filters = dict(where or {})

    def fetch(extra: dict[str, str], remaining: list[str]) -> tuple[pd.DataFrame, str]:
        sql = build_breakdown_sql(chosen, remaining, {**filters, **extra}, current, before, timezone)
        return engine.query(sql).to_pandas(), engine.render(sql)

    result = drill(chosen, dims, current, before, fetch, thresholds)
    products, products_sql = _products(engine, result)
    frame = _frame(result, products, current, thresholds)
    sql = {f"level_{level.depth}": level.sql for level in result.levels}
    if products_sql:
        sql["products"] = products_sql
    return Analysis(
        name="root_cause", frame=frame, sql=sql,
        chart=Chart("bar", "cause", ("explanatory_power", "surprise"),
                    title_zh=f"{chosen.label_zh}变化的原因", title_en=f"What explains the change in {chosen.label_en}"),
        readings=_readings(chosen, result, frame, current, before, thresholds),
        params={"measure": chosen.name, "period": current.label, "base": before.label, "dimensions": dims,
                "where": filters, "thresholds": thresholds.__dict__, "timezone": timezone})


def _dimensions(measure: Measure, asked: Sequence[str] | None) -> list[str]:
    allowed = allowed_dimensions(measure)
    if asked:
        names = [str(parse_dimension(d)) for d in asked]
        bad = [n for n in names if parse_dimension(n).name in TIME_GRAINS]
        if bad:
            raise AnalyticsError("time cannot be a root-cause dimension.", field="dimension",
                                 fix="the periods give the time; list other dimensions",
                                 message_zh="时间不能作为归因维度。", fix_zh="时间由两个时间段给出，请列出其他维度")
        Plan((measure.name,), names, {})  # refuses a dimension the measure lacks
        return names
    return [d for d in allowed if d not in SKIPPED_BY_DEFAULT]


def _products(engine: Engine, result: Drill) -> tuple[pd.DataFrame, str]:
    """Names and launch dates of the products that appear among the causes."""
    ids = sorted({str(v) for level in result.levels for c in level.candidates if c["dimension"] == "product"
                  for v in c["elements"]} | {level.filters["product"] for level in result.levels
                                             if "product" in level.filters})
    ids = [i for i in ids if i != NONE]
    if not ids:
        return pd.DataFrame(columns=["product_id", "name", "launch_date"]), ""
    launch = exp.cast(exp.func("MIN", exp.column("launch_date")), exp.DataType.build("DATE"))
    sql = (exp.select("product_id", exp.func("MIN", exp.column("name")).as_("name"), launch.as_("launch_date"))
           .from_("products").where(exp.column("product_id").isin(*[literal(i) for i in ids]))
           .group_by("product_id"))
    return engine.query(sql).to_pandas(), engine.render(sql)


def _frame(result: Drill, products: pd.DataFrame, current: Period, thresholds: Thresholds) -> pd.DataFrame:
    """Per level, every candidate dimension's explanatory set, then the `OTHERS_SHOWN` most
    surprising elements outside any set (what changed without explaining the change)."""
    rows = []
    for level in result.levels:
        if "dimension_rank" not in level.scores:
            continue
        within = " & ".join(f"{k}={v}" for k, v in level.filters.items()) or "(all)"
        scores = level.scores
        varied = scores.groupby("dimension")["value"].transform("count") > 1  # one value tells nothing
        others = scores[~scores["in_explanation"] & varied].sort_values("surprise", ascending=False).head(OTHERS_SHOWN)
        rows.append(pd.concat([scores[scores["in_explanation"]], others]).assign(level=level.depth, within=within))
    if not rows:
        return pd.DataFrame(columns=["level", "within", "dimension", "value"])
    frame = pd.concat(rows, ignore_index=True)
    frame = frame.sort_values(["level", "dimension_rank", "dimension", "in_explanation", "surprise"],
                              ascending=[True, True, True, False, False], na_position="last")
    names = dict(zip(products["product_id"], products["name"], strict=True))
    launches = dict(zip(products["product_id"], products["launch_date"], strict=True))
    is_product = frame["dimension"] == "product"
    frame["label"] = frame["value"].map(names).where(is_product)
    frame["launch_date"] = frame["value"].map(launches).where(is_product)
    frame["days_since_launch"] = [(current.start - d).days if isinstance(d, date) else None
                                  for d in frame["launch_date"]]
    frame["cause"] = [f"L{lv} {d}={v}" for lv, d, v in zip(frame["level"], frame["dimension"], frame["value"],
                                                             strict=True)]
    columns = ["level", "within", "cause", "dimension", "value", "label", "expected", "actual", "explanatory_power",
               "surprise", "share_base", "share_actual", "in_explanation", "launch_date", "days_since_launch"]
    numbers = ["expected", "actual", "explanatory_power", "surprise", "share_base", "share_actual"]
    return frame[columns].round({name: 4 for name in numbers}).reset_index(drop=True)


def _readings(measure: Measure, result: Drill, frame: pd.DataFrame, current: Period, base: Period,
              thresholds: Thresholds) -> list[tuple[str, str]]:
    change = result.actual - result.expected
    pct = f"{change / result.expected:+.0%}" if result.expected else "n/a"
    readings = [(f"{measure.label_zh} {current.label}：实际 {result.actual:,.2f}，按 {base.label} 预期 "
                 f"{result.expected:,.2f}（{change:+,.2f}，{pct}）",
                 f"{measure.label_en} {current.label}: {result.actual:,.2f} against {result.expected:,.2f} "
                 f"expected from {base.label} ({change:+,.2f}, {pct})")]
    if not change:
        return readings + [("没有变化需要解释。", "There is no change to explain.")]
    first = result.levels[0]
    if not first.candidates or first.candidates[0]["surprise"] < thresholds.min_surprise:
        return readings + [("整体变化：没有哪个维度取值能单独解释，结构基本没变，是整个账号/全店一起变化。",
                            "The whole account moved: no dimension value explains the change on its own; "
                            "the mix barely changed.")]
    readings.append(_verdict(first, frame))
    readings += _product_age(frame, current, thresholds)
    if len(result.levels) > 1:
        readings.append(_path(result.levels[-1], thresholds))
    others = [f"{c['dimension']}={'/'.join(map(str, c['elements']))}" for c in first.candidates[1:4]]
    if others:
        readings.append((f"其他可解释的维度：{'，'.join(others)}", f"Other explaining dimensions: {', '.join(others)}"))
    return readings


def _path(deepest: Level, thresholds: Thresholds) -> tuple[str, str]:
    """The filters the drill went through, and what the deepest level shows inside them."""
    steps = " → ".join(f"{k}={v}" for k, v in deepest.filters.items())
    if not deepest.expected:  # all new: say where it came from instead of what changed
        scores = deepest.scores[deepest.scores["dimension"] == "platform"]
        top = scores.sort_values("share_actual", ascending=False).head(1)
        where = [(f"，其中 platform={r.value} 占 {r.share_actual:.0%}", f"; platform={r.value} gave {r.share_actual:.0%}")
                 for r in top.itertuples()] or [("", "")]
        return (f"下钻路径：{steps}（对比期为 0，全部是新增{where[0][0]}）",
                f"Drill path: {steps} (nothing in the base period: all of it is new{where[0][1]})")
    inner = ("", "")
    if deepest.candidates and deepest.candidates[0]["surprise"] >= thresholds.min_surprise:
        top = deepest.candidates[0]
        inner = (f"；其中 {top['dimension']}={top['elements'][0]}", f"; within it {top['dimension']}={top['elements'][0]}")
    return f"下钻路径：{steps}{inner[0]}", f"Drill path: {steps}{inner[1]}"


def _verdict(level: Level, frame: pd.DataFrame) -> tuple[str, str]:
    top = level.candidates[0]
    rows = frame[(frame["level"] == level.depth) & (frame["dimension"] == top["dimension"]) & frame["in_explanation"]]
    names = [f"{r.value}" + (f"（{r.label}）" if isinstance(r.label, str) else "") for r in rows.itertuples()]
    names_en = [f"{r.value}" + (f" ({r.label})" if isinstance(r.label, str) else "") for r in rows.itertuples()]
    shares = "; ".join(f"{r.value}: {r.share_base:.0%} → {r.share_actual:.0%}" for r in rows.itertuples())
    one = len(top["elements"]) == 1
    if one and top["dimension"] == "product":
        zh = f"不是整个账号，而是单个商品：{names[0]} 解释了 {top['explanatory_power']:.0%} 的变化（占比 {shares}）。"
        en = (f"Not the whole account but one item: product {names_en[0]} explains {top['explanatory_power']:.0%} "
              f"of the change (share {shares}).")
    else:
        what = "、".join(names)
        zh = f"变化集中在 {top['dimension']}={what}：解释了 {top['explanatory_power']:.0%}（占比 {shares}）。"
        en = (f"The change is concentrated in {top['dimension']}={', '.join(names_en)}: it explains "
              f"{top['explanatory_power']:.0%} (share {shares}).")
    return zh, en


def _product_age(frame: pd.DataFrame, current: Period, thresholds: Thresholds) -> list[tuple[str, str]]:
    """For the product among the causes: recent (a hot topic) or long ago (long-tail)?"""
    products = frame[(frame["dimension"] == "product") & frame["in_explanation"] & frame["launch_date"].notna()]
    readings = []
    for row in products.drop_duplicates("value").head(3).itertuples():
        days = int(row.days_since_launch)
        when = f"{row.launch_date}"
        if days < 0:
            readings.append((f"{row.value} 在 {when} 上市，晚于 {current.start}：新品在本期内上市。",
                             f"{row.value} launched on {when}, after {current.start}: a new item launched in the period."))
        elif days <= thresholds.recent_days:
            readings.append((f"{row.value} 于 {when} 上市，距 {current.start} 仅 {days} 天：近期新品（热点），不是长尾。",
                             f"{row.value} launched on {when}, {days} days before {current.start}: a recent item "
                             f"(hot topic), not long-tail."))
        else:
            readings.append((f"{row.value} 于 {when} 上市，距 {current.start} 已 {days} 天：长尾商品。",
                             f"{row.value} launched on {when}, {days} days before {current.start}: a long-tail item."))
    return readings
