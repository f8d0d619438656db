"""What to do with related products: a livestream line-up that puts traffic drivers before
their add-ons, and bundle / coupon-pair suggestions with their expected attach rates.

Both read the association rules of `basket.py` (pairs only) beside each item's reach.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd
from sqlglot import exp

from jingzhun.analytics.basket import (
    BASKET_CTES,
    LEVEL_ZH,
    BasketSpec,
    baskets_query,
    check_spec,
    display_name,
    order_lines_sql,
    params_of,
    rules_sql,
)
from jingzhun.analytics.result import Analysis, AnalyticsError, Chart
from jingzhun.analytics.staging import inline, query_staged
from jingzhun.engine import Engine, parse_sql
from jingzhun.profiles.rules_compiler import literal

# Reach of each item: product views in the tracked channels (a visitor is a user id or,
# before log-in, a cookie / device id), beside its baskets.
TRAFFIC_SQL = """WITH {baskets_ctes},
catalogue AS (SELECT product_id, MIN(subcategory) AS subcategory, MIN(category) AS category, MIN(name) AS name
  FROM products GROUP BY product_id),
views AS (SELECT {view_item} AS item, COUNT(*) AS views,
    COUNT(DISTINCT COALESCE(e.user_id, e.anonymous_id)) AS viewers
  FROM events AS e LEFT JOIN catalogue AS p ON p.product_id = e.properties->>'$.product_id'
  WHERE e.event = 'Product Viewed'{period}
  GROUP BY {view_item})
SELECT COALESCE(c.item, v.item) AS item, {name} AS name, COALESCE(v.views, 0) AS views,
  COALESCE(v.viewers, 0) AS viewers, COALESCE(c.baskets, 0) AS baskets,
  CAST(COALESCE(c.baskets, 0) AS DOUBLE) / n.baskets AS support
FROM item_counts AS c
FULL OUTER JOIN views AS v ON v.item = c.item
CROSS JOIN basket_count AS n
LEFT JOIN catalogue AS pn ON pn.product_id = COALESCE(c.item, v.item)
WHERE COALESCE(c.item, v.item) IS NOT NULL
ORDER BY item"""

_VIEW_ITEM = {"product": "e.properties->>'$.product_id'", "subcategory": "p.subcategory", "category": "p.category"}


def item_traffic_sql(spec: BasketSpec) -> exp.Expression:
    """Per item: product views, distinct viewers, baskets and support (share of baskets).

    Example:
        >>> "Product Viewed" in item_traffic_sql(BasketSpec(level="product")).sql(dialect="duckdb")
        True
    """
    check_spec(spec)
    period = "".join(f" AND e.timestamp {op} :{name}" for name, op, value in
                     (("since", ">=", spec.since), ("until", "<", spec.until)) if value is not None)
    name = "pn.name" if spec.level == "product" else "COALESCE(c.item, v.item)"
    sql = TRAFFIC_SQL.format(baskets_ctes=BASKET_CTES, view_item=_VIEW_ITEM[spec.level], period=period, name=name)
    bound = {key: literal(value) for key, value in (("since", spec.since), ("until", spec.until)) if value is not None}
    query = exp.replace_placeholders(parse_sql(sql), **bound) if bound else parse_sql(sql)
    return inline(query, basket_source=baskets_query(spec))


@dataclass
class _Slot:
    item: str
    role: str  # driver | add_on
    after: str | None = None
    confidence: float = float("nan")
    lift: float = float("nan")


def _order_lineup(traffic: pd.DataFrame, rules: pd.DataFrame, slots: int, max_add_ons: int) -> list[_Slot]:
    """Greedy: the strongest remaining traffic driver, then its add-ons (the consequents of
    its rules among the remaining items, most confident first), until the slots are full."""
    score = (traffic["viewers"].rank(pct=True) + traffic["support"].rank(pct=True)) / 2
    remaining = dict(zip(traffic["item"], score, strict=True))
    order: list[_Slot] = []
    while remaining and len(order) < slots:
        driver = max(sorted(remaining), key=lambda item: remaining[item])  # ties: first by id
        del remaining[driver]
        order.append(_Slot(driver, "driver"))
        followers = rules[(rules["antecedent"] == driver) & rules["consequent"].isin(remaining)]
        for row in followers.sort_values(["confidence", "lift"], ascending=False).head(max_add_ons).itertuples():
            if len(order) >= slots:
                break
            del remaining[row.consequent]
            order.append(_Slot(row.consequent, "add_on", driver, row.confidence, row.lift))
    return order


def _slot_reading(slot: _Slot, row: pd.Series, names: dict[str, str]) -> tuple[str, str]:
    if slot.role == "driver":
        return (f"引流款：{int(row['viewers'])} 位访客浏览过，出现在 {row['support']:.1%} 的订单中",
                f"traffic driver: {int(row['viewers'])} visitors viewed it; in {row['support']:.1%} of baskets")
    driver = names.get(slot.after, slot.after)
    return (f"连带款：紧跟「{driver}」，买它的订单中 {slot.confidence:.0%} 也买了本品（提升度 {slot.lift:.1f}）",
            f"add-on right after “{driver}”: {slot.confidence:.0%} of its baskets also hold this (lift {slot.lift:.1f})")


def livestream_lineup(engine: Engine, items: list[str] | None = None, level: str = "product", slots: int = 12,
                      min_support: float | None = None, min_lift: float = 1.5, max_add_ons: int = 2,
                      since: dt.datetime | None = None, until: dt.datetime | None = None) -> Analysis:
    """A suggested order for a livestream's line-up: traffic drivers (most viewers, most
    baskets) first, each followed by its add-ons (items its buyers add, lift >= `min_lift`).

    Args:
        items: the products (or subcategories, categories) to present; default: choose
            `slots` of them from everything sold or viewed.
        slots: how many items the stream presents.
        max_add_ons: add-ons placed after each driver, at most.

    Returns:
        An `Analysis` named `lineup`: slot, item, role (driver / add_on), the driver an
        add-on follows, viewers, support, attach rate (confidence), lift and a reason.
    """
    spec = BasketSpec(level, min_support, 2, since, until)
    traffic_query, rules_query = item_traffic_sql(spec), rules_sql(spec, min_lift=min_lift)
    traffic = query_staged(engine, traffic_query).to_pandas()
    if items:
        missing = sorted(set(items) - set(traffic["item"]))
        if missing:
            raise AnalyticsError(f"unknown {level} {', '.join(missing)}: never sold or viewed.", field="items",
                                 fix=f"give {level} ids that occur in orders or product views",
                                 message_zh=f"未知的{LEVEL_ZH[level]}：{'、'.join(missing)}（从未售出或被浏览）。",
                                 fix_zh=f"请给出在订单或浏览中出现过的{LEVEL_ZH[level]}编号")
        traffic = traffic[traffic["item"].isin(items)]
    rules = query_staged(engine, rules_query).to_pandas()
    order = _order_lineup(traffic.reset_index(drop=True), rules, slots if not items else len(items), max_add_ons)
    by_item = traffic.set_index("item")
    names = {item: (name if isinstance(name, str) else item) for item, name in by_item["name"].items()}
    rows = []
    for position, slot in enumerate(order, start=1):
        row = by_item.loc[slot.item]
        zh, en = _slot_reading(slot, row, names)
        rows.append({"slot": position, "item": slot.item, "name": names[slot.item], "role": slot.role,
                     "after": slot.after, "viewers": int(row["viewers"]), "views": int(row["views"]),
                     "baskets": int(row["baskets"]), "support": row["support"], "attach_rate": slot.confidence,
                     "lift": slot.lift, "reason_zh": zh, "reason_en": en})
    frame = pd.DataFrame(rows)
    pairs = sum(slot.role == "add_on" for slot in order)
    readings = [(f"共 {len(order)} 个位次：{len(order) - pairs} 个引流款在前，{pairs} 个连带款紧随其引流款。",
                 f"{len(order)} slots: {len(order) - pairs} traffic drivers, each followed by its add-ons "
                 f"({pairs} in all).")]
    return Analysis(name="lineup", frame=frame, sql={"traffic": engine.render(traffic_query),
                                                      "rules": engine.render(rules_query)},
                    chart=Chart("bar", "name", ("viewers",), title_zh="直播排品顺序（访客数）",
                                title_en="Livestream line-up (viewers)"),
                    readings=readings, params=params_of(spec, items=items, slots=slots, min_lift=min_lift))


# ---- bundles and coupon pairs --------------------------------------------------------------

BUNDLES_SQL = """SELECT r.antecedent AS item_a, r.antecedent_name AS name_a, r.consequent AS item_b,
  r.consequent_name AS name_b, r.antecedent_baskets AS baskets_a, r.consequent_baskets AS baskets_b,
  r.baskets AS baskets_together, r.support, r.lift, r.confidence AS b_given_a, back.confidence AS a_given_b,
  r.consequent_support AS b_share, r.antecedent_support AS a_share,
  r.leverage * r.baskets / r.support AS extra_baskets, pa.price AS price_a, pb.price AS price_b
FROM pair_rules AS r
JOIN pair_rules AS back ON back.antecedent = r.consequent AND back.consequent = r.antecedent
LEFT JOIN item_prices AS pa ON pa.item = r.antecedent
LEFT JOIN item_prices AS pb ON pb.item = r.consequent
WHERE r.antecedent < r.consequent AND r.baskets >= :min_baskets
ORDER BY extra_baskets DESC, r.lift DESC, item_a, item_b"""


def bundles_sql(spec: BasketSpec, min_lift: float = 1.5, min_baskets: int = 5) -> exp.Expression:
    """Pairs bought together more than chance (lift >= `min_lift`, >= `min_baskets` baskets),
    both attach rates, the baskets beyond chance (leverage × N) and average unit prices."""
    pair_spec = BasketSpec(spec.level, spec.min_support, 2, spec.since, spec.until, spec.baskets)
    if spec.baskets is None:
        lines = order_lines_sql(spec.level, spec.since, spec.until)
        prices = exp.select("item", "AVG(unit_price) AS price").from_(lines.subquery("l")).group_by("item")
    else:  # baskets without prices
        prices = parse_sql("SELECT CAST(NULL AS VARCHAR) AS item, CAST(NULL AS DOUBLE) AS price")
    query = exp.replace_placeholders(parse_sql(BUNDLES_SQL), min_baskets=exp.convert(int(min_baskets)))
    # pair_rules is read twice (both directions of a pair): a CTE, computed once
    return query.with_("pair_rules", as_=rules_sql(pair_spec, min_lift=min_lift)).with_("item_prices", as_=prices)


def _suggestion(row: pd.Series, bundle_confidence: float) -> dict[str, object]:
    """A bundle when each item's buyers often take the other; else a coupon for the cheaper
    (or, without prices, the less common) item to the buyers of the other."""
    both = min(row["b_given_a"], row["a_given_b"]) >= bundle_confidence
    prices = (row["price_a"], row["price_b"])
    cheaper_b = prices[1] <= prices[0] if not any(pd.isna(p) for p in prices) else row["baskets_b"] <= row["baskets_a"]
    trigger, offer = ("a", "b") if cheaper_b else ("b", "a")
    return {"kind": "bundle" if both else "coupon", "trigger": row[f"item_{trigger}"], "offer": row[f"item_{offer}"],
            "trigger_name": row[f"name_{trigger}"], "offer_name": row[f"name_{offer}"],
            "attach_rate": row[f"{offer}_given_{trigger}"], "reverse_attach_rate": row[f"{trigger}_given_{offer}"],
            "offer_base_rate": row[f"{offer}_share"], "bundle_price": prices[0] + prices[1]}


def bundle_suggestions(engine: Engine, level: str = "product", min_support: float | None = None,
                       min_lift: float = 1.5, min_baskets: int = 5, bundle_confidence: float = 0.2,
                       top: int = 20, since: dt.datetime | None = None, until: dt.datetime | None = None) -> Analysis:
    """Bundle and coupon-pair suggestions from pairs bought together more than chance.

    A pair becomes a **bundle** when at least `bundle_confidence` of each item's baskets
    hold the other, otherwise a **coupon pair**: a coupon for the `offer` item to the
    buyers of the `trigger` item. `attach_rate` is P(offer | trigger) as observed — the
    expected take-up before any discount — beside `offer_base_rate`, its share of all
    baskets; `extra_baskets` is how many more baskets held both than chance predicts.
    """
    spec = BasketSpec(level, min_support, 2, since, until)
    check_spec(spec)
    query = bundles_sql(spec, min_lift, min_baskets)
    pairs = query_staged(engine, query).to_pandas().head(top)
    chosen = pd.DataFrame([_suggestion(row, bundle_confidence) for _, row in pairs.iterrows()],
                          columns=["kind", "trigger", "offer", "trigger_name", "offer_name", "attach_rate",
                                   "reverse_attach_rate", "offer_base_rate", "bundle_price"])
    frame = pd.concat([chosen, pairs[["baskets_together", "support", "lift", "extra_baskets"]]], axis=1)
    readings = [(f"{'组合装' if r.kind == 'bundle' else '优惠券搭配'}：「{display_name(r, 'trigger')}」+「{display_name(r, 'offer')}」，"
                 f"预计 {r.attach_rate:.0%} 的「{display_name(r, 'trigger')}」买家会加购（平时 {r.offer_base_rate:.1%}，"
                 f"提升度 {r.lift:.1f}）。",
                 f"{'Bundle' if r.kind == 'bundle' else 'Coupon pair'}: “{display_name(r, 'trigger')}” + "
                 f"“{display_name(r, 'offer')}”, expected attach rate {r.attach_rate:.0%} among “{display_name(r, 'trigger')}” "
                 f"buyers (base {r.offer_base_rate:.1%}, lift {r.lift:.1f}).") for r in frame.head(3).itertuples()]
    return Analysis(name="bundles", frame=frame, sql={"bundles": engine.render(query)},
                    chart=Chart("bar", "offer", ("attach_rate",), series="trigger", title_zh="组合与优惠券搭配的预计加购率",
                                title_en="Expected attach rate of bundles and coupon pairs"),
                    readings=readings, params=params_of(spec, min_lift=min_lift, min_baskets=min_baskets,
                                                      bundle_confidence=bundle_confidence))
