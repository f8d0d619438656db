"""Social sources: WeChat official-account followers and Douyin/Weibo interactions.

These are the exports an operator downloads from 公众号后台/SCRM, 抖音企业号 and
微博 back-ends: Chinese headers, Beijing time without offset, platform ids rather
than our customer ids. The fans half of the fans-vs-buyers pattern lives here: the
followers of the `FANS_PRODUCT_LINE` accounts are mostly 30-39 (`FAN_AGE_SHARES`);
the line's livestream buyers (`write_livestream`, `BUYER_AGE_SHARES`) are mostly
under 30.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jingzhun.demo.context import DemoContext, DemoFile
from jingzhun.demo.marketing import (
    AGE_BANDS,
    SECONDS_PER_DAY,
    SourceResult,
    age_band_index,
    ages_at,
    arrow,
    choose,
    day0,
    emit,
    end_sec,
    first_contact_times,
    fmt_time,
    gather,
    isin,
    notnull,
    pick_malformed,
    sample_by_band,
    set_rows,
    span_days,
    write_truth_table,
)
from jingzhun.demo.vectors import URLSAFE, concat, digit_strings, random_strings, top_k

# Shares per AGE_BANDS (16-24, 25-29, 30-34, 35-39, 40-49, 50+), age on the last day.
FAN_AGE_SHARES = np.array([0.05, 0.12, 0.32, 0.30, 0.15, 0.06])  # 30-39: 62%
LINE_FAN_RATE = 0.06  # WeChat line-account followers per person
LINE_FAN_RATE_DOUYIN = 0.10  # Douyin line-account followers per Douyin user

WECHAT_MAIN = "精准生活"
DOUYIN_MAIN = "精准官方旗舰店"
WEIBO_MAIN = "精准官方微博"
SCENES = np.array(["搜索公众号", "扫描二维码", "名片分享", "图文页内名称点击", "图文页右上角菜单",
                   "支付后关注", "微信广告", "他人转载", "其他"], dtype=object)
SCENE_P_ONLINE = np.array([0.22, 0.10, 0.08, 0.14, 0.05, 0.12, 0.17, 0.06, 0.06])
SCENE_P_OFFLINE = np.array([0.12, 0.45, 0.05, 0.08, 0.03, 0.14, 0.07, 0.03, 0.03])
WECHAT_PROFILE_SHARE = 0.65  # rows with 性别/省份/城市 filled (the rest "未知"/empty)
UNFOLLOW_SHARE = 0.15
MALFORMED_RATE = 0.003
# Platform-estimated demographics are wrong this often (per person, stable across rows).
PORTRAIT_NOISE = {"gender_flip": 0.06, "age_band_shift": 0.20, "province_wrong": 0.08,
                  "unknown": 0.05}
DOUYIN_AGE_BANDS = (("<18", 0, 18), ("18-23", 18, 24), ("24-30", 24, 31), ("31-40", 31, 41),
                    ("41-50", 41, 51), ("50+", 51, 200))
WEIBO_AGE_BANDS = (("18岁以下", 0, 18), ("18-24岁", 18, 25), ("25-29岁", 25, 30),
                   ("30-34岁", 30, 35), ("35-39岁", 35, 40), ("40岁以上", 40, 200))
DOUYIN_ACTIONS = np.array(["点赞", "评论", "分享"], dtype=object)
WEIBO_ACTIONS = np.array(["点赞", "评论", "转发"], dtype=object)
_SUFFIX = "(壮族自治区|回族自治区|维吾尔自治区|自治区|特别行政区|省|市)$"
_NICK_A = np.array(["快乐的", "爱吃", "元气", "佛系", "努力的", "温柔的", "小", "大大的", "今天也要",
                    "不吃香菜的", "早睡的", "追光的"], dtype=object)
_NICK_B = np.array(["橘子", "兔兔", "芋圆", "小鱼", "奶茶", "柠檬", "椰子", "鹿鹿", "喵喵", "阿狸",
                    "棉花糖", "小太阳", "栗子", "桃桃"], dtype=object)


@dataclass
class Contents:
    """Posts or videos accounts published: platform ids, local publish seconds, account."""

    ids: pa.Array
    published: np.ndarray
    account: np.ndarray


@dataclass
class Interactions:
    """Export rows before formatting: who, what, on which content (-1: none), when."""

    person: np.ndarray
    account: np.ndarray
    action: np.ndarray
    content: np.ndarray
    at: np.ndarray


def fans_line(ctx: DemoContext) -> str:
    """The product line whose fans and buyers differ (part A names it in catalog.py)."""
    try:
        from jingzhun.demo.catalog import FANS_PRODUCT_LINE
    except ImportError:  # fall back deterministically: first cosmetics line by name
        lines = np.asarray(ctx.catalog["product_line"], dtype=object)
        cats = np.asarray(ctx.catalog["category"], dtype=object)
        return str(sorted(set(lines[cats == "cosmetics"]))[0])
    return FANS_PRODUCT_LINE


def line_account_names(ctx: DemoContext) -> tuple[str, str]:
    """WeChat and Douyin names of the line's own accounts, e.g. "玉肌水光润泽"."""
    line = fans_line(ctx)
    lines = np.asarray(ctx.catalog["product_line"], dtype=object)
    brands = np.asarray(ctx.catalog["brand"], dtype=object)[lines == line]
    short = (str(brands[0]) if len(brands) else "精准") + line.removesuffix("系列")
    return short, short + "官方号"


def person_bands(ctx: DemoContext) -> np.ndarray:
    """AGE_BANDS index of every person's age on the last simulated day."""
    return age_band_index(ages_at(ctx.population["birth_date"], ctx.end))


def write_social(ctx: DemoContext) -> SourceResult:
    """WeChat follows, Douyin/Weibo interactions and livestream views, plus their truth."""
    band = person_bands(ctx)
    wechat_file, fans_wx = _write_wechat(ctx, band)
    douyin_file, fans_dy = _write_douyin(ctx, band)
    weibo_file = _write_weibo(ctx)
    live = write_livestream(ctx, band)
    wx_acct, dy_acct = line_account_names(ctx)
    truth = {
        "fans_vs_buyers": {
            "product_line": fans_line(ctx), "wechat_account": wx_acct, "douyin_account": dy_acct,
            "age_reference_date": ctx.end.isoformat(),
            "age_bands": [b[0] for b in AGE_BANDS],
            "fan_age_shares": FAN_AGE_SHARES.tolist(),
            "fans_wechat": int(len(fans_wx)), "fans_douyin": int(len(fans_dy)),
            "fan_share_30_39_wechat": _share_30_39(band[fans_wx]),
            "fan_share_30_39_douyin": _share_30_39(band[fans_dy]),
            **live.truth.pop("line_buyers"),
        },
        "wechat": {"main_account": WECHAT_MAIN, "profile_share": WECHAT_PROFILE_SHARE,
                   "unfollow_share": UNFOLLOW_SHARE, "malformed_rate": MALFORMED_RATE},
        "platform_portrait_noise": PORTRAIT_NOISE,
        "livestream": live.truth,
    }
    return SourceResult(files=[wechat_file, douyin_file, weibo_file, *live.files], truth=truth)


def _share_30_39(bands: np.ndarray) -> float:
    return float(np.isin(bands, (2, 3)).mean()) if len(bands) else 0.0


# ---------------------------------------------------------------- WeChat


def _write_wechat(ctx: DemoContext, band: np.ndarray) -> tuple[DemoFile, np.ndarray]:
    """公众号 follower export (main account and the line's account), utf-8 with BOM."""
    rng = ctx.rng("social.wechat")
    pop = ctx.population
    n = pop.size
    offline = np.asarray(pop["shops_offline"], dtype=bool)
    lean = 0.15 + 0.25 * np.asarray(pop["uses_miniprogram"], dtype=float) + 0.10 * offline
    p = np.clip(lean * np.sqrt(np.asarray(pop["activity"], dtype=float)), 0.0, 0.9)
    main = np.flatnonzero(rng.random(n) < p)
    fans = sample_by_band(rng, np.arange(n), band, FAN_AGE_SHARES, round(LINE_FAN_RATE * n))
    person = np.concatenate([main, fans])
    account = np.repeat(np.array([WECHAT_MAIN, line_account_names(ctx)[0]], dtype=object),
                        [len(main), len(fans)])
    follow = first_contact_times(rng, ctx, person)
    unfollow = follow + (rng.exponential(150.0, len(person)) * SECONDS_PER_DAY).astype(np.int64)
    unfollowed = (rng.random(len(person)) < UNFOLLOW_SHARE) & (unfollow <= end_sec(ctx))
    openid = concat("o", random_strings(rng, len(person), 27, URLSAFE))
    ctx.shared["marketing.wechat_oa"] = {
        "person": main, "openid": openid.slice(0, len(main)), "follow": follow[: len(main)],
        "unfollow": np.where(unfollowed, unfollow, np.iinfo(np.int64).max)[: len(main)]}
    write_truth_table(ctx, "social_wechat_openids.parquet", pa.table({
        "account": pa.array(account), "openid": openid, "person_key": person}))
    table, bad = _wechat_table(ctx, rng, person, account, openid, follow, unfollow, unfollowed)
    return emit(ctx, "wechat_follows", "social/wechat_follows.csv", table, bad,
                "WeChat official-account follower export (SCRM), Chinese headers",
                encoding="utf-8-sig"), fans


def _wechat_table(ctx: DemoContext, rng: np.random.Generator, person: np.ndarray,
                  account: np.ndarray, openid: pa.Array, follow: np.ndarray,
                  unfollow: np.ndarray, unfollowed: np.ndarray) -> tuple[pa.Table, int]:
    pop = ctx.population
    m = len(person)
    offline = np.asarray(pop["shops_offline"], dtype=bool)[person]
    scene = np.where(offline, choose(rng, SCENES, SCENE_P_OFFLINE, m),
                     choose(rng, SCENES, SCENE_P_ONLINE, m))
    known = rng.random(m) < WECHAT_PROFILE_SHARE
    gender = np.where(np.asarray(pop["gender"], dtype=object)[person] == "F", "女", "男")
    fmt = "%Y-%m-%d %H:%M:%S"
    follow_text = fmt_time(follow, fmt)
    bad = pick_malformed(rng, m, MALFORMED_RATE)
    half = len(bad) // 2
    table = pa.table({
        "公众号": pa.array(account), "openid": set_rows(openid, bad[:half], None),
        "unionid": gather(pop["wechat_unionid"], person),
        "关注时间": set_rows(follow_text, bad[half:], "0000-00-00 00:00:00"),
        "取消关注时间": fmt_time(unfollow, fmt, unfollowed),
        "关注渠道": pa.array(scene),
        "性别": pa.array(np.where(known, gender, "未知")),
        "省份": _known_only(gather(pop["province"], person), known),
        "城市": _known_only(gather(pop["city"], person), known),
    })
    return table.take(pa.array(np.argsort(follow, kind="stable"))), len(bad)


def _known_only(values: pa.Array, known: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(known), values, pa.scalar(None, pa.string()))


# ---------------------------------------------------------------- Douyin / Weibo


def _write_douyin(ctx: DemoContext, band: np.ndarray) -> tuple[DemoFile, np.ndarray]:
    """抖音企业号 interaction export: likes, comments, shares, follows (utf-8)."""
    rng = ctx.rng("social.douyin")
    pop = ctx.population
    has = np.flatnonzero(notnull(pop["douyin_user_id"]))
    _, line_account = line_account_names(ctx)
    contents = _contents(rng, ctx, {DOUYIN_MAIN: 4, line_account: 2}, 7_300_000_000_000_000_000)
    fashion = np.asarray(pop["persona"], dtype=object)[has] == "fashion_trendsetter"
    weight = np.asarray(pop["activity"], dtype=float)[has] * np.where(fashion, 1.5, 1.0)
    fans = sample_by_band(rng, has, band, FAN_AGE_SHARES, round(LINE_FAN_RATE_DOUYIN * len(has)))
    parts = [
        _engagements(rng, has, np.clip(0.4 * weight, 0.02, 0.95), 1.0, contents, DOUYIN_MAIN,
                     DOUYIN_ACTIONS, np.array([0.7, 0.18, 0.12])),
        _follows(rng, ctx, has[rng.random(len(has)) < 0.15 * weight], contents, DOUYIN_MAIN),
        _follows(rng, ctx, fans, contents, line_account),
        _engagements(rng, fans, np.ones(len(fans)), 0.8, contents, line_account,
                     DOUYIN_ACTIONS[:1], np.array([1.0])),
    ]
    rows = _concat_interactions(parts)
    portrait = _portrait(ctx.rng("social.douyin.portrait"), ctx, DOUYIN_AGE_BANDS)
    fmt = "%Y-%m-%d %H:%M:%S"
    table = pa.table({
        "账号名称": pa.array(rows.account), "用户ID": gather(pop["douyin_user_id"], rows.person),
        "用户昵称": gather(_nicknames(ctx.rng("social.douyin.nick"), pop.size), rows.person),
        "互动类型": pa.array(rows.action), **_content_columns(contents, rows, fmt, "作品"),
        "互动时间": fmt_time(rows.at, fmt),
        "性别": gather(portrait[0], rows.person), "年龄段": gather(portrait[1], rows.person),
        "省份": gather(portrait[2], rows.person),
    })
    table, bad = _break(rng, table, "用户ID", "互动时间", "--")
    return emit(ctx, "douyin_interactions", "social/douyin_interactions.csv", table, bad,
                "Douyin enterprise-account interactions with platform fan portrait"), fans


def _write_weibo(ctx: DemoContext) -> DemoFile:
    """微博 interaction export: likes, comments, reposts, follows (utf-8)."""
    rng = ctx.rng("social.weibo")
    pop = ctx.population
    has = np.flatnonzero(notnull(pop["weibo_user_id"]))
    contents = _contents(rng, ctx, {WEIBO_MAIN: 5}, 4_900_000_000_000_000)
    weight = np.asarray(pop["activity"], dtype=float)[has]
    parts = [
        _engagements(rng, has, np.clip(0.3 * weight, 0.02, 0.9), 0.6, contents, WEIBO_MAIN,
                     WEIBO_ACTIONS, np.array([0.6, 0.2, 0.2])),
        _follows(rng, ctx, has[rng.random(len(has)) < 0.12 * weight], contents, WEIBO_MAIN),
    ]
    rows = _concat_interactions(parts)
    gender, age, province = _portrait(ctx.rng("social.weibo.portrait"), ctx, WEIBO_AGE_BANDS)
    city = pc.replace_substring_regex(arrow(pop["city"]), pattern=_SUFFIX, replacement="")
    place = concat(province, " ", city)
    fmt = "%Y-%m-%d %H:%M"
    table = pa.table({
        "用户UID": gather(pop["weibo_user_id"], rows.person),
        "用户昵称": gather(_nicknames(ctx.rng("social.weibo.nick"), pop.size), rows.person),
        "互动类型": pa.array(rows.action), **_content_columns(contents, rows, fmt, "博文"),
        "互动时间": fmt_time(rows.at, fmt), "性别": gather(gender, rows.person),
        "年龄": gather(age, rows.person), "所在地": gather(place, rows.person),
    })
    table, bad = _break(rng, table, "用户UID", "互动时间", "刚刚")
    return emit(ctx, "weibo_interactions", "social/weibo_interactions.csv", table, bad,
                "Weibo official-account interactions with platform-estimated demographics")


def _content_columns(contents: Contents, rows: Interactions, fmt: str,
                     noun: str) -> dict[str, pa.Array]:
    """作品ID/作品发布时间 (or 博文…); empty when the action had no content (a follow)."""
    has = rows.content >= 0
    idx = np.where(has, rows.content, 0)
    return {f"{noun}ID": pc.if_else(pa.array(has), gather(contents.ids, idx),
                                    pa.scalar(None, pa.string())),
            f"{noun}发布时间": fmt_time(contents.published[idx], fmt, has)}


def _break(rng: np.random.Generator, table: pa.Table, id_col: str, time_col: str,
           junk: str) -> tuple[pa.Table, int]:
    """Malformed rows: half lose the user id, half get an unparseable time."""
    bad = pick_malformed(rng, table.num_rows, MALFORMED_RATE)
    half = len(bad) // 2
    table = table.set_column(table.schema.get_field_index(id_col), id_col,
                             set_rows(table[id_col].combine_chunks(), bad[:half], None))
    table = table.set_column(table.schema.get_field_index(time_col), time_col,
                             set_rows(table[time_col].combine_chunks(), bad[half:], junk))
    return table, len(bad)


def _contents(rng: np.random.Generator, ctx: DemoContext, per_week: dict[str, int],
              id_base: int) -> Contents:
    """Publications per account, 18:00-22:00, with time-ordered numeric ids."""
    days = span_days(ctx)
    counts = [max(1, round(days / 7 * k)) for k in per_week.values()]
    account = np.repeat(np.array(list(per_week), dtype=object), counts)
    day = rng.integers(0, days, len(account))
    published = day0(ctx.start) + day * SECONDS_PER_DAY + rng.integers(18 * 3600, 22 * 3600,
                                                                       len(account))
    order = np.argsort(published, kind="stable")
    account, published = account[order], published[order]
    ids = id_base + np.cumsum(rng.integers(10**9, 10**12, len(account)))
    return Contents(ids=pc.cast(pa.array(ids), pa.string()), published=published,
                    account=account)


def _engagements(rng: np.random.Generator, candidates: np.ndarray, p: np.ndarray, extra: float,
                 contents: Contents, account: str, actions: np.ndarray,
                 action_p: np.ndarray) -> Interactions:
    """Each engaged candidate acts 1 + Poisson(extra) times on the account's contents."""
    engaged = candidates[rng.random(len(candidates)) < p]
    person = np.repeat(engaged, 1 + rng.poisson(extra, len(engaged)))
    pool = np.flatnonzero(contents.account == account)
    content = pool[rng.integers(0, len(pool), len(person))]
    delay = (rng.exponential(1.2, len(person)) * SECONDS_PER_DAY).astype(np.int64)
    end = contents.published.max() + 3 * SECONDS_PER_DAY
    at = np.minimum(contents.published[content] + 60 + delay, end)
    return Interactions(person=person, account=np.full(len(person), account, dtype=object),
                        action=choose(rng, actions, action_p, len(person)), content=content,
                        at=at)


def _follows(rng: np.random.Generator, ctx: DemoContext, person: np.ndarray,
             contents: Contents, account: str) -> Interactions:
    """One follow per person; half came from a video/post (content id), half from the profile."""
    n = len(person)
    pool = np.flatnonzero(contents.account == account)
    content = np.where(rng.random(n) < 0.5, pool[rng.integers(0, len(pool), n)], -1)
    from_content = contents.published[np.maximum(content, 0)] + rng.integers(60, 86_400, n)
    at = np.where(content >= 0, from_content, first_contact_times(rng, ctx, person))
    return Interactions(person=person, account=np.full(n, account, dtype=object),
                        action=np.full(n, "关注", dtype=object), content=content, at=at)


def _concat_interactions(parts: list[Interactions]) -> Interactions:
    """All parts in one set of arrays, sorted by action time as the export lists them."""
    merged = {name: np.concatenate([getattr(p, name) for p in parts])
              for name in ("person", "account", "action", "content", "at")}
    order = np.argsort(merged["at"], kind="stable")
    return Interactions(**{k: v[order] for k, v in merged.items()})


def _portrait(rng: np.random.Generator, ctx: DemoContext,
              bands: tuple[tuple[str, int, int], ...]) -> tuple[pa.Array, pa.Array, pa.Array]:
    """The platform's guess of every person's gender, age band and province (no suffix).

    Platforms infer demographics, so a stated share of each is wrong or unknown;
    the guess is per person, hence the same on all of that person's rows.
    """
    pop = ctx.population
    n = pop.size
    female = np.asarray(pop["gender"], dtype=object) == "F"
    female ^= rng.random(n) < PORTRAIT_NOISE["gender_flip"]
    ages = ages_at(pop["birth_date"], ctx.end)
    idx = np.searchsorted(np.array([b[2] for b in bands[:-1]]), ages, side="right")
    shift = np.where(rng.random(n) < PORTRAIT_NOISE["age_band_shift"],
                     rng.choice([-1, 1], n), 0)
    labels = np.array([b[0] for b in bands], dtype=object)
    age = labels[np.clip(idx + shift, 0, len(bands) - 1)]
    province = np.asarray(pop["province"], dtype=object).copy()
    wrong = rng.random(n) < PORTRAIT_NOISE["province_wrong"]
    options = np.asarray(pc.unique(pa.array(province)).to_pylist(), dtype=object)
    province[wrong] = options[rng.integers(0, len(options), wrong.sum())]
    short = pc.replace_substring_regex(pa.array(province), pattern=_SUFFIX, replacement="")
    unknown = pa.array(rng.random(n) < PORTRAIT_NOISE["unknown"])
    gender = pa.array(np.where(female, "女", "男"))
    return (pc.if_else(unknown, "未知", gender), pc.if_else(unknown, "未知", pa.array(age)),
            pc.if_else(unknown, "未知", short))


def _nicknames(rng: np.random.Generator, n: int) -> pa.Array:
    """Per-person nicknames: a third keep the platform default "用户" + digits."""
    default = concat("用户", digit_strings(rng.integers(0, 10**10, n), 10))
    a = gather(_NICK_A, rng.integers(0, len(_NICK_A), n))
    b = gather(_NICK_B, rng.integers(0, len(_NICK_B), n))
    tail = pc.if_else(pa.array(rng.random(n) < 0.4),
                      pc.cast(pa.array(rng.integers(1, 1000, n)), pa.string()), "")
    return pc.if_else(pa.array(rng.random(n) < 0.33), default, concat(a, b, tail))


# ---------------------------------------------------------------- livestream

BUYER_AGE_SHARES = np.array([0.30, 0.34, 0.14, 0.08, 0.10, 0.04])  # 30-39: 22%, <30: 64%
LINE_BUYER_RATE = 0.01  # planted livestream buyers of the line per person (at least 150)
LIVE_WEEKDAYS = (1, 3, 5, 6)  # Tue, Thu, Sat, Sun (Monday = 0)
LINE_WEEKDAY = 3  # Thursday sessions feature the fans line
FEATURED = 12  # products on the shelf (小黄车) of each session
LINE_SLOTS = 6  # of which line products in a line session
SESSION_SECONDS = 3 * 3600
LIVE_ORDER_RATE = {"member": 0.07, "stranger": 0.03}  # per row with at least one click
STRANGER_SHARE = 0.25  # extra rows from viewers who are not our customers
SPIKE_AUDIENCE_WEIGHT = 25.0  # the spike-day session draws this many times the audience


@dataclass
class Sessions:
    """Live sessions: room ids, start seconds, flags and the featured product matrix."""

    ids: pa.Array
    start: np.ndarray
    is_line: np.ndarray
    weight: np.ndarray
    featured: np.ndarray  # (sessions, FEATURED) product index


@dataclass
class Products:
    """Product-level (SPU) view of the catalogue."""

    ids: np.ndarray
    is_line: np.ndarray
    category: np.ndarray
    is_spike: np.ndarray


def write_livestream(ctx: DemoContext, band: np.ndarray) -> SourceResult:
    """抖音直播 audience export: who entered which session, clicks and orders."""
    rng = ctx.rng("social.livestream")
    products = _products(ctx)
    sessions = _sessions(rng, ctx, products)
    viewers = _viewer_rows(rng, ctx, sessions, products)
    buyers = _line_buyer_rows(rng, ctx, band, sessions)
    rows = {k: np.concatenate([viewers[k], buyers[k]]) for k in viewers}
    table, bad = _livestream_table(rng, ctx, rows, sessions, products)
    file = emit(ctx, "livestream_views", "social/livestream_views.csv", table, bad,
                "Douyin livestream audience export (per viewer entry), Chinese headers")
    spike = np.flatnonzero(sessions.weight == SPIKE_AUDIENCE_WEIGHT)
    truth = {
        "sessions": int(len(sessions.start)), "weekdays": list(LIVE_WEEKDAYS),
        "line_session_weekday": LINE_WEEKDAY, "featured_per_session": FEATURED,
        "order_rate_per_clicking_row": LIVE_ORDER_RATE, "stranger_share": STRANGER_SHARE,
        "spike_session": _spike_truth(ctx, sessions, spike),
        "line_buyers": {
            "buyer_age_shares": BUYER_AGE_SHARES.tolist(), "line_buyers": int(len(buyers["person"])),
            "buyer_share_30_39": _share_30_39(band[buyers["person"]]),
            "buyers_are": "livestream_views rows whose 下单商品 is a product of the line "
                          "(only planted buyers order line products there)",
        },
    }
    return SourceResult(files=[file], truth=truth)


def _spike_truth(ctx: DemoContext, sessions: Sessions, spike: np.ndarray) -> dict | None:
    if not len(spike):
        return None
    i = int(spike[0])
    day = (sessions.start[i] - day0(ctx.start)) // SECONDS_PER_DAY
    return {"room_id": sessions.ids[i].as_py(), "day_index": int(day),
            "audience_weight": SPIKE_AUDIENCE_WEIGHT,
            "featured_first": "the catalogue's spike item (is_spike)"}


def _products(ctx: DemoContext) -> Products:
    pid = np.asarray(ctx.catalog["product_id"], dtype=object)
    ids, first = np.unique(pid, return_index=True)
    lines = np.asarray(ctx.catalog["product_line"], dtype=object)[first]
    spike = ctx.catalog.columns.get("is_spike")
    spike = np.zeros(len(pid), dtype=bool) if spike is None else np.asarray(spike, dtype=bool)
    return Products(ids=ids, is_line=lines == fans_line(ctx),
                    category=np.asarray(ctx.catalog["category"], dtype=object)[first],
                    is_spike=spike[first])


def _sessions(rng: np.random.Generator, ctx: DemoContext, products: Products) -> Sessions:
    """Evening sessions on LIVE_WEEKDAYS (plus the spike day), shelves drawn per session."""
    days = np.arange(span_days(ctx))
    weekday = (days + ctx.start.weekday()) % 7
    spike_day = _spike_day(ctx)
    live = np.isin(weekday, LIVE_WEEKDAYS) | (days == spike_day)
    days, weekday = days[live], weekday[live]
    start = day0(ctx.start) + days * SECONDS_PER_DAY + np.where(weekday >= 5, 20, 19) * 3600
    is_line = weekday == LINE_WEEKDAY
    is_spike = days == spike_day
    weight = np.where(is_spike, SPIKE_AUDIENCE_WEIGHT, np.where(weekday >= 5, 1.3, 1.0))
    cat_w = {"apparel": 2.0, "cosmetics": 2.0, "beauty_tools": 1.0, "home": 0.5}
    base = np.array([cat_w.get(c, 1.0) for c in products.category]) * ~products.is_line
    featured = top_k(rng, np.tile(base, (len(days), 1)), FEATURED)
    line_idx = np.flatnonzero(products.is_line)
    k = min(LINE_SLOTS, len(line_idx))
    if k:
        picks = top_k(rng, np.ones((int(is_line.sum()), len(line_idx))), k)
        featured[np.flatnonzero(is_line)[:, None], np.arange(k)] = line_idx[picks]
    if products.is_spike.any():
        featured[is_spike, 0] = np.flatnonzero(products.is_spike)[0]
    ids = 7_200_000_000_000_000_000 + np.cumsum(rng.integers(10**12, 10**13, len(days)))
    return Sessions(ids=pc.cast(pa.array(ids), pa.string()), start=start, is_line=is_line,
                    weight=weight, featured=featured)


def _spike_day(ctx: DemoContext) -> int:
    """Day index of part A's livestream spike (catalog.spike_date), or -1 without one."""
    try:
        from jingzhun.demo.catalog import spike_date
    except ImportError:
        return -1
    return (spike_date(ctx.start, ctx.end) - ctx.start).days


def _viewer_rows(rng: np.random.Generator, ctx: DemoContext, sessions: Sessions,
                 products: Products) -> dict[str, np.ndarray]:
    """Ordinary viewers (customers and strangers): entries, clicks and non-line orders."""
    pop = ctx.population
    has = np.flatnonzero(notnull(pop["douyin_user_id"]))
    fashion = np.asarray(pop["persona"], dtype=object)[has] == "fashion_trendsetter"
    p = np.clip(0.25 * np.asarray(pop["activity"], dtype=float)[has] * (1 + fashion), 0, 0.95)
    viewers = has[rng.random(len(has)) < p]
    person = np.repeat(viewers, 1 + rng.poisson(1.5, len(viewers)))
    person = np.concatenate([person, np.full(round(STRANGER_SHARE * len(person)), -1)])
    n = len(person)
    session = rng.choice(len(sessions.start), n, p=sessions.weight / sessions.weight.sum())
    slots = np.argsort(rng.random((n, FEATURED)), axis=1)[:, :3]  # distinct products
    clicks = sessions.featured[session[:, None], slots]
    k = np.minimum(rng.poisson(0.9, n), 3)
    clicks = np.where(np.arange(3)[None, :] < k[:, None], clicks, -1)
    rate = np.where(person >= 0, LIVE_ORDER_RATE["member"], LIVE_ORDER_RATE["stranger"])
    ordered = (k > 0) & (rng.random(n) < rate) & ~products.is_line[clicks[:, 0]]
    return {"person": person, "session": session, "clicks": clicks, "ordered": ordered}


def _line_buyer_rows(rng: np.random.Generator, ctx: DemoContext, band: np.ndarray,
                     sessions: Sessions) -> dict[str, np.ndarray]:
    """Planted buyers of the fans line, young per BUYER_AGE_SHARES, in line sessions."""
    has = np.flatnonzero(notnull(ctx.population["douyin_user_id"]))
    want = max(150, round(LINE_BUYER_RATE * ctx.population.size))
    line_sessions = np.flatnonzero(sessions.is_line)
    if not len(line_sessions):
        want = 0
    person = sample_by_band(rng, has, band, BUYER_AGE_SHARES, want)
    n = len(person)
    session = line_sessions[rng.integers(0, max(len(line_sessions), 1), n)] if n else person
    others = LINE_SLOTS + np.argsort(rng.random((n, FEATURED - LINE_SLOTS)), axis=1)[:, :2]
    slots = np.column_stack([rng.integers(0, LINE_SLOTS, n), others])
    clicks = sessions.featured[session[:, None], slots]
    clicks[:, 1:] = np.where(rng.random((n, 2)) < 0.4, clicks[:, 1:], -1)
    return {"person": person, "session": session, "clicks": clicks,
            "ordered": np.ones(n, dtype=bool)}


def _livestream_table(rng: np.random.Generator, ctx: DemoContext, rows: dict[str, np.ndarray],
                      sessions: Sessions, products: Products) -> tuple[pa.Table, int]:
    n = len(rows["person"])
    begin = sessions.start[rows["session"]]
    enter = begin + np.minimum(rng.exponential(50 * 60, n), SESSION_SECONDS - 120).astype(np.int64)
    stay = (30 + rng.exponential(9 * 60, n)).astype(np.int64)
    leave = np.minimum(enter + stay, begin + SESSION_SECONDS)
    fmt = "%Y-%m-%d %H:%M:%S"
    pids = pa.array(products.ids)
    clicked = [pc.if_else(pa.array(rows["clicks"][:, j] >= 0),
                          concat(";", gather(pids, np.maximum(rows["clicks"][:, j], 0))), "")
               for j in range(3)]
    clicked_text = pc.utf8_ltrim(concat(*clicked), characters=";")
    bad = pick_malformed(rng, n, MALFORMED_RATE)
    swap = np.zeros(n, dtype=bool)
    swap[bad[len(bad) // 2:]] = True
    table = pa.table({
        "直播场次ID": gather(sessions.ids, rows["session"]), "直播开始时间": fmt_time(begin, fmt),
        "用户ID": set_rows(_douyin_uids(rng, ctx, rows["person"]), bad[: len(bad) // 2], None),
        "进入时间": fmt_time(np.where(swap, leave, enter), fmt),
        "离开时间": fmt_time(np.where(swap, enter, leave), fmt),
        "点击商品": pc.if_else(pc.equal(clicked_text, ""), pa.scalar(None, pa.string()),
                           clicked_text),
        "是否下单": pa.array(np.where(rows["ordered"], "是", "否")),
        "下单商品": pc.if_else(pa.array(rows["ordered"]),
                           gather(pids, np.maximum(rows["clicks"][:, 0], 0)),
                           pa.scalar(None, pa.string())),
    })
    return table.take(pa.array(np.lexsort((enter, rows["session"])))), len(bad)


def _douyin_uids(rng: np.random.Generator, ctx: DemoContext, person: np.ndarray) -> pa.Array:
    """Customers' Douyin ids; strangers (-1) get fresh ids that match no customer."""
    known = pc.cast(arrow(ctx.population["douyin_user_id"]).drop_null(), pa.int64()).to_numpy()
    fresh = rng.integers(10**10, 10**11, len(person))
    clash = isin(fresh, known)
    while clash.any():  # a handful of redraws at most
        fresh[clash] = rng.integers(10**10, 10**11, int(clash.sum()))
        clash = isin(fresh, known)
    ours = gather(ctx.population["douyin_user_id"], np.maximum(person, 0))
    return pc.if_else(pa.array(person >= 0), ours, pc.cast(pa.array(fresh), pa.string()))
