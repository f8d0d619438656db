"""The true parameters of every planted pattern, planted and as realized in this run.

"Planted" values are the generator's constants; "realized" values are measured on
the simulated truth (sessions, orders) before any file formatting, so a test or an
analysis that recovers them from the files knows its target and its noise.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from jingzhun.demo import crm, dirty, orders, people, pos, products, sessions, spike
from jingzhun.demo.behaviour import MALFORMED_LINE_RATE
from jingzhun.demo.calendar import HOLIDAY_MULTIPLIER, HOLIDAY_WINDOW_DAYS, holidays
from jingzhun.demo.catalog import FANS_PRODUCT_LINE
from jingzhun.demo.commerce import ONLINE_MALFORMED
from jingzhun.demo.context import CATEGORIES, PERSONAS, DemoContext, DemoFile


def realized_patterns(ctx: DemoContext, files: list[DemoFile]) -> dict[str, object]:
    return {
        "generator": {"seed": ctx.seed, "persons": ctx.population.size,
                      "start": ctx.start.isoformat(), "end": ctx.end.isoformat()},
        "holiday_women_apparel_cosmetics": _holiday(ctx),
        "foundation_sponge": _sponge(ctx),
        "livestream_spike": {**spike.spike_info(ctx), **ctx.shared.get("spike_realized", {})},
        "churn": _churn(ctx),
        "personas": _personas(),
        "high_value": {"share": people.HIGH_VALUE_SHARE,
                       "activity_multiplier": people.HIGH_VALUE_ACTIVITY,
                       "aov_multiplier": people.HIGH_VALUE_AOV,
                       "count": int(np.sum(ctx.population["is_high_value"]))},
        "member_day": {"day_of_month": sessions.MEMBER_DAY,
                       "bargain_hunter_visit_multiplier": sessions.MEMBER_DAY_MULTIPLIER,
                       "bargain_hunter_conversion": sessions.BARGAIN_MEMBER_DAY_CONVERSION},
        "fans_vs_buyers": _fans(ctx),
        "duplicates": _duplicates(ctx),
        "malformed": _malformed(files),
    }


def _holiday(ctx: DemoContext) -> dict[str, object]:
    """Planted multiplier and the realized difference-in-differences on order lines."""
    o = orders.orders_of(ctx)
    sess = sessions.sessions_of(ctx)
    day = sess.day[o.session][o.line_order]
    mask = _window_days(ctx)
    cat = np.array([CATEGORIES.index(c) for c in ctx.catalog["category"]])[o.line_sku]
    female = ctx.population["gender"][o.person[o.line_order]] == "F"
    target = cat <= 1
    in_days, out_days = mask.sum(), (~mask).sum()

    def ratio(sel: np.ndarray) -> float:
        inside = np.sum(sel & mask[day]) / in_days
        outside = np.sum(sel & ~mask[day]) / max(out_days, 1)
        return float(inside / outside) if outside else float("nan")

    target = female & target
    r_t, r_c = ratio(target), ratio(~target)
    return {"holidays": [{"name": n, "date": d.isoformat()} for n, d in
                         holidays(ctx.start, ctx.end)],
            "window_days": HOLIDAY_WINDOW_DAYS, "multiplier": HOLIDAY_MULTIPLIER,
            "applies_to": {"gender": "F", "categories": ["apparel", "cosmetics"]},
            "others_multiplier": 1.0,
            "recover": "lines per day inside / outside the windows, women x (apparel, "
                       "cosmetics) divided by the same ratio for all other lines",
            "realized": {"target_lines_per_day_ratio": round(r_t, 3),
                         "other_lines_per_day_ratio": round(r_c, 3),
                         "difference_in_differences": round(r_t / r_c, 3)}}


def _window_days(ctx: DemoContext) -> np.ndarray:
    from jingzhun.demo.calendar import holiday_window_mask

    return holiday_window_mask(ctx.start, ctx.end)


def _sponge(ctx: DemoContext) -> dict[str, object]:
    o = orders.orders_of(ctx)
    sub = np.asarray(ctx.catalog["subcategory"])[o.line_sku]
    found = np.bincount(o.line_order, weights=sub == "foundation", minlength=len(o)) > 0
    sponge = np.bincount(o.line_order, weights=sub == "beauty_sponge", minlength=len(o)) > 0
    p_cond = float(sponge[found].mean()) if found.any() else float("nan")
    base = float(sponge.mean())
    return {"antecedent_subcategory": "foundation", "consequent_subcategory": "beauty_sponge",
            "p_add_sponge_to_foundation_basket": orders.P_SPONGE_GIVEN_FOUNDATION,
            "realized": {"orders": len(o), "orders_with_foundation": int(found.sum()),
                         "p_sponge_given_foundation": round(p_cond, 4),
                         "p_sponge_any_order": round(base, 4),
                         "lift": round(p_cond / base, 3) if base else None}}


def _churn(ctx: DemoContext) -> dict[str, object]:
    churn = ctx.population["churn_date"]
    return {"share_of_eligible": people.CHURN_SHARE,
            "eligible": "persons with >= 120 days between first activity and the end",
            "churn_date": ">= 60 days after first activity",
            "decay": "visit intensity x exp(-ln2 x days_since_churn / half_life)",
            "half_life_days": people.CHURN_HALF_LIFE_DAYS,
            "churners": int((~np.isnat(churn)).sum())}


def _personas() -> dict[str, object]:
    out = {}
    for k, name in enumerate(PERSONAS):
        out[name] = {
            "share": float(people.PERSONA_SHARE[k]), "female_share": float(people.FEMALE_SHARE[k]),
            "age_mean": float(people.AGE_MEAN[k]), "age_sd": float(people.AGE_SD[k]),
            "category_mix": dict(zip(CATEGORIES, sessions.CATEGORY_MIX[k].tolist(), strict=True)),
            "channel_weights": dict(zip(sessions.CHANNELS, sessions.CHANNEL_WEIGHTS[k].tolist(),
                                        strict=True)),
            "channel_use": dict(zip(("web", "app", "miniprogram", "store"),
                                    people.CHANNEL_USE[k].tolist(), strict=True)),
            "conversion": float(sessions.CONVERSION[k]), "aov_base": float(people.AOV_BASE[k]),
            "activity_base": float(people.ACTIVITY_BASE[k]),
            "hour_peaks": [list(p) for p in sessions.HOUR_PEAKS[k]],
        }
    return out


def _fans(ctx: DemoContext) -> dict[str, object]:
    """Buyers of FANS_PRODUCT_LINE skew under 30 (social fans 30-39 are planted by B)."""
    o = orders.orders_of(ctx)
    line = np.asarray(ctx.catalog["product_line"])[o.line_sku] == FANS_PRODUCT_LINE
    age = (np.datetime64(ctx.start, "D") - ctx.population["birth_date"]).astype(int) / 365.25
    buyer_age = age[o.person[o.line_order]]
    young = buyer_age < products.YOUNG_AGE
    return {"product_line": FANS_PRODUCT_LINE,
            "buyer_weight_under_30": products.FANS_LINE_YOUNG,
            "buyer_weight_30_plus": products.FANS_LINE_OLDER,
            "realized": {"line_buyers_share_under_30": round(float(young[line].mean()), 3)
                         if line.any() else None,
                         "all_buyers_share_under_30": round(float(young.mean()), 3)
                         if len(young) else None}}


def _duplicates(ctx: DemoContext) -> dict[str, object]:
    dup = crm.duplicates_of(ctx)
    return {"crm_duplicate_share_of_members": crm.DUPLICATE_SHARE,
            "crm_duplicates": len(dup["person"]),
            "duplicate_new_phone_share": crm.DUPLICATE_NEW_PHONE,
            "new_phone_duplicates_keep_birthday": True,
            "duplicate_name_typo_share": crm.DUPLICATE_NAME_TYPO,
            "crm_name_typo_rate": crm.NAME_TYPO_RATE,
            "phone_formats": dict(dirty.PHONE_FORMATS),
            "pos_card_shown": pos.CARD_SHOWN, "pos_phone_given_member": pos.PHONE_GIVEN_MEMBER,
            "pos_phone_given_guest": pos.PHONE_GIVEN_GUEST, "pos_phone_masked": pos.PHONE_MASKED}


def _malformed(files: list[DemoFile]) -> dict[str, object]:
    rows: Counter[str] = Counter()
    bad: Counter[str] = Counter()
    for f in files:
        rows[f.source] += f.rows
        bad[f.source] += f.malformed_rows
    return {"rates": {"pos_sales": pos.POS_MALFORMED, "crm_members": crm.CRM_MALFORMED,
                      "online_orders": ONLINE_MALFORMED,
                      "events_non_json_lines": MALFORMED_LINE_RATE},
            "counts": {s: {"rows": rows[s], "malformed": bad[s]} for s in sorted(rows)}}
