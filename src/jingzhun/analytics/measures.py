"""The cube's vocabulary, defined once: facts, dimensions and measures.

A **fact** is a table of things that happened (orders, order lines, tracked events,
product views, follows, message events, ad spend), with the joins it may need and the
expression each dimension reads on it. A **measure** is a SQL aggregate over one fact
(several facts where one is cheaper: GMV reads `orders` unless a product dimension
needs `order lines`) or the ratio of two measures. Ratios are computed from their
parts after aggregation (AOV = GMV / orders per cell), so they roll up correctly:
the AOV of a quarter is the quarter's GMV over its orders, never an average of months.

Which dimensions a measure supports follows from its facts: ad spend has no person, so
"spend by gender" is refused with the dimensions it does have.

Fragments are DuckDB-dialect SQL parsed by sqlglot; `__person__` and `__product__`
stand for the fact's person and product expressions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from jingzhun.analytics.result import AnalyticsError

TIME_GRAINS: tuple[str, ...] = ("day", "week", "month", "quarter", "year")
KEPT_ORDER = "o.status IS NULL OR o.status NOT IN ('cancelled', 'refunded')"
TRACKED = "'web', 'app', 'miniprogram'"  # the platforms our tracking SDKs see


@dataclass(frozen=True)
class Join:
    """A table a fact may join: `table` (with alias) `ON on`, after the joins in `needs`.

    With `alias`, `table` is a SELECT joined as a subquery under that alias.
    """

    table: str
    on: str
    kind: Literal["left", "inner"] = "left"
    needs: tuple[str, ...] = ()
    alias: str | None = None


@dataclass(frozen=True)
class Column:
    """A dimension's expression on one fact, and the joins it reads."""

    sql: str
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Fact:
    """A table of happenings the cube aggregates.

    `instant` is the UTC timestamp the time dimensions read (shown in the workspace
    time zone); `day` a column that already holds a local date (ad spend). `person`
    and `product` are the expressions that attach persons and products, with their joins.
    """

    name: str
    label_zh: str
    label_en: str
    source: str
    where: str | None = None
    instant: str | None = None
    day: str | None = None
    person: Column | None = None
    product: Column | None = None
    joins: dict[str, Join] = field(default_factory=dict)
    columns: dict[str, Column] = field(default_factory=dict)
    always: tuple[str, ...] = ()  # joins every query of the fact needs (its time or filter reads them)


def _person_join(kind: str, record_id: str) -> Join:
    return Join("record_persons AS rp", f"rp.record_kind = '{kind}' AND rp.record_id = {record_id}")


PERSON_JOINS = {"pt": Join("person_traits AS pt", "pt.person_id = __person__")}
# The catalogue has a row per SKU; a product (SPU) has one category, brand and line.
PRODUCTS_BY_ID = """
SELECT product_id, MIN(category) AS category, MIN(subcategory) AS subcategory, MIN(brand) AS brand,
  MIN(product_line) AS product_line
FROM products GROUP BY product_id
"""
PRODUCT_JOINS = {"pr": Join(PRODUCTS_BY_ID, "pr.product_id = __product__", alias="pr")}
STORE_JOIN = {"st": Join("stores AS st", "st.store_id = o.store_id")}
ORDER_COLUMNS = {
    "channel": Column("o.channel"),
    "platform": Column("o.platform"),
    "store": Column("o.store_id"),
    # Where the sale happened: the store for offline orders, the delivery address online.
    "province": Column("COALESCE(st.province, o.ship_province)", ("st",)),
    "city": Column("COALESCE(st.city, o.ship_city)", ("st",)),
}
EVENT_COLUMNS = {"platform": Column("e.channel"), "channel": Column("'online'")}

FACTS: dict[str, Fact] = {fact.name: fact for fact in (
    Fact("orders", "订单", "orders", "orders AS o", KEPT_ORDER, instant="o.placed_at",
         person=Column("rp.person_id", ("rp",)),
         joins={"rp": _person_join("order", "o.order_id"), **STORE_JOIN}, columns=ORDER_COLUMNS),
    Fact("order_lines", "订单明细", "order lines", "order_items AS oi", KEPT_ORDER, instant="o.placed_at",
         person=Column("rp.person_id", ("rp",)), product=Column("oi.product_id"),
         joins={"o": Join("orders AS o", "o.order_id = oi.order_id", "inner"),
                "rp": _person_join("order", "o.order_id"), **STORE_JOIN},
         columns=ORDER_COLUMNS, always=("o",)),
    Fact("events", "行为事件", "tracked events", "events AS e", instant="e.timestamp",
         person=Column("rp.person_id", ("rp",)), product=Column("e.properties->>'$.product_id'"),
         joins={"rp": _person_join("event", "e.message_id")}, columns=EVENT_COLUMNS),
    Fact("product_views", "商品浏览", "product views", "events AS e", "e.event = 'Product Viewed'",
         instant="e.timestamp", person=Column("rp.person_id", ("rp",)),
         product=Column("e.properties->>'$.product_id'"),
         joins={"rp": _person_join("event", "e.message_id")}, columns=EVENT_COLUMNS),
    Fact("follows", "关注", "follows", "source_records AS sr",
         "sr.kind = 'follow' OR (sr.kind = 'interaction' AND sr.attributes->>'$.interaction_type' = 'follow')",
         instant="sr.occurred_at", person=Column("rp.person_id", ("rp",)),
         joins={"rp": _person_join("source_record", "sr.record_id")}),
    Fact("message_events", "消息回执", "message events", "message_events AS me", instant="me.occurred_at",
         person=Column("me.person_id")),
    Fact("ads", "广告投放", "ad spend", "ad_spend AS ad", day="ad.day",
         columns={"ad_channel": Column("ad.channel"),
                  "ad_campaign": Column("COALESCE(ad.campaign_name, ad.campaign_id)")}),
)}


@dataclass(frozen=True)
class Dimension:
    """A way to break a measure down."""

    name: str
    label_zh: str
    label_en: str
    group: Literal["time", "place", "channel", "people", "product"]
    param: bool = False  # `tag:<tag_id>` names which tag


DIMENSIONS: dict[str, Dimension] = {d.name: d for d in (
    Dimension("day", "日", "day", "time"), Dimension("week", "周", "ISO week (Monday)", "time"),
    Dimension("month", "月", "month", "time"), Dimension("quarter", "季度", "quarter", "time"),
    Dimension("year", "年", "year", "time"),
    Dimension("province", "省份", "province", "place"), Dimension("city", "城市", "city", "place"),
    Dimension("store", "门店", "store", "place"),
    Dimension("channel", "渠道", "channel (online/offline)", "channel"),
    Dimension("platform", "平台", "platform", "channel"),
    Dimension("ad_channel", "广告渠道", "ad channel", "channel"),
    Dimension("ad_campaign", "广告计划", "ad campaign", "channel"),
    Dimension("gender", "性别", "gender", "people"), Dimension("age_band", "年龄段", "age band", "people"),
    Dimension("member_level", "会员等级", "member level", "people"),
    Dimension("tag", "标签", "tag (tag:<id> for one tag's values)", "people", param=True),
    Dimension("audience", "人群", "audience (latest snapshot)", "people"),
    Dimension("category", "品类", "category", "product"),
    Dimension("subcategory", "子品类", "subcategory", "product"),
    Dimension("brand", "品牌", "brand", "product"),
    Dimension("product_line", "产品线", "product line", "product"),
    Dimension("product", "商品", "product", "product"),
)}
PERSON_DIMENSIONS = ("gender", "age_band", "member_level", "province", "city", "tag", "audience")
PRODUCT_DIMENSIONS = ("category", "subcategory", "brand", "product_line", "product")

# The latest snapshot of every audience (each has its own latest snapshot date).
LATEST_AUDIENCES = """
SELECT sm.segment_id, sm.person_id FROM segment_members AS sm
JOIN (SELECT segment_id, MAX(snapshot_date) AS snapshot_date FROM segment_members GROUP BY segment_id) AS latest
  ON latest.segment_id = sm.segment_id AND latest.snapshot_date = sm.snapshot_date
"""


@dataclass(frozen=True)
class DimensionRef:
    """A dimension as asked for: `month`, `category`, `tag:age_band`."""

    name: str
    param: str | None = None

    @property
    def column(self) -> str:
        """The output column's name."""
        return f"{self.name}_{self.param}" if self.param else self.name

    @property
    def is_time(self) -> bool:
        return self.name in TIME_GRAINS

    def __str__(self) -> str:
        return f"{self.name}:{self.param}" if self.param else self.name


def parse_dimension(text: str) -> DimensionRef:
    """`tag:age_band` → DimensionRef('tag', 'age_band'); unknown names are refused."""
    name, _, param = text.strip().partition(":")
    known = DIMENSIONS.get(name)
    if known is None:
        raise AnalyticsError(
            f"unknown dimension {text!r}.", field="dimension", fix=f"use one of: {', '.join(DIMENSIONS)}",
            message_zh=f"未知维度 {text!r}。", fix_zh=f"可选：{', '.join(DIMENSIONS)}")
    if param and not known.param:
        raise AnalyticsError(f"dimension {name!r} takes no ':' part.", field="dimension",
                             fix=f"write {name}", message_zh=f"维度 {name!r} 不带冒号参数。", fix_zh=f"请写 {name}")
    if param and not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", param):
        raise AnalyticsError(f"invalid tag id {param!r}.", field="dimension",
                             fix="tag ids are lower_snake_case, e.g. tag:age_band",
                             message_zh=f"无效的标签 ID {param!r}。", fix_zh="标签 ID 为小写下划线，例如 tag:age_band")
    return DimensionRef(name, param or None)


def fact_dimensions(fact: Fact) -> dict[str, Column]:
    """Every non-time dimension `fact` supports, with its expression."""
    found = dict(fact.columns)
    if fact.person is not None:
        for name in ("gender", "age_band", "member_level", "province", "city"):
            found.setdefault(name, Column(f"pt.{name}", ("pt",)))
        found["tag"] = Column("tg.value", ("tg",))  # placeholder: built per tag by the compiler
        found["audience"] = Column("aud.segment_id", ("aud",))
    if fact.product is not None:
        for name in PRODUCT_DIMENSIONS:
            found[name] = fact.product if name == "product" else Column(f"pr.{name}", ("pr",))
    return found


def supports(fact: Fact, dimension: str) -> bool:
    return dimension in TIME_GRAINS or dimension in fact_dimensions(fact)


@dataclass(frozen=True)
class Measure:
    """A number the cube reports.

    `reads`: (fact, SQL aggregate) in order of preference — the first fact that has
    every asked dimension is used. `ratio`: (numerator, denominator) measure names.
    """

    name: str
    label_zh: str
    label_en: str
    unit: Literal["money", "count", "ratio"]
    reads: tuple[tuple[str, str], ...] = ()
    ratio: tuple[str, str] | None = None
    additive: bool = True  # False for distinct counts: a total is not the sum of its rows


MEASURES: dict[str, Measure] = {m.name: m for m in (
    Measure("gmv", "成交额", "GMV", "money",
            (("orders", "SUM(o.net_amount)"), ("order_lines", "SUM(oi.amount)"))),
    Measure("orders", "订单数", "orders", "count",
            (("orders", "COUNT(DISTINCT o.order_id)"), ("order_lines", "COUNT(DISTINCT o.order_id)")), additive=False),
    Measure("buyers", "购买人数", "buyers", "count",
            (("orders", "COUNT(DISTINCT __person__)"), ("order_lines", "COUNT(DISTINCT __person__)")),
            additive=False),
    Measure("aov", "客单价", "AOV (GMV / orders)", "money", ratio=("gmv", "orders")),
    Measure("visitors", "访客数", "visitors", "count", (("events", "COUNT(DISTINCT __person__)"),), additive=False),
    # Visitors are tracked on our own web, app and mini-program; so are the buyers conversion counts.
    Measure("tracked_buyers", "自有渠道购买人数", "buyers on tracked channels (web, app, mini-program)", "count",
            tuple((fact, f"COUNT(DISTINCT CASE WHEN o.platform IN ({TRACKED}) THEN __person__ END)")
                  for fact in ("orders", "order_lines")), additive=False),
    Measure("conversion", "转化率", "conversion (tracked buyers / visitors)", "ratio",
            ratio=("tracked_buyers", "visitors")),
    Measure("views", "浏览量", "product views", "count", (("product_views", "COUNT(*)"),)),
    Measure("impressions", "曝光量", "ad impressions", "count", (("ads", "SUM(ad.impressions)"),)),
    Measure("ad_clicks", "广告点击", "ad clicks", "count", (("ads", "SUM(ad.clicks)"),)),
    Measure("ctr", "点击率", "CTR (ad clicks / impressions)", "ratio", ratio=("ad_clicks", "impressions")),
    Measure("message_deliveries", "消息送达", "messages delivered", "count",
            (("message_events", "COUNT(DISTINCT CASE WHEN me.event_type = 'delivered' THEN me.delivery_id END)"),),
            additive=False),
    Measure("message_clicks", "消息点击", "messages clicked", "count",
            (("message_events", "COUNT(DISTINCT CASE WHEN me.event_type = 'clicked' THEN me.delivery_id END)"),),
            additive=False),
    Measure("message_ctr", "消息点击率", "message CTR (clicks / deliveries)", "ratio",
            ratio=("message_clicks", "message_deliveries")),
    Measure("spend", "投放花费", "ad spend", "money", (("ads", "SUM(ad.spend)"),)),
    Measure("ad_revenue", "广告成交(平台口径)", "ad conversion value (platform-reported)", "money",
            (("ads", "SUM(ad.conversion_value)"),)),
    Measure("roi", "投产比", "ROI (ad conversion value / spend)", "ratio", ratio=("ad_revenue", "spend")),
    Measure("followers", "新增粉丝", "new followers", "count", (("follows", "COUNT(DISTINCT __person__)"),),
            additive=False),
)}


def find_measure(name: str) -> Measure:
    measure = MEASURES.get(name.strip())
    if measure is None:
        raise AnalyticsError(
            f"unknown measure {name!r}.", field="measure", fix=f"use one of: {', '.join(MEASURES)}",
            message_zh=f"未知指标 {name!r}。", fix_zh=f"可选：{', '.join(MEASURES)}")
    return measure


def base_measures(measure: Measure) -> list[Measure]:
    """The measures read from facts that `measure` is made of (itself, or a ratio's parts)."""
    if measure.ratio is None:
        return [measure]
    return [part for name in measure.ratio for part in base_measures(MEASURES[name])]


def allowed_dimensions(measure: Measure) -> list[str]:
    """Every dimension `measure` can be broken down by."""
    if measure.ratio is not None:
        parts = [set(allowed_dimensions(MEASURES[name])) for name in measure.ratio]
        return [name for name in DIMENSIONS if name in set.intersection(*parts)]
    names = set(TIME_GRAINS).union(*(fact_dimensions(FACTS[fact]) for fact, _ in measure.reads))
    return [name for name in DIMENSIONS if name in names]


def choose_fact(measure: Measure, dimensions: list[DimensionRef]) -> tuple[Fact, str]:
    """The first fact of `measure` that has every dimension, with its aggregate."""
    for fact_name, aggregate in measure.reads:
        fact = FACTS[fact_name]
        if all(supports(fact, d.name) for d in dimensions):
            return fact, aggregate
    check_dimensions(measure, dimensions)
    raise AnalyticsError(f"no single fact of {measure.name!r} has {', '.join(map(str, dimensions))} together.",
                         field="dimension", fix="ask for fewer dimensions at once",
                         message_zh=f"指标 {measure.name} 没有同时包含这些维度的数据表。", fix_zh="请减少同时使用的维度")


def check_dimensions(measure: Measure, dimensions: list[DimensionRef]) -> None:
    """Refuse a dimension `measure` cannot be broken down by, naming both and what is allowed."""
    allowed = allowed_dimensions(measure)
    missing = [str(d) for d in dimensions if d.name not in allowed]
    if missing:
        raise AnalyticsError(
            f"measure {measure.name!r} cannot be broken down by {', '.join(missing)}.",
            field="dimension", fix=f"{measure.name} can be broken down by: {', '.join(allowed)}",
            message_zh=f"指标 {measure.label_zh}（{measure.name}）不能按 {', '.join(missing)} 拆分。",
            fix_zh=f"{measure.name} 可按以下维度拆分：{', '.join(allowed)}")
