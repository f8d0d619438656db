"""A small hand-built world for the traits tests: every input table, every value known.

Persons (all active unless noted):

- P_A  a member registered twice (CRM rows JZ1 in 2023, JZ9 in 2024), two surveys, an
       identify call that contradicts the CRM, web and app events, five orders (POS on
       国庆, Tmall on 618, an app order with a coupon a year ago, one refunded, one
       cancelled) and a WeChat follow.
- P_B  no member: Douyin interactions, a livestream visit, a WeChat follow later
       unfollowed, an Android app stream with a livestream event.
- P_C … P_H  buyers chosen so every RFM score and five of the eight classes are known.
- P_M  merged into P_A: has an order, must get no row.
- P_N  active with no records at all.

The expected values (EXPECTED) are worked out by hand in the comments.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pyarrow as pa

from jingzhun.engine import Engine
from jingzhun.schema import migrate

UTC = dt.UTC
AS_OF = dt.datetime(2025, 10, 31, 15, 0, tzinfo=UTC)  # 23:00 on 31 Oct in Beijing
AS_OF_DAY = dt.date(2025, 10, 31)


def at(text: str) -> dt.datetime:
    """A UTC instant from 'YYYY-MM-DD HH:MM'."""
    return dt.datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def noon_days_ago(days: int) -> dt.datetime:
    """12:00 Beijing (04:00 UTC) on the local day `days` before AS_OF's local day."""
    day = AS_OF_DAY - dt.timedelta(days=days)
    return dt.datetime(day.year, day.month, day.day, 4, 0, tzinfo=UTC)


WEB_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36"
WEB = json.dumps({"userAgent": WEB_UA})
IOS = json.dumps({"os": {"name": "iOS"}, "device": {"type": "ios"}})
ANDROID = json.dumps({"os": {"name": "Android"}, "device": {"type": "android"}})


def _event(mid, person, ts, type_, event=None, channel="web", stream="anon-a1", context=WEB,
           properties=None, traits=None, user_id=None):
    return dict(message_id=mid, person=person, type=type_, event=event, user_id=user_id, anonymous_id=stream,
                timestamp=ts, received_at=ts + dt.timedelta(seconds=5), channel=channel, context=context,
                properties=json.dumps(properties) if properties else None,
                traits=json.dumps(traits, ensure_ascii=False) if traits else None)


EVENTS = [
    # P_A web stream anon-a1 on 30 Oct (10:00 Beijing): page, view, add 40 min later, identify.
    _event("e1", "P_A", at("2025-10-30 02:00"), "page"),
    _event("e2", "P_A", at("2025-10-30 02:10"), "track", "Product Viewed",
           properties={"category": "cosmetics", "price": 100}),
    _event("e3", "P_A", at("2025-10-30 02:50"), "track", "Product Added",
           properties={"category": "cosmetics", "price": 100}),
    _event("e4", "P_A", at("2025-10-30 03:00"), "identify", user_id="JZ9",
           traits={"gender": "male", "member_level": "钻石", "city": "北京市", "name": "王小芳"}),
    # P_A app stream dev-a (iOS): 15 Sep, and 1 Jun (outside 90 days).
    _event("e5", "P_A", at("2025-09-15 12:00"), "screen", channel="app", stream="dev-a", context=IOS),
    _event("e6", "P_A", at("2025-09-15 12:05"), "track", "Product Viewed", channel="app", stream="dev-a",
           context=IOS, properties={"category": "apparel", "price": 300}),
    _event("e7", "P_A", at("2025-06-01 00:00"), "track", "Product Viewed", channel="app", stream="dev-a",
           context=IOS, properties={"category": "home", "price": 50}),
    # after as_of: ignored
    _event("e8", "P_A", at("2025-11-05 00:00"), "page"),
    # P_B Android app stream
    _event("e9", "P_B", at("2025-10-25 12:00"), "track", "Livestream Viewed", channel="app", stream="dev-b",
           context=ANDROID, properties={"livestream_id": "L1"}),
    # not attributed to anyone (no record_persons row): ignored
    _event("e10", None, at("2025-10-30 02:00"), "page", stream="anon-x"),
]


def _order(oid, person, placed, amount, platform="web", status="completed", coupon=None, store=None):
    channel = "offline" if platform == "pos" else "online"
    return dict(order_id=oid, person=person, placed_at=placed, net_amount=Decimal(amount), platform=platform,
                channel=channel, status=status, coupon_code=coupon, store_id=store, currency="CNY")


ORDERS = [
    _order("o1", "P_A", at("2025-10-01 04:00"), "200.00", "pos", store="SH001"),  # 国庆
    _order("o2", "P_A", at("2025-06-17 02:00"), "150.00", "tmall"),  # 618
    _order("o3", "P_A", at("2024-09-01 02:00"), "80.50", "app", coupon="NEW20"),  # > 365 days ago
    _order("o4", "P_A", at("2025-08-01 02:00"), "99.00", "tmall", status="refunded"),
    _order("o5", "P_A", at("2025-10-10 02:00"), "500.00", "app", status="cancelled"),
    *[_order(f"oc{k}", "P_C", noon_days_ago(days), "200.00") for k, days in enumerate((5, 40, 80, 120, 160))],
    _order("od", "P_D", noon_days_ago(200), "50.00"),
    _order("oe1", "P_E", noon_days_ago(100), "150.00"),
    _order("oe2", "P_E", noon_days_ago(240), "150.00"),
    _order("of", "P_F", noon_days_ago(10), "20.00"),
    _order("og", "P_G", noon_days_ago(400), "2000.00"),
    *[_order(f"oh{k}", "P_H", noon_days_ago(days), "225.00") for k, days in enumerate((300, 310, 320, 330))],
    _order("om", "P_M", noon_days_ago(3), "999.00"),
    _order("ox", None, noon_days_ago(3), "999.00"),  # nobody's
]

ORDER_ITEMS = [
    dict(order_id="o1", line_no=1, barcode="B-COS-HI", quantity=1, unit_price=Decimal("200.00")),
    dict(order_id="o2", line_no=1, sku="SKU-APP-MID", quantity=1, unit_price=Decimal("150.00")),
    dict(order_id="o3", line_no=1, product_id="P-H2", quantity=1, unit_price=Decimal("80.50")),
]


def _product(pid, sku, barcode, category, price):
    return dict(product_id=pid, sku=sku, barcode=barcode, category=category, price=Decimal(price), currency="CNY")


PRODUCTS = [
    _product("P-C1", "SKU-COS-LO", "B-COS-LO", "cosmetics", "50"),
    _product("P-C2", "SKU-COS-MID", "B-COS-MID", "cosmetics", "100"),
    _product("P-C3", "SKU-COS-HI", "B-COS-HI", "cosmetics", "200"),
    _product("P-A1", "SKU-APP-LO", "B-APP-LO", "apparel", "100"),
    _product("P-A2", "SKU-APP-MID", "B-APP-MID", "apparel", "150"),
    _product("P-A3", "SKU-APP-HI", "B-APP-HI", "apparel", "300"),
    _product("P-H1", "SKU-HOME-LO", "B-HOME-LO", "home", "40"),
    _product("P-H2", "SKU-HOME-MID", "B-HOME-MID", "home", "80"),
    _product("P-H3", "SKU-HOME-HI", "B-HOME-HI", "home", "120"),
]


def _record(rid, person, kind, occurred, identifiers, attributes):
    return dict(record_id=rid, person=person, source_id="test", kind=kind, occurred_at=occurred,
                identifiers=json.dumps(identifiers), attributes=json.dumps(attributes, ensure_ascii=False))


SOURCE_RECORDS = [
    _record("member:JZ1", "P_A", "member", at("2023-01-05 02:00"), {"member_id": "JZ1", "phone": "+8613800000001"},
            {"name": "王芳", "gender": "F", "birthday": "1990-06-15", "province": "上海市", "city": "上海市",
             "level": "银卡", "register_store": "精准上海万达广场店"}),
    _record("member:JZ9", "P_A", "member", at("2024-03-01 00:00"), {"member_id": "JZ9"},
            {"name": "王芳", "gender": "F", "birthday": None, "province": "浙江省", "city": "杭州市",
             "level": "金卡", "register_store": "官方商城"}),
    _record("follow:a", "P_A", "follow", at("2025-01-01 00:00"), {"wechat_oa_openid": "oA"},
            {"account": "精准生活", "unfollowed_at": None}),
    _record("dy:b1", "P_B", "interaction", at("2025-10-20 00:00"), {"douyin_user_id": "d1"},
            {"interaction_type": "like", "gender": "M"}),
    _record("dy:b2", "P_B", "interaction", at("2025-05-01 00:00"), {"douyin_user_id": "d1"},
            {"interaction_type": "comment", "gender": "M"}),
    _record("live:b", "P_B", "livestream_view", at("2025-10-25 12:00"), {"douyin_user_id": "d1"},
            {"room_id": "R1"}),
    _record("follow:b", "P_B", "follow", at("2025-02-01 00:00"), {"wechat_oa_openid": "oB"},
            {"account": "精准生活", "unfollowed_at": "2025-09-01 00:00:00+00"}),
]

SURVEY_RESPONSES = [
    dict(response_id="s1", person="P_A", submitted_at=at("2025-03-01 00:00"),
         answers=json.dumps({"income": "5千-1万", "job": "公司职员", "price_sensitivity": 4}, ensure_ascii=False)),
    dict(response_id="s2", person="P_A", submitted_at=at("2025-09-01 00:00"),
         answers=json.dumps({"income": "1万-2万", "price_sensitivity": 2}, ensure_ascii=False)),
]

IDENTITIES = [
    dict(id_type="phone", id_value="+8613800000001", person_id="P_A"),
    dict(id_type="member_id", id_value="JZ1", person_id="P_A"),
    dict(id_type="member_id", id_value="JZ9", person_id="P_A"),
    dict(id_type="wechat_unionid", id_value="uA", person_id="P_A"),
    dict(id_type="douyin_user_id", id_value="d1", person_id="P_B"),
    dict(id_type="email", id_value="c@example.com", person_id="P_C"),
]

ACTIVE = ["P_A", "P_B", "P_C", "P_D", "P_E", "P_F", "P_G", "P_H", "P_N"]

STORES = [dict(store_id="SH001", name="精准上海万达广场店", province="上海市", city="上海市")]


def _persons() -> list[dict]:
    rows = [dict(person_id=p, status="active", created_at=at("2024-01-01 00:00")) for p in ACTIVE]
    return rows + [dict(person_id="P_M", status="merged", merged_into="P_A", created_at=at("2024-01-01 00:00"))]


def _record_persons() -> list[dict]:
    owned = [("event", r["message_id"], r["person"]) for r in EVENTS]
    owned += [("order", r["order_id"], r["person"]) for r in ORDERS]
    owned += [("source_record", r["record_id"], r["person"]) for r in SOURCE_RECORDS]
    owned += [("survey_response", r["response_id"], r["person"]) for r in SURVEY_RESPONSES]
    return [dict(record_kind=k, record_id=i, person_id=p) for k, i, p in owned if p is not None]


def _rows(rows: list[dict]) -> pa.Table:
    """Arrow rows with every key any row has (pyarrow would take only the first row's)."""
    keys = list(dict.fromkeys(k for row in rows for k in row if k != "person"))
    return pa.Table.from_pylist([{k: row.get(k) for k in keys} for row in rows])


def write_world(engine: Engine, reverse: bool = False) -> None:
    """Create the canonical tables and write the world (rows reversed: another arrival order)."""
    migrate(engine)
    order = (lambda rows: list(reversed(rows))) if reverse else list
    tables = {
        "events": EVENTS, "orders": ORDERS, "order_items": ORDER_ITEMS, "products": PRODUCTS,
        "stores": STORES, "source_records": SOURCE_RECORDS, "survey_responses": SURVEY_RESPONSES,
        "identities": IDENTITIES, "persons": _persons(), "record_persons": _record_persons(),
    }
    for name, rows in tables.items():
        engine.write_table(name, _rows(order(rows)), mode="replace")


# Worked out by hand (see the module docstring and the comments in traits_sql.py).
EXPECTED: dict[str, dict[str, object]] = {
    "P_A": dict(
        # base: newest CRM row wins, an empty birthday falls back to the older row; CRM beats
        # the identify call; the newest survey wins, a skipped question falls back.
        name="王芳", gender="F", birth_date=dt.date(1990, 6, 15), age=35, age_band="35-39",
        province="浙江省", city="杭州市", member_id="JZ9", member_level="金卡",
        member_since=at("2023-01-05 02:00"), register_store="官方商城",
        income_band="1万-2万", job="公司职员", price_sensitivity=2,
        # seen: o3 (2024-09-01) … e4 (2025-10-30 03:00); e8 is after as_of
        first_seen_at=at("2024-09-01 02:00"), last_seen_at=at("2025-10-30 03:00"),
        # 30 d (after 1 Oct 15:00 UTC): 30 Oct, 10 Oct (o5); 90 d adds 1 Oct (o1) and 15 Sep
        active_days_30d=2, active_days_90d=4,
        # anon-a1: e1, e2 | e3 (40 min later), e4; dev-a: e5, e6 — e7 is outside 90 days
        sessions_90d=3, page_views_90d=2, product_views_90d=2, cart_adds_90d=1, events_total=7,
        # cosmetics 1+2 (view, add) +3 (o1) = 6; apparel 1+3; home 1+3
        favourite_category="cosmetics",
        # orders not cancelled: tmall 2 (o2, o4), pos 1, app 1
        preferred_channel="tmall", preferred_store_id="SH001",
        # pc: e1-e4 (4 events) vs ios: e5-e7 (3)
        device_type="pc",
        # lines: o1 200 > cosmetics p67 133.3 → 2; o2 150 apparel (133.3, 200] → 1; o3 80.50
        # home (66.7, 93.3] → 1: 3·4 = 12, not > 4·3 → mid
        price_band="mid",
        orders_total=3, orders_365d=2, gmv_total=Decimal("430.50"), gmv_365d=Decimal("350.00"),
        aov=Decimal("143.50"), refund_rate=0.25, first_order_at=at("2024-09-01 02:00"),
        last_order_at=at("2025-10-01 04:00"), days_since_last_order=30,
        online_order_share=2 / 3, offline_order_share=1 / 3, coupon_order_share=1 / 3,
        holiday_order_share=2 / 3,  # o1 on 国庆, o2 on 618
        livestream_views_90d=0, social_interactions_90d=0, follows_official_account=True,
        rfm_r=3, rfm_f=3, rfm_m=2, rfm_class="general_value",
        has_phone=True, has_email=False, has_wechat=True,
    ),
    "P_B": dict(
        name=None, gender="M", member_id=None, age=None, age_band=None,
        first_seen_at=at("2025-02-01 00:00"), last_seen_at=at("2025-10-25 12:00"),
        active_days_30d=2, active_days_90d=2, sessions_90d=1, events_total=1,
        favourite_category=None, preferred_channel="app", device_type="android", price_band=None,
        orders_total=0, gmv_total=Decimal("0.00"), aov=None, refund_rate=None, last_order_at=None,
        days_since_last_order=None, online_order_share=None,
        livestream_views_90d=2, social_interactions_90d=1, follows_official_account=False,
        rfm_r=None, rfm_class=None, has_phone=False, has_wechat=False,
    ),
    # RFM over the seven buyers. Means: R 1045/7 = 149.3 days, F 17/7 = 2.43, M 671.50.
    # NTILE(5) of 7 rows: 2, 2, 1, 1, 1; equal values share the lower score (F = 1: D, F, G).
    "P_C": dict(rfm_r=5, rfm_f=5, rfm_m=4, rfm_class="important_value", days_since_last_order=5,
                orders_total=5, gmv_total=Decimal("1000.00"), aov=Decimal("200.00"), has_email=True),
    "P_D": dict(rfm_r=2, rfm_f=1, rfm_m=1, rfm_class="general_retain", days_since_last_order=200),
    "P_E": dict(rfm_r=2, rfm_f=2, rfm_m=2, rfm_class="general_develop", days_since_last_order=100),
    "P_F": dict(rfm_r=4, rfm_f=1, rfm_m=1, rfm_class="general_develop", days_since_last_order=10),
    "P_G": dict(rfm_r=1, rfm_f=1, rfm_m=5, rfm_class="important_retain", days_since_last_order=400,
                orders_365d=0, gmv_365d=Decimal("0.00")),
    "P_H": dict(rfm_r=1, rfm_f=4, rfm_m=3, rfm_class="important_keep", days_since_last_order=300),
    "P_N": dict(events_total=0, orders_total=0, gmv_total=Decimal("0.00"), first_seen_at=None,
                follows_official_account=False, has_phone=False, rfm_class=None, sessions_90d=0),
}
