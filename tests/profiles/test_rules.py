"""The rule language: compiled SQL per dialect (tables, no engine), errors with rule paths,
and membership on real engines checked against an independent pandas computation.

The hand-built store below is small enough to reason about by eye: six persons, their
events, orders (online lines carry a SKU, POS lines only a barcode), scores with two
versions, identifiers and one tag. `AS_OF` is Monday 2026-03-02 12:00 in Shanghai.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pytest
from sqlglot import exp

from jingzhun.engine import Engine, render
from jingzhun.engine.parity import compare_tables
from jingzhun.profiles.rules import (
    Catalog,
    RuleError,
    dump_rule,
    parse_rule,
    referenced_tags,
    rule_path,
)
from jingzhun.profiles.rules_compiler import RuleCompiler, build_rule_sql
from jingzhun.profiles.traits import PERSON_TRAITS
from jingzhun.schema.tables import (
    CHANNEL_RESPONSES,
    CONSENTS,
    EVENTS,
    IDENTITIES,
    ORDER_ITEMS,
    ORDERS,
    PRODUCTS,
    RECORD_PERSONS,
    SCORES,
    SEGMENT_MEMBERS,
    TAGS,
    TableDef,
)

AS_OF = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)
TZ = "Asia/Shanghai"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


# ---- the hand-built store -------------------------------------------------------------

PERSON_ROWS = [
    dict(person_id="p1", gender="F", age=28, age_band="25-29", city="上海市", member_level="金卡",
         gmv_365d=Decimal("3000.00"), orders_total=4, coupon_order_share=0.6, rfm_class="important_value",
         first_order_at=utc(2025, 1, 10), last_order_at=utc(2026, 2, 20), birth_date=date(1997, 3, 9),
         follows_official_account=True),
    dict(person_id="p2", gender="M", age=41, age_band="40-49", city="北京市", member_level="普通",
         gmv_365d=Decimal("200.00"), orders_total=1, coupon_order_share=0.0, rfm_class="general_retain",
         first_order_at=utc(2025, 6, 1), last_order_at=utc(2025, 6, 1), birth_date=date(1984, 11, 2),
         follows_official_account=False),
    dict(person_id="p3", city="广州市", gmv_365d=Decimal("0.00"), orders_total=0),
    dict(person_id="p4", gender="F", age=34, age_band="30-34", city="深圳市", member_level="钻石",
         gmv_365d=Decimal("8000.00"), orders_total=3, coupon_order_share=0.34, rfm_class="important_value",
         first_order_at=utc(2026, 2, 15), last_order_at=utc(2026, 3, 1, 23), birth_date=date(1991, 3, 30)),
    dict(person_id="p5", gender="F", age=22, age_band="<25", city="杭州市", member_level="银卡",
         gmv_365d=Decimal("600.00"), orders_total=1, coupon_order_share=1.0, rfm_class="general_develop",
         first_order_at=utc(2025, 9, 1), last_order_at=utc(2025, 9, 1, 15, 59)),
    dict(person_id="p6", gender="M", age=30, age_band="30-34", city="上海浦东", gmv_365d=Decimal("0.00"),
         orders_total=0),
]


def event(message_id: str, at: datetime, name: str | None, channel: str = "app", kind: str = "track",
          **properties: object) -> dict:
    import json

    return dict(message_id=message_id, type=kind, event=name, timestamp=at, received_at=at,
                channel=channel, properties=json.dumps(properties, ensure_ascii=False))


EVENT_ROWS = [
    event("e1", utc(2026, 2, 27, 1), "Product Viewed", product_id="P1", sku="S1", price=199.0),
    event("e2", utc(2026, 2, 28, 2), "Product Viewed", product_id="P1", sku="S1b", price="abc"),
    event("e3", utc(2026, 2, 10), "Product Viewed", product_id="P1", sku="S1", channel_note="web"),
    event("e4", utc(2026, 3, 1), "Product Viewed", channel="miniprogram", product_id="P2", sku="S2", price=99),
    event("e5", utc(2026, 3, 1, 1), "Order Completed", total=350, order_id="o4"),
    event("e6", utc(2026, 2, 1), "Order Completed", channel="web", total=120),
    event("e7", utc(2026, 2, 15), "Order Completed", channel="web", total="200"),
    event("e8", utc(2026, 3, 1), "Product Viewed", product_id="P1", sku="S1"),  # nobody's
    event("e9", utc(2026, 2, 23, 0, 30), "Product List Viewed"),  # Mon 08:30 Shanghai
    event("e10", utc(2026, 2, 24, 10, 30), None, kind="screen"),  # Tue 18:30
    event("e11", utc(2026, 2, 28, 0, 30), "Product List Viewed"),  # Sat 08:30
    event("e12", utc(2026, 2, 24, 11, 0), "Cart Viewed"),  # Tue 19:00
    event("e13", utc(2026, 3, 5), "Product Viewed", product_id="P1", sku="S1"),  # after as_of
    event("e14", utc(2026, 2, 26, 23, 30), "Coupon Applied", channel="web", coupon="NEW20"),  # Fri 07:30
]
EVENT_OWNERS = {"e1": "p1", "e2": "p1", "e3": "p2", "e4": "p4", "e5": "p4", "e6": "p5", "e7": "p5",
                "e9": "p3", "e10": "p3", "e11": "p3", "e12": "p3", "e13": "p6", "e14": "p1"}


def order(order_id: str, at: datetime, channel: str, platform: str, status: str, net: str,
          coupon: str | None = None) -> dict:
    return dict(order_id=order_id, channel=channel, platform=platform, placed_at=at, status=status,
                currency="CNY", net_amount=Decimal(net), coupon_code=coupon,
                store_id="SH001" if channel == "offline" else None)


ORDER_ROWS = [
    order("o1", utc(2026, 2, 20), "online", "tmall", "completed", "300.00"),
    order("o2", utc(2025, 11, 5, 3), "offline", "pos", "completed", "500.00"),
    order("o3", utc(2026, 1, 10), "online", "app", "cancelled", "900.00"),
    order("o4", utc(2026, 3, 1, 23), "online", "app", "completed", "350.00", coupon="NEW20"),
    order("o5", utc(2025, 9, 1, 15, 59), "online", "web", "refunded", "120.00"),
    order("o6", utc(2025, 6, 1), "offline", "pos", "completed", "200.00"),
    order("o7", utc(2026, 2, 1), "online", "jd", "completed", "80.00"),  # nobody's
    order("o8", utc(2025, 11, 10, 2), "online", "app", "completed", "1000.00"),
]
ORDER_OWNERS = {"o1": "p1", "o2": "p1", "o3": "p1", "o4": "p4", "o5": "p5", "o6": "p2", "o8": "p4"}


def line(order_id: str, no: int, quantity: int, amount: str, sku: str | None = None,
         product_id: str | None = None, barcode: str | None = None) -> dict:
    return dict(order_id=order_id, line_no=no, product_id=product_id, sku=sku, barcode=barcode,
                quantity=quantity, amount=Decimal(amount), currency="CNY")


LINE_ROWS = [
    line("o1", 1, 1, "300.00", sku="S1", product_id="P1"),
    line("o2", 1, 2, "500.00", barcode="B2"),
    line("o3", 1, 3, "900.00", sku="S1", product_id="P1"),
    line("o4", 1, 1, "250.00", sku="S1b", product_id="P1"),
    line("o4", 2, 2, "100.00", sku="S3", product_id="P3"),
    line("o5", 1, 1, "120.00", sku="S2", product_id="P2"),
    line("o6", 1, 1, "200.00", barcode="B3"),
    line("o7", 1, 1, "80.00", sku="S1", product_id="P1"),
    line("o8", 1, 5, "1000.00", sku="S2", product_id="P2"),
]
PRODUCT_ROWS = [
    dict(product_id="P1", sku="S1", barcode="B1", name="粉底液 #01", brand="玉肌", category="cosmetics",
         subcategory="foundation"),
    dict(product_id="P1", sku="S1b", barcode="B1b", name="粉底液 #02", brand="玉肌", category="cosmetics",
         subcategory="foundation"),
    dict(product_id="P2", sku="S2", barcode="B2", name="口红", brand="玉肌", category="cosmetics",
         subcategory="lipstick"),
    dict(product_id="P3", sku="S3", barcode="B3", name="美妆蛋", brand="妆匠", category="beauty_tools",
         subcategory="beauty_sponge"),
]
SCORE_ROWS = [
    dict(person_id="p1", model="churn_90d", model_version="v1", score=0.8, computed_at=utc(2026, 1, 1)),
    dict(person_id="p1", model="churn_90d", model_version="v2", score=0.5, computed_at=utc(2026, 2, 1)),
    dict(person_id="p2", model="churn_90d", model_version="v1", score=0.9, computed_at=utc(2026, 1, 1)),
    dict(person_id="p4", model="churn_90d", model_version="v2", score=0.2, computed_at=utc(2026, 2, 1)),
    dict(person_id="p5", model="purchase_propensity_30d", model_version="v1", score=0.6,
         computed_at=utc(2026, 2, 1)),
    dict(person_id="p2", model="purchase_propensity_30d", model_version="v1", score=0.1,
         computed_at=utc(2026, 2, 1)),
]
IDENTITY_ROWS = [
    dict(id_type="wechat_openid", id_value="oX1", person_id="p1"),
    dict(id_type="phone", id_value="+8613800000002", person_id="p2"),
    dict(id_type="wechat_unionid", id_value="uX4", person_id="p4"),
    dict(id_type="wechat_openid", id_value="oX9", person_id=None),
]
TAG_ROWS = [
    dict(person_id="p1", tag_id="coupon_sensitive", tag_version=1, value=None, valid_from=utc(2026, 1, 1)),
    dict(person_id="p2", tag_id="coupon_sensitive", tag_version=1, value=None, valid_from=utc(2025, 1, 1),
         valid_to=utc(2025, 12, 1)),
    dict(person_id="p4", tag_id="member_level", tag_version=1, value="钻石", valid_from=utc(2026, 1, 1)),
]

CONSENT_ROWS = [
    dict(person_id="p1", purpose="marketing", channel="sms", status="granted", recorded_at=utc(2026, 1, 1)),
    dict(person_id="p1", purpose="marketing", channel="sms", status="withdrawn", recorded_at=utc(2026, 2, 1)),
    dict(person_id="p2", purpose="marketing", channel=None, status="granted", recorded_at=utc(2025, 12, 1)),
    dict(person_id="p4", purpose="marketing", channel="sms", status="granted", recorded_at=utc(2026, 2, 1)),
    dict(person_id="p4", purpose="marketing", channel="email", status="withdrawn", recorded_at=utc(2026, 2, 15)),
    dict(person_id="p5", purpose="marketing", channel="sms", status="granted", recorded_at=utc(2026, 3, 10)),
    dict(person_id="p6", purpose="transactional", channel="sms", status="granted", recorded_at=utc(2026, 1, 1)),
]
MEMBER_ROWS = [
    dict(segment_id="spring_vip", person_id="p1", snapshot_date=date(2026, 2, 1)),
    dict(segment_id="spring_vip", person_id="p2", snapshot_date=date(2026, 2, 1)),
    dict(segment_id="spring_vip", person_id="p2", snapshot_date=date(2026, 3, 1)),
    dict(segment_id="spring_vip", person_id="p4", snapshot_date=date(2026, 3, 1)),
    dict(segment_id="spring_vip", person_id="p5", snapshot_date=date(2026, 3, 10)),  # after as_of
    dict(segment_id="other", person_id="p6", snapshot_date=date(2026, 3, 1)),
]

_ARROW = {"VARCHAR": pa.string(), "INTEGER": pa.int32(), "BIGINT": pa.int64(), "DOUBLE": pa.float64(),
          "BOOLEAN": pa.bool_(), "DATE": pa.date32(), "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
          "DECIMAL(18, 2)": pa.decimal128(18, 2)}


def arrow_rows(table: TableDef, rows: list[dict]) -> pa.Table:
    """Rows typed like the table's columns (missing keys become NULL)."""
    schema = pa.schema([(c.name, _ARROW[c.type]) for c in table.columns])
    return pa.Table.from_pylist([{c.name: row.get(c.name) for c in table.columns} for row in rows], schema=schema)


def record_rows() -> list[dict]:
    return ([dict(record_kind="event", record_id=k, person_id=v) for k, v in EVENT_OWNERS.items()]
            + [dict(record_kind="order", record_id=k, person_id=v) for k, v in ORDER_OWNERS.items()])


STORE: dict[TableDef, list[dict]] = {
    PERSON_TRAITS: PERSON_ROWS, EVENTS: EVENT_ROWS, ORDERS: ORDER_ROWS, ORDER_ITEMS: LINE_ROWS,
    PRODUCTS: PRODUCT_ROWS, SCORES: SCORE_ROWS, IDENTITIES: IDENTITY_ROWS, TAGS: TAG_ROWS,
    RECORD_PERSONS: record_rows(), CONSENTS: CONSENT_ROWS, SEGMENT_MEMBERS: MEMBER_ROWS,
    CHANNEL_RESPONSES: [],  # the measure stage's responses, read by the loop-back tags (none here)
}


def load_store(engine: Engine) -> None:
    for table, rows in STORE.items():
        engine.create_table(table.name, table.columns)
        engine.write_table(table.name, arrow_rows(table, rows), mode="replace")


def frames() -> dict[str, pd.DataFrame]:
    return {table.name: arrow_rows(table, rows).to_pandas() for table, rows in STORE.items()}


# ---- an independent pandas reading of the same store --------------------------------------


def everyone(d: dict[str, pd.DataFrame]) -> set[str]:
    return set(d["person_traits"]["person_id"])


def events_of(d: dict[str, pd.DataFrame]) -> pd.DataFrame:
    import json

    owners = d["record_persons"].query("record_kind == 'event'")
    frame = d["events"].merge(owners, left_on="message_id", right_on="record_id")
    frame = frame[frame["timestamp"] <= AS_OF].copy()
    frame["props"] = frame["properties"].map(json.loads)
    frame["local"] = frame["timestamp"].dt.tz_convert(TZ)
    return frame


def orders_of(d: dict[str, pd.DataFrame], kept: bool = True) -> pd.DataFrame:
    owners = d["record_persons"].query("record_kind == 'order'")
    frame = d["orders"].merge(owners, left_on="order_id", right_on="record_id")
    frame = frame[frame["placed_at"] <= AS_OF]
    return frame[~frame["status"].isin(["cancelled", "refunded"])] if kept else frame


def lines_of(d: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Each order line with its catalogue product: by SKU, else (POS) by barcode."""
    items, products = d["order_items"], d["products"]
    by_sku = items.dropna(subset=["sku"]).merge(products, on="sku", suffixes=("", "_p"))
    by_barcode = items[items["sku"].isna()].merge(products, on="barcode", suffixes=("", "_p"))
    return pd.concat([by_sku, by_barcode])


def people(frame: pd.DataFrame, minimum: int = 1) -> set[str]:
    counted = frame.groupby("person_id").size()
    return set(counted[counted >= minimum].index)


def foundation_ids(d: dict[str, pd.DataFrame]) -> set[str]:
    return set(d["products"].query("subcategory == 'foundation'")["product_id"])


def latest_score(d: dict[str, pd.DataFrame], model: str) -> pd.Series:
    scores = d["scores"].query("model == @model").sort_values(["computed_at", "model_version"])
    return scores.groupby("person_id")["score"].last()


def _percent_rank(scores: pd.Series) -> pd.Series:
    """(rank - 1) / (n - 1), ties sharing the lowest rank: SQL's PERCENT_RANK."""
    return (scores.rank(method="min") - 1) / max(len(scores) - 1, 1)


def _traits(d: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return d["person_traits"]


def _ids(frame: pd.DataFrame) -> set[str]:
    return set(frame["person_id"])


def _weekday_commute(d: dict[str, pd.DataFrame]) -> set[str]:
    e = events_of(d)
    e = e[(e["channel"] == "app") & (e["local"].dt.dayofweek < 5) & e["local"].dt.hour.isin([7, 8, 18, 19])
          & (e["timestamp"] > AS_OF - timedelta(days=90))]
    days = e.assign(day=e["local"].dt.date).groupby("person_id")["day"].nunique()
    return set(days[days >= 2].index)


def _cosmetics_orders(d: dict[str, pd.DataFrame], minimum: int) -> set[str]:
    lines = lines_of(d).query("category == 'cosmetics'")
    orders = orders_of(d)
    matched = orders[orders["order_id"].isin(lines["order_id"])]
    counted = matched.groupby("person_id")["order_id"].nunique()
    return set(counted[counted >= minimum].index)


def _event_total(d: dict[str, pd.DataFrame]) -> set[str]:
    e = events_of(d).query("event == 'Order Completed'")
    totals = e.assign(total=pd.to_numeric(e["props"].map(lambda p: p.get("total")), errors="coerce"))
    summed = totals.groupby("person_id")["total"].sum()
    return set(summed[summed >= 300].index)


def _double11_spend(d: dict[str, pd.DataFrame]) -> set[str]:
    o = orders_of(d)
    local = o["placed_at"].dt.tz_convert(TZ).dt.date
    o = o[(local >= date(2025, 11, 1)) & (local <= date(2025, 11, 11))]
    summed = o.groupby("person_id")["net_amount"].sum()
    return set(summed[summed >= 500].index)


def _quantity(d: dict[str, pd.DataFrame]) -> set[str]:
    lines = lines_of(d).merge(orders_of(d)[["order_id", "person_id"]], on="order_id")
    summed = lines.groupby("person_id")["quantity"].sum()
    return set(summed[summed >= 3].index)


def _foundation_week(d: dict[str, pd.DataFrame]) -> set[str]:
    e = events_of(d)
    e = e[(e["event"] == "Product Viewed") & (e["timestamp"] > AS_OF - timedelta(days=7))]
    return people(e[e["props"].map(lambda p: p.get("product_id")).isin(foundation_ids(d))])


def _sms_consent(d: dict[str, pd.DataFrame]) -> set[str]:
    c = d["consents"]
    c = c[(c["purpose"] == "marketing") & (c["channel"].isna() | (c["channel"] == "sms")) & (c["recorded_at"] <= AS_OF)]
    latest = c.sort_values("recorded_at").groupby("person_id").last()
    return set(latest[latest["status"] == "granted"].index)


def _latest_members(d: dict[str, pd.DataFrame]) -> set[str]:
    members = d["segment_members"].query("segment_id == 'spring_vip'")
    members = members[members["snapshot_date"] <= AS_OF.astimezone(ZoneInfo(TZ)).date()]
    return _ids(members[members["snapshot_date"] == members["snapshot_date"].max()])


def _foundation_no_sponge(d: dict[str, pd.DataFrame]) -> set[str]:
    lines = lines_of(d).merge(orders_of(d)[["order_id", "person_id", "placed_at"]], on="order_id")
    recent = lines[lines["placed_at"] > AS_OF - timedelta(days=90)]
    foundation = _ids(recent.query("subcategory == 'foundation'"))
    return foundation - _ids(recent.query("subcategory == 'beauty_sponge'"))


# (name, rule, pandas computation of who matches)
MEMBERSHIP = [
    ("gender equals", {"trait": "gender", "op": "=", "value": "F"},
     lambda d: _ids(_traits(d).query("gender == 'F'"))),
    ("not equals excludes unknown", {"trait": "gender", "op": "!=", "value": "F"},
     lambda d: _ids(_traits(d).query("gender.notna() and gender != 'F'"))),
    ("not includes unknown", {"not": {"trait": "gender", "op": "=", "value": "F"}},
     lambda d: everyone(d) - _ids(_traits(d).query("gender == 'F'"))),
    ("between ages", {"trait": "age", "op": "between", "value": [25, 34]},
     lambda d: _ids(_traits(d).query("25 <= age <= 34"))),
    ("in list", {"trait": "member_level", "op": "in", "value": ["金卡", "钻石"]},
     lambda d: _ids(_traits(d).query("member_level in ['金卡', '钻石']"))),
    ("not in list", {"trait": "member_level", "op": "not_in", "value": ["金卡", "钻石"]},
     lambda d: _ids(_traits(d).query("member_level.notna() and member_level not in ['金卡', '钻石']"))),
    ("contains text", {"trait": "city", "op": "contains", "value": "上海"},
     lambda d: _ids(_traits(d)[_traits(d)["city"].str.contains("上海", na=False)])),
    ("is null", {"trait": "gender", "op": "is_null"}, lambda d: _ids(_traits(d).query("gender.isna()"))),
    ("decimal compare", {"trait": "gmv_365d", "op": ">=", "value": 600},
     lambda d: _ids(_traits(d)[_traits(d)["gmv_365d"].astype(float) >= 600])),
    ("boolean", {"trait": "follows_official_account", "op": "=", "value": True},
     lambda d: _ids(_traits(d)[_traits(d)["follows_official_account"].eq(True)])),
    ("within 30 days", {"trait": "last_order_at", "op": "within", "value": "30d"},
     lambda d: _ids(_traits(d)[_traits(d)["last_order_at"] > AS_OF - timedelta(days=30)])),
    ("older than 180 days", {"trait": "last_order_at", "op": "older_than", "value": "180d"},
     lambda d: _ids(_traits(d)[_traits(d)["last_order_at"] <= AS_OF - timedelta(days=180)])),
    ("before a local day", {"trait": "last_order_at", "op": "<", "value": "2025-09-02"},
     # 2025-09-01 15:59 UTC is 23:59 on 1 September in Shanghai, before the 2nd.
     lambda d: _ids(_traits(d)[_traits(d)["last_order_at"].dt.tz_convert(TZ).dt.date < date(2025, 9, 2)])),
    ("on or before a local day", {"trait": "last_order_at", "op": "<=", "value": "2026-03-01"},
     lambda d: _ids(_traits(d)[_traits(d)["last_order_at"].dt.tz_convert(TZ).dt.date <= date(2026, 3, 1)])),
    ("birth date", {"trait": "birth_date", "op": ">=", "value": "1990-01-01"},
     lambda d: _ids(_traits(d)[_traits(d)["birth_date"].map(lambda b: b is not None and b >= date(1990, 1, 1))])),
    ("latest score wins", {"score": "churn_90d", "op": ">=", "value": 0.7},
     lambda d: set(latest_score(d, "churn_90d")[lambda s: s >= 0.7].index)),
    ("score percentile", {"score": "churn_90d", "of": "percentile", "op": ">=", "value": 0.5},
     lambda d: set(_percent_rank(latest_score(d, "churn_90d"))[lambda s: s >= 0.5].index)),
    ("score missing", {"score": "churn_90d", "op": "is_null"},
     lambda d: everyone(d) - set(latest_score(d, "churn_90d").index)),
    ("identifier present", {"has_identifier": ["wechat_openid", "wechat_unionid"]},
     lambda d: _ids(d["identities"].query("id_type in ['wechat_openid', 'wechat_unionid'] and person_id.notna()"))),
    ("holds a tag now", {"tag": "coupon_sensitive"},
     lambda d: _ids(d["tags"].query("tag_id == 'coupon_sensitive' and valid_to.isna()"))),
    ("tag value", {"tag": "member_level", "value": ["钻石"]},
     lambda d: _ids(d["tags"].query("tag_id == 'member_level' and valid_to.isna() and value == '钻石'"))),
    ("viewed foundation this week",
     {"event": {"name": "Product Viewed", "product": {"subcategory": "foundation"}, "window": {"last": "7d"}}},
     _foundation_week),
    ("viewed twice", {"event": {"name": "Product Viewed", "count": {"op": ">=", "value": 2}}},
     lambda d: people(events_of(d).query("event == 'Product Viewed'"), 2)),
    ("fewer than one view includes none", {"event": {"name": "Product Viewed", "count": {"op": "<", "value": 1}}},
     lambda d: everyone(d) - people(events_of(d).query("event == 'Product Viewed'"))),
    ("numeric property filter",
     {"event": {"where": [{"property": "price", "op": ">=", "value": 100}]}},
     lambda d: people(events_of(d)[pd.to_numeric(events_of(d)["props"].map(lambda p: p.get("price")),
                                                  errors="coerce") >= 100])),
    ("text property filter",
     {"event": {"where": [{"property": "coupon", "op": "in", "value": ["NEW20", "VIPDAY-90"]}]}},
     lambda d: people(events_of(d)[events_of(d)["props"].map(lambda p: p.get("coupon")).isin(["NEW20", "VIPDAY-90"])])),
    ("sum of a property", {"event": {"name": "Order Completed", "sum": {"property": "total", "value": 300}}},
     _event_total),
    ("commuter days", {"event": {"channel": "app", "window": {"last": "90d"},
                                 "local_time": {"weekdays": [1, 2, 3, 4, 5], "hours": [7, 8, 18, 19]},
                                 "distinct_days": {"op": ">=", "value": 2}}},
     _weekday_commute),
    ("bought cosmetics twice (POS lines by barcode)",
     {"order": {"product": {"category": "cosmetics"}, "count": {"op": ">=", "value": 2}}},
     lambda d: _cosmetics_orders(d, 2)),
    ("bought anything (cancelled and refunded do not count)", {"order": {}},
     lambda d: people(orders_of(d))),
    ("refunded orders on request", {"order": {"status": "refunded"}},
     lambda d: people(orders_of(d, kept=False).query("status == 'refunded'"))),
    ("coupon orders", {"order": {"has_coupon": True}},
     lambda d: people(orders_of(d).query("coupon_code.notna()"))),
    ("quantity of lines", {"order": {"quantity": {"op": ">=", "value": 3}}}, _quantity),
    ("spend in an absolute window",
     {"order": {"window": {"from": "2025-11-01", "to": "2025-11-11"}, "sum": {"field": "net_amount", "value": 500}}},
     _double11_spend),
    ("foundation but no sponge",
     {"all": [{"order": {"product": {"subcategory": "foundation"}, "window": {"last": "90d"}}},
              {"not": {"order": {"product": {"subcategory": "beauty_sponge"}, "window": {"last": "90d"}}}}]},
     _foundation_no_sponge),
    ("marketing consent by SMS (latest record wins, all-channel grants count)",
     {"consent": {"purpose": "marketing", "channel": "sms"}}, _sms_consent),
    ("member of another audience's latest snapshot", {"segment": "spring_vip"},
     _latest_members),
    ("nested any of all",
     {"any": [{"all": [{"trait": "gender", "op": "=", "value": "F"}, {"trait": "age", "op": "<", "value": 25}]},
              {"has_identifier": "phone"}]},
     lambda d: _ids(_traits(d).query("gender == 'F' and age < 25"))
     | _ids(d["identities"].query("id_type == 'phone'"))),
]


def compute(engine: Engine, rule: dict) -> set[str]:
    return set(engine.query(build_rule_sql(rule, as_of=AS_OF, timezone=TZ)).column("person_id").to_pylist())


def test_membership_matches_pandas(engine: Engine) -> None:
    load_store(engine)
    d = frames()
    wrong = {}
    for name, rule, expected in MEMBERSHIP:
        got, want = compute(engine, rule), expected(d)
        if got != want:
            wrong[name] = (sorted(got), sorted(want))
    assert not wrong, f"{engine.NAME} differs from pandas: {wrong}"
    assert all(expected(d) for _, _, expected in MEMBERSHIP[:3]), "the fixture should make cases non-empty"


@pytest.mark.spark
def test_membership_same_on_duckdb_and_spark(both_engines: tuple[Engine, Engine]) -> None:
    duck, spark = both_engines
    for engine in both_engines:
        load_store(engine)
    for name, rule, _ in MEMBERSHIP:
        query = build_rule_sql(rule, as_of=AS_OF, timezone=TZ)
        report = compare_tables(name, duck.query(query), spark.query(query))
        assert report.equal, f"{name}: {report.differences}\n{spark.render(query)}"


# ---- compiled SQL per dialect ----------------------------------------------------------

NOW = "CAST('2026-03-02 04:00:00+00:00' AS TIMESTAMPTZ)"
NOW_SPARK = "CAST('2026-03-02 04:00:00+00:00' AS TIMESTAMP)"
COMPILED = [
    (
        "trait equals",
        {"trait": "gender", "op": "=", "value": "F"},
        "SELECT pt.person_id AS person_id FROM person_traits AS pt WHERE COALESCE(pt.gender = 'F', FALSE)",
        "SELECT pt.person_id AS person_id FROM person_traits AS pt WHERE COALESCE(pt.gender = 'F', FALSE)",
    ),
    (
        "not wraps the whole condition",
        {"not": {"trait": "age_band", "op": "in", "value": ["<25", "25-29"]}},
        "SELECT pt.person_id AS person_id FROM person_traits AS pt "
        "WHERE NOT (COALESCE(pt.age_band IN ('<25', '25-29'), FALSE))",
        "SELECT pt.person_id AS person_id FROM person_traits AS pt "
        "WHERE NOT (COALESCE(pt.age_band IN ('<25', '25-29'), FALSE))",
    ),
    (
        "relative date",
        {"trait": "last_order_at", "op": "within", "value": "30d"},
        "SELECT pt.person_id AS person_id FROM person_traits AS pt WHERE COALESCE(pt.last_order_at > "
        f"CAST('2026-01-31 04:00:00+00:00' AS TIMESTAMPTZ) AND pt.last_order_at <= {NOW}, FALSE)",
        "SELECT pt.person_id AS person_id FROM person_traits AS pt WHERE COALESCE(pt.last_order_at > "
        f"CAST('2026-01-31 04:00:00+00:00' AS TIMESTAMP) AND pt.last_order_at <= {NOW_SPARK}, FALSE)",
    ),
    (
        "contains",
        {"trait": "city", "op": "contains", "value": "上海"},
        "SELECT pt.person_id AS person_id FROM person_traits AS pt WHERE COALESCE(STRPOS(pt.city, '上海') > 0, FALSE)",
        "SELECT pt.person_id AS person_id FROM person_traits AS pt WHERE COALESCE(LOCATE('上海', pt.city) > 0, FALSE)",
    ),
    (
        "identifier present",
        {"has_identifier": "wechat_openid"},
        "WITH rule_1 AS (SELECT DISTINCT person_id FROM identities WHERE id_type = 'wechat_openid' "
        "AND NOT person_id IS NULL) SELECT pt.person_id AS person_id FROM person_traits AS pt "
        "LEFT JOIN rule_1 ON rule_1.person_id = pt.person_id WHERE NOT rule_1.person_id IS NULL",
        "WITH rule_1 AS (SELECT DISTINCT person_id FROM identities WHERE id_type = 'wechat_openid' "
        "AND NOT person_id IS NULL) SELECT pt.person_id AS person_id FROM person_traits AS pt "
        "LEFT JOIN rule_1 ON rule_1.person_id = pt.person_id WHERE NOT rule_1.person_id IS NULL",
    ),
    (
        "event with property, product and window",
        {"event": {"name": "Product Viewed", "where": [{"property": "price", "op": ">=", "value": 100}],
                   "product": {"subcategory": "foundation"}, "window": {"last": "7d"},
                   "count": {"op": ">=", "value": 2}}},
        "WITH rule_1 AS (SELECT rp.person_id AS person_id, COUNT(*) AS value FROM events AS e "
        "JOIN record_persons AS rp ON rp.record_kind = 'event' AND rp.record_id = e.message_id "
        f"WHERE e.timestamp <= {NOW} AND e.timestamp > CAST('2026-02-23 04:00:00+00:00' AS TIMESTAMPTZ) "
        "AND e.event = 'Product Viewed' AND COALESCE(TRY_CAST(e.properties ->> '$.price' AS DOUBLE) >= 100, FALSE) "
        "AND (e.properties ->> '$.product_id') IN (SELECT product_id FROM products WHERE subcategory = 'foundation') "
        "GROUP BY rp.person_id) SELECT pt.person_id AS person_id FROM person_traits AS pt "
        "LEFT JOIN rule_1 ON rule_1.person_id = pt.person_id WHERE COALESCE(rule_1.value, 0) >= 2",
        "WITH rule_1 AS (SELECT rp.person_id AS person_id, COUNT(*) AS value FROM events AS e "
        "JOIN record_persons AS rp ON rp.record_kind = 'event' AND rp.record_id = e.message_id "
        f"WHERE e.timestamp <= {NOW_SPARK} AND e.timestamp > CAST('2026-02-23 04:00:00+00:00' AS TIMESTAMP) "
        "AND e.event = 'Product Viewed' AND COALESCE(TRY_CAST(GET_JSON_OBJECT(e.properties, '$.price') AS DOUBLE) >= 100, FALSE) "
        "AND GET_JSON_OBJECT(e.properties, '$.product_id') IN (SELECT product_id FROM products WHERE subcategory = 'foundation') "
        "GROUP BY rp.person_id) SELECT pt.person_id AS person_id FROM person_traits AS pt "
        "LEFT JOIN rule_1 ON rule_1.person_id = pt.person_id WHERE COALESCE(rule_1.value, 0) >= 2",
    ),
    (
        "order spend in local calendar days",
        {"order": {"channel": "offline", "window": {"from": "2025-11-01", "to": "2025-11-11"},
                   "sum": {"field": "net_amount", "op": ">=", "value": 500}}},
        "WITH rule_1 AS (SELECT rp.person_id AS person_id, SUM(o.net_amount) AS value FROM orders AS o "
        "JOIN record_persons AS rp ON rp.record_kind = 'order' AND rp.record_id = o.order_id "
        f"WHERE o.placed_at <= {NOW} AND o.placed_at >= CAST('2025-10-31 16:00:00+00:00' AS TIMESTAMPTZ) "
        "AND o.placed_at < CAST('2025-11-11 16:00:00+00:00' AS TIMESTAMPTZ) AND o.channel = 'offline' "
        "AND (o.status IS NULL OR NOT o.status IN ('cancelled', 'refunded')) GROUP BY rp.person_id) "
        "SELECT pt.person_id AS person_id FROM person_traits AS pt LEFT JOIN rule_1 ON rule_1.person_id = pt.person_id "
        "WHERE COALESCE(rule_1.value, 0) >= 500",
        "WITH rule_1 AS (SELECT rp.person_id AS person_id, SUM(o.net_amount) AS value FROM orders AS o "
        "JOIN record_persons AS rp ON rp.record_kind = 'order' AND rp.record_id = o.order_id "
        f"WHERE o.placed_at <= {NOW_SPARK} AND o.placed_at >= CAST('2025-10-31 16:00:00+00:00' AS TIMESTAMP) "
        "AND o.placed_at < CAST('2025-11-11 16:00:00+00:00' AS TIMESTAMP) AND o.channel = 'offline' "
        "AND (o.status IS NULL OR NOT o.status IN ('cancelled', 'refunded')) GROUP BY rp.person_id) "
        "SELECT pt.person_id AS person_id FROM person_traits AS pt LEFT JOIN rule_1 ON rule_1.person_id = pt.person_id "
        "WHERE COALESCE(rule_1.value, 0) >= 500",
    ),
    (
        "commuter hours on weekdays",
        {"event": {"channel": "app", "local_time": {"weekdays": [1, 2, 3, 4, 5], "hours": [7, 8]},
                   "distinct_days": {"value": 3}}},
        "WITH rule_1 AS (SELECT rp.person_id AS person_id, COUNT(DISTINCT CAST(CAST(e.timestamp AS TIMESTAMPTZ) "
        "AT TIME ZONE 'Asia/Shanghai' AS DATE)) AS value FROM events AS e JOIN record_persons AS rp "
        f"ON rp.record_kind = 'event' AND rp.record_id = e.message_id WHERE e.timestamp <= {NOW} "
        "AND ISODOW(CAST(e.timestamp AS TIMESTAMPTZ) AT TIME ZONE 'Asia/Shanghai') IN (1, 2, 3, 4, 5) "
        "AND HOUR(CAST(e.timestamp AS TIMESTAMPTZ) AT TIME ZONE 'Asia/Shanghai') IN (7, 8) AND e.channel = 'app' "
        "GROUP BY rp.person_id) SELECT pt.person_id AS person_id FROM person_traits AS pt "
        "LEFT JOIN rule_1 ON rule_1.person_id = pt.person_id WHERE COALESCE(rule_1.value, 0) >= 3",
        "WITH rule_1 AS (SELECT rp.person_id AS person_id, COUNT(DISTINCT CAST(FROM_UTC_TIMESTAMP(CAST(e.timestamp "
        "AS TIMESTAMP), 'Asia/Shanghai') AS DATE)) AS value FROM events AS e JOIN record_persons AS rp "
        f"ON rp.record_kind = 'event' AND rp.record_id = e.message_id WHERE e.timestamp <= {NOW_SPARK} "
        "AND (((DAYOFWEEK(FROM_UTC_TIMESTAMP(CAST(e.timestamp AS TIMESTAMP), 'Asia/Shanghai')) + 5) % 7) + 1) "
        "IN (1, 2, 3, 4, 5) AND HOUR(FROM_UTC_TIMESTAMP(CAST(e.timestamp AS TIMESTAMP), 'Asia/Shanghai')) IN (7, 8) "
        "AND e.channel = 'app' GROUP BY rp.person_id) SELECT pt.person_id AS person_id FROM person_traits AS pt "
        "LEFT JOIN rule_1 ON rule_1.person_id = pt.person_id WHERE COALESCE(rule_1.value, 0) >= 3",
    ),
    (
        "latest score",
        {"score": "churn_90d", "op": ">=", "value": 0.7},
        "WITH rule_1 AS (SELECT person_id, score AS value FROM (SELECT person_id, score, ROW_NUMBER() OVER "
        "(PARTITION BY person_id ORDER BY computed_at DESC, model_version DESC) AS latest FROM scores "
        "WHERE model = 'churn_90d') AS s WHERE latest = 1) SELECT pt.person_id AS person_id FROM person_traits AS pt "
        "LEFT JOIN rule_1 ON rule_1.person_id = pt.person_id WHERE COALESCE(rule_1.value >= 0.7, FALSE)",
        "WITH rule_1 AS (SELECT person_id, score AS value FROM (SELECT person_id, score, ROW_NUMBER() OVER "
        "(PARTITION BY person_id ORDER BY computed_at DESC, model_version DESC) AS latest FROM scores "
        "WHERE model = 'churn_90d') AS s WHERE latest = 1) SELECT pt.person_id AS person_id FROM person_traits AS pt "
        "LEFT JOIN rule_1 ON rule_1.person_id = pt.person_id WHERE COALESCE(rule_1.value >= 0.7, FALSE)",
    ),
]


@pytest.mark.parametrize(("name", "rule", "duckdb_sql", "spark_sql"), COMPILED, ids=[c[0] for c in COMPILED])
def test_compiled_sql(name: str, rule: dict, duckdb_sql: str, spark_sql: str) -> None:
    query = build_rule_sql(rule, as_of=AS_OF, timezone=TZ)
    assert render(query, "duckdb") == duckdb_sql
    assert render(query, "spark") == spark_sql


def test_every_membership_rule_renders_for_both_engines() -> None:
    for _, rule, _ in MEMBERSHIP:
        query = build_rule_sql(rule, as_of=AS_OF, timezone=TZ)
        assert render(query, "duckdb").startswith(("SELECT", "WITH"))
        assert render(query, "spark").startswith(("SELECT", "WITH"))


def test_same_aggregate_is_joined_once() -> None:
    viewed = {"event": {"name": "Product Viewed", "window": {"last": "7d"}}}
    query = build_rule_sql({"any": [viewed, {"not": viewed}]}, as_of=AS_OF)
    assert len(list(query.find_all(exp.CTE))) == 1


def test_rule_round_trips_through_json() -> None:
    rule = {"all": [{"not": {"tag": "dormant_customer"}},
                    {"order": {"window": {"from": "2025-11-01", "to": "2025-11-11"}, "count": {"op": ">=", "value": 2}}}]}
    parsed = parse_rule(rule)
    assert dump_rule(parsed) == rule
    assert parse_rule(dump_rule(parsed)) == parsed
    assert referenced_tags(parsed) == {"dormant_customer"}


# ---- errors name the rule path and the fix, in both languages -----------------------------

ERRORS = [
    ({"all": [{"trait": "gender", "op": "=", "value": "F"}, {"trait": "age", "op": "=", "value": 3},
              {"event": {"window": {"last": "7 days"}}}]},
     "rule.all[2].event.window.last", "7d"),
    ({"any": [{"colour": "red"}]}, "rule.any[0]", "exactly one of"),
    ({"trait": "gendr", "op": "=", "value": "F"}, "rule.trait", "did you mean 'gender'"),
    ({"trait": "age", "op": "contains", "value": "3"}, "rule.op", "between"),
    ({"trait": "age", "op": "=", "value": "thirty"}, "rule.value", "30"),
    ({"trait": "age", "op": "between", "value": [1]}, "rule.value", "[25, 34]"),
    ({"not": {"score": "churn", "op": ">=", "value": 0.5}}, "rule.not.score", "churn_90d"),
    ({"has_identifier": "qq_openid"}, "rule.has_identifier", "wechat_openid"),
    ({"order": {"sum": {"field": "net_amount", "value": 1}, "quantity": {"value": 1}}}, "rule.order", "keep one"),
    ({"order": {"window": {"from": "yesterday"}}}, "rule.order.window.from", "2025-11-11"),
    ({"event": {"colour": "red"}}, "rule.event.colour", "spelling"),
    ({"all": []}, "rule.all", "add an item"),
]


@pytest.mark.parametrize(("rule", "path", "fix"), ERRORS, ids=[e[1] for e in ERRORS])
def test_errors_name_the_path_and_fix(rule: dict, path: str, fix: str) -> None:
    with pytest.raises(RuleError) as caught:
        build_rule_sql(rule, as_of=AS_OF)
    assert caught.value.field == path
    assert fix in caught.value.describe("en")
    assert path in caught.value.describe("zh") and caught.value.fix_zh


INJECTIONS = [
    {"event": {"where": [{"property": "x') OR 1=1 --", "op": "=", "value": 1}]}},
    {"trait": "gender; DROP TABLE tags", "op": "=", "value": "F"},
    {"trait": "gender", "op": "= 'F' OR 1=1 --", "value": "F"},
    {"score": "churn_90d' OR '1'='1", "op": ">=", "value": 0.1},
]


@pytest.mark.parametrize("rule", INJECTIONS)
def test_injection_attempts_are_rejected(rule: dict) -> None:
    with pytest.raises(RuleError):
        build_rule_sql(rule, as_of=AS_OF)


def test_values_are_literals_never_sql(engine: Engine) -> None:
    load_store(engine)
    sneaky = "F' OR '1'='1"
    rule = {"any": [{"trait": "gender", "op": "=", "value": sneaky},
                    {"event": {"name": "x' OR 1=1 --", "where": [{"property": "coupon", "op": "=", "value": "'; --"}]}}]}
    assert compute(engine, rule) == set()
    assert engine.row_count("tags") == len(TAG_ROWS)


def test_rule_path_drops_union_tags() -> None:
    assert rule_path(("all", "all", 2, "event", "event", "window", "relative", "last")) == "rule.all[2].event.window.last"
    assert rule_path(("not", "not", "any", "any", 0, "trait", "value")) == "rule.not.any[0].value"


def test_catalog_from_columns_types_traits() -> None:
    catalog = Catalog.from_columns({"lifetime_points": "BIGINT", "vip_since": "TIMESTAMPTZ"})
    compiler = RuleCompiler(as_of=AS_OF, catalog=catalog)
    where = compiler.predicate(parse_rule({"trait": "lifetime_points", "op": ">", "value": 100}))
    assert compiler.select(where).sql() == (
        "SELECT pt.person_id AS person_id FROM person_traits AS pt WHERE COALESCE(pt.lifetime_points > 100, FALSE)")
    with pytest.raises(RuleError, match="unknown trait 'gender'"):
        compiler.predicate(parse_rule({"trait": "gender", "op": "=", "value": "F"}))
