"""Questionnaire export: the "small data" (小数据) of income, job and stated preferences.

The file is what 问卷星 (wjx.cn) gives a brand: GB18030-encoded CSV (it opens in
Chinese Excel), numbered question headers ("1、您的月收入"), unpadded dates
("2025/3/4 9:05:07"), multi-select answers joined by "┋" and "(空)" for a skipped
open question. Respondents identify themselves by phone and/or member number, typed
as people type them. Income and job agree with the Population truth except for a
stated share of noise (people round, change jobs, or click the wrong option).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from jingzhun.demo.context import PERSONAS, DemoContext
from jingzhun.demo.marketing import (
    SECONDS_PER_DAY,
    SourceResult,
    arrow,
    day0,
    emit,
    fmt_time,
    gather,
    notnull,
    pick_malformed,
    span_days,
    to_str,
    write_truth_table,
)
from jingzhun.demo.vectors import concat, weighted_sample

RESPONSE_RATE = 0.02  # respondents per person (at least MIN_RESPONDENTS)
MIN_RESPONDENTS = 600
INCOME_NOISE = 0.08  # share of answers replaced by a random band
JOB_NOISE = 0.06
MALFORMED_RATE = 0.01  # a 10-digit phone and no member number: nobody to match
WAVES = (0.17, 0.45, 0.72)  # survey waves, as fractions of the period; each runs 14 days
CATEGORY_ZH = ("服饰", "美妆护肤", "美容工具", "家居生活")
# P(category ticked) per persona (PERSONAS order) x (apparel, cosmetics, tools, home).
CATEGORY_P = np.array([[0.30, 0.95, 0.60, 0.15], [0.95, 0.45, 0.15, 0.10],
                       [0.25, 0.30, 0.10, 0.95], [0.50, 0.50, 0.30, 0.50],
                       [0.60, 0.80, 0.40, 0.40]])
PRICE_SENSITIVITY_MEAN = np.array([3.0, 3.0, 3.0, 4.6, 1.6])
CHANNELS_ZH = np.array(["天猫旗舰店", "抖音直播间", "微信小程序", "品牌APP", "线下门店", "京东"],
                       dtype=object)
COMMENTS = {
    "beauty_enthusiast": ("希望多出一些敏感肌可用的产品。", "粉底液很好用,希望出更多色号。",
                          "会员积分能不能多一些兑换礼品?"),
    "fashion_trendsetter": ("直播间的衣服很好看,希望尺码更全。", "发货速度可以再快一点。",
                            "希望多一些新款上新提醒。"),
    "home_maker": ("家居用品质量不错,包装可以更环保。", "希望小程序下单更方便。",
                   "香薰味道很喜欢,希望有更多香型。"),
    "bargain_hunter": ("优惠券太少了,希望多搞活动。", "价格有点贵,等打折再买。",
                       "满减门槛能不能低一点?"),
    "premium_loyalist": ("门店导购服务很专业。", "希望有专属的会员活动。", "新品可以优先通知老会员。"),
}
GENERIC = ("整体满意。", "物流很快,点赞!", "客服回复有点慢。")


def write_surveys(ctx: DemoContext) -> SourceResult:
    """surveys/survey_responses.csv (GB18030) and the respondent truth."""
    rng = ctx.rng("surveys")
    pop = ctx.population
    n = min(pop.size, max(MIN_RESPONDENTS, round(RESPONSE_RATE * pop.size)))
    signup = (np.asarray(pop["signup_date"], dtype="datetime64[D]")
              - np.datetime64(ctx.start, "D")).astype(np.int64)
    waves = (np.array(WAVES) * span_days(ctx)).astype(np.int64)
    weight = (np.where(notnull(pop["member_id"]), 2.0, 1.0) * np.sqrt(pop["activity"])
              * (signup <= waves[-1]))
    who = weighted_sample(rng, weight, n)
    submitted = _submitted(rng, ctx, signup[who], waves)
    order = np.argsort(submitted, kind="stable")
    who, submitted = who[order], submitted[order]
    income, income_noisy = _noisy(rng, np.asarray(pop["income_band"], dtype=object)[who],
                                  INCOME_NOISE)
    job, job_noisy = _noisy(rng, np.asarray(pop["job"], dtype=object)[who], JOB_NOISE)
    phone, member, bad = _identifiers(rng, ctx, who)
    persona = pd.Categorical(np.asarray(pop["persona"], dtype=object)[who],
                             categories=list(PERSONAS)).codes.astype(np.int64)
    table = pa.table({
        "序号": to_str(np.arange(1, len(who) + 1)), "提交答卷时间": _wjx_time(submitted),
        "所用时间": concat(to_str(np.round(rng.lognormal(np.log(140), 0.5, len(who)))
                                 .astype(np.int64)), "秒"),
        "来源": pa.array(rng.choice(np.array(["微信", "手机提交", "链接"], dtype=object), len(who),
                                  p=[0.7, 0.2, 0.1])),
        "手机号码": phone, "会员卡号": member,
        "1、您的月收入": pa.array(income), "2、您的职业": pa.array(job),
        **_preferences(rng, ctx, who, persona),
    })
    write_truth_table(ctx, "survey_respondents.parquet", pa.table({
        "序号": np.arange(1, len(who) + 1), "person_key": who, "income_noisy": income_noisy,
        "job_noisy": job_noisy, "malformed": np.isin(np.arange(len(who)), bad)}))
    file = emit(ctx, "survey_responses", "surveys/survey_responses.csv", table, len(bad),
                "问卷星 questionnaire export: income, job, preferences, comments",
                encoding="gb18030")
    return SourceResult(files=[file], truth=_truth(ctx, len(who)))


def _truth(ctx: DemoContext, respondents: int) -> dict[str, object]:
    return {"respondents": respondents, "income_noise": INCOME_NOISE, "job_noise": JOB_NOISE,
            "noise_rule": "a noisy answer is a uniformly random option (may equal the truth)",
            "category_tick_p": {p: CATEGORY_P[i].tolist() for i, p in enumerate(PERSONAS)},
            "category_labels": CATEGORY_ZH,
            "price_sensitivity_mean": dict(zip(PERSONAS, PRICE_SENSITIVITY_MEAN.tolist(),
                                               strict=True)),
            "waves": _wave_dates(ctx), "wave_days": 14, "malformed_rate": MALFORMED_RATE,
            "malformed_rule": "手机号码 has 10 digits and 会员卡号 is empty"}


def _wave_dates(ctx: DemoContext) -> list[str]:
    start = np.datetime64(ctx.start, "D")
    return [str(start + int(w * span_days(ctx))) for w in WAVES]


def _submitted(rng: np.random.Generator, ctx: DemoContext, signup: np.ndarray,
               waves: np.ndarray) -> np.ndarray:
    """Local seconds: a wave after the respondent signed up, mostly its first days."""
    first = np.searchsorted(waves, signup)  # first wave on or after signup
    wave = waves[first + (rng.random(len(signup)) * (len(waves) - first)).astype(np.int64)]
    day = wave + np.minimum(rng.exponential(3.0, len(signup)), 13).astype(np.int64)
    return day0(ctx.start) + day * SECONDS_PER_DAY + rng.integers(7 * 3600, 24 * 3600,
                                                                  len(signup))


def _wjx_time(seconds: np.ndarray) -> pa.Array:
    """问卷星's "2025/3/4 9:05:07": month, day and hour without leading zeros."""
    ts = np.asarray(seconds).astype("datetime64[s]")
    months = ts.astype("datetime64[M]")
    day = (ts.astype("datetime64[D]") - months.astype("datetime64[D]")).astype(np.int64) + 1
    hour = (ts - ts.astype("datetime64[D]")).astype(np.int64) // 3600
    return concat(to_str(months.astype("datetime64[Y]").astype(np.int64) + 1970), "/",
                  to_str(months.astype(np.int64) % 12 + 1), "/", to_str(day), " ",
                  to_str(hour), fmt_time(seconds, ":%M:%S"))


def _noisy(rng: np.random.Generator, truth: np.ndarray,
           rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Replace `rate` of the answers by a random option (possibly the same one)."""
    options = np.unique(truth.astype(str))
    noisy = rng.random(len(truth)) < rate
    out = truth.copy()
    out[noisy] = options[rng.integers(0, len(options), int(noisy.sum()))]
    return out, noisy


def _identifiers(rng: np.random.Generator, ctx: DemoContext,
                 who: np.ndarray) -> tuple[pa.Array, pa.Array, np.ndarray]:
    """Phone as typed (plain, spaced, dashed, +86) and/or member number; some broken."""
    n = len(who)
    phone = arrow(gather(ctx.population["phone"], who))
    member = gather(ctx.population["member_id"], who)
    has_member = np.asarray(member.is_valid(), dtype=bool)
    give_member = has_member & (rng.random(n) < 0.8)
    give_phone = ~give_member | (rng.random(n) < 0.75)
    p = [pc.utf8_slice_codeunits(phone, a, b) for a, b in ((0, 3), (3, 7), (7, 11))]
    style = rng.choice(4, n, p=[0.7, 0.15, 0.1, 0.05])
    typed = pc.case_when(pc.make_struct(*(pa.array(style == k) for k in (1, 2, 3))),
                         concat(p[0], " ", p[1], " ", p[2]), concat(p[0], "-", p[1], "-", p[2]),
                         concat("+86 ", phone), phone)
    bad = pick_malformed(rng, n, MALFORMED_RATE)
    broken = np.zeros(n, dtype=bool)
    broken[bad] = True
    typed = pc.if_else(pa.array(broken), pc.utf8_slice_codeunits(phone, 0, 10), typed)
    phone_out = pc.if_else(pa.array(give_phone | broken), typed, pa.scalar(None, pa.string()))
    member_out = pc.if_else(pa.array(give_member & ~broken), member,
                            pa.scalar(None, pa.string()))
    return phone_out, member_out, bad


def _preferences(rng: np.random.Generator, ctx: DemoContext, who: np.ndarray,
                 persona: np.ndarray) -> dict[str, pa.Array]:
    """Ticked categories, usual channel, price sensitivity and a comment."""
    n = len(who)
    ticked = rng.random((n, 4)) < CATEGORY_P[persona]
    ticked[~ticked.any(axis=1), 0] = True
    parts = [pc.if_else(pa.array(ticked[:, j]), "┋" + CATEGORY_ZH[j], "") for j in range(4)]
    categories = pc.utf8_ltrim(concat(*parts), characters="┋")
    sensitivity = np.clip(np.round(rng.normal(PRICE_SENSITIVITY_MEAN[persona], 0.7)), 1, 5)
    return {"3、您感兴趣的品类(多选)": categories,
            "4、您最常用的购物渠道": pa.array(_channel(rng, ctx, who, persona)),
            "5、您对价格的敏感程度(1-5分)": to_str(sensitivity.astype(np.int64)),
            "6、您对我们还有什么建议": pa.array(_comments(rng, persona))}


def _channel(rng: np.random.Generator, ctx: DemoContext, who: np.ndarray,
             persona: np.ndarray) -> np.ndarray:
    pop = ctx.population
    w = np.column_stack([
        np.full(len(who), 1.0), 0.3 + 1.5 * (persona == PERSONAS.index("fashion_trendsetter")),
        2.0 * np.asarray(pop["uses_miniprogram"], dtype=float)[who],
        2.0 * np.asarray(pop["uses_app"], dtype=float)[who],
        3.0 * np.asarray(pop["shops_offline"], dtype=float)[who], np.full(len(who), 0.4)])
    cdf = np.cumsum(w, axis=1)
    pick = (rng.random(len(who))[:, None] * cdf[:, -1:] > cdf).sum(axis=1)
    return CHANNELS_ZH[pick]


def _comments(rng: np.random.Generator, persona: np.ndarray) -> np.ndarray:
    """A persona-flavoured sentence, a generic one, or 问卷星's "(空)" when skipped."""
    table = np.array([COMMENTS[p] for p in PERSONAS], dtype=object)  # (personas, 3)
    own = table[persona, rng.integers(0, 3, len(persona))]
    generic = np.array(GENERIC, dtype=object)[rng.integers(0, len(GENERIC), len(persona))]
    kind = rng.random(len(persona))
    return np.where(kind < 0.35, "(空)", np.where(kind < 0.8, own, generic))
