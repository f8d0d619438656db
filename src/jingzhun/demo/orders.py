"""Orders and order lines built from purchasing sessions (the commerce truth).

Every purchasing session becomes one order: the visit's main product plus extra
lines (more for big spenders), with the planted foundation -> beauty sponge
co-purchase rule applied after the basket is drawn. Coupons and discounts
follow the persona (bargain hunters use coupons, mostly on member days).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jingzhun.demo.context import DemoContext
from jingzhun.demo.products import ProductSampler
from jingzhun.demo.sessions import MEMBER_DAY, persona_codes, sessions_of

P_SPONGE_GIVEN_FOUNDATION = 0.45  # planted: a foundation basket gets a sponge w.p. 0.45
EXTRA_ITEMS_MEAN = 0.35  # Poisson mean of extra lines at aov_multiplier 1
COUPON_USE = np.array([0.20, 0.15, 0.20, 0.70, 0.10])  # per persona, on own channels
STORE_GOLD_RATE = 0.95  # 折扣 for gold and diamond members in stores
STORE_MEMBER_DAY_RATE = 0.90  # 折扣 for any member in stores on member day
# (code, threshold CNY, amount off CNY); rate coupons have amount < 1 (fraction off).
COUPONS = (("NEW20", 0.0, 20.0), ("MJ199-30", 199.0, 30.0), ("MJ399-80", 399.0, 80.0),
           ("VIPDAY-90", 0.0, 0.10))


@dataclass
class Orders:
    """Orders (one per purchasing session) and their lines, as numpy columns."""

    session: np.ndarray  # int64 index into Sessions
    person: np.ndarray
    channel: np.ndarray
    coupon: np.ndarray  # int8 index into COUPONS, -1 for none
    # lines
    line_order: np.ndarray  # int64 index into the orders above
    line_sku: np.ndarray
    line_qty: np.ndarray
    line_price: np.ndarray
    line_discount: np.ndarray  # CNY off this line (coupon share + platform promo)

    def __len__(self) -> int:
        return len(self.session)

    def totals(self) -> np.ndarray:
        """Paid amount per order: sum of qty x price - discount over its lines."""
        amount = self.line_qty * self.line_price - self.line_discount
        return np.round(np.bincount(self.line_order, weights=amount, minlength=len(self)), 2)


def orders_of(ctx: DemoContext) -> Orders:
    """The orders of this context, built once and cached in ctx.shared."""
    if "orders" not in ctx.shared:
        ctx.shared["orders"] = build_orders(ctx)
    return ctx.shared["orders"]  # type: ignore[return-value]


def build_orders(ctx: DemoContext) -> Orders:
    sess = sessions_of(ctx)
    rng = ctx.rng("orders")
    idx = np.flatnonzero(sess.purchase)
    person = sess.person[idx]
    line_order, line_sku = _baskets(ctx, rng, idx, person)
    line_sku, line_order = _add_sponges(ctx, rng, line_order, line_sku)
    qty = _quantities(ctx, rng, line_sku)
    price = np.asarray(ctx.catalog["price"], dtype=float)[line_sku]
    coupon = _coupons(ctx, rng, idx, person)
    discount = _discounts(rng, sess.channel[idx], coupon, line_order, qty * price)
    discount += _store_member_discount(ctx, idx, person, line_order, qty * price)
    ctx.report("orders", len(idx), len(idx))
    return Orders(idx, person, sess.channel[idx], coupon, line_order, line_sku, qty, price,
                  discount)


def _baskets(ctx: DemoContext, rng: np.random.Generator, idx: np.ndarray,
             person: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Main product plus Poisson extra lines of the same category.

    Extra lines share the visit's category so that a category's line count scales
    exactly with its visits: the holiday pattern (a multiplier on women's apparel
    and cosmetics visits) then shows up undiluted in order lines.
    """
    sess = sessions_of(ctx)
    pop = ctx.population
    aov = pop["aov_multiplier"][person]
    extra = rng.poisson(EXTRA_ITEMS_MEAN * np.clip(aov, 0.3, 4.0))
    extra = np.where(sess.kind[idx] == 2, 0, extra)  # livestream orders: the item only
    order = np.arange(len(idx))
    x_order = np.repeat(order, extra)
    x_person = person[x_order]
    x_cat = sess.category[idx][x_order]
    sampler = ProductSampler(ctx.catalog, pop, ctx.start)
    x_sku = sampler.sample(rng, x_person, x_cat, sess.day[idx][x_order], ctx.start)
    line_order = np.concatenate([order, x_order])
    line_sku = np.concatenate([sess.sku[idx], x_sku])
    # Drop repeated SKUs within an order (a second unit is quantity, not a line).
    key = line_order * ctx.catalog.size + line_sku
    _, first = np.unique(key, return_index=True)
    first.sort()
    sort = np.lexsort((first, line_order[first]))
    return line_order[first][sort], line_sku[first][sort]


def _add_sponges(ctx: DemoContext, rng: np.random.Generator, line_order: np.ndarray,
                 line_sku: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Foundation -> beauty sponge: add a sponge line to P_SPONGE_GIVEN_FOUNDATION of
    foundation baskets that have none yet."""
    sub = np.asarray(ctx.catalog["subcategory"])[line_sku]
    n_orders = int(line_order.max()) + 1 if len(line_order) else 0
    has_found = np.bincount(line_order, weights=sub == "foundation", minlength=n_orders) > 0
    has_sponge = np.bincount(line_order, weights=sub == "beauty_sponge", minlength=n_orders) > 0
    add = np.flatnonzero(has_found & ~has_sponge & (rng.random(n_orders) < P_SPONGE_GIVEN_FOUNDATION))
    sampler = ProductSampler(ctx.catalog, ctx.population, ctx.start)
    sponges = sampler.sample_in_subcategory(rng, "beauty_sponge", len(add))
    order = np.concatenate([line_order, add])
    sku = np.concatenate([line_sku, sponges])
    sort = np.argsort(order, kind="stable")
    return sku[sort], order[sort]


def _quantities(ctx: DemoContext, rng: np.random.Generator, sku: np.ndarray) -> np.ndarray:
    """One unit, sometimes 2-3 of consumables."""
    consumable = np.asarray(ctx.catalog["is_consumable"])[sku]
    extra = rng.choice([0, 1, 2], size=len(sku), p=[0.75, 0.2, 0.05])
    return (1 + np.where(consumable, extra, 0)).astype(np.int64)


def _coupons(ctx: DemoContext, rng: np.random.Generator, idx: np.ndarray,
             person: np.ndarray) -> np.ndarray:
    """Coupon per order on own channels: new-member coupon on sign-up visits, member-day
    coupon for bargain hunters on the 25th, threshold coupons otherwise (-1: none)."""
    sess = sessions_of(ctx)
    persona = persona_codes(ctx.population)[person]
    own = sess.channel[idx] < 3
    day = np.datetime64(ctx.start, "D") + sess.day[idx].astype("timedelta64[D]")
    member_day = (day - day.astype("datetime64[M]")).astype(int) + 1 == MEMBER_DAY
    uses = own & (rng.random(len(idx)) < COUPON_USE[persona])
    coupon = np.where(uses, np.where(rng.random(len(idx)) < 0.5, 1, 2), -1)
    coupon = np.where(uses & member_day & (persona == 3), 3, coupon)
    coupon = np.where(own & (sess.kind[idx] == 1), 0, coupon)
    return coupon.astype(np.int8)


def _discounts(rng: np.random.Generator, channel: np.ndarray, coupon: np.ndarray,
               line_order: np.ndarray, line_value: np.ndarray) -> np.ndarray:
    """Coupon amounts spread over lines by value; marketplace store promos on some lines.

    A threshold coupon whose threshold the basket misses is not applied (its code is
    then dropped by the caller via `applied_coupons`).
    """
    subtotal = np.bincount(line_order, weights=line_value, minlength=len(coupon))
    amount = np.zeros(len(coupon))
    for k, (_code, threshold, off) in enumerate(COUPONS):
        sel = (coupon == k) & (subtotal >= max(threshold, off if off >= 1 else 0) + 1)
        amount[sel] = off * subtotal[sel] if off < 1 else off
    share = line_value / np.maximum(subtotal[line_order], 0.01)
    discount = np.round(amount[line_order] * share, 2)
    promo = (channel[line_order] >= 4) & (rng.random(len(line_order)) < 0.3)
    discount += np.where(promo, np.round(line_value * rng.uniform(0.05, 0.15, len(line_order)),
                                         2), 0.0)
    return np.round(discount, 2)


def _store_member_discount(ctx: DemoContext, idx: np.ndarray, person: np.ndarray,
                           line_order: np.ndarray, line_value: np.ndarray) -> np.ndarray:
    """Store receipts: gold/diamond members pay 95%, any member 90% on member day."""
    sess = sessions_of(ctx)
    pop = ctx.population
    store = sess.channel[idx] == 3
    level = pop["member_level"][person]
    day = np.datetime64(ctx.start, "D") + sess.day[idx].astype("timedelta64[D]")
    member_day = (day - day.astype("datetime64[M]")).astype(int) + 1 == MEMBER_DAY
    member = np.asarray(pop["member_id"].is_valid())[person]
    rate = np.where(member & member_day, STORE_MEMBER_DAY_RATE,
                    np.where(np.isin(level, ["金卡", "钻石"]), STORE_GOLD_RATE, 1.0))
    rate = np.where(store, rate, 1.0)[line_order]
    return np.round(line_value * (1 - rate), 2)


def applied_coupons(orders: Orders) -> np.ndarray:
    """Coupon index per order, -1 where no discount from a coupon was applied."""
    own = orders.channel < 3
    disc = np.bincount(orders.line_order, weights=orders.line_discount, minlength=len(orders))
    return np.where(own & (disc > 0), orders.coupon, -1).astype(np.int8)
