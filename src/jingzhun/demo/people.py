"""The simulated customers: one `Population` of column arrays.

Every trait a later stage must recover (persona, high value, churn, channel mix)
is drawn here once, so each source file is a *view* of the same people and the
ground truth in `demo-truth/persons.parquet` is exactly what generated them.
All draws are vectorized over persons; see `vectors.py` for the string helpers.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jingzhun.demo.context import PERSONAS, Population
from jingzhun.demo.geo import city_table
from jingzhun.demo.names import POOLS
from jingzhun.demo.vectors import (
    URLSAFE,
    choice_per_row,
    concat,
    digit_strings,
    list_array,
    random_strings,
    stream_rng,
    take,
    uuid4_strings,
    where,
)

# Per-persona parameters, in PERSONAS order:
# beauty_enthusiast, fashion_trendsetter, home_maker, bargain_hunter, premium_loyalist.
PERSONA_SHARE = np.array([0.26, 0.22, 0.22, 0.24, 0.06])
FEMALE_SHARE = np.array([0.93, 0.72, 0.78, 0.62, 0.82])
AGE_MEAN = np.array([28.0, 23.0, 41.0, 36.0, 44.0])
AGE_SD = np.array([5.0, 3.5, 6.0, 10.0, 7.0])
# Probability of using each channel: web, app, mini-program, offline store.
CHANNEL_USE = np.array([
    [0.50, 0.85, 0.40, 0.35],
    [0.65, 0.75, 0.30, 0.25],
    [0.30, 0.30, 0.90, 0.45],
    [0.60, 0.50, 0.60, 0.25],
    [0.40, 0.55, 0.30, 0.90],
])
ACTIVITY_BASE = np.array([1.2, 1.3, 0.9, 1.0, 0.8])
AOV_BASE = np.array([1.0, 0.9, 1.1, 0.6, 2.6])
MEMBER_SHARE = np.array([0.80, 0.70, 0.82, 0.75, 0.97])
EMAIL_SHARE = np.array([0.35, 0.30, 0.30, 0.30, 0.60])
DOUYIN_SHARE = np.array([0.35, 0.60, 0.25, 0.35, 0.15])
WEIBO_SHARE = np.array([0.25, 0.30, 0.10, 0.10, 0.15])

HIGH_VALUE_SHARE = 0.05
HIGH_VALUE_ACTIVITY = 1.8  # activity multiplier for the high-value group
HIGH_VALUE_AOV = 1.5  # order-value multiplier for the high-value group
CHURN_SHARE = 0.25  # of persons with at least 120 days of history left
CHURN_HALF_LIFE_DAYS = 30.0  # activity halves every 30 days after churn_date
EXISTING_SHARE = 0.45  # customers who signed up before the simulated period

INCOME_BANDS = np.array(["5千以下", "5千-1万", "1万-2万", "2万-5万", "5万以上"], dtype=object)
INCOME_P = np.array([
    [0.10, 0.35, 0.35, 0.17, 0.03],
    [0.35, 0.35, 0.20, 0.08, 0.02],
    [0.08, 0.30, 0.37, 0.20, 0.05],
    [0.25, 0.40, 0.25, 0.08, 0.02],
    [0.01, 0.07, 0.22, 0.45, 0.25],
])
JOBS = np.array(["学生", "公司职员", "公务员", "教师", "医护人员", "自由职业", "个体经营",
                 "企业管理者", "全职家庭", "退休"], dtype=object)
JOB_P = np.array([
    [0.08, 0.45, 0.06, 0.07, 0.08, 0.12, 0.06, 0.05, 0.03, 0.00],
    [0.45, 0.25, 0.02, 0.02, 0.03, 0.15, 0.05, 0.01, 0.02, 0.00],
    [0.00, 0.30, 0.08, 0.10, 0.08, 0.06, 0.10, 0.06, 0.20, 0.02],
    [0.10, 0.35, 0.05, 0.06, 0.06, 0.12, 0.10, 0.02, 0.08, 0.06],
    [0.00, 0.15, 0.08, 0.04, 0.06, 0.05, 0.17, 0.40, 0.03, 0.02],
])
PHONE_PREFIXES = np.array([130, 131, 132, 133, 135, 136, 137, 138, 139, 150, 151, 152, 153,
                           155, 156, 157, 158, 159, 166, 173, 176, 177, 180, 181, 182, 183,
                           185, 186, 187, 188, 189, 191, 198, 199])
EMAIL_DOMAINS = np.array(["qq.com", "163.com", "126.com", "sina.com", "outlook.com",
                          "gmail.com", "foxmail.com", "139.com"], dtype=object)
EMAIL_DOMAIN_P = np.array([0.10, 0.35, 0.15, 0.08, 0.10, 0.07, 0.10, 0.05])
MEMBER_LEVELS = np.array(["普通", "银卡", "金卡", "钻石"], dtype=object)


def build_population(n: int, seed: int, start: date, end: date, stores: pa.Table) -> Population:
    """Draw n customers with every column the `Population` contract lists.

    Args:
        n: number of persons.
        seed: master seed; each trait family uses its own named stream.
        start, end: the simulated period (inclusive), for signup and churn dates.
        stores: `build_stores` output, for home stores.
    """
    cols: dict[str, np.ndarray | pa.Array] = {"person_key": np.arange(n, dtype=np.int64)}
    rng = stream_rng(seed, "people.core")
    persona = rng.choice(len(PERSONAS), size=n, p=PERSONA_SHARE)
    cols["persona"] = np.asarray(PERSONAS, dtype=object)[persona]
    cols["gender"] = np.where(rng.random(n) < FEMALE_SHARE[persona], "F", "M").astype(object)
    cols["birth_date"] = _birth_dates(rng, persona, start)
    cols.update(_names(stream_rng(seed, "people.names"), cols["gender"]))
    cols.update(_places(stream_rng(seed, "people.places"), persona, stores))
    cols.update(_value(stream_rng(seed, "people.value"), persona))
    cols.update(_lifecycle(stream_rng(seed, "people.lifecycle"), n, start, end))
    cols.update(_survey(stream_rng(seed, "people.survey"), persona))
    cols.update(_channels(stream_rng(seed, "people.channels"), persona, cols))
    cols.update(_contact(stream_rng(seed, "people.contact"), persona, cols))
    cols.update(_membership(stream_rng(seed, "people.members"), persona, cols))
    cols.update(_platform_ids(stream_rng(seed, "people.platform"), persona, cols))
    return Population(size=n, columns={k: v for k, v in cols.items() if not k.startswith("_")})


def _birth_dates(rng: np.random.Generator, persona: np.ndarray, start: date) -> np.ndarray:
    """Ages per persona (clipped 16-72) at the start of the period, to birth dates."""
    age = np.clip(rng.normal(AGE_MEAN[persona], AGE_SD[persona]), 16, 72)
    days = np.round(age * 365.25).astype(np.int64)
    return (np.datetime64(start, "D") - days).astype("datetime64[D]")


def _names(rng: np.random.Generator, gender: np.ndarray) -> dict[str, pa.Array]:
    """Surname + one or two given characters; pinyin kept for e-mail handles."""
    n = len(gender)
    sur = rng.choice(len(POOLS.surname), size=n, p=POOLS.surname_p)
    female = gender == "F"
    g1 = _given_index(rng, female)
    g2 = _given_index(rng, female)
    two = pa.array(rng.random(n) < 0.72)
    py1 = take(POOLS.given_py, g1)
    name = concat(take(POOLS.surname, sur), take(POOLS.given, g1),
                  pc.if_else(two, take(POOLS.given, g2), ""))
    given_py = pc.if_else(two, concat(py1, take(POOLS.given_py, g2)), py1)
    return {"name": name, "_surname_py": take(POOLS.surname_py, sur), "_given_py": given_py}


def _given_index(rng: np.random.Generator, female: np.ndarray) -> np.ndarray:
    f = POOLS.female_idx[rng.integers(0, len(POOLS.female_idx), len(female))]
    m = POOLS.male_idx[rng.integers(0, len(POOLS.male_idx), len(female))]
    return np.where(female, f, m)


def _places(rng: np.random.Generator, persona: np.ndarray, stores: pa.Table) -> dict:
    """Home city by weight; offline shoppers get a home store in (or near) their city."""
    n = len(persona)
    provinces, cities, weights = city_table()
    city_idx = rng.choice(len(cities), size=n, p=weights)
    store_city = np.asarray(stores["city"].to_pylist(), dtype=object)
    store_prov = np.asarray(stores["province"].to_pylist(), dtype=object)
    store_ids = np.asarray(stores["store_id"].to_pylist(), dtype=object)
    home = store_ids[rng.integers(0, len(store_ids), n)]  # fallback: any store
    local = np.zeros(n, dtype=bool)
    for k in range(len(cities)):  # 36 cities, not persons
        candidates = store_ids[store_city == cities[k]]
        local_city = len(candidates) > 0
        if not local_city:
            candidates = store_ids[store_prov == provinces[k]]
        sel = city_idx == k
        if len(candidates) and sel.any():
            home[sel] = candidates[rng.integers(0, len(candidates), sel.sum())]
            local[sel] = local_city
    return {"province": provinces[city_idx], "city": cities[city_idx],
            "_home_store_candidate": home, "_store_local": local}


def _value(rng: np.random.Generator, persona: np.ndarray) -> dict[str, np.ndarray]:
    """Activity, order-value multiplier and the top-5% high-value flag."""
    n = len(persona)
    activity = ACTIVITY_BASE[persona] * rng.lognormal(-0.245, 0.7, n)
    aov = AOV_BASE[persona] * rng.lognormal(-0.045, 0.3, n)
    score = np.log(activity) + 1.6 * np.log(aov) + rng.normal(0, 0.25, n)
    cut = np.quantile(score, 1 - HIGH_VALUE_SHARE) if n else 0.0
    high = score >= cut
    activity = np.where(high, activity * HIGH_VALUE_ACTIVITY, activity)
    aov = np.where(high, aov * HIGH_VALUE_AOV, aov)
    return {"is_high_value": high, "activity": activity / activity.mean() if n else activity,
            "aov_multiplier": aov}


def _lifecycle(rng: np.random.Generator, n: int, start: date, end: date) -> dict:
    """Signup dates (some before the period) and churn dates for a share of persons."""
    s, e = np.datetime64(start, "D"), np.datetime64(end, "D")
    span = int((e - s).astype(int)) + 1
    existing = rng.random(n) < EXISTING_SHARE
    before = s - rng.integers(1, 3 * 365, n)
    during = s + (rng.random(n) ** 0.85 * span).astype(np.int64)
    signup = np.where(existing, before, during).astype("datetime64[D]")
    first_active = np.maximum(signup, s)
    room = (e - first_active).astype(np.int64)
    churns = (room >= 120) & (rng.random(n) < CHURN_SHARE)
    offset = 60 + (rng.random(n) * np.maximum(room - 90, 1)).astype(np.int64)
    churn = np.where(churns, first_active + offset, np.datetime64("NaT"))
    return {"signup_date": signup, "churn_date": churn.astype("datetime64[D]")}


def _survey(rng: np.random.Generator, persona: np.ndarray) -> dict[str, np.ndarray]:
    """Income band and job, the survey 'small data' truth."""
    income = choice_per_row(rng, INCOME_P[persona])
    job = choice_per_row(rng, JOB_P[persona])
    return {"income_band": INCOME_BANDS[income], "job": JOBS[job]}


def _channels(rng: np.random.Generator, persona: np.ndarray, cols: dict) -> dict:
    """Channel use per persona; at least one digital channel or the store for everyone."""
    n = len(persona)
    use = rng.random((n, 4)) < CHANNEL_USE[persona]
    use[:, 3] &= cols["_store_local"] | (rng.random(n) < 0.15)
    none = ~use.any(axis=1)
    use[none, 1 + rng.integers(0, 2, none.sum())] = True  # app or mini-program
    home = np.where(use[:, 3], cols["_home_store_candidate"], None)
    return {"uses_web": use[:, 0], "uses_app": use[:, 1], "uses_miniprogram": use[:, 2],
            "shops_offline": use[:, 3], "home_store_id": home}


def _contact(rng: np.random.Generator, persona: np.ndarray, cols: dict) -> dict:
    """Unique mainland mobile numbers and optional e-mail addresses."""
    n = len(persona)
    return {"phone": _unique_phones(rng, n), "email": _emails(rng, persona, cols)}


def _unique_phones(rng: np.random.Generator, n: int) -> pa.Array:
    """11-digit numbers from real carrier prefixes; redraw the rare collisions."""
    values = PHONE_PREFIXES[rng.integers(0, len(PHONE_PREFIXES), n)] * 10**8 + rng.integers(
        0, 10**8, n)
    while True:
        _, first = np.unique(values, return_index=True)
        dup = np.ones(n, dtype=bool)
        dup[first] = False
        if not dup.any():
            break
        values[dup] = PHONE_PREFIXES[rng.integers(0, len(PHONE_PREFIXES), dup.sum())] * 10**8 \
            + rng.integers(0, 10**8, dup.sum())
    return digit_strings(values, 11)


def _emails(rng: np.random.Generator, persona: np.ndarray, cols: dict) -> pa.Array:
    """QQ-number mail for some, pinyin handles for others; unique by construction."""
    n = len(persona)
    has = rng.random(n) < EMAIL_SHARE[persona]
    key = digit_strings(cols["person_key"], 7)
    qq = concat(pc.cast(pa.array(rng.integers(10**6, 10**7, n) * 100 + cols["person_key"]
                                 % 100), pa.string()), "@qq.com")
    handle = concat(cols["_given_py"], ".", cols["_surname_py"],
                    pc.utf8_slice_codeunits(key, 2, 7), "@",
                    take(EMAIL_DOMAINS, rng.choice(len(EMAIL_DOMAINS), n, p=EMAIL_DOMAIN_P)))
    email = where(rng.random(n) < 0.4, qq, handle)
    # Handles carry the last 5 digits of person_key; make them unique with the rest.
    email = where(has, email, None)
    return _dedupe(email, key)


def _dedupe(values: pa.Array, key: pa.Array) -> pa.Array:
    """Replace repeated values by value-with-key so each identifier is one person's."""
    counts = pc.value_counts(values.drop_null())
    dup_vals = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    is_dup = pc.fill_null(pc.is_in(values, value_set=dup_vals), False)
    fixed = concat(key, ".", values)
    return pc.if_else(is_dup, fixed, values)


def _membership(rng: np.random.Generator, persona: np.ndarray, cols: dict) -> dict:
    """Member ids numbered in signup order ("JZ100000123"), and levels by value."""
    n = len(persona)
    member = rng.random(n) < MEMBER_SHARE[persona]
    order = np.argsort(cols["signup_date"], kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    ids = concat("JZ", digit_strings(100_000_000 + rank, 9))
    value = cols["activity"] * cols["aov_multiplier"]
    q = np.argsort(np.argsort(value)) / max(n - 1, 1)
    level = np.select([cols["is_high_value"], q > 0.85, q > 0.55], [3, 2, 1], 0)
    level = np.where(cols["is_high_value"] & (rng.random(n) < 0.3), 2, level)
    return {"member_id": where(member, ids, None),
            "member_level": np.where(member, MEMBER_LEVELS[level], None)}


def _platform_ids(rng: np.random.Generator, persona: np.ndarray, cols: dict) -> dict:
    """WeChat openid/unionid, Douyin and Weibo ids, app devices and web cookies."""
    n = len(persona)
    mp = cols["uses_miniprogram"]
    openid = concat("o", random_strings(rng, n, 27, URLSAFE))
    union = mp & (rng.random(n) < 0.85) | (~mp & (rng.random(n) < 0.15))
    unionid = concat("o", random_strings(rng, n, 27, URLSAFE))
    douyin = rng.random(n) < DOUYIN_SHARE[persona]
    weibo = rng.random(n) < WEIBO_SHARE[persona]
    dev_n = np.where(cols["uses_app"], rng.choice([1, 2, 3], n, p=[0.7, 0.24, 0.06]), 0)
    web_n = np.where(cols["uses_web"], rng.choice([1, 2, 3, 4], n, p=[0.5, 0.3, 0.14, 0.06]), 0)
    return {
        "wechat_openid": where(mp, openid, None),
        "wechat_unionid": where(union, unionid, None),
        "douyin_user_id": where(douyin, pc.cast(pa.array(
            rng.integers(10**10, 10**11, n)), pa.string()), None),
        "weibo_user_id": where(weibo, pc.cast(pa.array(
            rng.integers(10**9, 7 * 10**9, n)), pa.string()), None),
        "device_ids": list_array(dev_n, uuid4_strings(rng, int(dev_n.sum()), upper=True)),
        "anonymous_ids": list_array(web_n, uuid4_strings(rng, int(web_n.sum()))),
    }
