"""Per-visit SDK context: ids, IP, user agent, device, app version, referrer, campaign.

Everything that is constant within a visit is computed once per visit (arrays of
visit length) and gathered per event with `take`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jingzhun.demo.behaviour import Visits
from jingzhun.demo.context import DemoContext
from jingzhun.demo.sessions import sessions_of
from jingzhun.demo.vectors import concat, take, where

WEB_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; V2309A) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/118.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2f) NetType/WIFI Language/zh_CN",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/122.0.0.0 Safari/537.36 Edg/122.0.0.0",
    "Mozilla/5.0 (Linux; Android 12; HarmonyOS; ALN-AL00; HMSCore 6.13.0.302) AppleWebKit/537.36"
    " (KHTML, like Gecko) Chrome/99.0.4844.88 HuaweiBrowser/14.0.5.302 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/94.0.4606.71 Safari/537.36 Core/1.94.236.400 QQBrowser/12.4.5622.400",
)
WEB_AGENT_P = np.array([0.22, 0.08, 0.22, 0.18, 0.12, 0.06, 0.07, 0.05])
# (manufacturer, model, os, os versions) for app installs and mini-program phones.
DEVICES = (
    ("Apple", "iPhone15,2", "iOS", ("17.4.1", "17.5", "18.0")),
    ("Apple", "iPhone16,1", "iOS", ("17.5", "18.0", "18.1")),
    ("Apple", "iPhone14,5", "iOS", ("16.7.8", "17.4.1")),
    ("HUAWEI", "ALN-AL00", "Android", ("12",)),
    ("Xiaomi", "23127PN0CC", "Android", ("14",)),
    ("OPPO", "PHZ110", "Android", ("14",)),
    ("vivo", "V2309A", "Android", ("14",)),
    ("HONOR", "PGT-AN10", "Android", ("14",)),
)
DEVICE_P = np.array([0.16, 0.14, 0.10, 0.16, 0.14, 0.10, 0.12, 0.08])
REFERRERS = ("", "https://www.baidu.com/", "https://www.xiaohongshu.com/", "https://weibo.com/",
             "https://www.douyin.com/", "https://cn.bing.com/")
REFERRER_P = np.array([0.45, 0.25, 0.12, 0.06, 0.08, 0.04])
CAMPAIGNS = (("baidu", "cpc", "brand_search"), ("xiaohongshu", "social", "seeding_notes"),
             ("douyin", "cpm", "feed_ads"), ("wechat", "social", "moments_ads"),
             ("email", "email", "member_newsletter"))
MP_APPID = "wx8f3c6a1d2b9e4c70"
CAMPAIGN_SHARE = 0.15  # web landings with UTM parameters
IP_FIRST_OCTETS = np.array([36, 39, 42, 58, 59, 60, 61, 101, 106, 110, 111, 112, 113, 114,
                            115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 180, 182,
                            183, 202, 203, 218, 219, 220, 221, 222, 223])


@dataclass
class VisitContext:
    """Visit-level Arrow columns; `columns` gathers them per event."""

    anonymous_id: pa.Array
    member_id: pa.Array
    per_visit: dict[str, pa.Array]

    def columns(self, visit: np.ndarray) -> dict[str, pa.Array]:
        idx = pa.array(visit)
        return {name: col.take(idx) for name, col in self.per_visit.items()}


def visit_context(ctx: DemoContext, visits: Visits) -> VisitContext:
    rng = ctx.rng("events.context")
    pop = ctx.population
    sess = sessions_of(ctx)
    person = sess.person[visits.index]
    channel = sess.channel[visits.index]
    anon = _anonymous_ids(ctx, visits, person, channel)
    cols: dict[str, pa.Array] = {"ip": _ips(rng, len(person))}
    cols.update(_devices(visits, person, channel))
    cols.update(_landing(rng, len(person), channel))
    cols["app_version"] = _app_versions(rng, sess.day[visits.index])
    cols.update(_libraries(channel, cols["os_name"]))
    cols["ua"] = _user_agents(visits, channel, cols)
    cols["cart_id"] = concat("cart-", pc.utf8_slice_codeunits(anon, 0, 8), "-",
                             pc.cast(pa.array(sess.day[visits.index]), pa.string()))
    cols.update(_traits(ctx, rng, person))
    return VisitContext(anon, take(pop["member_id"], person), cols)


def _libraries(channel: np.ndarray, os_name: pa.Array) -> dict[str, pa.Array]:
    """SDK name/version: analytics.js, analytics-ios/-android, the mini-program SDK."""
    ios = pc.equal(os_name, "iOS").to_numpy(zero_copy_only=False)
    code = np.where(channel == 0, 0, np.where(channel == 2, 3, np.where(ios, 1, 2)))
    names = np.array(["analytics.js", "analytics-ios", "analytics-android",
                      "analytics-wechat-miniprogram"], dtype=object)
    versions = np.array(["next-1.70.0", "4.1.8", "4.11.3", "1.3.2"], dtype=object)
    return {"lib_name": take(names, code), "lib_version": take(versions, code),
            "os_type": pc.utf8_lower(os_name)}


def _user_agents(visits: Visits, channel: np.ndarray, cols: dict[str, pa.Array]) -> pa.Array:
    """Browser UA per cookie (web); app and WeChat UAs from the device's OS and model."""
    web = take(np.array(WEB_AGENTS, dtype=object), _agent_index(visits, channel))
    ios = pc.equal(cols["os_name"], "iOS")
    ver, model = cols["os_version"], cols["model"]
    app = pc.if_else(ios, concat("Jingzhun/", cols["app_version"], " (iPhone; iOS ", ver,
                                 "; Scale/3.00)"),
                     concat("Dalvik/2.1.0 (Linux; U; Android ", ver, "; ", model,
                            " Build/UP1A.231005.007)"))
    wx = f" MicroMessenger/8.0.47(0x18002f2f) NetType/WIFI Language/zh_CN miniProgram/{MP_APPID}"
    mp = pc.if_else(ios, concat("Mozilla/5.0 (iPhone; CPU iPhone OS ", pc.replace_substring(
        ver, ".", "_"), " like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
        wx), concat("Mozilla/5.0 (Linux; Android ", ver, "; ", model, ") AppleWebKit/537.36 "
                    "(KHTML, like Gecko) Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 XWEB/"
                    "1160117 MMWEBSDK/20240301", wx))
    return pc.choose(pa.array(channel.astype(np.int8)), web, app, mp)


def _anonymous_ids(ctx: DemoContext, visits: Visits, person: np.ndarray,
                   channel: np.ndarray) -> pa.Array:
    """Cookie id (web), install id (app), openid (mini-program)."""
    pop = ctx.population
    stream = pa.array(visits.stream)
    web = pop["anonymous_ids"].values.take(pc.if_else(pa.array(channel == 0), stream, 0)) \
        if len(pop["anonymous_ids"].values) else pa.nulls(len(person), pa.string())
    app = pop["device_ids"].values.take(pc.if_else(pa.array(channel == 1), stream, 0)) \
        if len(pop["device_ids"].values) else pa.nulls(len(person), pa.string())
    mp = take(pop["wechat_openid"], person)
    return pc.choose(pa.array(channel.astype(np.int8)), web, app, mp)


def _ips(rng: np.random.Generator, n: int) -> pa.Array:
    octets = [pa.array(IP_FIRST_OCTETS[rng.integers(0, len(IP_FIRST_OCTETS), n)])]
    octets += [pa.array(rng.integers(1, 255, n)) for _ in range(3)]
    return pc.binary_join_element_wise(*[pc.cast(o, pa.string()) for o in octets], ".")


def _agent_index(visits: Visits, channel: np.ndarray) -> np.ndarray:
    """A browser per cookie: stable for the cookie (hash of its index), by market share."""
    h = (visits.stream * 2654435761 % 2**32) / 2**32
    return np.searchsorted(np.cumsum(WEB_AGENT_P), h, side="right").clip(0, len(WEB_AGENTS) - 1)


def _devices(visits: Visits, person: np.ndarray,
             channel: np.ndarray) -> dict[str, pa.Array]:
    """Device model and OS, stable per install (app) or per person (mini-program)."""
    key = np.where(channel == 1, visits.stream, person + 10**9)
    h = (key * 2246822519 % 2**32) / 2**32
    d = np.searchsorted(np.cumsum(DEVICE_P), h, side="right").clip(0, len(DEVICES) - 1)
    os_ver = _os_versions(d, key * 3266489917 % 1000)
    return {"manufacturer": take(np.array([x[0] for x in DEVICES], dtype=object), d),
            "model": take(np.array([x[1] for x in DEVICES], dtype=object), d),
            "os_name": take(np.array([x[2] for x in DEVICES], dtype=object), d),
            "os_version": os_ver}


def _os_versions(device: np.ndarray, h: np.ndarray) -> pa.Array:
    width = max(len(x[3]) for x in DEVICES)
    table = np.array([[x[3][k % len(x[3])] for k in range(width)] for x in DEVICES],
                     dtype=object)
    return take(table.ravel(), device * width + h % width)


def _landing(rng: np.random.Generator, n: int, channel: np.ndarray) -> dict[str, pa.Array]:
    """Referrer and UTM campaign of web landings."""
    ref = take(np.array(REFERRERS, dtype=object), rng.choice(len(REFERRERS), n, p=REFERRER_P))
    camp = rng.integers(0, len(CAMPAIGNS), n)
    has = (channel == 0) & (rng.random(n) < CAMPAIGN_SHARE)
    out = {"referrer": ref}
    for k, name in enumerate(("utm_source", "utm_medium", "utm_campaign")):
        out[name] = where(has, take(np.array([c[k] for c in CAMPAIGNS], dtype=object), camp),
                          None)
    return out


def _app_versions(rng: np.random.Generator, day: np.ndarray) -> pa.Array:
    """A release every ~6 weeks from 5.8.0; devices lag 0-2 releases behind."""
    release = np.maximum(day // 42 - rng.integers(0, 3, len(day)), 0)
    minor = 8 + release
    return concat("5.", pc.cast(pa.array(minor), pa.string()), ".",
                  pc.cast(pa.array(rng.integers(0, 3, len(day))), pa.string()))


def _traits(ctx: DemoContext, rng: np.random.Generator, person: np.ndarray
            ) -> dict[str, pa.Array]:
    """What identify() sends: phone as typed (11 digits), email, level, WeChat ids."""
    pop = ctx.population
    return {"t_phone": take(pop["phone"], person), "t_email": take(pop["email"], person),
            "t_level": take(pop["member_level"], person),
            "t_openid": take(pop["wechat_openid"], person),
            "t_unionid": take(pop["wechat_unionid"], person),
            "signup_method": take(np.array(["phone", "wechat"], dtype=object),
                                  (rng.random(len(person)) < 0.4).astype(np.int64))}
