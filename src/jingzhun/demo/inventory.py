"""Stock ledger and cycle counts, as an ERP/WMS exports them.

Two regional warehouses serve online orders and replenish the stores; each store
carries the most popular SKUs. A daily simulation (vectorized over location x SKU,
one step per day) runs a min/max replenishment policy, so the ledger is internally
consistent: for every location and SKU, the running sum of `quantity` equals the
`system_qty` of each cycle count. Planted:

* supplier disruptions: no purchase orders for three popular SKUs during stated
  windows, so the warehouses (and then stores) run out; the resulting stock-out
  intervals are in the truth;
* count discrepancies: a stated share of counted lines differ from the system
  quantity (shrinkage mostly), each followed by an `adjust` movement;
* malformed rows: barcodes with a wrong EAN-13 check digit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jingzhun.demo.context import DemoContext
from jingzhun.demo.marketing import (
    SECONDS_PER_DAY,
    SourceResult,
    arrow,
    day0,
    emit,
    fmt_time,
    gather,
    pick_malformed,
    promo_curve,
    span_days,
    to_str,
    write_truth_table,
)
from jingzhun.demo.vectors import concat, digit_strings

WAREHOUSES = ("DC-HD01", "DC-HN01")  # 华东仓 (嘉兴), 华南仓 (广州)
SOUTH = ("广东省", "广西壮族自治区", "福建省", "海南省", "云南省", "贵州省", "湖南省")
STORE_SKUS = 80  # assortment of each store: the most popular SKUs
STORE_UNITS_PER_DAY = 60.0  # per store at scale 1
ONLINE_UNITS_PER_DAY = 3000.0  # shipped from the warehouses at scale 1 (65% 华东)
MIN_SCALE = 0.03
STORE_COVER = (5, 14)  # reorder at 5 days of cover, refill to 14
WAREHOUSE_COVER = (12, 30)
LEAD_DAYS = 5  # purchase order lead time
DISRUPTION_STARTS = (0.3, 0.55, 0.8)  # fractions of the period
DISRUPTION_DAYS = 45
COUNT_SHARE = 1 / 13  # of a location's SKUs counted each week (a quarter for all)
DISCREPANCY_RATE = 0.03
DISCREPANCY_DIFFS = (np.array([-3, -2, -1, 1, 2]), np.array([0.2, 0.3, 0.3, 0.15, 0.05]))
MALFORMED_RATE = {"movements": 0.002, "counts": 0.005}
_KINDS = {  # code: (movement_type, reason, clock seconds)
    0: ("in", "期初库存", 8 * 3600), 1: ("in", "采购入库", 9 * 3600),
    2: ("transfer", "调拨出库", 10 * 3600), 3: ("transfer", "调拨入库", 15 * 3600),
    4: ("out", "门店销售日结", 22 * 3600), 5: ("out", "电商发货", 17 * 3600),
    6: ("adjust", "盘盈", 22 * 3600 + 2700), 7: ("adjust", "盘亏", 22 * 3600 + 2700),
}


@dataclass
class Layout:
    """Location x SKU pairs: warehouses' pairs first, then the stores'."""

    location: np.ndarray  # location id per pair
    sku: np.ndarray  # catalogue index per pair
    rate: np.ndarray  # mean daily demand per pair (sales or online orders)
    is_store: np.ndarray
    source: np.ndarray  # supplying warehouse pair per store pair (-1 for warehouses)
    low: np.ndarray  # reorder point
    high: np.ndarray  # order-up-to level


@dataclass
class Ledger:
    """Movements and counts as parallel lists of per-day arrays (concatenated later)."""

    pair: list[np.ndarray] = field(default_factory=list)
    day: list[np.ndarray] = field(default_factory=list)
    kind: list[np.ndarray] = field(default_factory=list)
    qty: list[np.ndarray] = field(default_factory=list)
    key: list[np.ndarray] = field(default_factory=list)  # pairs a transfer's two rows
    counts: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)

    def add(self, day: int, pairs: np.ndarray, kind: int, qty: np.ndarray,
            key: np.ndarray | None = None) -> None:
        keep = qty != 0
        self.key.append((pairs if key is None else key)[keep])
        self.pair.append(pairs[keep])
        self.day.append(np.full(int(keep.sum()), day, dtype=np.int32))
        self.kind.append(np.full(int(keep.sum()), kind, dtype=np.int8))
        self.qty.append(qty[keep].astype(np.int64))


def write_inventory(ctx: DemoContext) -> SourceResult:
    """inventory/inventory_movements.csv, inventory/stock_counts.csv and their truth."""
    rng = ctx.rng("inventory")
    weight = _sku_weights(ctx)
    layout = _layout(ctx, weight)
    disrupted = _disrupted_skus(ctx, weight)
    sim = Simulation(rng, ctx, layout, disrupted)
    sim.run()
    moves, bad_m = _movement_table(rng, ctx, layout, sim.ledger)
    counts, bad_c, discrepancies = _count_table(rng, ctx, layout, sim.ledger)
    write_truth_table(ctx, "stock_discrepancies.parquet", discrepancies)
    files = [
        emit(ctx, "inventory_movements", "inventory/inventory_movements.csv", moves, bad_m,
             "ERP stock ledger (signed quantities), English headers"),
        emit(ctx, "stock_counts", "inventory/stock_counts.csv", counts, bad_c,
             "Cycle counts with the system quantity at count time"),
    ]
    return SourceResult(files=files, truth=_truth(ctx, layout, disrupted, sim, discrepancies))


def _sku_weights(ctx: DemoContext) -> np.ndarray:
    """Relative popularity per SKU: the catalogue's own if it has one, else Zipf."""
    pop = ctx.catalog.columns.get("popularity")
    if pop is not None:
        return np.asarray(pop, dtype=float) + 1e-6
    rank = ctx.rng("inventory.popularity").permutation(ctx.catalog.size)
    return (rank + 1.0) ** -0.9


def _layout(ctx: DemoContext, weight: np.ndarray) -> Layout:
    """Pairs, their demand rates and min/max levels (in days of cover)."""
    scale = max(ctx.population.size / 1_000_000, MIN_SCALE)
    n_sku = ctx.catalog.size
    top = np.argsort(-weight, kind="stable")[: min(STORE_SKUS, n_sku)]
    stores = np.asarray(ctx.stores["store_id"].to_pylist(), dtype=object)
    south = np.isin(np.asarray(ctx.stores["province"].to_pylist(), dtype=object), SOUTH)
    w_rate = ONLINE_UNITS_PER_DAY * scale * weight / weight.sum()
    s_rate = STORE_UNITS_PER_DAY * scale * weight[top] / weight[top].sum()
    sku = np.concatenate([np.tile(np.arange(n_sku), 2), np.tile(top, len(stores))])
    rate = np.concatenate([0.65 * w_rate, 0.35 * w_rate, np.tile(s_rate, len(stores))])
    source = np.concatenate([np.full(2 * n_sku, -1),
                             np.repeat(south.astype(int), len(top)) * n_sku
                             + np.tile(top, len(stores))])
    is_store = source >= 0
    cover = rate.copy()  # a warehouse must also cover the stores it supplies
    np.add.at(cover, source[is_store], rate[is_store])
    low = np.where(is_store, STORE_COVER[0], WAREHOUSE_COVER[0]) * cover
    high = np.where(is_store, STORE_COVER[1], WAREHOUSE_COVER[1]) * cover
    location = np.concatenate([np.repeat(np.array(WAREHOUSES, dtype=object), n_sku),
                               np.repeat(stores, len(top))])
    return Layout(location=location, sku=sku, rate=rate, is_store=is_store, source=source,
                  low=np.ceil(low) + 1, high=np.ceil(high) + 2)


def _disrupted_skus(ctx: DemoContext, weight: np.ndarray) -> list[tuple[int, int, int]]:
    """(sku, first day, last day): the most popular SKU of three categories, in turn."""
    days = span_days(ctx)
    cats = np.asarray(ctx.catalog["category"], dtype=object)
    out = []
    for i, cat in enumerate(("cosmetics", "apparel", "home")):
        idx = np.flatnonzero(cats == cat)
        if not len(idx):
            continue
        sku = int(idx[np.argmax(weight[idx])])
        first = int(DISRUPTION_STARTS[i] * days)
        out.append((sku, first, min(first + DISRUPTION_DAYS - 1, days - 1)))
    return out


class Simulation:
    """Day-by-day stock simulation over all pairs at once (~730 steps, no row loop)."""

    def __init__(self, rng: np.random.Generator, ctx: DemoContext, layout: Layout,
                 disrupted: list[tuple[int, int, int]]) -> None:
        self.rng, self.layout, self.days = rng, layout, span_days(ctx)
        self.curve = promo_curve(ctx) ** 0.5
        self.stock = layout.high.astype(np.int64)
        self.arrivals = np.zeros((self.days + LEAD_DAYS + 1, len(layout.sku)), dtype=np.int64)
        self.request = np.zeros(len(layout.sku), dtype=np.int64)
        self.blocked = np.zeros((self.days, len(layout.sku)), dtype=bool)
        for sku, first, last in disrupted:
            self.blocked[first: last + 1, (layout.sku == sku) & ~layout.is_store] = True
        self.watch = np.flatnonzero(np.isin(layout.sku, [d[0] for d in disrupted]))
        self.zero_days = np.zeros((self.days, len(self.watch)), dtype=bool)
        self.zero_other = 0
        self.weekday0 = ctx.start.weekday()
        self.ledger = Ledger()

    def run(self) -> None:
        all_pairs = np.arange(len(self.layout.sku))
        self.ledger.add(0, all_pairs, 0, self.stock)
        for t in range(self.days):
            self._receive(t)
            self._transfer(t)
            self._sell(t)
            if (t + self.weekday0) % 7 == 0:  # Monday counts
                self._count(t)
            self._review(t)
            zero = self.stock == 0
            self.zero_days[t] = zero[self.watch]
            self.zero_other += int(zero.sum() - zero[self.watch].sum())

    def _receive(self, t: int) -> None:
        due = self.arrivals[t]
        self.stock += due
        self.ledger.add(t, np.arange(len(due)), 1, due)

    def _transfer(self, t: int) -> None:
        """Ship yesterday's store requests, pro rata when the warehouse runs short."""
        lay = self.layout
        stores = np.flatnonzero(self.request > 0)
        src = lay.source[stores]
        want = np.bincount(src, weights=self.request[stores], minlength=len(lay.sku))
        ratio = np.minimum(1.0, self.stock / np.maximum(want, 1))
        ship = np.floor(self.request[stores] * ratio[src]).astype(np.int64)
        np.subtract.at(self.stock, src, ship)
        self.stock[stores] += ship
        self.ledger.add(t, src, 2, -ship, key=stores)
        self.ledger.add(t, stores, 3, ship)
        self.request[:] = 0

    def _sell(self, t: int) -> None:
        lay = self.layout
        weekend = (t + self.weekday0) % 7 >= 5
        demand = self.rng.poisson(lay.rate * self.curve[t] * np.where(
            lay.is_store & weekend, 1.4, 1.0))
        sold = np.minimum(demand, self.stock)
        self.stock -= sold
        pairs = np.arange(len(sold))
        self.ledger.add(t, pairs[lay.is_store], 4, -sold[lay.is_store])
        self.ledger.add(t, pairs[~lay.is_store], 5, -sold[~lay.is_store])

    def _count(self, t: int) -> None:
        """Cycle count a share of pairs; discrepancies are booked as adjustments."""
        n = len(self.stock)
        counted = np.flatnonzero(self.rng.random(n) < COUNT_SHARE)
        diff = np.where(self.rng.random(len(counted)) < DISCREPANCY_RATE,
                        self.rng.choice(DISCREPANCY_DIFFS[0], len(counted),
                                        p=DISCREPANCY_DIFFS[1]), 0)
        system = self.stock[counted].copy()
        diff = np.maximum(diff, -system)
        self.ledger.counts.append((t, counted, system, system + diff))
        self.stock[counted] += diff
        self.ledger.add(t, counted, 6, np.maximum(diff, 0))
        self.ledger.add(t, counted, 7, np.minimum(diff, 0))

    def _review(self, t: int) -> None:
        """Evening review: stores request transfers, warehouses raise purchase orders."""
        lay = self.layout
        low = self.stock <= lay.low
        self.request = np.where(lay.is_store & low, lay.high - self.stock, 0).astype(np.int64)
        on_order = self.arrivals[t + 1: t + 1 + LEAD_DAYS].sum(axis=0)
        position = self.stock + on_order
        order = ~lay.is_store & (position <= lay.low) & ~self.blocked[t]
        self.arrivals[t + LEAD_DAYS] += np.where(order, lay.high - position, 0).astype(np.int64)


def _movement_table(rng: np.random.Generator, ctx: DemoContext, layout: Layout,
                    ledger: Ledger) -> tuple[pa.Table, int]:
    pair = np.concatenate(ledger.pair)
    day = np.concatenate(ledger.day).astype(np.int64)
    kind = np.concatenate(ledger.kind).astype(np.int64)
    qty = np.concatenate(ledger.qty)
    key = np.concatenate(ledger.key)
    clock = np.array([_KINDS[k][2] for k in range(len(_KINDS))])[kind]
    online = kind == 5
    clock = np.where(online, 12 * 3600 + rng.integers(0, 6 * 3600, len(kind)), clock)
    at = day0(ctx.start) + day * SECONDS_PER_DAY + clock
    order = np.lexsort((pair, kind, at))
    pair, day, kind, qty, at, key = (a[order] for a in (pair, day, kind, qty, at, key))
    barcode, bad = _barcodes(rng, ctx, layout.sku[pair], MALFORMED_RATE["movements"])
    types = np.array([_KINDS[k][0] for k in range(len(_KINDS))], dtype=object)
    reasons = np.array([_KINDS[k][1] for k in range(len(_KINDS))], dtype=object)
    table = pa.table({
        "movement_id": concat("MV", digit_strings(np.arange(1, len(pair) + 1), 10)),
        "occurred_at": fmt_time(at, "%Y-%m-%dT%H:%M:%S+08:00"),
        "location": gather(layout.location, pair), "barcode": barcode,
        "sku": gather(ctx.catalog["sku"], layout.sku[pair]),
        "movement_type": gather(types, kind), "quantity": to_str(qty),
        "reason": gather(reasons, kind), "reference": _references(ctx, layout, pair, day, kind, key),
    })
    return table, len(bad)


def _references(ctx: DemoContext, layout: Layout, pair: np.ndarray, day: np.ndarray,
                kind: np.ndarray, key: np.ndarray) -> pa.Array:
    """PO numbers, transfer orders, store settlements, shipping waves, count sheets.

    A transfer's out row (warehouse) and in row (store) share one TO number, keyed
    by the receiving store pair; a PO is numbered on its order day (arrival - lead).
    """
    issued = np.where(kind == 1, day - LEAD_DAYS, day)
    ymd = fmt_time(day0(ctx.start) + issued * SECONDS_PER_DAY, "%Y%m%d")
    prefix = np.array(["INIT-", "PO", "TO", "TO", "RS-", "WV-", "PD-", "PD-"], dtype=object)
    numbered = concat(gather(prefix, kind), ymd, digit_strings(key % 100_000, 5))
    by_loc = concat(gather(prefix, kind), gather(layout.location, pair), "-", ymd)
    return pc.if_else(pa.array(np.isin(kind, (1, 2, 3))), numbered, by_loc)


def _barcodes(rng: np.random.Generator, ctx: DemoContext, sku: np.ndarray,
              rate: float) -> tuple[pa.Array, np.ndarray]:
    """Catalogue barcodes; `rate` of rows get a wrong check digit (scanner/typing errors)."""
    codes = gather(ctx.catalog["barcode"], sku)
    bad = pick_malformed(rng, len(sku), rate)
    mask = np.zeros(len(sku), dtype=bool)
    mask[bad] = True
    check = pc.cast(pc.utf8_slice_codeunits(codes, 12, 13), pa.int64()).to_numpy()
    wrong = (check + rng.integers(1, 10, len(sku))) % 10
    broken = concat(pc.utf8_slice_codeunits(codes, 0, 12), to_str(wrong))
    return pc.if_else(pa.array(mask), broken, arrow(codes)), bad


def _count_table(rng: np.random.Generator, ctx: DemoContext, layout: Layout,
                 ledger: Ledger) -> tuple[pa.Table, int, pa.Table]:
    day = np.concatenate([np.full(len(c[1]), c[0]) for c in ledger.counts]).astype(np.int64)
    pair = np.concatenate([c[1] for c in ledger.counts])
    system = np.concatenate([c[2] for c in ledger.counts])
    counted = np.concatenate([c[3] for c in ledger.counts])
    at = day0(ctx.start) + day * SECONDS_PER_DAY + 22 * 3600 + 1800
    barcode, bad = _barcodes(rng, ctx, layout.sku[pair], MALFORMED_RATE["counts"])
    when = fmt_time(at, "%Y-%m-%d %H:%M:%S")
    table = pa.table({
        "count_id": concat("PD-", gather(layout.location, pair), "-",
                           fmt_time(at, "%Y%m%d")),
        "location": gather(layout.location, pair), "barcode": barcode,
        "sku": gather(ctx.catalog["sku"], layout.sku[pair]), "counted_at": when,
        "counted_qty": to_str(counted), "system_qty": to_str(system),
    })
    off = counted != system
    truth = pa.table({"location": gather(layout.location, pair[off]),
                      "sku": gather(ctx.catalog["sku"], layout.sku[pair[off]]),
                      "counted_at": when.filter(pa.array(off)),
                      "system_qty": system[off], "counted_qty": counted[off]})
    return table, len(bad), truth


def _truth(ctx: DemoContext, layout: Layout, disrupted: list[tuple[int, int, int]],
           sim: Simulation, discrepancies: pa.Table) -> dict[str, object]:
    start = np.datetime64(ctx.start, "D")
    skus = np.asarray(arrow(ctx.catalog["sku"]).to_pylist(), dtype=object)
    return {
        "warehouses": list(WAREHOUSES), "stores": int(ctx.stores.num_rows),
        "store_assortment": STORE_SKUS, "store_cover_days": STORE_COVER,
        "warehouse_cover_days": WAREHOUSE_COVER, "po_lead_days": LEAD_DAYS,
        "supplier_disruptions": [
            {"sku": skus[s], "barcode": arrow(ctx.catalog["barcode"])[s].as_py(),
             "category": str(np.asarray(ctx.catalog["category"], dtype=object)[s]),
             "no_purchase_orders_from": str(start + a), "to": str(start + b)}
            for s, a, b in disrupted],
        "stockouts": _stockout_intervals(sim, layout, skus, start),
        "other_zero_stock_pair_days": sim.zero_other,
        "stockout_definition": "the location closes the day with zero stock of the SKU",
        "count_share_per_week": COUNT_SHARE, "discrepancy_rate": DISCREPANCY_RATE,
        "discrepancies": discrepancies.num_rows, "malformed_rate": MALFORMED_RATE,
        "malformed_rule": "barcode with a wrong EAN-13 check digit (sku is still right)",
    }


def _stockout_intervals(sim: Simulation, layout: Layout, skus: np.ndarray,
                        start: np.datetime64) -> list[dict[str, object]]:
    """Runs of zero-stock days per watched (disrupted-SKU) pair."""
    out = []
    for j, p in enumerate(sim.watch):  # a few dozen pairs
        z = np.concatenate([[0], sim.zero_days[:, j].astype(np.int8), [0]])
        edges = np.diff(z)
        for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
            out.append({"location": layout.location[p], "sku": skus[layout.sku[p]],
                        "first_day": str(start + int(a)), "last_day": str(start + int(b) - 1),
                        "days": int(b - a)})
    return out
