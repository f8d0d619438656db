"""Render events as Segment-spec JSON lines, one file per channel and month.

The numpy event arrays are turned into one Arrow table per file (identifiers and
product fields gathered with `take`), and DuckDB renders the JSON with
`json_object`; `json_merge_patch('{}', …)` drops absent properties the way the
SDKs omit them. Rows are a pure projection (no joins), so output order — sorted
by receivedAt, as a collector writes its log — is kept.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jingzhun.demo.behaviour import CLOCK_SKEW_SHARE, Events, K, Visits
from jingzhun.demo.catalog import SUBCATEGORIES
from jingzhun.demo.commerce import order_ids
from jingzhun.demo.context import DemoContext, DemoFile
from jingzhun.demo.events_context import VisitContext, visit_context
from jingzhun.demo.events_sql import EVENT_NAMES, EVENT_SQL, PAGES, SITE
from jingzhun.demo.orders import COUPONS, applied_coupons, orders_of
from jingzhun.demo.sessions import CHANNELS, sessions_of
from jingzhun.demo.spike import spike_info
from jingzhun.demo.vectors import concat, take, uuid4_strings, where
from jingzhun.demo.writers import duck, write_lines

BATCH_EVENTS = 400_000  # files of one channel are rendered together up to this many rows
ARROW_BATCH_ROWS = 20_000  # small record batches let DuckDB spread rendering over cores


def write_event_files(ctx: DemoContext, visits: Visits, events: Events) -> list[DemoFile]:
    """Sort events by (channel, month, receivedAt) and write each month's block.

    Batches are pipelined: while one thread renders and writes a batch (DuckDB and
    file I/O release the GIL), the main thread gathers the next batch's columns.
    """
    sess = sessions_of(ctx)
    rng = ctx.rng("events.delivery")
    channel = sess.channel[visits.index][events.visit]
    sent, recv, orig = _delivery_times(rng, events, channel, visits)
    # Files are cut by the Beijing-time month of receivedAt (UTC+8, no DST).
    month = (recv + 8 * 3_600_000).astype("datetime64[ms]").astype("datetime64[M]")
    order = np.lexsort((recv, month, channel))
    vctx = visit_context(ctx, visits)
    shared = _shared_columns(ctx, visits)
    key = channel[order].astype(np.int64) * 100_000 + month[order].astype(np.int64)
    bounds = np.flatnonzero(np.r_[True, key[1:] != key[:-1], True])
    files: list[DemoFile] = []
    con = duck()
    with ThreadPoolExecutor(1) as pool:
        pending = None
        for batch in _batches(bounds, channel[order]):
            rows = order[batch[0]:batch[-1]]
            ch = int(channel[rows[0]])
            times = (events.utc_ms[rows], orig[rows], sent[rows], recv[rows])
            table = _chunk_table(ctx, events, rows, vctx, shared, times, ch)
            if pending is not None:
                files += pending.result()
            targets = [(ctx.data_dir / "events" / CHANNELS[ch] /
                        f"events-{month[order[a]]}.jsonl", a - batch[0], b - a,
                        int(events.malformed[order[a:b]].sum()))
                       for a, b in zip(batch[:-1], batch[1:], strict=True)]
            pending = pool.submit(_render_batch, con, table, CHANNELS[ch], targets)
            ctx.report("events.write", int(batch[-1]), len(order))
        if pending is not None:
            files += pending.result()
    return files


def _render_batch(con: duckdb.DuckDBPyConnection, table: pa.Table, channel: str,
                  targets: list[tuple[Path, int, int, int]]) -> list[DemoFile]:
    """Render one batch's JSON lines and write its files (offset, rows) as DemoFiles."""
    con.register("ev", pa.Table.from_batches(
        table.combine_chunks().to_batches(max_chunksize=ARROW_BATCH_ROWS)))
    lines = con.sql(EVENT_SQL[channel]).to_arrow_table().column("line")
    con.unregister("ev")
    files = []
    for path, offset, n, bad in targets:
        write_lines(path, lines.slice(offset, n))
        files.append(DemoFile(f"{channel}_events", path, n, bad,
                              description=f"Segment-spec tracking events ({channel})"))
    return files


def _batches(bounds: np.ndarray, channel: np.ndarray) -> list[list[int]]:
    """Group consecutive file blocks of one channel into batches of ~BATCH_EVENTS rows.

    Each batch is the list of its file boundaries (start of each file, end of last).
    """
    batches: list[list[int]] = []
    current: list[int] = [int(bounds[0])]
    for b in bounds[1:]:
        b = int(b)
        current.append(b)
        last = b == bounds[-1]
        if last or b - current[0] >= BATCH_EVENTS or channel[b] != channel[current[0]]:
            batches.append(current)
            current = [b]
    return batches


def _delivery_times(rng: np.random.Generator, events: Events, channel: np.ndarray,
                    visits: Visits) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """sentAt (batched flush), receivedAt (network) and originalTimestamp (device clock).

    A few app visits come from devices whose clock is off by minutes to hours: their
    originalTimestamp and sentAt are shifted, `timestamp` (corrected) is the truth.
    """
    n = len(events.kind)
    sent = events.utc_ms + rng.integers(200, 30_000, n)
    recv = sent + rng.integers(30, 800, n)
    skewed = (rng.random(len(visits.index)) < CLOCK_SKEW_SHARE)[events.visit] & (channel == 1)
    skew = np.where(skewed, rng.choice([-1, 1], n) * rng.integers(300_000, 3 * 3_600_000, n), 0)
    skew = skew[_first_of_visit(events.visit)]  # one skew per visit
    return sent + skew, recv, events.utc_ms + skew


def _first_of_visit(visit: np.ndarray) -> np.ndarray:
    """Index of each event's visit's first event."""
    first = np.r_[True, visit[1:] != visit[:-1]]
    return np.maximum.accumulate(np.where(first, np.arange(len(visit)), 0))


def _shared_columns(ctx: DemoContext, visits: Visits) -> dict[str, pa.Array]:
    """Per-SKU and per-order columns gathered into every chunk."""
    cat = ctx.catalog
    zh = {s.code: s.zh for s in SUBCATEGORIES}
    query = pa.array([zh[s] for s in np.asarray(cat["subcategory"])])  # per SKU (~750)
    brand_query = pc.binary_join_element_wise(cat["brand"], query, " ")
    orders = orders_of(ctx)
    row_of_session = np.full(len(sessions_of(ctx)), -1, dtype=np.int64)
    row_of_session[orders.session] = np.arange(len(orders))
    coupon = applied_coupons(orders)
    codes = np.array([c[0] for c in COUPONS] + [None], dtype=object)
    discount = np.bincount(orders.line_order, weights=orders.line_discount,
                           minlength=len(orders))
    return {
        "query": query, "brand_query": brand_query, "query_enc": _url_quote(query),
        "brand_query_enc": _url_quote(brand_query),
        "order_row": row_of_session[visits.index], "order_id": order_ids(ctx, orders),
        "revenue": pa.array(orders.totals()), "discount": pa.array(np.round(discount, 2)),
        "coupon": take(codes, coupon % len(codes)), "products": _order_products(ctx),
    }


def _url_quote(values: pa.Array) -> pa.Array:
    """Percent-encoding of the per-SKU search texts (one value per SKU, not per event)."""
    return pa.array([quote(v) for v in values.to_pylist()])


def _order_products(ctx: DemoContext) -> pa.ListArray:
    """Segment `products` array per order: product_id, sku, name, category, price, quantity."""
    orders = orders_of(ctx)
    cat = ctx.catalog
    sku = orders.line_sku
    struct = pa.StructArray.from_arrays(
        [take(cat["product_id"], sku), take(cat["sku"], sku), take(cat["name"], sku),
         take(cat["category"], sku), pa.array(orders.line_price), pa.array(orders.line_qty)],
        names=["product_id", "sku", "name", "category", "price", "quantity"])
    counts = np.bincount(orders.line_order, minlength=len(orders))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), struct)


def _chunk_table(ctx: DemoContext, events: Events, rows: np.ndarray, vctx: VisitContext,
                 shared: dict[str, pa.Array], times: tuple[np.ndarray, ...],
                 channel: int) -> pa.Table:
    """All fields one file's events need, as flat Arrow columns."""
    rng = ctx.rng(f"events.ids.{int(rows[0])}")
    visit = events.visit[rows]
    kind = events.kind[rows]
    cols = {
        "kind": pa.array(kind), "message_id": uuid4_strings(rng, len(rows)),
        "anonymous_id": vctx.anonymous_id.take(pa.array(visit)),
        "user_id": where(events.logged_in[rows], vctx.member_id.take(pa.array(visit)), None),
        "ts": pa.array(times[0]), "ots": pa.array(times[1]), "sat": pa.array(times[2]),
        "rat": pa.array(times[3]), "bad": pa.array(events.malformed[rows]),
        "live_id": pa.array(np.full(len(rows), spike_info(ctx)["date"].replace("-", ""))),
        "event_name": take(np.array(EVENT_NAMES, dtype=object), kind),
    }
    cols.update(_product_columns(ctx, rng, events.sku[rows], shared))
    cols.update(_order_columns(shared, visit))
    cols.update(vctx.columns(visit))
    table = _null_unused(pa.table(cols), kind)
    for name, col in pages(table, kind, channel).items():
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, col)
        else:
            table = table.append_column(name, col)
    return table


def _product_columns(ctx: DemoContext, rng: np.random.Generator, sku: np.ndarray,
                     shared: dict[str, pa.Array]) -> dict[str, pa.Array]:
    """Product fields and search texts of each event's SKU (-1: none)."""
    cat = ctx.catalog
    at = np.maximum(sku, 0)
    sku_idx = pa.array(at, mask=sku < 0)
    branded = pa.array(rng.random(len(sku)) < 0.3)
    return {
        "product_id": take(cat["product_id"], at),
        "sku": pc.if_else(pa.array(sku >= 0), take(cat["sku"], at), None),
        "pname": take(cat["name"], at), "brand": take(cat["brand"], at),
        "category": take(cat["category"], at),
        "price": pa.array(np.asarray(cat["price"], dtype=float)[at]),
        "query": pc.if_else(branded, shared["brand_query"].take(sku_idx),
                            shared["query"].take(sku_idx)),
        "query_enc": pc.if_else(branded, shared["brand_query_enc"].take(sku_idx),
                                shared["query_enc"].take(sku_idx)),
    }


def _order_columns(shared: dict[str, pa.Array], visit: np.ndarray) -> dict[str, pa.Array]:
    """Order fields of the visit's order (null for visits without one)."""
    order_row = shared["order_row"][visit]
    o_idx = pa.array(np.maximum(order_row, 0), mask=order_row < 0)
    return {name: shared[name].take(o_idx)
            for name in ("order_id", "revenue", "discount", "coupon", "products")}


def pages(table: pa.Table, kind: np.ndarray, channel: int) -> dict[str, pa.Array]:
    """Page path, title, URL, search string and referrer per event (web/mini-program)."""
    n = len(kind)
    prefix = np.array([p[1 if channel == 0 else 2] for p in PAGES], dtype=object)
    source = np.array([("", "product", "live", "category", "query").index(p[3])
                       for p in PAGES])[kind]
    if channel == 0:  # the web search page keeps its query in `search`, not the path
        source = np.where(kind == K["search"], 0, source)
    empty = pa.array([""] * n, type=pa.string())
    suffix = pc.choose(pa.array(source.astype(np.int8)), empty,
                       pc.coalesce(table["product_id"], ""), table["live_id"],
                       pc.coalesce(table["category"], ""), pc.coalesce(table["query_enc"], ""))
    path = concat(take(prefix, kind), suffix)
    search = where(kind == K["search"], concat("?q=", table["query_enc"]), empty)
    titles = take(np.array([p[4] for p in PAGES], dtype=object), kind)
    title = pc.if_else(pa.array(np.isin(kind, [K["view"], K["add"]])), table["pname"], titles)
    referrer = where(kind == K["landing"], table["referrer"], pa.array([SITE + "/"] * n))
    return {"page_path": path, "page_title": title, "page_search": search,
            "page_url": concat(SITE, path, search),
            "referrer": referrer}


def _null_unused(table: pa.Table, kind: np.ndarray) -> pa.Table:
    """Product fields only where the event has a product (SQL CASEs pick per kind)."""
    has = pa.array(np.isin(kind, [K["view"], K["add"], K["cart"], K["checkout"],
                                  K["livestream"], K["search"]]))
    for name in ("product_id", "pname", "brand", "category", "price"):
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, pc.if_else(has, table[name], None))
    return table
