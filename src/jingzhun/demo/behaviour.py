"""Tracking events of the web site, the app and the mini-program (Segment spec).

Every own-channel session expands into a short, ordered event sequence — landing
page/screen, maybe identify (log-in) and "Signed Up", search, list, product views,
add to cart, checkout, coupon, order — by `np.repeat` over a per-session count
matrix. Identity follows the SDKs: each browser cookie, app install and
mini-program openid is an `anonymousId` stream; once a member logs in on a stream
(identify), later events on that stream carry the `userId` too, as analytics.js
and the mobile SDKs persist it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jingzhun.demo.context import DemoContext, DemoFile
from jingzhun.demo.orders import orders_of
from jingzhun.demo.products import ProductSampler
from jingzhun.demo.sessions import DIGITAL, Sessions, sessions_of

KINDS = ("landing", "identify", "signed_up", "livestream", "search", "list", "view", "add",
         "cart", "checkout", "coupon", "order")
K = {name: i for i, name in enumerate(KINDS)}
LOGIN_RATE = np.array([0.30, 0.70, 0.90])  # per visit log-in chance (web, app, mini-program)
SEARCH_RATE, LIST_RATE = 0.30, 0.45
SPIKE_EXTRA_VIEWS_MEAN = 1.2  # a livestream visit's views beyond the first (ordinary ones: views_per_visit - 1)
ABANDONED_ADD_RATE = 0.25  # visits without order that still add to cart
MEAN_GAP_S = 40.0  # mean seconds between two events of a visit
CLOCK_SKEW_SHARE = 0.03  # app visits sent from a device with a wrong clock
MALFORMED_LINE_RATE = 0.0005  # lines cut short (SDK crash / partial write)


@dataclass
class Visits:
    """Own-channel sessions with their identity stream and log-in state."""

    index: np.ndarray  # int64 index into Sessions
    stream: np.ndarray  # int64 anonymous-id index: cookie / device / person (by channel)
    identify: np.ndarray  # bool: identify() sent during this visit
    user_before: np.ndarray  # bool: stream already logged in when the visit starts
    user_after: np.ndarray  # bool: logged in after the identify slot


@dataclass
class Events:
    """One element per event, in visit then sequence order."""

    visit: np.ndarray  # int64 index into Visits
    kind: np.ndarray  # int8 index into KINDS
    sku: np.ndarray  # int32, -1 where the event has no product
    utc_ms: np.ndarray  # int64 true event time
    logged_in: np.ndarray  # bool: the event carries userId
    malformed: np.ndarray  # bool: rendered as a truncated, non-JSON line


def write_behaviour_sources(ctx: DemoContext) -> list[DemoFile]:
    """events/{web,app,miniprogram}/events-YYYY-MM.jsonl."""
    from jingzhun.demo.events_json import write_event_files

    visits = build_visits(ctx)
    events = build_events(ctx, visits)
    ctx.shared["spike_realized"] = spike_views(ctx, visits, events)
    return write_event_files(ctx, visits, events)


def spike_views(ctx: DemoContext, visits: Visits, events: Events) -> dict[str, object]:
    """Web+app "Product Viewed" on the spike day (local) and the spike product's share."""
    from jingzhun.demo.spike import spike_day_offset, spike_sku

    sess = sessions_of(ctx)
    i = visits.index[events.visit]
    local_day = (events.utc_ms // 1000 + 8 * 3600) // 86400 - (
        np.datetime64(ctx.start, "D") - np.datetime64("1970-01-01", "D")).astype(int)
    views = (events.kind == K["view"]) & (sess.channel[i] <= 1)
    per_day = np.bincount(local_day[views], minlength=(ctx.end - ctx.start).days + 1)
    day = spike_day_offset(ctx)
    on_day = views & (local_day == day)
    share = float((events.sku[on_day] == spike_sku(ctx)).mean()) if on_day.any() else 0.0
    return {"realized": {"product_viewed_on_spike_day": int(per_day[day]),
                         "median_daily_product_viewed": float(np.median(per_day)),
                         "spike_product_share_on_day": round(share, 3)}}


def build_visits(ctx: DemoContext) -> Visits:
    sess = sessions_of(ctx)
    rng = ctx.rng("events.visits")
    index = np.flatnonzero(sess.channel < DIGITAL)
    stream = _streams(ctx, rng, sess, index)
    return Visits(index, stream, *_logins(ctx, rng, sess, index, stream))


def _streams(ctx: DemoContext, rng: np.random.Generator, sess: Sessions,
             index: np.ndarray) -> np.ndarray:
    """Which cookie (web), install (app) or openid (mini-program, = person) a visit uses."""
    pop = ctx.population
    person = sess.person[index]
    channel = sess.channel[index]
    out = person.copy()
    for ch, col in ((0, "anonymous_ids"), (1, "device_ids")):
        offsets = pop[col].offsets.to_numpy()
        sel = channel == ch
        p = person[sel]
        count = offsets[p + 1] - offsets[p]
        out[sel] = offsets[p] + (rng.random(len(p)) * count).astype(np.int64)
    return out


def _logins(ctx: DemoContext, rng: np.random.Generator, sess: Sessions, index: np.ndarray,
            stream: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log-in events and the persisted logged-in state per (channel, stream)."""
    pop = ctx.population
    person = sess.person[index]
    channel = sess.channel[index]
    signup = (pop["signup_date"] - np.datetime64(ctx.start, "D")).astype(np.int64)[person]
    member = np.asarray(pop["member_id"].is_valid())[person]
    wants = (sess.kind[index] == 1) | sess.purchase[index] | (
        rng.random(len(index)) < LOGIN_RATE[channel])
    login = member & (sess.day[index] >= signup) & wants
    key = channel.astype(np.int64) * 10**10 + stream
    order = np.lexsort((index, key))  # by stream, then time (index is time order)
    k, lg = key[order], login[order]
    group_start = np.maximum.accumulate(np.where(np.r_[True, k[1:] != k[:-1]],
                                                 np.arange(len(k)), 0))
    last_login = np.maximum.accumulate(np.where(lg, np.arange(len(k)), -1))
    prev = np.r_[-1, last_login[:-1]]
    before = np.empty(len(index), dtype=bool)
    before[order] = prev >= group_start
    return login & ~before, before, before | login


def build_events(ctx: DemoContext, visits: Visits) -> Events:
    """Expand visits into events with times, products and log-in flags."""
    sess = sessions_of(ctx)
    rng = ctx.rng("events.expand")
    counts = _slot_counts(ctx, rng, visits)
    n_vis, n_kinds = counts.shape
    kind = np.tile(np.arange(n_kinds, dtype=np.int8), n_vis).repeat(counts.ravel())
    visit = np.repeat(np.arange(n_vis), counts.sum(axis=1))
    sku = _event_skus(ctx, rng, visits, visit, kind)
    utc = _event_times(ctx, rng, sess, visits, visit)
    logged = np.where(kind == K["landing"], visits.user_before[visit], visits.user_after[visit])
    bad = rng.random(len(kind)) < MALFORMED_LINE_RATE
    ctx.report("events", len(kind), len(kind))
    return Events(visit, kind, sku, utc, logged, bad)


def _slot_counts(ctx: DemoContext, rng: np.random.Generator, visits: Visits) -> np.ndarray:
    """(visits, KINDS) matrix: how many events of each kind a visit has."""
    sess = sessions_of(ctx)
    i = visits.index
    n = len(i)
    spike = sess.kind[i] == 2
    buy = sess.purchase[i]
    added = buy | (rng.random(n) < ABANDONED_ADD_RATE)
    checkout = buy | (added & (rng.random(n) < 0.3))
    coupon = _has_coupon(ctx, i)
    c = np.zeros((n, len(KINDS)), dtype=np.int64)
    c[:, K["landing"]] = 1
    c[:, K["identify"]] = visits.identify
    c[:, K["signed_up"]] = sess.kind[i] == 1
    c[:, K["livestream"]] = spike
    c[:, K["search"]] = ~spike & (rng.random(n) < SEARCH_RATE)
    c[:, K["list"]] = ~spike & (rng.random(n) < LIST_RATE)
    c[:, K["view"]] = 1 + rng.poisson(np.where(spike, SPIKE_EXTRA_VIEWS_MEAN,
                                               round(ctx.views_per_visit - 1, 9)))
    c[:, K["add"]] = added
    c[:, K["cart"]] = added
    c[:, K["checkout"]] = checkout
    c[:, K["coupon"]] = buy & coupon
    c[:, K["order"]] = buy
    return c


def _has_coupon(ctx: DemoContext, session_index: np.ndarray) -> np.ndarray:
    """True where the visit's order used a coupon."""
    from jingzhun.demo.orders import applied_coupons

    orders = orders_of(ctx)
    flag = np.zeros(len(sessions_of(ctx)), dtype=bool)
    flag[orders.session] = applied_coupons(orders) >= 0
    return flag[session_index]


def _event_skus(ctx: DemoContext, rng: np.random.Generator, visits: Visits,
                visit: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """Product per event: the visit's main SKU, other SKUs of the category for later views."""
    sess = sessions_of(ctx)
    i = visits.index[visit]
    sku = np.where(np.isin(kind, [K["view"], K["add"], K["cart"], K["checkout"],
                                  K["livestream"]]),
                   sess.sku[i], -1).astype(np.int32)
    view = kind == K["view"]
    first_view = view & np.r_[True, (visit[1:] != visit[:-1]) | (kind[1:] != kind[:-1])]
    other = np.flatnonzero(view & ~first_view & (sess.kind[i] != 2))
    sampler = ProductSampler(ctx.catalog, ctx.population, ctx.start)
    sku[other] = sampler.sample(rng, sess.person[i[other]], sess.category[i[other]],
                                sess.day[i[other]], ctx.start)
    search = kind == K["search"]
    sku[search] = sess.sku[i[search]]  # the query is derived from the product searched
    return sku


def _event_times(ctx: DemoContext, rng: np.random.Generator, sess: Sessions,
                 visits: Visits, visit: np.ndarray) -> np.ndarray:
    """Visit start plus exponential gaps; the first event at the visit start."""
    gaps = rng.exponential(MEAN_GAP_S * 1000, len(visit)).astype(np.int64) + 1500
    first = np.r_[True, visit[1:] != visit[:-1]]
    gaps[first] = 0
    total = np.cumsum(gaps)
    start_total = np.maximum.accumulate(np.where(first, total, 0))
    start = sess.utc_ms(ctx.start)[visits.index] + rng.integers(0, 1000, len(visits.index))
    return start[visit] + total - start_total
