"""Visits ("sessions") of every person on every channel: the behaviour truth.

One session is one visit: a browse on the web site, the app or the mini-program,
a marketplace order, or a store visit with a receipt. Events, online orders and
POS receipts are all rendered from sessions, so the planted patterns show up
consistently across sources. Sessions are drawn as a thinned Poisson process:

1. each person gets Poisson(BASE_SESSIONS x activity x active share) candidates;
2. candidate days follow a curve that already contains every boost
   (traffic x holiday multiplier x member-day multiplier), sampled by inverse CDF
   restricted to the person's active window;
3. candidates are kept with probability target/candidate, where the target boost
   applies only to whom the pattern concerns (women x apparel/cosmetics inside
   holiday windows; bargain hunters on member days), times the churn decay.

Everything is array arithmetic over all candidates at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

from jingzhun.demo.calendar import (
    HOLIDAY_MULTIPLIER,
    daily_traffic,
    day_index,
    holiday_window_mask,
)
from jingzhun.demo.context import PERSONAS, DemoContext, Population
from jingzhun.demo.people import CHURN_HALF_LIFE_DAYS
from jingzhun.demo.products import ProductSampler
from jingzhun.demo.spike import spike_sessions
from jingzhun.demo.vectors import choice_per_row

CHANNELS = ("web", "app", "miniprogram", "store", "tmall", "jd", "douyin_shop")
DIGITAL = 3  # channel codes below this are our own tracked channels
BASE_SESSIONS = 6.0  # candidate visits per person over the whole period at activity 1
MEMBER_DAY = 25  # 每月25日会员日: bargain hunters' promotion day
MEMBER_DAY_MULTIPLIER = 4.0  # bargain hunters' visit intensity on member days

# Per persona (PERSONAS order) x channel (CHANNELS order) preference weights.
CHANNEL_WEIGHTS = np.array([
    [1.0, 2.5, 0.8, 2.0, 1.0, 0.4, 0.8],
    [1.2, 2.0, 0.6, 1.2, 0.8, 0.3, 2.0],
    [0.6, 0.6, 2.5, 2.5, 0.5, 0.8, 0.3],
    [1.2, 1.0, 1.2, 1.2, 1.2, 1.2, 0.8],
    [0.6, 1.0, 0.5, 6.0, 0.5, 0.2, 0.1],
])
# Per persona category mix over CATEGORIES (apparel, cosmetics, beauty_tools, home).
CATEGORY_MIX = np.array([
    [0.12, 0.60, 0.22, 0.06],
    [0.70, 0.18, 0.05, 0.07],
    [0.15, 0.12, 0.03, 0.70],
    [0.30, 0.30, 0.10, 0.30],
    [0.35, 0.40, 0.10, 0.15],
])
# Probability that a session on an own digital channel ends in an order.
CONVERSION = np.array([0.22, 0.18, 0.25, 0.08, 0.35])
BARGAIN_MEMBER_DAY_CONVERSION = 0.55
# Hour-of-day peaks per persona: (hour, weight, spread in hours).
HOUR_PEAKS = (
    ((12.5, 0.25, 1.0), (21.0, 0.75, 1.5)),
    ((13.0, 0.2, 1.0), (22.8, 0.8, 1.2)),
    ((10.0, 0.35, 1.2), (15.0, 0.25, 1.5), (20.5, 0.4, 1.2)),
    ((0.2, 0.3, 0.6), (20.0, 0.7, 1.5)),
    ((15.0, 0.6, 2.0), (20.0, 0.4, 1.5)),
)
STORE_HOURS = (10, 22)


@dataclass
class Sessions:
    """One element per session, sorted by local time. day: offset from ctx.start."""

    person: np.ndarray  # int64 person_key
    day: np.ndarray  # int32
    second: np.ndarray  # int32, local (Asia/Shanghai) second of day
    channel: np.ndarray  # int8 index into CHANNELS
    category: np.ndarray  # int8 index into CATEGORIES
    sku: np.ndarray  # int32 index into the catalogue: the main product of the visit
    purchase: np.ndarray  # bool
    kind: np.ndarray  # int8: 0 normal, 1 sign-up visit, 2 livestream spike visit

    def __len__(self) -> int:
        return len(self.person)

    def local_seconds(self, start: date) -> np.ndarray:
        """Seconds since 1970-01-01 in local wall time (no time zone)."""
        epoch_day = (np.datetime64(start, "D") - np.datetime64("1970-01-01", "D")).astype(int)
        return (epoch_day + self.day.astype(np.int64)) * 86400 + self.second

    def utc_ms(self, start: date) -> np.ndarray:
        """Milliseconds since the epoch in UTC (Asia/Shanghai is UTC+8, no DST)."""
        return (self.local_seconds(start) - 8 * 3600) * 1000


def sessions_of(ctx: DemoContext) -> Sessions:
    """The sessions of this context, simulated once and cached in ctx.shared."""
    if "sessions" not in ctx.shared:
        ctx.shared["sessions"] = simulate_sessions(ctx)
    return ctx.shared["sessions"]  # type: ignore[return-value]


def simulate_sessions(ctx: DemoContext) -> Sessions:
    """Normal, sign-up and livestream-spike sessions, concatenated and time-sorted."""
    pop = ctx.population
    sampler = ProductSampler(ctx.catalog, pop, ctx.start)
    normal = _normal_sessions(ctx, sampler)
    signup = _signup_sessions(ctx, sampler)
    parts = [normal, signup, spike_sessions(ctx, normal)]
    merged = Sessions(**{f: np.concatenate([getattr(p, f) for p in parts])
                         for f in Sessions.__dataclass_fields__})
    order = np.lexsort((merged.person, merged.second, merged.day))
    ctx.report("sessions", len(order), len(order))
    return Sessions(**{f: getattr(merged, f)[order] for f in Sessions.__dataclass_fields__})


def _normal_sessions(ctx: DemoContext, sampler: ProductSampler) -> Sessions:
    rng = ctx.rng("sessions.normal")
    pop = ctx.population
    persona = persona_codes(pop)
    first = active_from(ctx)
    span = (ctx.end - ctx.start).days + 1
    lam = BASE_SESSIONS * pop["activity"] * (span - first) / span
    person = np.repeat(np.arange(pop.size), rng.poisson(lam))
    day = _sample_days(ctx, rng, first[person])
    category = choice_per_row(rng, CATEGORY_MIX[persona[person]]).astype(np.int8)
    keep = rng.random(len(person)) < _keep_probability(ctx, person, day, category)
    person, day, category = person[keep], day[keep], category[keep]
    channel = _channels(rng, pop, persona[person], person)
    purchase = _purchases(ctx, rng, persona[person], person, day, channel)
    second = hour_seconds(rng, persona[person], channel)
    sku = sampler.sample(rng, person, category, day, ctx.start)
    return Sessions(person, day.astype(np.int32), second, channel, category, sku, purchase,
                    np.zeros(len(person), dtype=np.int8))


def persona_codes(pop: Population) -> np.ndarray:
    """Persona as an int index into PERSONAS."""
    codes = np.zeros(pop.size, dtype=np.int8)
    for k, name in enumerate(PERSONAS):
        codes[pop["persona"] == name] = k
    return codes


def active_from(ctx: DemoContext) -> np.ndarray:
    """First active day per person (offset from start): the later of start and signup."""
    signup = (ctx.population["signup_date"] - np.datetime64(ctx.start, "D")).astype(np.int64)
    return np.maximum(signup, 0)


def candidate_curve(ctx: DemoContext) -> np.ndarray:
    """Per-day candidate intensity: traffic x holiday boost x member-day boost."""
    days = day_index(ctx.start, ctx.end)
    curve = daily_traffic(ctx.start, ctx.end)
    curve = curve * np.where(holiday_window_mask(ctx.start, ctx.end), HOLIDAY_MULTIPLIER, 1.0)
    return curve * np.where(_member_day_mask(days), MEMBER_DAY_MULTIPLIER, 1.0)


def _member_day_mask(days: np.ndarray) -> np.ndarray:
    day_of_month = (days - days.astype("datetime64[M]")).astype(int) + 1
    return day_of_month == MEMBER_DAY


def _sample_days(ctx: DemoContext, rng: np.random.Generator, first: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling of the candidate curve restricted to [first, end]."""
    cdf = np.concatenate([[0.0], np.cumsum(candidate_curve(ctx))])
    lo = cdf[first]
    u = lo + rng.random(len(first)) * (cdf[-1] - lo)
    return np.clip(np.searchsorted(cdf, u, side="right") - 1, first, len(cdf) - 2)


def _keep_probability(ctx: DemoContext, person: np.ndarray, day: np.ndarray,
                      category: np.ndarray) -> np.ndarray:
    """target / candidate intensity, times the churn decay."""
    pop = ctx.population
    days = day_index(ctx.start, ctx.end)
    window = holiday_window_mask(ctx.start, ctx.end)[day]
    member_day = _member_day_mask(days)[day]
    target_h = (pop["gender"][person] == "F") & (category <= 1)  # apparel, cosmetics
    keep = np.where(window & ~target_h, 1.0 / HOLIDAY_MULTIPLIER, 1.0)
    bargain = persona_codes(pop)[person] == 3
    keep = keep * np.where(member_day & ~bargain, 1.0 / MEMBER_DAY_MULTIPLIER, 1.0)
    return keep * churn_decay(ctx, person, day)


def churn_decay(ctx: DemoContext, person: np.ndarray, day: np.ndarray) -> np.ndarray:
    """exp(-ln2 x days since churn / half-life) after churn_date, 1 before (and if none)."""
    churn = ctx.population["churn_date"][person]
    since = (days_of(ctx, day) - churn).astype("timedelta64[D]").astype(np.float64)
    since = np.where(np.isnat(churn), 0.0, np.maximum(since, 0.0))
    return np.exp(-np.log(2) * since / CHURN_HALF_LIFE_DAYS)


def days_of(ctx: DemoContext, day: np.ndarray) -> np.ndarray:
    return np.datetime64(ctx.start, "D") + day.astype("timedelta64[D]")


def _channels(rng: np.random.Generator, pop: Population, persona: np.ndarray,
              person: np.ndarray) -> np.ndarray:
    """Channel per session by persona preference, limited to channels the person uses."""
    use = np.ones((len(person), len(CHANNELS)))
    for k, col in enumerate(("uses_web", "uses_app", "uses_miniprogram", "shops_offline")):
        use[:, k] = pop[col][person]
    # Douyin shop buyers need a Douyin account.
    use[:, CHANNELS.index("douyin_shop")] = np.asarray(pop["douyin_user_id"].is_valid())[person]
    return choice_per_row(rng, CHANNEL_WEIGHTS[persona] * use).astype(np.int8)


def _purchases(ctx: DemoContext, rng: np.random.Generator, persona: np.ndarray,
               person: np.ndarray, day: np.ndarray, channel: np.ndarray) -> np.ndarray:
    """Own digital channels convert at the persona rate (members only); others always buy."""
    days = day_index(ctx.start, ctx.end)
    rate = CONVERSION[persona]
    rate = np.where((persona == 3) & _member_day_mask(days)[day],
                    BARGAIN_MEMBER_DAY_CONVERSION, rate)
    member = np.asarray(ctx.population["member_id"].is_valid())[person]
    digital = channel < DIGITAL
    return np.where(digital, member & (rng.random(len(person)) < rate), True)


def hour_seconds(rng: np.random.Generator, persona: np.ndarray,
                 channel: np.ndarray) -> np.ndarray:
    """Local second of day: persona hour peaks online, opening hours in stores."""
    n = len(persona)
    out = np.empty(n, dtype=np.float64)
    for k, peaks in enumerate(HOUR_PEAKS):
        sel = np.flatnonzero(persona == k)
        weights = np.array([p[1] for p in peaks])
        which = rng.choice(len(peaks), size=len(sel), p=weights / weights.sum())
        centre = np.array([p[0] for p in peaks])[which]
        spread = np.array([p[2] for p in peaks])[which]
        out[sel] = rng.normal(centre, spread) % 24
    background = rng.random(n) < 0.12  # some traffic at any hour, thinner at night
    out = np.where(background, rng.uniform(7, 24, n), out)
    store = channel == CHANNELS.index("store")
    out = np.where(store, _store_hours(rng, n), out)
    return (out * 3600).astype(np.int32) % 86400


def _store_hours(rng: np.random.Generator, n: int) -> np.ndarray:
    """Store visits: afternoon and after-work peaks inside opening hours (10:00-22:00)."""
    peak = np.where(rng.random(n) < 0.5, rng.normal(15.0, 2.0, n), rng.normal(19.0, 1.5, n))
    uniform = rng.uniform(STORE_HOURS[0], STORE_HOURS[1], n)
    inside = (peak >= STORE_HOURS[0]) & (peak < STORE_HOURS[1])
    return np.where(inside, peak, uniform)


def _signup_sessions(ctx: DemoContext, sampler: ProductSampler) -> Sessions:
    """One visit on the sign-up day for members who register online during the period."""
    rng = ctx.rng("sessions.signup")
    pop = ctx.population
    channel = signup_channels(ctx)
    first = (pop["signup_date"] - np.datetime64(ctx.start, "D")).astype(np.int64)
    person = np.flatnonzero((first >= 0) & (channel >= 0) & (channel < DIGITAL))
    persona = persona_codes(pop)[person]
    category = choice_per_row(rng, CATEGORY_MIX[persona]).astype(np.int8)
    day = first[person]
    sku = sampler.sample(rng, person, category, day, ctx.start)
    return Sessions(person, day.astype(np.int32), hour_seconds(rng, persona, channel[person]),
                    channel[person].astype(np.int8), category, sku,
                    rng.random(len(person)) < 0.3, np.ones(len(person), dtype=np.int8))


def signup_channels(ctx: DemoContext) -> np.ndarray:
    """Where each member registered: a digital channel or the store (code 3); -1 if none.

    Members who shop offline register in their home store 40% of the time; the rest
    register on their preferred own channel. Cached in ctx.shared for the CRM export.
    """
    if "signup_channel" in ctx.shared:
        return ctx.shared["signup_channel"]  # type: ignore[return-value]
    pop = ctx.population
    rng = ctx.rng("sessions.signup_channel")
    use = np.stack([pop["uses_web"], pop["uses_app"], pop["uses_miniprogram"]], axis=1)
    weights = CHANNEL_WEIGHTS[persona_codes(pop)][:, :3] * use + 1e-9
    channel = choice_per_row(rng, weights)
    in_store = pop["shops_offline"] & ((rng.random(pop.size) < 0.4) | ~use.any(axis=1))
    channel = np.where(in_store, 3, channel)
    member = np.asarray(pop["member_id"].is_valid())
    channel = np.where(member, channel, -1).astype(np.int8)
    ctx.shared["signup_channel"] = channel
    return channel
