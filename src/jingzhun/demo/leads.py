"""Sales leads (销售线索) with intent signals and their later outcome.

Leads come from web forms, livestream sign-ups, store visits and ad clicks; about
half are existing customers (their real phone), the rest new prospects. Each lead
is reviewed `REVIEW_DAYS` after it is created (the scoring date) and converts within
`OUTCOME_DAYS` after that with a stated logistic probability:

    logit p = intercept + pages * log(1 + pages_viewed) + price * price_checks
              + sample * sample_requested + freshness * days_since_last_activity
              + source effect

where days_since_last_activity is counted at the scoring date (0..14). Lead scoring
can be checked by refitting these coefficients from the file.
"""

from __future__ import annotations

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
    isin,
    pick_malformed,
    span_days,
    to_str,
    write_truth_table,
)
from jingzhun.demo.vectors import concat, digit_strings

LEAD_RATE = 0.02  # leads per person (at least MIN_LEADS)
MIN_LEADS = 3000
EXISTING_SHARE = 0.55  # leads who are already customers
COMPANY_SHARE = 0.2  # corporate gifting / group-purchase leads
REVIEW_DAYS = 14
OUTCOME_DAYS = 30
SOURCES = ("form", "livestream", "store_visit", "ad_click")
SOURCE_P = np.array([0.35, 0.25, 0.15, 0.25])
COEF = {"intercept": -2.2, "log1p_pages_viewed": 0.55, "price_checks": 0.35,
        "sample_requested": 1.1, "days_since_last_activity": -0.12}
SOURCE_EFFECT = {"form": 0.0, "livestream": 0.2, "store_visit": 0.5, "ad_click": -0.3}
MALFORMED_RATE = 0.005  # phone is a 7-digit local number: not a valid mobile
_OWNERS = np.array(["张伟", "王芳", "李娜", "刘洋", "陈静", "杨帆", "赵磊", "黄婷"], dtype=object)
_CO_A = np.array(["晨光", "华信", "鼎盛", "恒远", "新程", "嘉禾", "瑞丰", "启航", "博雅", "优品"],
                 dtype=object)
_CO_B = np.array(["科技有限公司", "贸易有限公司", "文化传媒有限公司", "电子商务有限公司",
                  "企业管理咨询有限公司"], dtype=object)


def write_leads(ctx: DemoContext) -> SourceResult:
    """leads/prospects.csv and the lead-scoring truth."""
    rng = ctx.rng("leads")
    n = max(MIN_LEADS, round(LEAD_RATE * ctx.population.size))
    last_created = max(1, span_days(ctx) - REVIEW_DAYS - OUTCOME_DAYS)
    created = (day0(ctx.start) + rng.integers(0, last_created, n) * SECONDS_PER_DAY
               + rng.integers(9 * 3600, 23 * 3600, n))
    created.sort()
    source = rng.choice(len(SOURCES), n, p=SOURCE_P)
    signals = _signals(rng, source)
    p = conversion_probability(signals, source)
    converted = rng.random(n) < p
    scored = created + REVIEW_DAYS * SECONDS_PER_DAY
    last = scored - (signals["days_since_last_activity"] * SECONDS_PER_DAY).astype(np.int64) \
        - rng.integers(120, 3600, n)
    converted_at = scored + rng.integers(3600, OUTCOME_DAYS * SECONDS_PER_DAY, n)
    person, identity, bad = _identities(rng, ctx, n)
    table = pa.table({
        "lead_id": concat("L", digit_strings(np.arange(1, n + 1) + 10_000_000, 8)),
        "created_at": fmt_time(created, "%Y-%m-%d %H:%M"),
        "source": gather(np.array(SOURCES, dtype=object), source), **identity,
        "last_activity_at": fmt_time(np.maximum(last, created), "%Y-%m-%d %H:%M"),
        "pages_viewed": to_str(signals["pages_viewed"]),
        "price_checks": to_str(signals["price_checks"]),
        "sample_requested": pa.array(np.where(signals["sample_requested"] > 0, "Y", "N")),
        "owner": gather(_OWNERS, rng.integers(0, len(_OWNERS), n)),
        "status": pa.array(np.where(converted, "won", _open_or_lost(ctx, last))),
        "converted_at": fmt_time(converted_at, "%Y-%m-%d %H:%M", converted),
    })
    write_truth_table(ctx, "lead_outcomes.parquet", pa.table({
        "lead_id": table["lead_id"], "person_key": person, "p_convert": p}))
    file = emit(ctx, "prospects", "leads/prospects.csv", table, len(bad),
                "Sales leads with intent signals and outcome, English headers")
    return SourceResult(files=[file], truth=_truth(n, converted, bad))


def conversion_probability(signals: dict[str, np.ndarray], source: np.ndarray) -> np.ndarray:
    """The planted lead-scoring model (see module docstring)."""
    logit = (COEF["intercept"]
             + COEF["log1p_pages_viewed"] * np.log1p(signals["pages_viewed"])
             + COEF["price_checks"] * signals["price_checks"]
             + COEF["sample_requested"] * signals["sample_requested"]
             + COEF["days_since_last_activity"] * signals["days_since_last_activity"]
             + np.array([SOURCE_EFFECT[s] for s in SOURCES])[source])
    return 1 / (1 + np.exp(-logit))


def _signals(rng: np.random.Generator, source: np.ndarray) -> dict[str, np.ndarray]:
    """Pages viewed, price checks (more with more pages), sample requests, freshness."""
    n = len(source)
    pages = 1 + rng.negative_binomial(2, 0.35, n)
    price = rng.poisson(0.25 * pages)
    sample = (rng.random(n) < 0.12 + 0.08 * (source == SOURCES.index("store_visit"))).astype(int)
    fresh = rng.integers(0, REVIEW_DAYS + 1, n)
    return {"pages_viewed": pages, "price_checks": price, "sample_requested": sample,
            "days_since_last_activity": fresh}


def _open_or_lost(ctx: DemoContext, last: np.ndarray) -> np.ndarray:
    """Not converted: lost after 30 quiet days before the export, else still open."""
    cutoff = day0(ctx.end) - 30 * SECONDS_PER_DAY
    return np.where(last < cutoff, "lost", "open")


def _identities(rng: np.random.Generator, ctx: DemoContext,
                n: int) -> tuple[np.ndarray, dict[str, pa.Array], np.ndarray]:
    """Existing customers keep their phone; prospects get fresh numbers and names."""
    pop = ctx.population
    existing = rng.random(n) < EXISTING_SHARE
    person = np.where(existing, rng.integers(0, pop.size, n), -1)
    donor = rng.integers(0, pop.size, n)  # name/city donor for new prospects
    who = np.where(existing, person, donor)
    phone = pc.if_else(pa.array(existing), gather(pop["phone"], np.maximum(person, 0)),
                       _fresh_phones(rng, ctx, n))
    bad = pick_malformed(rng, n, MALFORMED_RATE)
    broken = np.zeros(n, dtype=bool)
    broken[bad] = True
    phone = pc.if_else(pa.array(broken), pc.utf8_slice_codeunits(phone, 4, 11), phone)
    company = concat(pc.replace_substring_regex(gather(pop["city"], who), pattern="市$",
                                                replacement=""),
                     gather(_CO_A, rng.integers(0, len(_CO_A), n)),
                     gather(_CO_B, rng.integers(0, len(_CO_B), n)))
    is_co = pa.array(rng.random(n) < COMPANY_SHARE)
    return person, {
        "contact_name": gather(pop["name"], who),
        "company": pc.if_else(is_co, company, pa.scalar(None, pa.string())),
        "phone": phone, "city": gather(pop["city"], who),
    }, bad


def _fresh_phones(rng: np.random.Generator, ctx: DemoContext, n: int) -> pa.Array:
    """Mobile numbers (199/166/177 prefixes) that no customer has."""
    known = pc.cast(arrow(ctx.population["phone"]), pa.int64()).to_numpy()
    prefix = np.array([199, 166, 177])
    values = prefix[rng.integers(0, 3, n)] * 10**8 + rng.integers(0, 10**8, n)
    clash = isin(values, known)
    while clash.any():  # rare; a few redraws
        values[clash] = prefix[rng.integers(0, 3, clash.sum())] * 10**8 + rng.integers(
            0, 10**8, clash.sum())
        clash = isin(values, known)
    return digit_strings(values, 11)


def _truth(n: int, converted: np.ndarray, bad: np.ndarray) -> dict[str, object]:
    return {
        "leads": n, "conversion_rate": float(converted.mean()),
        "model": "logit p = intercept + sum(coef * feature) + source_effect",
        "coefficients": COEF, "source_effect": SOURCE_EFFECT,
        "features": {"log1p_pages_viewed": "ln(1 + pages_viewed)",
                     "days_since_last_activity": "days from last_activity_at to the scoring "
                                                 "date created_at + 14 days (0..14)"},
        "review_days": REVIEW_DAYS, "outcome_days": OUTCOME_DAYS,
        "existing_customer_share": EXISTING_SHARE, "company_share": COMPANY_SHARE,
        "malformed_rate": MALFORMED_RATE, "malformed_rows": int(len(bad)),
        "malformed_rule": "phone is a 7-digit number",
    }
