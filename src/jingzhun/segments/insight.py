"""Feature insight: which traits and tags separate the persons who reach a goal.

A marketer choosing model variables or a target group asks "what do the people who
redeem a coupon (buy cosmetics, complete an order) have that the others do not?".
The answer is only worth acting on if it is *predictive*: every behaviour trait and
most tags are recomputed after each purchase, so a person who bought last week has a
higher `orders_total`, a fresh `days_since_last_order` and the tag "repeat buyer"
*because* of that purchase. Comparing today's portrait of last month's converters
with everyone else would rediscover the conversion itself (leakage).

So the comparison is set up the way the scores are trained (scores_features.py):

    as_of - window = cut-off T            as_of
    ──────── features at T ───────────┤ outcome: goal reached in (T, T + window] ┤

- Population: the active persons known at T (a record at or before T), optionally
  restricted to `population`. Persons first seen after T cannot be told apart by
  their past and are left out.
- Behaviour features: `features_sql(T)`, every count, share and recency computed
  from records at or before T only.
- Profile attributes a purchase does not change (gender, age, province, income,
  job, stated price sensitivity) from the current portrait (`portrait_matrix`).
- Tags as held at T, read from the tags history (valid_from <= T < valid_to). A tag
  whose history starts after T is used as held now only when its rule reads nothing
  but profile attributes (e.g. "female", "tier-1 city"); every other tag is listed in
  `Insight.skipped` with the reason. Current scores are left out for the same
  reason: they were computed from features that include the outcome window.

For each feature: the importance it has in a gradient-boosted classifier of the
outcome (permutation importance on held-out persons, cross-fitted over five folds, and
the split gain share), with the out-of-fold AUC; and a univariate lift: the conversion
rate of the holders (for a number: the top or bottom fifth, whichever converts more)
with a Wilson interval, the lift over the overall rate and the rate ratio over the rest
with 95% intervals (log method), Fisher's exact test and Benjamini-Hochberg q-values.
See docs/feature-insight.md.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pydantic import BaseModel, ValidationError
from sqlglot import exp

from jingzhun.core.errors import JingzhunError
from jingzhun.engine import Engine, parse_sql
from jingzhun.profiles.rules import (
    DEFAULT_TIMEZONE,
    AllCondition,
    AnyCondition,
    EventCondition,
    NotCondition,
    OrderCondition,
    RelativeWindow,
    RuleError,
    TagCondition,
    TraitCondition,
    dump_rule,
    parse_rule,
    walk,
)
from jingzhun.profiles.rules_compiler import build_rule_sql
from jingzhun.profiles.scores_features import (
    category_slug,
    features_sql,
    product_categories,
    utc_instant,
)
from jingzhun.profiles.tags import TagDefinition, data_as_of
from jingzhun.segments.insight_stats import (
    FIT_THREADS,
    FOLDS,
    MIN_CLASS_ROWS,
    PERMUTATION_REPEATS,
    Importances,
    importances,
    univariate,
    wilson_interval,
)
from jingzhun.segments.portrait_matrix import portrait_matrix

DEFAULT_WINDOW_DAYS = 30
# Attributes of the person rather than of what they did: a purchase in the outcome
# window does not change them, so their current value stands for the value at T.
PROFILE_NUMERIC = ("age", "price_sensitivity")
PROFILE_CATEGORICAL = ("gender", "age_band", "province", "income_band", "job")
PROFILE_TRAITS = frozenset({*PROFILE_NUMERIC, *PROFILE_CATEGORICAL, "birth_date", "city", "name"})
MAX_TAG_VALUES = 40  # a value tag keeps its most common values, like portrait_matrix


class InsightError(JingzhunError):
    """A feature insight cannot be computed as asked (goal, window or population)."""


@dataclass(frozen=True)
class Insight:
    """What separates converters from non-converters, feature by feature.

    `features` has one row per feature, best first (`rank`): readable names, the
    classifier importances, the univariate bin (`bin`: "= 1" for a tag or category
    held, ">= 2" for the top fifth of a number, ...), its
    holders and their conversion rate with Wilson interval, `lift` over the overall
    rate and `rate_ratio` over the rest with 95% intervals, `rank_auc` (numbers: the
    chance a converter's value is higher than a non-converter's), Fisher's p-value,
    the Benjamini-Hochberg `q_value`, `significant` (q < 0.05) and one-line readings.
    `skipped` names each feature or tag left out, and why; `sql` holds every query.
    """

    goal: str
    cutoff: dt.datetime
    outcome_end: dt.datetime
    window_days: int
    persons: int
    converters: int
    base_rate: float
    base_rate_interval: tuple[float, float]
    auc: float | None
    folds: int  # cross-fitting folds of the classifier; 0 when there was none
    features: pd.DataFrame
    skipped: pd.DataFrame
    sql: dict[str, str]
    notes: list[tuple[str, str]] = field(default_factory=list)  # (zh, en)

    def readings(self, language: str = "zh", top: int = 10) -> list[str]:
        """One sentence per feature for the `top` ranked ones."""
        column = "reading_zh" if language.startswith("zh") else "reading_en"
        return self.features[column].head(top).tolist()


# ---- the goal ------------------------------------------------------------------------------


def parse_goal(goal: object) -> BaseModel:
    """An event name ("Order Completed") or an event/order rule ({order: {product:
    {category: cosmetics}}}), possibly combined with all/any/not, without a window:
    the window is the insight's."""
    if isinstance(goal, str):
        return parse_rule({"event": {"name": goal}}, root="goal")
    if not isinstance(goal, dict | BaseModel):
        raise _goal_error("a goal is an event name or an event/order condition.",
                          "目标须为事件名，或 event / order 条件。", "goal")
    try:
        condition = goal if isinstance(goal, BaseModel) else parse_rule(goal, root="goal")
    except (RuleError, ValidationError) as invalid:
        raise _goal_error(f"the goal is not a valid rule: {invalid}", f"目标不是有效规则：{invalid}", "goal") from None
    for path, part in walk(condition, "goal"):
        if not isinstance(part, AllCondition | AnyCondition | NotCondition | EventCondition | OrderCondition):
            raise _goal_error(f"{path}: a goal says what a person does or buys (event, order), not who they are.",
                              f"{path}：目标应描述行为或购买（event、order），而非人群属性。", path)
        spec = getattr(part, "event", None) or getattr(part, "order", None)
        if spec is not None and spec.window is not None:
            kind = "event" if isinstance(part, EventCondition) else "order"
            raise _goal_error(f"{path}.{kind}.window: the goal's window is set by window_days.",
                              f"{path}.{kind}.window：目标的时间窗由 window_days 决定。", f"{path}.{kind}.window")
    return condition


def _goal_error(message: str, message_zh: str, where: str) -> InsightError:
    return InsightError(message, field=where, message_zh=message_zh,
                        fix='e.g. goal="Order Completed" or {"order": {"product": {"category": "cosmetics"}}}',
                        fix_zh='例如 goal="Order Completed" 或 {"order": {"product": {"category": "cosmetics"}}}')


def _windowed(condition: BaseModel, days: int) -> BaseModel:
    """The goal with every event/order leaf limited to the last `days` before as_of."""
    window = RelativeWindow(last=f"{days}d")
    if isinstance(condition, EventCondition):
        return EventCondition(event=condition.event.model_copy(update={"window": window}))
    if isinstance(condition, OrderCondition):
        return OrderCondition(order=condition.order.model_copy(update={"window": window}))
    if isinstance(condition, NotCondition):
        return NotCondition(**{"not": _windowed(condition.not_, days)})
    key = condition.KIND  # all | any
    return type(condition)(**{key: [_windowed(child, days) for child in getattr(condition, key)]})


def goal_sql(goal: object, cutoff: dt.datetime, window_days: int, timezone: str = DEFAULT_TIMEZONE) -> exp.Select:
    """SELECT person_id of everyone who reached the goal in (cutoff, cutoff + window].

    Example:
        >>> sql = goal_sql("Order Completed", dt.datetime(2026, 1, 1, tzinfo=dt.UTC), 30)
        >>> "Order Completed" in sql.sql(dialect="duckdb")
        True
    """
    end = utc_instant(cutoff) + dt.timedelta(days=window_days)
    return build_rule_sql(_windowed(parse_goal(goal), window_days), as_of=end, timezone=timezone)


def _check_goal_names(engine: Engine, condition: BaseModel) -> None:
    """Name the unknown event or product value instead of reporting "nobody converted"."""
    for path, part in walk(condition, "goal"):
        kind = "event" if isinstance(part, EventCondition) else "order"
        spec = getattr(part, kind, None)
        if spec is None:
            continue
        if kind == "event" and spec.name is not None:
            _check_names(engine, "events", "event", spec.name, f"{path}.event.name")
        for column, values in (spec.product.filters() if spec.product is not None else ()):
            if column in ("category", "subcategory", "brand", "product_line"):
                _check_names(engine, "products", column, values, f"{path}.{kind}.product.{column}")


_COLUMN_ZH = {"event": "事件", "category": "品类", "subcategory": "子品类", "brand": "品牌", "product_line": "产品线"}


def _check_names(engine: Engine, table: str, column: str, wanted: str | list[str], where: str) -> None:
    known = sorted(engine.query(parse_sql(f"SELECT DISTINCT {column} AS v FROM {table} "
                                          f"WHERE {column} IS NOT NULL")).column("v").to_pylist())
    for name in [wanted] if isinstance(wanted, str) else wanted:
        if name in known:
            continue
        close, shown = difflib.get_close_matches(name, known, n=1), ", ".join(known[:30])
        raise InsightError(
            f"unknown goal {column} {name!r}: no row of `{table}` has it.", field=where,
            fix=(f"did you mean {close[0]!r}? " if close else "") + f"Known: {shown}",
            message_zh=f"未知的目标{_COLUMN_ZH[column]} {name!r}：`{table}` 中没有。",
            fix_zh=(f"是否想写 {close[0]!r}？" if close else "") + f"已有：{shown}")


# ---- queries -------------------------------------------------------------------------------


def outcome_sql(goal: object, cutoff: dt.datetime, window_days: int, categories: Sequence[str],
                population: exp.Expression | None = None, timezone: str = DEFAULT_TIMEZONE) -> exp.Expression:
    """One row per active person known at `cutoff` (and in `population`): the behaviour
    features as of the cut-off and `converted` (1 if the goal was reached in the window)."""
    sql = """SELECT f.*, CASE WHEN g.person_id IS NULL THEN 0 ELSE 1 END AS converted
FROM insight_features AS f
LEFT JOIN (SELECT DISTINCT person_id FROM insight_converters) AS g ON g.person_id = f.person_id"""
    if population is not None:
        sql += "\nJOIN (SELECT DISTINCT person_id FROM insight_population) AS pm ON pm.person_id = f.person_id"
    query = parse_sql(sql + "\nORDER BY f.person_id")
    parts = {"insight_features": features_sql(cutoff, categories),
             "insight_converters": goal_sql(goal, cutoff, window_days, timezone),
             "insight_population": population}
    for table in list(query.find_all(exp.Table)):
        if table.name in parts:
            table.replace(parts[table.name].copy().subquery(table.alias_or_name))
    return query


def tags_at_sql(cutoff: dt.datetime, history: Sequence[str], current: Sequence[str]) -> exp.Expression:
    """(person_id, tag_id, value) of the `history` tags held at the cut-off and of the
    `current` (profile-only) tags held now.

    Example:
        >>> sql = tags_at_sql(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), ["coupon_sensitive"], ["female"])
        >>> "valid_from <=" in sql.sql(dialect="duckdb")
        True
    """
    at = exp.convert(utc_instant(cutoff))
    tag, since, until = (exp.column(name, table="t") for name in ("tag_id", "valid_from", "valid_to"))
    held_then = exp.and_(exp.LTE(this=since, expression=at),
                         exp.or_(until.is_(exp.null()), exp.GT(this=until.copy(), expression=at.copy())))
    chosen = [exp.and_(tag.copy().isin(*map(exp.convert, history)), held_then)] if history else []
    if current:
        chosen.append(exp.and_(tag.copy().isin(*map(exp.convert, current)), until.copy().is_(exp.null())))
    return (exp.select("t.person_id", "t.tag_id", "t.value").distinct().from_("tags AS t")
            .where(exp.or_(*chosen) if chosen else exp.false()))


TAG_INFO_SQL = """SELECT d.tag_id, d.name_zh, d.name_en, d.definition, h.first_from
FROM tag_definitions AS d
JOIN (SELECT tag_id, MAX(version) AS version FROM tag_definitions GROUP BY tag_id) AS v
  ON v.tag_id = d.tag_id AND v.version = d.version
JOIN (SELECT tag_id, MIN(valid_from) AS first_from FROM tags GROUP BY tag_id) AS h ON h.tag_id = d.tag_id
ORDER BY d.tag_id"""


# ---- tags ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TagPlan:
    """Which tags are read at the cut-off (`history`), which now (`current`), and why
    the others are left out."""

    history: list[str] = field(default_factory=list)
    current: list[str] = field(default_factory=list)
    names: dict[str, tuple[str, str]] = field(default_factory=dict)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (feature, zh, en)


def _definition(text: str | None) -> TagDefinition | None:
    if not text:
        return None
    try:
        return TagDefinition.model_validate(json.loads(text))
    except (ValueError, ValidationError):
        return None


def _reads_profile(part: object, profile_tags: set[str]) -> bool:
    if isinstance(part, AllCondition | AnyCondition | NotCondition):
        return True
    if isinstance(part, TraitCondition):
        return part.trait in PROFILE_TRAITS
    return isinstance(part, TagCondition) and part.tag in profile_tags


def _profile_only(definition: TagDefinition | None, profile_tags: set[str]) -> bool:
    """True when the tag's rule (and value) reads profile attributes only, so holding it
    now means holding it at the cut-off. SQL tags cannot be told: False."""
    if definition is None or definition.rule is None:
        return False
    value = definition.value
    if value is not None and value.trait is not None and value.trait not in PROFILE_TRAITS:
        return False
    cases = value.cases if value is not None and value.cases else []
    rules = [definition.rule, *(case.when for case in cases)]
    return all(_reads_profile(part, profile_tags) for rule in rules for _, part in walk(rule))


def _profile_tags(definitions: dict[str, TagDefinition | None]) -> set[str]:
    """Profile-only tags, including tags built on other profile-only tags."""
    found: set[str] = set()
    while True:
        more = {tag for tag, d in definitions.items() if tag not in found and _profile_only(d, found)}
        if not more:
            return found
        found |= more


def _plan_tags(engine: Engine, cutoff: dt.datetime, wanted: Sequence[str] | None) -> _TagPlan:
    if not (engine.table_exists("tags") and engine.table_exists("tag_definitions")):
        return _TagPlan()
    rows = engine.query(parse_sql(TAG_INFO_SQL)).to_pandas()
    if wanted is not None:
        unknown = sorted(set(wanted) - set(rows["tag_id"]))
        if unknown:
            raise InsightError(f"unknown or never computed tags: {', '.join(unknown)}.", field="tags",
                               fix="run `jingzhun tag list` to see the tags", message_zh=f"未知或从未计算的标签：{'、'.join(unknown)}。",
                               fix_zh="运行 `jingzhun tag list` 查看已有标签")
        rows = rows[rows["tag_id"].isin(list(wanted))]
    profile = _profile_tags({tag: _definition(text) for tag, text in zip(rows["tag_id"], rows["definition"], strict=True)})
    plan = _TagPlan(names={t: (zh, en) for t, zh, en in zip(rows["tag_id"], rows["name_zh"], rows["name_en"], strict=True)})
    for tag, first in zip(rows["tag_id"], rows["first_from"], strict=True):
        if utc_instant(first.to_pydatetime()) <= utc_instant(cutoff):
            plan.history.append(tag)
        elif tag in profile:
            plan.current.append(tag)
        else:
            plan.skipped.append((f"tag:{tag}", f"标签历史始于 {first:%Y-%m-%d}，晚于截止时间，且规则不只读取人口属性",
                                 f"its history starts {first:%Y-%m-%d}, after the cut-off, and its rule reads "
                                 "more than profile attributes"))
    return plan


def _tag_frame(rows: pd.DataFrame, index: pd.Index) -> pd.DataFrame:
    """One 0/1 column per tag (`tag:<id>`) or per value of a value tag (`tag:<id>=<value>`),
    the most common MAX_TAG_VALUES values of each."""
    rows = rows[rows["person_id"].isin(index)]
    if rows.empty:
        return pd.DataFrame(index=index)
    key = ("tag:" + rows["tag_id"]).where(rows["value"].isna(), "tag:" + rows["tag_id"] + "=" + rows["value"].astype(str))
    rows = rows.assign(key=key)
    counts = rows.groupby(["tag_id", "key"]).size().rename("n").reset_index()
    counts["order"] = counts.groupby("tag_id")["n"].rank(method="first", ascending=False)
    kept = rows[rows["key"].isin(counts.loc[counts["order"] <= MAX_TAG_VALUES, "key"])]
    frame = pd.crosstab(kept["person_id"], kept["key"]).clip(upper=1)
    return frame.reindex(index, fill_value=0).astype(np.float64).rename_axis(columns=None)


# ---- readable names ------------------------------------------------------------------------

_NAMES: dict[str, tuple[str, str]] = {
    "orders_total": ("累计订单数", "orders in total"), "refunds_total": ("累计退款订单数", "refunded orders"),
    "cancelled_total": ("累计取消订单数", "cancelled orders"), "coupon_orders": ("用券订单数", "orders with a coupon"),
    "days_since_last_order": ("距上次购买天数", "days since the last order"),
    "days_since_first_order": ("距首次购买天数", "days since the first order"),
    "gmv_total": ("累计消费金额", "spend in total"), "aov": ("客单价", "average order value"),
    "refund_rate": ("退款率", "refund rate"), "coupon_order_share": ("用券订单占比", "share of orders with a coupon"),
    "offline_order_share": ("门店订单占比", "share of orders in stores"),
    "marketplace_order_share": ("平台电商订单占比", "share of marketplace orders"),
    "days_between_orders": ("平均购买间隔天数", "days between orders"), "logins_total": ("累计登录次数", "logins"),
    "livestream_views_total": ("累计直播观看次数", "livestream views in total"),
    "events_total": ("累计行为事件数", "events in total"), "days_since_last_event": ("距上次访问天数", "days since the last visit"),
    "days_since_first_event": ("距首次访问天数", "days since the first visit"),
    "app_event_share": ("App 行为占比", "share of events in the app"), "web_event_share": ("网站行为占比", "share of events on the web"),
    "miniprogram_event_share": ("小程序行为占比", "share of events in the mini-program"),
    "cart_adds_per_view_90d": ("近90天加购率", "cart adds per product view (90 days)"),
    "is_member": ("会员", "member"), "days_since_member_signup": ("入会天数", "days since joining"),
    "categories_bought": ("购买品类数", "categories bought"), "items_total": ("累计购买件数", "items bought"),
    "tenure_days": ("客龄天数", "days since first seen"), "age": ("年龄", "age"),
    "price_sensitivity": ("价格敏感度（问卷）", "price sensitivity (survey)"), "gender": ("性别", "gender"),
    "age_band": ("年龄段", "age band"), "province": ("省份", "province"), "income_band": ("收入段", "income band"),
    "job": ("职业", "job"),
}
# Counts per window: `<stem>_<n>d`.
_STEMS: dict[str, tuple[str, str]] = {
    "orders": ("订单数", "orders"), "gmv": ("消费金额", "spend"), "events": ("行为事件数", "events"),
    "active_days": ("活跃天数", "active days"), "product_views": ("商品浏览次数", "product views"),
    "cart_adds": ("加购次数", "cart adds"), "checkouts": ("发起结算次数", "checkouts started"),
    "coupons_applied": ("使用优惠券次数", "coupons applied"), "searches": ("搜索次数", "searches"),
    "interactions": ("社交互动次数", "social interactions"), "follows": ("关注次数", "follows"),
    "livestream_views": ("直播观看次数", "livestream views"),
}


def feature_label(feature: str, categories: Sequence[str] = (), tags: dict[str, tuple[str, str]] | None = None,
                  ) -> tuple[str, str, str | None]:
    """(zh name, en name, value) of a feature column: `orders_90d` → 近90天订单数;
    `gender=F` → (性别, gender, F); `tag:female` → the tag's own names."""
    if feature.startswith("tag:"):
        tag, _, value = feature[4:].partition("=")
        zh, en = (tags or {}).get(tag, (tag, tag))
        return zh, en, value or None
    name, _, value = feature.partition("=")
    if name in _NAMES:
        return (*_NAMES[name], value or None)
    slugs = {f"category_share_{category_slug(c, i)}": c for i, c in enumerate(categories)}
    if name in slugs:
        return f"{slugs[name]}品类消费占比", f"share of spend on {slugs[name]}", None
    stem, _, days = name.rpartition("_")
    if stem in _STEMS and days.endswith("d") and days[:-1].isdigit():
        zh, en = _STEMS[stem]
        return f"近{days[:-1]}天{zh}", f"{en} in the last {days[:-1]} days", None
    return name, name, value or None


# ---- readings ------------------------------------------------------------------------------


def _who(row: pd.Series) -> tuple[str, str]:
    """The group a feature's bin names, in Chinese and English."""
    zh, en, value = row["name_zh"], row["name_en"], row["value"]
    if row["kind"] == "numeric":
        share = f"{row['share']:.0%}"
        return f"「{zh}」{row['bin']} 的人（占 {share}）", f"people with “{en}” {row['bin']} ({share} of all)"
    if value is not None:
        return f"「{zh}」为「{value}」的人", f"people whose “{en}” is “{value}”"
    if row["source"] == "tag":
        return f"持有「{zh}」标签的人", f"people holding the tag “{en}”"
    return f"「{zh}」为是的人", f"people with “{en}” = yes"


def _ratio_text(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value:.2f}" if value < 1 else f"{value:.1f}"


def reading(row: pd.Series, base_rate: float) -> tuple[str, str]:
    """One sentence per language: the group's conversion, its lift over the overall rate
    with the 95% interval, and whether the difference is significant."""
    who_zh, who_en = _who(row)
    if not row["holders"]:
        return f"{who_zh}：无可比较的分组", f"{who_en[0].upper()}{who_en[1:]}: no group to compare"
    lift, low, high = (_ratio_text(row[c]) for c in ("lift", "lift_low", "lift_high"))
    zh = (f"{who_zh}转化率 {row['rate_with']:.1%}，是整体（{base_rate:.1%}）的 {lift} 倍"
          f"（95% CI {low}–{high}）" + ("" if row["significant"] else "，差异不显著"))
    en = (f"{who_en[0].upper()}{who_en[1:]} convert at {row['rate_with']:.1%}, {lift}× the overall "
          f"{base_rate:.1%} (95% CI {low}–{high})" + ("" if row["significant"] else "; not significant"))
    return zh, en


# ---- putting it together -------------------------------------------------------------------

COLUMNS = ["rank", "feature", "name_zh", "name_en", "source", "kind", "value", "importance", "importance_gain",
           "bin", "holders", "share", "holder_converters", "rate_with", "rate_with_low", "rate_with_high",
           "rate_without", "lift", "lift_low", "lift_high", "rate_ratio", "rate_ratio_low", "rate_ratio_high",
           "rank_auc", "p_value", "q_value", "significant", "reading_zh", "reading_en"]


@dataclass(frozen=True)
class _Data:
    frame: pd.DataFrame  # persons × features, sorted by person_id
    y: np.ndarray
    names: pd.DataFrame  # per feature: name_zh, name_en, value, source
    skipped: list[tuple[str, str, str]]
    sql: dict[str, str]


def _read(engine: Engine, goal: BaseModel, cutoff: dt.datetime, window_days: int,
          population: exp.Expression | None, timezone: str, tags: Sequence[str] | None) -> _Data:
    """Behaviour and outcome, profile attributes and tags of the persons known at the cut-off."""
    categories = product_categories(engine)
    outcome = outcome_sql(goal, cutoff, window_days, categories, population, timezone)
    table = engine.query(outcome).to_pandas().set_index("person_id")
    if table.empty:
        raise InsightError(f"nobody in the population is known at the cut-off {cutoff:%Y-%m-%d %H:%M} UTC.",
                           field="population", fix="check the population query, or move as_of later",
                           message_zh=f"截止时间 {cutoff:%Y-%m-%d %H:%M} UTC 时人群中没有已知客户。",
                           fix_zh="检查人群查询，或把 as_of 往后移")
    y = table.pop("converted").to_numpy(dtype=np.int64)
    behaviour = table.astype(np.float64)
    profile = portrait_matrix(engine, PROFILE_NUMERIC, PROFILE_CATEGORICAL, population=population)
    attributes = profile.frame.reindex(behaviour.index)
    one_hot = [c for c in attributes.columns if "=" in c]
    attributes[one_hot] = attributes[one_hot].fillna(0.0)
    plan = _plan_tags(engine, cutoff, tags)
    tag_query = tags_at_sql(cutoff, plan.history, plan.current)
    held = (_tag_frame(engine.query(tag_query).to_pandas(), behaviour.index) if plan.history or plan.current
            else pd.DataFrame(index=behaviour.index))
    sources = {"tag": held.columns, "profile": attributes.columns, "behaviour": behaviour.columns}
    names = pd.DataFrame([(c, *feature_label(c, categories, plan.names), source)
                          for source, columns in sources.items() for c in columns],
                         columns=["feature", "name_zh", "name_en", "value", "source"]).set_index("feature")
    sql = {"outcome": engine.render(outcome), "profile": profile.sql, "tags": engine.render(tag_query)}
    return _Data(pd.concat([held, attributes, behaviour], axis=1), y, names, plan.skipped, sql)


def _prune(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[str, str, str]]]:
    """Drop features that are the same for everyone, and exact copies of an earlier
    feature (the tag "female" and gender=F): a copy splits the classifier's credit."""
    skipped, first_of = [], {}
    for feature in frame.columns:
        column = frame[feature].to_numpy(dtype=np.float64)
        if np.unique(column).size <= 1 or np.isnan(column).all():
            skipped.append((feature, "所有人取值相同", "the same for every person"))
            continue
        twin = first_of.setdefault(hashlib.sha256(column.tobytes()).hexdigest(), feature)
        if twin != feature:
            skipped.append((feature, f"与 {twin} 完全相同", f"identical to {twin}"))
    dropped = [feature for feature, _, _ in skipped]
    return frame.drop(columns=dropped), skipped


def _check_outcome(y: np.ndarray, cutoff: dt.datetime, window_days: int) -> None:
    converters, persons = int(y.sum()), len(y)
    when_en = f"of the {persons} persons known at the cut-off {cutoff:%Y-%m-%d} in the {window_days} days after it"
    when_zh = f"截止 {cutoff:%Y-%m-%d} 已知的 {persons} 人中，其后 {window_days} 天内"
    if converters == 0:
        raise InsightError(f"nobody {when_en} reached the goal.", field="goal",
                           fix="widen window_days, move as_of, or loosen the goal's filters",
                           message_zh=f"{when_zh}没有人达成目标。", fix_zh="加大 window_days、调整 as_of，或放宽目标条件")
    if converters == persons:
        raise InsightError(f"everyone {when_en} reached the goal: there is no one to compare them with.",
                           field="goal", fix="narrow the goal (a product, channel or count) or widen the population",
                           message_zh=f"{when_zh}所有人都达成了目标，没有可比较的对象。",
                           fix_zh="收窄目标（商品、渠道或次数），或扩大人群")


def _ranked(table: pd.DataFrame, found: Importances, base_rate: float) -> pd.DataFrame:
    """Best first: features with a significant lift, then the rest; within each, by
    permutation importance, split gain and the univariate p-value.

    The classifier credits what a feature adds given all the others (the home-goods
    share, not the "buys anything" counts every purchase goal shares), but a few dozen
    held-out converters make it noisy; the significance tier keeps a feature the model
    happened to use, with no lift a marketer can rely on, below those that have one.
    """
    table = table.assign(importance=found.permutation, importance_gain=found.gain)
    table = table.sort_values(["significant", "importance", "importance_gain", "p_value"],
                              ascending=[False, False, False, True], na_position="last",
                              kind="stable").reset_index(names="feature")
    readings = [reading(row, base_rate) for _, row in table.iterrows()]  # one per feature
    table = table.assign(rank=np.arange(1, len(table) + 1), reading_zh=[zh for zh, _ in readings],
                         reading_en=[en for _, en in readings])
    return table[COLUMNS]


def feature_insight(
    engine: Engine,
    goal: object,
    population: exp.Expression | str | None = None,
    window_days: int = DEFAULT_WINDOW_DAYS,
    as_of: dt.datetime | None = None,
    *,
    tags: Sequence[str] | None = None,
    timezone: str = DEFAULT_TIMEZONE,
    folds: int = FOLDS,
    repeats: int = PERMUTATION_REPEATS,
    threads: int = FIT_THREADS,
) -> Insight:
    """Which traits and tags, as they were at the cut-off, separate the persons who then
    reached `goal` within `window_days` from those who did not.

    Args:
        engine: the workspace's engine; every feature and the outcome are SQL it runs.
        goal: an event name ("Order Completed") or an event/order rule without a window
            ({"order": {"product": {"category": "cosmetics"}}}).
        population: a query returning person_id (e.g. an audience) to restrict to.
        window_days: the outcome window; the cut-off is `as_of - window_days`.
        as_of: the end of the outcome window (default: the latest order or event).
        tags: the tags to consider (default: every computed tag).
        timezone: for local-time filters in the goal.
        folds: cross-fitting folds of the classifier.
        repeats: shuffles per feature and fold for the permutation importance.
        threads: OpenMP threads for the classifier.

    Returns:
        An `Insight`: features ranked best first, with importances, lifts and readings.
    """
    condition = parse_goal(goal)
    if int(window_days) < 1:
        raise InsightError("window_days must be at least 1.", field="window_days", fix="e.g. window_days=30",
                           message_zh="window_days 至少为 1。", fix_zh="例如 window_days=30")
    _check_goal_names(engine, condition)
    end = utc_instant(as_of) if as_of is not None else data_as_of(engine)
    cutoff = end - dt.timedelta(days=int(window_days))
    chosen = parse_sql(population) if isinstance(population, str) else population
    data = _read(engine, condition, cutoff, int(window_days), chosen, timezone, tags)
    _check_outcome(data.y, cutoff, int(window_days))
    frame, pruned = _prune(data.frame)
    found = importances(frame.to_numpy(dtype=np.float64), data.y, folds, repeats, threads)
    base = float(data.y.mean())
    table = _ranked(univariate(frame, data.y).join(data.names), found, base)
    low, high = wilson_interval(np.array([data.y.sum()]), np.array([len(data.y)]))
    skipped = pd.DataFrame(data.skipped + pruned, columns=["feature", "reason_zh", "reason_en"])
    return Insight(goal=goal if isinstance(goal, str) else json.dumps(dump_rule(condition), ensure_ascii=False),
                   cutoff=cutoff, outcome_end=end, window_days=int(window_days), persons=len(data.y),
                   converters=int(data.y.sum()), base_rate=base, base_rate_interval=(float(low[0]), float(high[0])),
                   auc=found.auc, folds=found.folds, features=table, skipped=skipped, sql=data.sql,
                   notes=_notes(found, data))


def _notes(found: Importances, data: _Data) -> list[tuple[str, str]]:
    notes = []
    if found.auc is None:
        notes.append((f"转化或未转化的人少于 {MIN_CLASS_ROWS} 个，未训练分类器，按单变量检验排序。",
                      f"fewer than {MIN_CLASS_ROWS} converters or non-converters: no classifier; "
                      "ranked by the univariate test."))
    if data.skipped:
        notes.append((f"{len(data.skipped)} 个标签在截止时间没有历史记录，未纳入（见 skipped）。",
                      f"{len(data.skipped)} tag(s) without history at the cut-off left out (see skipped)."))
    return notes
