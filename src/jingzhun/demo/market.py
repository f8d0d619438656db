"""Industry benchmark and brand search series: the outside view of the market.

`benchmarks/industry_benchmark.csv` is a 生意参谋-style daily category index
(交易指数, 搜索人气); `benchmarks/competitor_search.csv` a Baidu-index-like daily
search index per brand keyword (整体/PC/移动). Planted: a competitor launches a
product in one category on a stated date and our brands' search index in that
category drops by `DROP` for `DROP_DAYS` days, while the category index stays on
its usual course. So the hypothesis "the whole market fell" is refuted by the
benchmark, and "a competitor took the traffic" is confirmed by the competitor's
own search jump (the article's 搜索量断崖式下跌 example).
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jingzhun.demo.context import CATEGORIES, DemoContext
from jingzhun.demo.marketing import (
    SourceResult,
    day0,
    emit,
    fmt_time,
    pick_malformed,
    promo_curve,
    span_days,
    to_str,
)

CATEGORY_ZH = {"apparel": "服饰", "cosmetics": "美妆", "beauty_tools": "美容工具", "home": "家居"}
INDEX_BASE = {"apparel": 120_000, "cosmetics": 85_000, "beauty_tools": 20_000, "home": 60_000}
COMPETITORS = {"apparel": ("衣朵", "素时", "棉小屋"), "cosmetics": ("澜蔻", "悦芙", "花漾集"),
               "beauty_tools": ("美匠坊", "妆研社", "光研"), "home": ("宜栖", "木棉家", "拾屋")}
LAUNCH = {"competitor": "澜蔻", "product": "澜蔻小金瓶精华", "category": "cosmetics"}
DROP = 0.35  # our brands' search index falls by this share in the launch category
DROP_DAYS = 42  # ... for this many days from the launch day
RECOVERY_DAYS = 14  # then climbs back linearly
COMPETITOR_UPLIFT = 1.2  # competitor index x(1 + 1.2 * exp(-days / 30)) after the launch
ANNUAL_GROWTH = 0.08
MALFORMED_RATE = 0.002  # impossible calendar dates ("2025-02-30")


def write_benchmarks(ctx: DemoContext) -> SourceResult:
    """Both benchmark files and the launch truth."""
    rng = ctx.rng("benchmarks")
    launch = launch_day(ctx)
    industry, bad_i = _industry(rng, ctx)
    search, bad_s, ours = _search(rng, ctx, launch)
    files = [
        emit(ctx, "industry_benchmark", "benchmarks/industry_benchmark.csv", industry, bad_i,
             "Daily category index (生意参谋-style), Chinese headers"),
        emit(ctx, "competitor_search", "benchmarks/competitor_search.csv", search, bad_s,
             "Daily Baidu-index-like search index per brand keyword, Chinese headers"),
    ]
    launch_date = ctx.start + timedelta(days=launch)
    truth = {
        "competitor_launch": {
            **LAUNCH, "category_zh": CATEGORY_ZH[LAUNCH["category"]],
            "launch_date": launch_date.isoformat(), "our_brands": ours[LAUNCH["category"]],
            "our_search_drop": DROP, "drop_days": DROP_DAYS, "recovery_days": RECOVERY_DAYS,
            "competitor_uplift": COMPETITOR_UPLIFT, "competitor_uplift_decay_days": 30,
            "market_index_effect": 0.0,
            "hypotheses": {"market_wide_decline": "refuted: 交易指数 and 搜索人气 unchanged",
                           "competitor_launch": "confirmed: competitor index jumps on the day"},
        },
        "industry_index": {"base": INDEX_BASE, "annual_growth": ANNUAL_GROWTH,
                           "seasonality": "promo_curve (双11, 618, 女王节, 春节 dip), weekends +6%"},
        "our_brands": ours, "competitors": {k: list(v) for k, v in COMPETITORS.items()},
        "malformed_rate": MALFORMED_RATE, "malformed_rule": "日期 is an impossible date",
    }
    return SourceResult(files=files, truth=truth)


def launch_day(ctx: DemoContext) -> int:
    """Day index of the launch: the second Monday of April, away from the big promotions.

    The first such Monday with 60 days of history before it and the whole drop
    plus 30 days after it; otherwise the Monday nearest the middle of the period.
    """
    days = span_days(ctx)
    for year in range(ctx.start.year, ctx.end.year + 1):
        first = date(year, 4, 1)
        monday = first + timedelta(days=(7 - first.weekday()) % 7 + 7)
        offset = (monday - ctx.start).days
        if offset >= 60 and offset + DROP_DAYS + RECOVERY_DAYS + 30 <= days:
            return offset
    middle = days // 2
    return middle - (ctx.start.weekday() + middle) % 7


def our_brands(ctx: DemoContext) -> dict[str, list[str]]:
    """House brands per category, from the catalogue (sorted for stable output)."""
    brands = np.asarray(ctx.catalog["brand"], dtype=object)
    cats = np.asarray(ctx.catalog["category"], dtype=object)
    return {c: sorted(set(brands[cats == c].tolist())) for c in CATEGORIES}


def _base_curve(ctx: DemoContext) -> np.ndarray:
    """Growth x promotions x weekend, shared by the market and every brand."""
    t = np.arange(span_days(ctx))
    weekend = ((t + ctx.start.weekday()) % 7) >= 5
    return (1 + ANNUAL_GROWTH) ** (t / 365) * promo_curve(ctx) * np.where(weekend, 1.06, 1.0)


def _industry(rng: np.random.Generator, ctx: DemoContext) -> tuple[pa.Table, int]:
    days = span_days(ctx)
    curve = _base_curve(ctx)
    base = np.array([INDEX_BASE[c] for c in CATEGORIES], dtype=float)
    trade = base[:, None] * curve[None, :] * rng.lognormal(0, 0.04, (len(CATEGORIES), days))
    search = 0.3 * base[:, None] * curve[None, :] ** 0.7 * rng.lognormal(0, 0.05, trade.shape)
    day = np.tile(np.arange(days), len(CATEGORIES))
    dates, bad = _dates(rng, ctx, day)
    table = pa.table({
        "日期": dates,
        "行业类目": pa.array(np.repeat([CATEGORY_ZH[c] for c in CATEGORIES], days)),
        "交易指数": to_str(np.round(trade.ravel()).astype(np.int64)),
        "搜索人气": to_str(np.round(search.ravel()).astype(np.int64)),
    })
    return table.take(pa.array(np.lexsort((np.repeat(np.arange(4), days), day)))), bad


def _dates(rng: np.random.Generator, ctx: DemoContext, day: np.ndarray) -> tuple[pa.Array, int]:
    """ISO dates, with MALFORMED_RATE of them replaced by an impossible 2月30日."""
    dates = fmt_time(day0(ctx.start) + day * 86_400, "%Y-%m-%d")
    bad = pick_malformed(rng, len(day), MALFORMED_RATE)
    mask = np.zeros(len(day), dtype=bool)
    mask[bad] = True
    broken = pc.binary_join_element_wise(pc.utf8_slice_codeunits(dates, 0, 4), "-02-30", "")
    return pc.if_else(pa.array(mask), broken, dates), len(bad)


def _search(rng: np.random.Generator, ctx: DemoContext,
            launch: int) -> tuple[pa.Table, int, dict[str, list[str]]]:
    """Brand keyword series: ours and three competitors per category."""
    ours = our_brands(ctx)
    cat, brand, mine = [], [], []
    for c in CATEGORIES:  # four categories x a handful of brands
        for b in ours[c] + list(COMPETITORS[c]):
            cat.append(c)
            brand.append(b)
            mine.append(b in ours[c])
    cat_a, mine_a = np.array(cat, dtype=object), np.array(mine)
    days = span_days(ctx)
    level = rng.uniform(2_000, 6_000, len(brand)) * np.where(mine_a, 1.0, 1.3)
    index = level[:, None] * _base_curve(ctx)[None, :] ** 0.6
    index *= rng.lognormal(0, 0.06, index.shape) * _launch_effect(cat_a, mine_a, brand, launch,
                                                                  days)
    pc_share = rng.uniform(0.18, 0.3, len(brand))[:, None] * rng.lognormal(0, 0.05, index.shape)
    total = np.round(index).astype(np.int64)
    pc_idx = np.round(total * pc_share).astype(np.int64)
    day = np.tile(np.arange(days), len(brand))
    dates, bad = _dates(rng, ctx, day)
    table = pa.table({
        "日期": dates, "类目": pa.array(np.repeat([CATEGORY_ZH[c] for c in cat], days)),
        "品牌": pa.array(np.repeat(brand, days)), "关键词": pa.array(np.repeat(brand, days)),
        "整体指数": to_str(total.ravel()), "PC指数": to_str(pc_idx.ravel()),
        "移动指数": to_str((total - pc_idx).ravel()),
    })
    order = np.lexsort((np.repeat(np.arange(len(brand)), days), day))
    return table.take(pa.array(order)), bad, ours


def _launch_effect(cat: np.ndarray, mine: np.ndarray, brand: list[str], launch: int,
                   days: int) -> np.ndarray:
    """Multiplier (brands, days): our drop and the competitor's jump after the launch."""
    t = np.arange(days) - launch
    ours = np.ones(days)
    ours[(t >= 0) & (t < DROP_DAYS)] = 1 - DROP
    climb = (t >= DROP_DAYS) & (t < DROP_DAYS + RECOVERY_DAYS)
    ours[climb] = 1 - DROP * (1 - (t[climb] - DROP_DAYS + 1) / (RECOVERY_DAYS + 1))
    theirs = 1 + COMPETITOR_UPLIFT * np.exp(-np.maximum(t, 0) / 30) * (t >= 0)
    in_cat = cat == LAUNCH["category"]
    effect = np.ones((len(brand), days))
    effect[in_cat & mine] = ours
    effect[in_cat & (np.array(brand, dtype=object) == LAUNCH["competitor"])] = theirs
    return effect
