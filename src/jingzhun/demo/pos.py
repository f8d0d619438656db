"""Store POS exports: one GBK-encoded CSV per month, one row per receipt line.

Columns are the Chinese headers a typical mall POS exports. The cashier types
the member's phone however the customer says it, so phones come in many formats;
a small share of rows is broken in the ways importers must quarantine.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jingzhun.demo.context import DemoContext, DemoFile
from jingzhun.demo.dirty import bad_dates, bad_phones, format_phones, mojibake
from jingzhun.demo.names import POOLS
from jingzhun.demo.orders import Orders
from jingzhun.demo.sessions import CHANNELS, sessions_of
from jingzhun.demo.vectors import concat, digit_strings, take, where
from jingzhun.demo.writers import csv_bytes, duck

# Per line: probability of each deliberate corruption (disjoint).
POS_MALFORMED = {"bad_phone": 0.004, "negative_quantity": 0.002, "bad_barcode": 0.002,
                 "mojibake": 0.002, "bad_date": 0.001}
CARD_SHOWN = 0.80  # members show their card (会员卡号) on this share of receipts
PHONE_GIVEN_MEMBER = 0.65  # members give a phone on this share of receipts
PHONE_GIVEN_GUEST = 0.15  # non-members give a phone (e-invoice, points later)
PHONE_MASKED = 0.10  # of given phones, printed masked (138****5678)
PAYMENTS = (("微信支付", 0.45), ("支付宝", 0.35), ("银联卡", 0.12), ("现金", 0.05),
            ("数字人民币", 0.03))
HEADERS = ("门店编号", "门店名称", "小票号", "交易时间", "会员卡号", "会员手机号", "商品条码",
           "商品名称", "数量", "单价", "折扣", "实收金额", "支付方式", "收银员")


def write_pos_sources(ctx: DemoContext, orders: Orders) -> list[DemoFile]:
    """pos/store_sales-YYYY-MM.csv (GBK, CRLF), one file per month with sales."""
    receipts = np.flatnonzero(orders.channel == CHANNELS.index("store"))
    rows, kind, month = _pos_rows(ctx, orders, receipts)
    files = []
    for m in np.unique(month):
        sel = np.flatnonzero(month == m)
        path = ctx.data_dir / "pos" / f"store_sales-{m}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = csv_bytes(rows.take(pa.array(sel))).decode("utf-8").encode("gbk")
        path.write_bytes(data.replace(b"\n", b"\r\n"))
        files.append(DemoFile("pos_sales", path, len(sel), int((kind[sel] > 0).sum()),
                              encoding="gbk", description="Store POS receipt lines"))
    ctx.report("pos", len(receipts), len(receipts))
    return files


def _pos_rows(ctx: DemoContext, orders: Orders, receipts: np.ndarray
              ) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """Receipt-level fields joined onto lines, then corrupted and formatted."""
    head = _receipt_fields(ctx, orders, receipts)
    counts = np.bincount(orders.line_order, minlength=len(orders))[receipts]
    starts = np.concatenate([[0], np.cumsum(np.bincount(orders.line_order,
                                                        minlength=len(orders)))])
    lines = np.repeat(starts[receipts], counts) + (
        np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
    per_line = np.repeat(np.arange(len(receipts)), counts)
    table = head.take(pa.array(per_line))
    sku = orders.line_sku[lines]
    cat = ctx.catalog
    table = table.append_column("barcode", take(cat["barcode"], sku))
    table = table.append_column("pname", take(cat["name"], sku))
    table = table.append_column("qty", pa.array(orders.line_qty[lines]))
    table = table.append_column("price", pa.array(orders.line_price[lines]))
    table = table.append_column("rate", pa.array(_rates(orders, lines)))
    table, kind = _corrupt(ctx, table)
    month = pc.strftime(pa.array(table["_local_s"].to_numpy().astype("datetime64[s]")),
                        "%Y-%m").to_numpy(zero_copy_only=False)
    return _format(table), kind, month


def _rates(orders: Orders, lines: np.ndarray) -> np.ndarray:
    """Discount rate (折扣) per line from the line's discount amount."""
    value = orders.line_qty[lines] * orders.line_price[lines]
    return np.round(1 - orders.line_discount[lines] / np.maximum(value, 0.01), 2)


def _receipt_fields(ctx: DemoContext, orders: Orders, receipts: np.ndarray) -> pa.Table:
    """Store, receipt number, time, member card, phone, payment and cashier per receipt."""
    from jingzhun.demo.crm import duplicates_of

    rng = ctx.rng("pos.receipts")
    pop = ctx.population
    sess = sessions_of(ctx)
    person = orders.person[receipts]
    n = len(receipts)
    store = _stores_for(ctx, rng, person)
    local_s = sess.local_seconds(ctx.start)[orders.session[receipts]]
    member = np.asarray(pop["member_id"].is_valid())[person]
    card = take(pop["member_id"], person)
    dup = duplicates_of(ctx)
    alt = take(dup["member_id_by_person"], person)
    card = pc.if_else(pa.array(pc.is_valid(alt).to_numpy(zero_copy_only=False)
                               & (rng.random(n) < 0.5)), alt, card)
    card = where(member & (rng.random(n) < CARD_SHOWN), card, None)
    given = rng.random(n) < np.where(member, PHONE_GIVEN_MEMBER, PHONE_GIVEN_GUEST)
    phone = where(given, format_phones(rng, take(pop["phone"], person), PHONE_MASKED), None)
    return pa.table({
        "store_id": take(ctx.stores["store_id"], store),
        "store_name": take(ctx.stores["name"], store),
        "receipt_no": _receipt_numbers(ctx, store, local_s),
        "_local_s": pa.array(local_s), "card": card, "phone": phone,
        "payment": take(np.array([p for p, _ in PAYMENTS], dtype=object), rng.choice(
            len(PAYMENTS), n, p=[w for _, w in PAYMENTS])),
        "cashier": _cashiers(ctx, rng, store),
    })


def _stores_for(ctx: DemoContext, rng: np.random.Generator, person: np.ndarray) -> np.ndarray:
    """Index of the store: the home store, or (8%) another store while travelling."""
    ids = ctx.stores["store_id"]
    home = pa.array(ctx.population["home_store_id"][person], type=pa.string())
    codes = pc.index_in(home, value_set=ids).to_numpy(zero_copy_only=False)
    codes = np.where(np.isnan(codes.astype(float)), rng.integers(0, len(ids), len(person)),
                     np.nan_to_num(codes.astype(float))).astype(np.int64)
    away = rng.random(len(person)) < 0.08
    return np.where(away, rng.integers(0, len(ids), len(person)), codes)


def _receipt_numbers(ctx: DemoContext, store: np.ndarray, local_s: np.ndarray) -> pa.Array:
    """store_id + yymmdd + 4-digit running number within the store-day."""
    day = local_s // 86400
    order = np.lexsort((local_s, day, store))
    key = store[order] * 100_000 + day[order]
    first = np.r_[True, key[1:] != key[:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
    seq = np.empty(len(order), dtype=np.int64)
    seq[order] = np.arange(len(order)) - start + 1
    ymd = pc.strftime(pa.array(local_s.astype("datetime64[s]")), "%y%m%d")
    return concat(take(ctx.stores["store_id"], store), ymd, digit_strings(seq, 4))


def _cashiers(ctx: DemoContext, rng: np.random.Generator, store: np.ndarray) -> pa.Array:
    """Four cashiers per store, "姓名(工号)"; the names are drawn once per store."""
    crng = ctx.rng("pos.cashiers")
    k = ctx.stores.num_rows * 4
    sur = POOLS.surname[crng.choice(len(POOLS.surname), k, p=POOLS.surname_p)]
    given = POOLS.given[POOLS.female_idx[crng.integers(0, len(POOLS.female_idx), k)]]
    names = concat(pa.array(sur), pa.array(given), "(", digit_strings(
        np.arange(k) + 1001, 4), ")")
    return take(names, store * 4 + rng.integers(0, 4, len(store)))


def _corrupt(ctx: DemoContext, table: pa.Table) -> tuple[pa.Table, np.ndarray]:
    """Apply the POS_MALFORMED corruptions to disjoint random lines."""
    rng = ctx.rng("pos.malformed")
    n = table.num_rows
    p = list(POS_MALFORMED.values())
    kind = rng.choice(len(p) + 1, size=n, p=[1 - sum(p), *p])
    phone = where(kind == 1, bad_phones(rng, take(ctx.population["phone"], rng.integers(
        0, ctx.population.size, n))), table["phone"].combine_chunks())
    qty = pa.array(np.where(kind == 2, -1, 1) * table["qty"].to_numpy())
    barcode = where(kind == 3, _break_check_digit(rng, table["barcode"].combine_chunks()),
                    table["barcode"].combine_chunks())
    bad = np.flatnonzero(kind == 4)
    names = table["pname"].combine_chunks()
    broken = mojibake(names.take(pa.array(bad)), "gbk")
    names = pc.replace_with_mask(names, pa.array(kind == 4), broken) if len(bad) else names
    when = pc.strftime(pa.array(table["_local_s"].to_numpy().astype("datetime64[s]")),
                       "%Y-%m-%d %H:%M:%S")
    when = where(kind == 5, bad_dates(rng, n), when)
    for name, col in (("phone", phone), ("qty", qty), ("barcode", barcode), ("pname", names)):
        table = table.set_column(table.schema.get_field_index(name), name, col)
    return table.append_column("when", when), kind


def _break_check_digit(rng: np.random.Generator, barcode: pa.Array) -> pa.Array:
    """Same 12 digits, a wrong 13th (check) digit."""
    check = pc.cast(pc.utf8_slice_codeunits(barcode, 12, 13), pa.int64()).to_numpy()
    wrong = (check + rng.integers(1, 10, len(check))) % 10
    return concat(pc.utf8_slice_codeunits(barcode, 0, 12), pa.array(wrong.astype(str)))


def _format(table: pa.Table) -> pa.Table:
    """Chinese headers and POS-style number formatting (2 decimals)."""
    con = duck()
    con.register("t", table)
    sql = """
        SELECT store_id, store_name, receipt_no, "when", card, phone, barcode, pname, qty,
               printf('%.2f', price), printf('%.2f', rate),
               printf('%.2f', round(abs(qty) * price * rate, 2)), payment, cashier
        FROM t"""  # no ORDER BY: orders are built time-sorted and `kind` is aligned to rows
    return con.sql(sql).to_arrow_table().rename_columns(list(HEADERS))
