"""Ad spend by day x channel x campaign, with a known media-mix response.

Each channel's true incremental sales follow a geometric adstock and a saturating
(Michaelis-Menten) curve:

    adstock[t] = spend[t] + decay * adstock[t-1]
    incremental_sales[t] = max_effect * adstock[t] / (adstock[t] + half_saturation)

so a budget optimizer has something true to find. Xiaohongshu is deliberately
under-invested: its spend sits far below its half-saturation point, so its marginal
ROI at current spend is the highest (and its platform-reported ROAS the lowest,
because its sales land on other platforms: the trap an attribution report falls in).
Ad platforms export English column names; this file follows them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from jingzhun.demo.context import DemoContext
from jingzhun.demo.marketing import (
    SourceResult,
    day0,
    emit,
    fmt_time,
    gather,
    money,
    pick_malformed,
    promo_curve,
    set_rows,
    span_days,
    to_str,
    write_truth_table,
)


@dataclass(frozen=True)
class Channel:
    """True response and platform behaviour of one ad channel (amounts at scale 1)."""

    name: str
    daily_spend: float  # mean daily spend, CNY
    decay: float  # adstock carry-over per day
    half_saturation: float  # adstocked spend at which the effect is half its maximum
    max_effect: float  # asymptotic incremental sales per day, CNY
    cpm: float  # CNY per 1000 impressions
    ctr: float
    over_attribution: float  # platform-reported conversion value / true incremental sales
    id_digits: int
    zh: str


CHANNELS: tuple[Channel, ...] = (
    Channel("baidu_sem", 50_000, 0.15, 40_000, 180_000, 35.0, 0.045, 1.4, 10, "百度搜索"),
    Channel("douyin_ads", 90_000, 0.45, 110_000, 420_000, 28.0, 0.018, 2.2, 16, "巨量引擎"),
    Channel("wechat_moments", 40_000, 0.35, 50_000, 160_000, 55.0, 0.012, 1.6, 9, "朋友圈"),
    Channel("tmall_ztc", 70_000, 0.10, 45_000, 200_000, 22.0, 0.030, 1.8, 9, "直通车"),
    Channel("weibo_ads", 20_000, 0.30, 25_000, 50_000, 18.0, 0.008, 2.5, 8, "微博粉丝通"),
    Channel("xiaohongshu", 12_000, 0.55, 120_000, 300_000, 60.0, 0.025, 0.8, 12, "小红书聚光"),
)
UNDER_INVESTED = "xiaohongshu"
ALWAYS_ON_SHARE = 0.6  # of a channel's spend; promotional flights bring the rest
AOV = 260.0  # CNY per platform-reported conversion
MALFORMED_RATE = 0.002  # spend "--" (the platforms' "no data" mark)
MIN_SCALE = 0.02  # smallest business size the budgets shrink to
_PROMOS = ("新品首发", "会员日", "品类日", "周末闪促", "达人种草", "直播预热", "年货节", "开学季")
_CATEGORIES = ("美妆", "服饰", "美容工具", "家居")


@dataclass
class Campaigns:
    """Campaign definitions: channel index, active day range, daily budget, names."""

    channel: np.ndarray
    first: np.ndarray
    last: np.ndarray
    budget: np.ndarray
    always_on: np.ndarray
    name: np.ndarray


def write_ads(ctx: DemoContext) -> SourceResult:
    """ads/ad_spend.csv, the true daily response per channel and the curve parameters."""
    rng = ctx.rng("ads")
    scale = max(ctx.population.size / 1_000_000, MIN_SCALE)
    campaigns = _campaigns(rng, ctx)
    rows = _daily_rows(rng, ctx, campaigns, scale)
    spend = _channel_spend(rows, span_days(ctx))
    adstock, incremental = response(spend, scale)
    write_truth_table(ctx, "ad_response.parquet", _response_table(ctx, spend, adstock,
                                                                  incremental))
    table, bad = _spend_table(rng, ctx, rows, campaigns, incremental, spend)
    file = emit(ctx, "ad_spend", "ads/ad_spend.csv", table, bad,
                "Daily ad spend by channel and campaign with platform-reported conversions")
    return SourceResult(files=[file], truth=_truth(spend, scale))


def response(spend: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """True adstock and incremental sales, arrays (channels, days), from daily spend."""
    decay = np.array([c.decay for c in CHANNELS])[:, None]
    adstock = np.zeros_like(spend)
    carry = np.zeros(len(CHANNELS))
    for t in range(spend.shape[1]):  # days (~730), vectorized over channels
        carry = spend[:, t] + decay[:, 0] * carry
        adstock[:, t] = carry
    k = np.array([c.half_saturation for c in CHANNELS])[:, None] * scale
    beta = np.array([c.max_effect for c in CHANNELS])[:, None] * scale
    return adstock, beta * adstock / (adstock + k)


def marginal_roi(daily_spend: np.ndarray, scale: float) -> np.ndarray:
    """Long-run extra sales per extra CNY/day at a steady daily spend, per channel.

    At a steady spend x the adstock is x / (1 - decay), so
    d sales / d x = max_effect * K / (adstock + K)^2 / (1 - decay).
    """
    decay = np.array([c.decay for c in CHANNELS])
    k = np.array([c.half_saturation for c in CHANNELS]) * scale
    beta = np.array([c.max_effect for c in CHANNELS]) * scale
    a = np.asarray(daily_spend, dtype=float) / (1 - decay)
    return beta * k / (a + k) ** 2 / (1 - decay)


def _campaigns(rng: np.random.Generator, ctx: DemoContext) -> Campaigns:
    """Per channel one always-on campaign per year and 2-6-week promotional flights."""
    days = span_days(ctx)
    parts = []
    for ci, ch in enumerate(CHANNELS):  # six channels
        years = np.arange(0, days, 365)
        flights = rng.integers(0, days - 14, max(2, days // 45))
        lengths = rng.integers(14, 43, len(flights))
        first = np.concatenate([years, np.sort(flights)])
        last = np.concatenate([np.minimum(years + 364, days - 1),
                               np.minimum(np.sort(flights) + lengths, days - 1)])
        on = np.arange(len(first)) < len(years)
        flight_days = max(int((last - first + 1)[~on].sum()), 1)
        budget = np.where(on, ALWAYS_ON_SHARE * ch.daily_spend,
                          (1 - ALWAYS_ON_SHARE) * ch.daily_spend * days / flight_days)
        budget = budget * rng.lognormal(0, 0.3 * ~on, len(first))
        parts.append((np.full(len(first), ci), first, last, budget, on))
    cols = [np.concatenate(c) for c in zip(*parts, strict=True)]
    names = _campaign_names(rng, ctx, cols[0], cols[1], cols[4])
    return Campaigns(*cols, name=names)


def _campaign_names(rng: np.random.Generator, ctx: DemoContext, channel: np.ndarray,
                    first: np.ndarray, always_on: np.ndarray) -> np.ndarray:
    """"2025-品牌常投-百度搜索-1" or "2025双11-美妆-巨量引擎-7"-like names.

    A loop over campaigns (about a hundred), not over rows.
    """
    begin = np.datetime64(ctx.start, "D") + first
    years = begin.astype("datetime64[Y]").astype(int) + 1970
    months = begin.astype("datetime64[M]").astype(int) % 12 + 1
    promo = rng.integers(0, len(_PROMOS), len(first))
    cat = rng.integers(0, len(_CATEGORIES), len(first))
    names = []
    for i in range(len(first)):
        zh = CHANNELS[channel[i]].zh
        if always_on[i]:
            names.append(f"{years[i]}-品牌常投-{zh}-{i + 1}")
            continue
        theme = {10: "双11", 11: "双11", 5: "618", 6: "618", 3: "女王节"}.get(
            int(months[i]), _PROMOS[promo[i]])
        names.append(f"{years[i]}{theme}-{_CATEGORIES[cat[i]]}-{zh}-{i + 1}")
    return np.array(names, dtype=object)


def _daily_rows(rng: np.random.Generator, ctx: DemoContext, c: Campaigns,
                scale: float) -> dict[str, np.ndarray]:
    """One row per campaign-day: spend follows the promo calendar with noise."""
    length = c.last - c.first + 1
    camp = np.repeat(np.arange(len(c.first)), length)
    day = c.first[camp] + np.arange(len(camp)) - np.repeat(np.cumsum(length) - length, length)
    curve = promo_curve(ctx)
    weekday = (day + ctx.start.weekday()) % 7
    spend = (c.budget[camp] * curve[day] / curve.mean() * np.where(weekday >= 5, 1.1, 0.96)
             * rng.lognormal(-0.02, 0.2, len(camp)) * scale)
    return {"campaign": camp, "channel": c.channel[camp], "day": day,
            "spend": np.round(spend, 2)}


def _channel_spend(rows: dict[str, np.ndarray], days: int) -> np.ndarray:
    """True spend per (channel, day), summed over campaigns."""
    out = np.zeros((len(CHANNELS), days))
    np.add.at(out, (rows["channel"], rows["day"]), rows["spend"])
    return out


def _spend_table(rng: np.random.Generator, ctx: DemoContext, rows: dict[str, np.ndarray],
                 c: Campaigns, incremental: np.ndarray,
                 spend: np.ndarray) -> tuple[pa.Table, int]:
    """Platform report: impressions/clicks from CPM/CTR, conversions over-attributed."""
    ch = rows["channel"]
    n = len(ch)
    cpm = np.array([x.cpm for x in CHANNELS])[ch] * rng.lognormal(0, 0.1, n)
    impressions = np.round(rows["spend"] / cpm * 1000).astype(np.int64)
    clicks = rng.binomial(impressions, np.array([x.ctr for x in CHANNELS])[ch])
    share = rows["spend"] / np.maximum(spend[ch, rows["day"]], 1e-9)
    over = np.array([x.over_attribution for x in CHANNELS])[ch]
    value = incremental[ch, rows["day"]] * share * over * rng.lognormal(-0.01, 0.15, n)
    conversions = rng.poisson(value / AOV)
    bad = pick_malformed(rng, n, MALFORMED_RATE)
    names = np.array([x.name for x in CHANNELS], dtype=object)
    table = pa.table({
        "date": fmt_time(day0(ctx.start) + rows["day"] * 86_400, "%Y-%m-%d"),
        "channel": gather(names, ch), "campaign_id": gather(_campaign_ids(rng, c), rows["campaign"]),
        "campaign_name": gather(c.name, rows["campaign"]), "currency": pa.array(["CNY"] * n),
        "spend": set_rows(money(rows["spend"]), bad, "--"),
        "impressions": to_str(impressions), "clicks": to_str(clicks),
        "conversions": to_str(conversions), "conversion_value": money(value),
    })
    order = np.lexsort((rows["campaign"], ch, rows["day"]))
    return table.take(pa.array(order)), len(bad)


def _campaign_ids(rng: np.random.Generator, c: Campaigns) -> pa.Array:
    """Numeric ids whose length differs by platform (as their consoles show them)."""
    digits = np.array([x.id_digits for x in CHANNELS])[c.channel]
    low = 10 ** (digits - 1).astype(np.float64)
    ids = (low + rng.random(len(digits)) * 8 * low).astype(np.int64)
    return to_str(ids)


def _response_table(ctx: DemoContext, spend: np.ndarray, adstock: np.ndarray,
                    incremental: np.ndarray) -> pa.Table:
    days = spend.shape[1]
    dates = np.datetime64(ctx.start, "D") + np.tile(np.arange(days), len(CHANNELS))
    return pa.table({
        "date": pa.array(dates.astype("datetime64[D]")),
        "channel": pa.array(np.repeat([c.name for c in CHANNELS], days)),
        "spend": spend.ravel(), "adstock": adstock.ravel(),
        "incremental_sales": incremental.ravel(),
    })


def _truth(spend: np.ndarray, scale: float) -> dict[str, object]:
    recent = spend[:, -90:].mean(axis=1)
    mroi = marginal_roi(recent, scale)
    return {
        "model": "adstock[t] = spend[t] + decay*adstock[t-1]; "
                 "incremental_sales[t] = max_effect*adstock[t]/(adstock[t]+half_saturation)",
        "scale": scale, "amounts_in": "CNY, already multiplied by scale",
        "channels": {c.name: {
            "decay": c.decay, "half_saturation": c.half_saturation * scale,
            "max_effect": c.max_effect * scale, "cpm": c.cpm, "ctr": c.ctr,
            "platform_over_attribution": c.over_attribution,
            "mean_daily_spend": float(spend[i].mean()),
            "mean_daily_spend_last_90d": float(recent[i]),
            "marginal_roi_at_last_90d_spend": float(mroi[i]),
            "average_roi": float(response(spend, scale)[1][i].sum() / spend[i].sum()),
        } for i, c in enumerate(CHANNELS)},
        "under_invested_channel": UNDER_INVESTED,
        "marginal_roi_definition": "d(steady-state daily sales)/d(steady daily spend) at the "
                                   "mean daily spend of the last 90 days",
        "platform_aov": AOV, "malformed_rate": MALFORMED_RATE,
        "malformed_rule": "spend is '--'",
    }
