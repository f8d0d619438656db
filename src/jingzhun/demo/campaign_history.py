"""Past campaign sends, as the marketing-automation tool exports its message log.

Each campaign goes out on one channel (SMS, WeChat template message, app push,
e-mail), addressed the way that channel addresses people: phone, official-account
openid, member id, e-mail. A random `HOLDOUT_SHARE` of each audience is held out
(listed, never sent) so lift can be measured. Planted:

* click-through differs by channel and by hour of day: CTR(h) = peak_ctr * (FLOOR +
  (1 - FLOOR) * exp(-d^2 / (2 SIGMA^2))), d = hours from the channel's best hour;
* conversion of the treated group is the holdout's rate x (1 + lift), lift stated
  per campaign (intent-to-treat: it is what a treatment-vs-holdout comparison
  measures), concentrated on recipients who clicked.

Conversions carry order ids in our own "JZ" + yymmdd + 8-digit shape with sequence
numbers from 90000000, so they never collide with the commerce files' orders.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jingzhun.demo.context import DemoContext
from jingzhun.demo.marketing import (
    SECONDS_PER_DAY,
    SourceResult,
    day0,
    emit,
    fmt_time,
    gather,
    notnull,
    pick_malformed,
    set_rows,
    span_days,
)
from jingzhun.demo.vectors import concat, digit_strings


@dataclass(frozen=True)
class MessageChannel:
    name: str
    peak_ctr: float  # clicks / delivered at the best hour
    best_hour: int
    deliver_rate: float
    open_rate: float | None  # None: the channel reports no opens
    unsubscribe_rate: float  # per delivered message


CHANNELS: tuple[MessageChannel, ...] = (
    MessageChannel("sms", 0.035, 12, 0.97, None, 0.003),
    MessageChannel("wechat_template", 0.09, 20, 0.95, None, 0.001),
    MessageChannel("app_push", 0.06, 21, 0.85, 0.12, 0.002),
    MessageChannel("email", 0.02, 10, 0.92, 0.18, 0.005),
)
FLOOR = 0.35
SIGMA = 1.5  # hours
SEND_HOURS = np.arange(8, 23)  # campaigns are sent across 08:00-22:59 (uniform)
CAMPAIGNS_PER_WEEK = 2
HOLDOUT_SHARE = 0.10
SENDS_PER_PERSON = (2.0, 60.0)  # clip(2M / persons, lo, hi): volume stays manageable
BASE_CONVERSION = (0.015, 0.04)  # holdout 7-day conversion, uniform per campaign
LIFT = (0.15, 0.60)  # relative lift, uniform per campaign; every 7th campaign has none
MALFORMED_RATE = 0.003  # recipient missing
ORDER_SEQ_BASE = 90_000_000
_THEMES = ("会员日专享", "新品上市", "限时折扣", "积分兑换", "生日关怀", "沉睡唤醒", "节日大促", "满减券发放")


@dataclass
class Campaign:
    campaign_id: str
    name: str
    channel: int
    day: int
    base: float
    lift: float


def write_message_history(ctx: DemoContext) -> SourceResult:
    """campaigns/message_history.csv and the response truth."""
    rng = ctx.rng("campaigns")
    campaigns = _campaigns(rng, ctx)
    size = _per_campaign(ctx, len(campaigns))
    reach = _reach_lists(ctx)
    parts = [_audience(rng, ctx, reach, i, c, size) for i, c in enumerate(campaigns)]
    rows = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    _respond(rng, rows, campaigns)
    table, bad = _table(rng, ctx, rows, campaigns)
    file = emit(ctx, "message_history", "campaigns/message_history.csv", table, bad,
                "Campaign send log with holdout rows, English headers")
    return SourceResult(files=[file], truth=_truth(campaigns, rows))


def ctr_at(channel: MessageChannel, hour: np.ndarray) -> np.ndarray:
    """The planted click-through rate of a channel at each send hour."""
    d = np.abs(np.asarray(hour) - channel.best_hour)
    d = np.minimum(d, 24 - d)
    return channel.peak_ctr * (FLOOR + (1 - FLOOR) * np.exp(-(d**2) / (2 * SIGMA**2)))


def _campaigns(rng: np.random.Generator, ctx: DemoContext) -> list[Campaign]:
    """Twice a week, channels in shuffled rotation; a loop over ~200 campaigns."""
    days = span_days(ctx)
    count = max(len(CHANNELS) * 4, round(days / 7 * CAMPAIGNS_PER_WEEK))
    day = np.sort(rng.integers(0, days - 7, count))
    channel = rng.permutation(np.resize(np.arange(len(CHANNELS)), count))
    base = rng.uniform(*BASE_CONVERSION, count)
    lift = np.where(np.arange(count) % 7 == 6, 0.0, rng.uniform(*LIFT, count))
    theme = rng.integers(0, len(_THEMES), count)
    out = []
    for i in range(count):
        ym = str(np.datetime64(ctx.start, "D") + int(day[i]))[:7].replace("-", "")
        out.append(Campaign(f"CMP{ym}{i + 1:04d}", f"{ym[:4]}年{int(ym[4:])}月{_THEMES[theme[i]]}",
                            int(channel[i]), int(day[i]), float(base[i]), float(lift[i])))
    return out


def _per_campaign(ctx: DemoContext, campaigns: int) -> int:
    n = ctx.population.size
    per_person = float(np.clip(2_000_000 / n, *SENDS_PER_PERSON))
    return max(1, round(per_person * n / campaigns))


def _audience(rng: np.random.Generator, ctx: DemoContext, reach: dict, index: int,
              c: Campaign, size: int) -> dict[str, np.ndarray]:
    """Reachable persons on the channel that day; a random 10% of them held out."""
    person, address = _reachable(ctx, reach, CHANNELS[c.channel].name, c.day)
    k = min(size, int(0.9 * len(person)))
    pick = np.sort(rng.choice(len(person), size=k, replace=False))
    holdout = rng.random(k) < HOLDOUT_SHARE
    hour = SEND_HOURS[rng.integers(0, len(SEND_HOURS), k)]
    sent = (day0(ctx.start) + c.day * SECONDS_PER_DAY + hour * 3600
            + rng.integers(0, 3600, k))
    return {"campaign": np.full(k, index, dtype=np.int64),
            "person": person[pick], "address": address[pick], "holdout": holdout,
            "hour": hour, "sent": sent}


def _reach_lists(ctx: DemoContext) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per address channel, persons who have the address, sorted by signup day.

    Computed once so each campaign's audience is a prefix (signed up by then),
    not a fresh pass over every person.
    """
    pop = ctx.population
    signup = (np.asarray(pop["signup_date"], dtype="datetime64[D]")
              - np.datetime64(ctx.start, "D")).astype(np.int64)
    has = {"sms": np.ones(pop.size, dtype=bool),
           "app_push": notnull(pop["member_id"]) & np.asarray(pop["uses_app"], dtype=bool),
           "email": notnull(pop["email"])}
    out = {}
    for channel, mask in has.items():  # three channels
        idx = np.flatnonzero(mask)
        order = np.argsort(signup[idx], kind="stable")
        out[channel] = (idx[order], signup[idx][order])
    return out


def _reachable(ctx: DemoContext, reach: dict, channel: str,
               day: int) -> tuple[np.ndarray, np.ndarray]:
    """(person index, address index) of who the channel can reach on `day`.

    The address index points into the channel's address column (phones, member
    ids, e-mails: persons; WeChat: the official-account follower list, following
    that day).
    """
    if channel == "wechat_template":
        oa = ctx.shared["marketing.wechat_oa"]
        at = day0(ctx.start) + day * SECONDS_PER_DAY + 8 * 3600
        ok = np.flatnonzero((oa["follow"] <= at) & (oa["unfollow"] > at))
        return oa["person"][ok], ok
    person, signup = reach[channel]
    person = person[: np.searchsorted(signup, day, side="right")]
    return person, person


def _respond(rng: np.random.Generator, rows: dict[str, np.ndarray],
             campaigns: list[Campaign]) -> None:
    """Delivery, opens, clicks, unsubscribes and conversions, in place."""
    ch_of = np.array([c.channel for c in campaigns])[rows["campaign"]]
    n = len(ch_of)
    treated = ~rows["holdout"]
    deliver = np.array([c.deliver_rate for c in CHANNELS])[ch_of]
    rows["delivered"] = treated & (rng.random(n) < deliver)
    ctr = np.zeros(n)
    for i, ch in enumerate(CHANNELS):  # four channels
        ctr[ch_of == i] = ctr_at(ch, rows["hour"][ch_of == i])
    rows["clicked"] = rows["delivered"] & (rng.random(n) < ctr)
    open_rate = np.array([c.open_rate or 0.0 for c in CHANNELS])[ch_of]
    rows["opened"] = rows["clicked"] | (rows["delivered"] & (rng.random(n) < open_rate))
    rows["opened"] &= open_rate > 0
    unsub = np.array([c.unsubscribe_rate for c in CHANNELS])[ch_of]
    rows["unsubscribed"] = rows["delivered"] & (rng.random(n) < unsub)
    rows["converted"] = rng.random(n) < _conversion_p(rows, campaigns)
    rows["order_lag"] = rng.integers(0, 7, n)  # days from the campaign to the order


def _conversion_p(rows: dict[str, np.ndarray], campaigns: list[Campaign]) -> np.ndarray:
    """Holdout: base. Treated: base * (1 + lift * w), w averaging 1 over the treated.

    w = (0.5 + 0.5 * clicked / click_rate) / delivery_rate on delivered rows and 0 on
    undelivered ones, with the campaign's realized rates, so the intent-to-treat
    lift is exactly the stated one in expectation.
    """
    camp = rows["campaign"]
    base = np.array([c.base for c in campaigns])[camp]
    lift = np.array([c.lift for c in campaigns])[camp]
    treated = ~rows["holdout"]
    n_t = np.bincount(camp, weights=treated, minlength=len(campaigns))
    n_d = np.bincount(camp, weights=rows["delivered"], minlength=len(campaigns))
    n_c = np.bincount(camp, weights=rows["clicked"], minlength=len(campaigns))
    dr = (n_d / np.maximum(n_t, 1))[camp]
    cr = (n_c / np.maximum(n_d, 1))[camp]
    w = np.where(rows["delivered"],
                 (0.5 + 0.5 * rows["clicked"] / np.maximum(cr, 1e-9)) / np.maximum(dr, 1e-9), 0.0)
    w = np.where(cr > 0, w, rows["delivered"] / np.maximum(dr, 1e-9))
    return np.minimum(np.where(treated, base * (1 + lift * w), base), 1.0)


def _table(rng: np.random.Generator, ctx: DemoContext, rows: dict[str, np.ndarray],
           campaigns: list[Campaign]) -> tuple[pa.Table, int]:
    camp = rows["campaign"]
    n = len(camp)
    ch_of = np.array([c.channel for c in campaigns])[camp]
    sent = rows["sent"]
    treated = ~rows["holdout"]
    clicked_at = sent + 30 + rng.exponential(20 * 60, n).astype(np.int64)
    opened_at = np.minimum(sent + 10 + rng.exponential(30 * 60, n).astype(np.int64),
                           np.where(rows["clicked"], clicked_at - 5, np.iinfo(np.int64).max))
    fmt = "%Y-%m-%d %H:%M:%S"
    bad = pick_malformed(rng, n, MALFORMED_RATE)
    table = pa.table({
        "campaign_id": gather(np.array([c.campaign_id for c in campaigns], dtype=object), camp),
        "campaign_name": gather(np.array([c.name for c in campaigns], dtype=object), camp),
        "channel": gather(np.array([c.name for c in CHANNELS], dtype=object), ch_of),
        "recipient": set_rows(_recipients(ctx, rows, ch_of), bad, None),
        "group": pa.array(np.where(treated, "treatment", "holdout")),
        "sent_at": fmt_time(sent, fmt, treated),
        "delivered": _flag(rows["delivered"], treated),
        "opened_at": fmt_time(opened_at, fmt, rows["opened"]),
        "clicked_at": fmt_time(clicked_at, fmt, rows["clicked"]),
        "unsubscribed": _flag(rows["unsubscribed"], treated),
        "converted_order_id": _order_ids(ctx, rows, camp, campaigns),
    })
    order = np.lexsort((rows["sent"], camp))
    return table.take(pa.array(order)), len(bad)


def _flag(values: np.ndarray, present: np.ndarray) -> pa.Array:
    text = pa.array(np.where(values, "true", "false"))
    return pc.if_else(pa.array(present), text, pa.scalar(None, pa.string()))


def _recipients(ctx: DemoContext, rows: dict[str, np.ndarray], ch_of: np.ndarray) -> pa.Array:
    """Each channel's own address: phone, OA openid, member id or e-mail."""
    pop = ctx.population
    addr = rows["address"]
    wechat = ctx.shared["marketing.wechat_oa"]["openid"]
    is_wx = ch_of == 1
    columns = [gather(pop["phone"], np.where(ch_of == 0, addr, 0)),
               gather(wechat, np.where(is_wx, addr, 0)) if len(wechat) else
               pa.nulls(len(addr), pa.string()),
               gather(pop["member_id"], np.where(ch_of == 2, addr, 0)),
               gather(pop["email"], np.where(ch_of == 3, addr, 0))]
    return pc.choose(pa.array(ch_of.astype(np.int8)), *columns)


def _order_ids(ctx: DemoContext, rows: dict[str, np.ndarray], camp: np.ndarray,
               campaigns: list[Campaign]) -> pa.Array:
    """Order numbers for conversions, placed within 7 days of the campaign day."""
    conv = rows["converted"]
    day = np.array([c.day for c in campaigns])[camp] + rows["order_lag"]
    ymd = fmt_time(day0(ctx.start) + np.minimum(day, span_days(ctx) - 1) * SECONDS_PER_DAY,
                   "%Y%m%d")
    seq = ORDER_SEQ_BASE + np.cumsum(conv)
    ids = concat("JZ", pc.utf8_slice_codeunits(ymd, 2, 8), digit_strings(seq, 8))
    return pc.if_else(pa.array(conv), ids, pa.scalar(None, pa.string()))


def _truth(campaigns: list[Campaign], rows: dict[str, np.ndarray]) -> dict[str, object]:
    camp = rows["campaign"]
    t = ~rows["holdout"]
    n_t = np.bincount(camp, weights=t, minlength=len(campaigns))
    base = np.array([c.base for c in campaigns])
    lift = np.array([c.lift for c in campaigns])
    hours = SEND_HOURS
    return {
        "channels": {ch.name: {
            "peak_ctr": ch.peak_ctr, "best_hour": ch.best_hour, "deliver_rate": ch.deliver_rate,
            "open_rate": ch.open_rate, "unsubscribe_rate": ch.unsubscribe_rate,
            "expected_ctr_over_send_hours": float(ctr_at(ch, hours).mean()),
        } for ch in CHANNELS},
        "ctr_curve": "peak_ctr*(floor+(1-floor)*exp(-d^2/(2*sigma^2))), d = circular hours "
                     "from best_hour; CTR = clicks/delivered",
        "floor": FLOOR, "sigma_hours": SIGMA, "send_hours": [int(hours[0]), int(hours[-1])],
        "holdout_share": HOLDOUT_SHARE,
        "lift_definition": "treatment conversion / holdout conversion - 1 (intent to treat)",
        "pooled_expected_lift": float((n_t * base * (1 + lift)).sum() / (n_t * base).sum() - 1),
        "campaigns": [{"campaign_id": c.campaign_id, "channel": CHANNELS[c.channel].name,
                       "day_index": c.day, "holdout_conversion": round(c.base, 5),
                       "lift": round(c.lift, 5), "treated": int(n_t[i])}
                      for i, c in enumerate(campaigns)],
        "malformed_rate": MALFORMED_RATE, "malformed_rule": "recipient is empty",
    }
