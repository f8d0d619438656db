"""Online order exports (JSON lines per year) and store POS exports (GBK CSV per month).

Each platform exposes buyers its own way: our own mall gives member ids and full
phones, the mini-program adds the WeChat openid, marketplaces give a platform
buyer id and masked phones (187****8991). Store receipts carry the member card
and/or a phone typed by the cashier in whatever format the customer said it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jingzhun.demo.context import DemoContext, DemoFile
from jingzhun.demo.orders import COUPONS, Orders, applied_coupons, orders_of
from jingzhun.demo.pos import write_pos_sources
from jingzhun.demo.sessions import CHANNELS, sessions_of
from jingzhun.demo.vectors import (
    BASE62,
    concat,
    digit_strings,
    random_strings,
    take,
    where,
)
from jingzhun.demo.writers import duck, write_lines

ONLINE_MALFORMED = {"negative_quantity": 0.001, "bad_date": 0.001}
STATUS = np.array(["paid", "shipped", "completed", "refunded", "cancelled"], dtype=object)


def write_commerce_sources(ctx: DemoContext) -> list[DemoFile]:
    """orders/online_orders-YYYY.jsonl and pos/store_sales-YYYY-MM.csv."""
    orders = orders_of(ctx)
    return write_online_orders(ctx, orders) + write_pos_sources(ctx, orders)


def platform_ids(ctx: DemoContext) -> dict[str, pa.Array]:
    """Per-person marketplace buyer ids (Tmall open uid, JD pin), cached in ctx.shared."""
    if "platform_ids" not in ctx.shared:
        rng = ctx.rng("commerce.platform_ids")
        n = ctx.population.size
        ctx.shared["platform_ids"] = {
            "tmall_open_uid": concat("AAG", random_strings(rng, n, 21, BASE62)),
            "jd_pin": concat("jd_", random_strings(rng, n, 10, BASE62[:36])),
        }
    return ctx.shared["platform_ids"]  # type: ignore[return-value]


def order_ids(ctx: DemoContext, orders: Orders) -> pa.Array:
    """Order numbers in each platform's shape (ours: JZ + yymmdd + 8-digit sequence)."""
    rng = ctx.rng("commerce.order_ids")
    sess = sessions_of(ctx)
    n = len(orders)
    day = np.datetime64(ctx.start, "D") + sess.day[orders.session].astype("timedelta64[D]")
    ymd = pc.strftime(pa.array(day.astype("datetime64[s]")), "%y%m%d")
    own = concat("JZ", ymd, digit_strings(np.arange(n) + 1, 8))
    tmall = concat("2", digit_strings(rng.integers(0, 10**17, n), 17), _two(rng, n))
    jd = concat("3", digit_strings(rng.integers(0, 10**11, n), 11))
    douyin = concat("69", digit_strings(rng.integers(0, 10**17, n), 17))
    pos = concat("POS", ymd, digit_strings(np.arange(n), 8))  # replaced by receipt numbers
    ch = pa.array(orders.channel.astype(np.int8))
    mapped = pc.choose(ch, own, own, own, pos, tmall, jd, douyin)
    return mapped


def _two(rng: np.random.Generator, n: int) -> pa.Array:
    return digit_strings(rng.integers(0, 100, n), 2)


def _times(ctx: DemoContext, orders: Orders) -> tuple[np.ndarray, np.ndarray]:
    """Local placed time (seconds since epoch, wall clock) and payment delay in seconds."""
    sess = sessions_of(ctx)
    rng = ctx.rng("commerce.times")
    placed = sess.local_seconds(ctx.start)[orders.session] + 240  # checkout after browsing
    return placed, rng.exponential(45.0, len(orders)).astype(np.int64) + 5


def _status(ctx: DemoContext, orders: Orders) -> np.ndarray:
    """Lifecycle status by the order's age at the end of the period."""
    rng = ctx.rng("commerce.status")
    sess = sessions_of(ctx)
    age = (ctx.end - ctx.start).days - sess.day[orders.session]
    u = rng.random(len(orders))
    old = np.select([u < 0.90, u < 0.96], [2, 3], 4)
    mid = np.where(u < 0.6, 1, 2)
    new = np.where(u < 0.7, 0, 1)
    return STATUS[np.select([age <= 2, age <= 10], [new, mid], old)]


def _iso_local(seconds: np.ndarray) -> pa.Array:
    """Wall-clock seconds to "2025-03-08T20:15:03+08:00"."""
    ts = pa.array(seconds.astype("datetime64[s]"))
    return concat(pc.strftime(ts, "%Y-%m-%dT%H:%M:%S"), "+08:00")


def write_online_orders(ctx: DemoContext, orders: Orders) -> list[DemoFile]:
    """One JSON object per order, one file per calendar year of placed_at (local)."""
    online = np.flatnonzero(orders.channel != CHANNELS.index("store"))
    table, bad = _online_table(ctx, orders, online)
    lines = _render_orders(table)
    year = pc.year(pa.array(table["_placed_s"].to_numpy().astype("datetime64[s]"))).to_numpy()
    files = []
    for y in np.unique(year):
        sel = np.flatnonzero(year == y)
        path = ctx.data_dir / "orders" / f"online_orders-{y}.jsonl"
        write_lines(path, lines.take(pa.array(sel)))
        files.append(DemoFile("online_orders", path, len(sel), int(bad[sel].sum()),
                              description="Online orders from own mall and marketplaces"))
    return files


def _online_table(ctx: DemoContext, orders: Orders, online: np.ndarray
                  ) -> tuple[pa.Table, np.ndarray]:
    """Order rows with platform-specific buyer fields; also which rows are malformed."""
    rng = ctx.rng("commerce.online")
    pop = ctx.population
    person = orders.person[online]
    channel = orders.channel[online]
    placed, delay = _times(ctx, orders)
    placed, delay = placed[online], delay[online]
    status = _status(ctx, orders)[online]
    kind = rng.choice(3, size=len(online), p=[1 - sum(ONLINE_MALFORMED.values()),
                                               *ONLINE_MALFORMED.values()])
    placed_txt = where(kind == 2, _bad_datetime(rng, len(online)), _iso_local(placed))
    paid = where(status != "cancelled", _iso_local(placed + delay), None)
    phone = take(pop["phone"], person)
    masked = concat(pc.utf8_slice_codeunits(phone, 0, 3), "****",
                    pc.utf8_slice_codeunits(phone, 7, 11))
    market = channel >= 4
    coupon = applied_coupons(orders)[online]
    codes = np.array([c[0] for c in COUPONS] + [None], dtype=object)
    table = pa.table({
        "order_id": order_ids(ctx, orders).take(pa.array(online)),
        "platform": take(np.array(CHANNELS, dtype=object), channel),
        **_buyer_ids(ctx, person, channel),
        "receiver_name": where(market, concat(pc.utf8_slice_codeunits(
            take(pop["name"], person), 0, 1), "**"), take(pop["name"], person)),
        "receiver_phone": where(market, masked, phone),
        "placed_at": placed_txt, "paid_at": paid, "status": pa.array(status, type=pa.string()),
        "province": take(pop["province"], person), "city": take(pop["city"], person),
        "coupon_code": take(codes, coupon % len(codes)),
        "items": _items(ctx, orders, online, kind == 1),
        "total_amount": pa.array(orders.totals()[online]),
        "_placed_s": pa.array(placed),
    })
    return table, kind > 0


def _buyer_ids(ctx: DemoContext, person: np.ndarray, channel: np.ndarray
               ) -> dict[str, pa.Array]:
    """Each platform's own buyer identifier (null where the platform has none)."""
    pop = ctx.population
    ids = platform_ids(ctx)
    return {
        "member_id": where(channel < 4, take(pop["member_id"], person), None),
        "openid": where(channel == 2, take(pop["wechat_openid"], person), None),
        "buyer_open_uid": where(channel == 4, take(ids["tmall_open_uid"], person), None),
        "buyer_pin": where(channel == 5, take(ids["jd_pin"], person), None),
        "douyin_user_id": where(channel == 6, take(pop["douyin_user_id"], person), None),
    }


def _items(ctx: DemoContext, orders: Orders, online: np.ndarray, negative: np.ndarray
           ) -> pa.ListArray:
    """Per-order list of line structs; malformed orders get a negative first quantity."""
    counts = np.bincount(orders.line_order, minlength=len(orders))
    starts = np.concatenate([[0], np.cumsum(counts)])
    lines = _line_index(starts, online, counts)
    sku = orders.line_sku[lines]
    qty = orders.line_qty[lines].copy()
    first = np.concatenate([[0], np.cumsum(counts[online])[:-1]])
    qty[first[negative]] = -qty[first[negative]]
    cat = ctx.catalog
    struct = pa.StructArray.from_arrays(
        [take(cat["sku"], sku), take(cat["product_id"], sku), take(cat["name"], sku),
         pa.array(qty), pa.array(orders.line_price[lines]),
         pa.array(orders.line_discount[lines])],
        names=["sku", "product_id", "name", "quantity", "unit_price", "discount"])
    offsets = np.concatenate([[0], np.cumsum(counts[online])]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), struct)


def _line_index(starts: np.ndarray, chosen: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Indices of all lines of the chosen orders, in order (vectorized ranges)."""
    n = counts[chosen]
    base = np.repeat(starts[chosen], n)
    within = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    return base + within


def _bad_datetime(rng: np.random.Generator, n: int) -> pa.Array:
    options = np.array(["2025-13-08T25:61:00+08:00", "08/03/2025 8:15 PM", "1970-01-01T00:00:00",
                        "NaN", "2025-02-30T12:00:00+08:00", ""], dtype=object)
    return take(options, rng.integers(0, len(options), n))


def _part(obj: str) -> str:
    """A json_object's text without its braces, to splice optional keys without
    `json_merge_patch` (which re-parses every row and measured ~3x slower)."""
    return f"substr(({obj})::VARCHAR, 2, length(({obj})::VARCHAR) - 2)"


BUYER_SQL = {
    "member": _part("json_object('member_id', member_id)"),
    "mp": _part("json_object('member_id', member_id, 'openid', openid)"),
    "tmall": _part("json_object('buyer_open_uid', buyer_open_uid)"),
    "jd": _part("json_object('buyer_pin', buyer_pin)"),
    "douyin_shop": _part("json_object('douyin_user_id', douyin_user_id)"),
}
ORDER_SQL = f"""
    SELECT '{{' || {_part("json_object('order_id', order_id, 'platform', platform)")} || ','
        || CASE platform WHEN 'miniprogram' THEN {BUYER_SQL["mp"]}
                         WHEN 'tmall' THEN {BUYER_SQL["tmall"]}
                         WHEN 'jd' THEN {BUYER_SQL["jd"]}
                         WHEN 'douyin_shop' THEN {BUYER_SQL["douyin_shop"]}
                         ELSE {BUYER_SQL["member"]} END
        || ',' || {_part("json_object('receiver_name', receiver_name, 'receiver_phone', "
                         "receiver_phone, 'placed_at', placed_at)")}
        || CASE WHEN paid_at IS NULL THEN '' ELSE ',"paid_at":"' || paid_at || '"' END
        || ',' || {_part("json_object('status', status, 'shipping_province', province, "
                         "'shipping_city', city)")}
        || CASE WHEN coupon_code IS NULL THEN ''
                ELSE ',"coupon_code":"' || coupon_code || '"' END
        || ',' || {_part("json_object('items', items, 'total_amount', round(total_amount, 2), "
                         "'currency', 'CNY')")}
        || '}}' || chr(10) AS line
    FROM o"""


def _render_orders(table: pa.Table) -> pa.ChunkedArray:
    """JSON lines; keys a platform does not provide are absent, not null."""
    con = duck()
    con.register("o", pa.Table.from_batches(
        table.drop_columns(["_placed_s"]).combine_chunks().to_batches(max_chunksize=20_000)))
    return con.sql(ORDER_SQL).to_arrow_table().column("line")
