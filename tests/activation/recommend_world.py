"""A small hand-built shop for the recommendation tests: every interaction known.

Products (cosmetics, beauty tools, apparel):

- F1 a foundation (consumable, cycle 90 days), bought by most persons; F2 a cheaper one.
- S1 a beauty sponge (consumable), bought with F1 in most baskets.
- X1 a serum everybody wants, but out of stock: the ledger took 10 in and 10 out.
- D1 a dress (durable), D2 a dress only ever bought in a cancelled order.
- N1 a foundation launched 10 days before AS_OF (新品上市); T1 a t-shirt.

Persons: P01 … P08 bought F1 (with S1 for most) and X1 over the last months; P_A bought F1
one day before AS_OF and viewed F2 and L1; P_C bought D1 a year ago and viewed T1; P_B's
only order (D2) was cancelled. No person has traits, so every segment is the whole store.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pyarrow as pa

from jingzhun.engine import Engine
from jingzhun.schema import migrate

UTC = dt.UTC
AS_OF = dt.datetime(2026, 6, 30, 12, 0, tzinfo=UTC)

# product_id: (category, subcategory, price, consumable, launched days before AS_OF)
PRODUCTS = {
    "F1": ("cosmetics", "foundation", "299.00", True, 400),
    "F2": ("cosmetics", "foundation", "199.00", True, 400),
    "L1": ("cosmetics", "lipstick", "159.00", True, 400),
    "S1": ("beauty_tools", "beauty_sponge", "49.00", True, 400),
    "X1": ("cosmetics", "serum", "599.00", True, 400),
    "D1": ("apparel", "dress", "499.00", False, 400),
    "D2": ("apparel", "dress", "399.00", False, 400),
    "N1": ("cosmetics", "foundation", "289.00", True, 10),
    "T1": ("apparel", "t_shirt", "129.00", False, 400),
}


def ago(days: float) -> dt.datetime:
    return AS_OF - dt.timedelta(days=days)


# (order_id, person, days before AS_OF, status, [products])
ORDERS = [
    *[(f"O{index:02d}", f"P{index:02d}", 20 + 7 * index, "completed", ["F1", "S1", "X1"]) for index in range(1, 6)],
    ("O06", "P06", 40, "completed", ["F1", "X1"]),
    ("O07", "P07", 50, "completed", ["F1", "L1"]),
    ("O08", "P08", 60, "completed", ["X1", "D1"]),
    ("O09", "P_A", 1, "completed", ["F1"]),
    ("O10", "P_C", 365, "completed", ["D1"]),
    ("O11", "P_B", 30, "cancelled", ["D2"]),
    ("O12", "P08", 5, "paid", ["F2"]),
]

# (message_id, person, days before AS_OF, event, product)
EVENTS = [
    ("E01", "P_A", 3, "Product Viewed", "F2"),
    ("E02", "P_A", 2, "Product Viewed", "L1"),
    ("E03", "P_A", 2, "Product Added", "L1"),
    ("E04", "P_C", 100, "Product Viewed", "T1"),
    ("E05", "P01", 90, "Product Viewed", "N1"),
    ("E06", "P02", 10, "Product Viewed", "F2"),
    ("E07", "P03", 8, "Product Viewed", "L1"),
    ("E08", "P_B", 0, "Product Viewed", "D1"),
]
PERSONS = sorted({o[1] for o in ORDERS} | {e[1] for e in EVENTS})


def _products() -> pa.Table:
    rows = [dict(product_id=pid, sku=f"SKU-{pid}", barcode=None, name=f"商品{pid}", brand="测试", category=cat,
                 subcategory=sub, product_line=None, price=Decimal(price), cost=None, currency="CNY",
                 launch_date=(AS_OF - dt.timedelta(days=launched)).date(), is_consumable=consumable,
                 updated_at=AS_OF) for pid, (cat, sub, price, consumable, launched) in PRODUCTS.items()]
    return pa.Table.from_pylist(rows)


def _orders() -> tuple[pa.Table, pa.Table]:
    orders, items = [], []
    for order_id, _, days, status, products in ORDERS:
        orders.append(dict(order_id=order_id, channel="online", platform="app", placed_at=ago(days), status=status,
                           currency="CNY", net_amount=Decimal("100.00")))
        items += [dict(order_id=order_id, line_no=line, product_id=pid, sku=f"SKU-{pid}", quantity=1,
                       unit_price=Decimal(PRODUCTS[pid][2]), currency="CNY")
                  for line, pid in enumerate(products, start=1)]
    return pa.Table.from_pylist(orders), pa.Table.from_pylist(items)


def _events() -> pa.Table:
    return pa.Table.from_pylist([
        dict(message_id=mid, type="track", event=event, anonymous_id=f"anon-{person}", timestamp=ago(days),
             received_at=ago(days), channel="app", properties=json.dumps({"product_id": pid, "sku": f"SKU-{pid}"}))
        for mid, person, days, event, pid in EVENTS])


def _owners() -> pa.Table:
    rows = [dict(record_kind="order", record_id=o[0], person_id=o[1]) for o in ORDERS]
    rows += [dict(record_kind="event", record_id=e[0], person_id=e[1]) for e in EVENTS]
    return pa.Table.from_pylist(rows)


def _stock() -> pa.Table:
    """X1: 10 in, then 10 out (sold out); F1: 50 in. Nothing else is in the ledger."""
    moves = [("M1", "X1", "in", 10, 200), ("M2", "X1", "out", 10, 20), ("M3", "F1", "in", 50, 200)]
    return pa.Table.from_pylist([
        dict(movement_id=mid, occurred_at=ago(days), location_id="DC-1", barcode=None, sku=f"SKU-{pid}",
             product_id=pid, movement_type=kind, quantity=quantity) for mid, pid, kind, quantity, days in moves])


def write_world(engine: Engine) -> None:
    """Create the canonical tables and write the shop."""
    migrate(engine)
    orders, items = _orders()
    persons = pa.Table.from_pylist([dict(person_id=p, status="active", created_at=ago(400)) for p in PERSONS])
    for name, rows in (("products", _products()), ("orders", orders), ("order_items", items),
                       ("events", _events()), ("record_persons", _owners()), ("persons", persons),
                       ("inventory_movements", _stock())):
        engine.write_table(name, rows, mode="replace")
