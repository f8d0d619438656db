"""The demo truth (stores, people, catalogue) on its own, without writing files."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from jingzhun.demo import CATEGORIES, PERSONAS, make_context
from jingzhun.demo.catalog import FANS_PRODUCT_LINE, SPIKE_LEAD_DAYS, build_catalog, spike_date
from jingzhun.demo.geo import build_stores
from jingzhun.demo.people import build_population

START, END = date(2024, 11, 1), date(2026, 10, 31)
REQUIRED = ["person_key", "name", "gender", "birth_date", "province", "city", "persona", "is_high_value", "signup_date", "churn_date", "income_band", "job", "phone", "email", "member_id", "member_level", "wechat_openid", "wechat_unionid", "douyin_user_id", "weibo_user_id", "device_ids", "anonymous_ids", "uses_web", "uses_app", "uses_miniprogram", "shops_offline", "home_store_id", "activity"]


@pytest.fixture(scope="module")
def stores() -> pa.Table:
    return build_stores(7)


@pytest.fixture(scope="module")
def pop(stores):
    return build_population(20_000, 7, START, END, stores)


def ean_ok(code: str) -> bool:
    digits = [int(c) for c in code]
    return len(digits) == 13 and (10 - sum(d * (3 if i % 2 else 1)
                                           for i, d in enumerate(digits[:12])) % 10) % 10 == digits[12]


def test_stores_cover_many_cities(stores):
    assert stores.num_rows >= 20
    assert set(stores.column_names) >= {"store_id", "name", "province", "city", "opened_on"}
    assert len(set(stores["city"].to_pylist())) >= 15
    assert len(set(stores["store_id"].to_pylist())) == stores.num_rows


def test_population_has_every_contract_column(pop):
    for name in REQUIRED:
        assert name in pop.columns, name
        assert len(pop[name]) == pop.size, name
    assert np.array_equal(pop["person_key"], np.arange(pop.size))


def test_phones_are_unique_mainland_mobiles(pop):
    phones = pop["phone"].to_pylist()
    assert len(set(phones)) == len(phones)
    assert all(re.fullmatch(r"1[3-9]\d{9}", p) for p in phones)


def test_identifiers_are_unique_per_person(pop):
    for col in ("member_id", "email", "wechat_openid", "wechat_unionid"):
        values = [v for v in pop[col].to_pylist() if v is not None]
        assert len(set(values)) == len(values), col
    cookies = pop["anonymous_ids"].values.to_pylist()
    assert len(set(cookies)) == len(cookies)


def test_channel_flags_match_identifiers(pop):
    counts = np.diff(pop["anonymous_ids"].offsets.to_numpy())
    assert np.all((counts > 0) == pop["uses_web"])
    devices = np.diff(pop["device_ids"].offsets.to_numpy())
    assert np.all((devices > 0) == pop["uses_app"])
    openid = np.asarray(pop["wechat_openid"].is_valid())
    assert np.all(openid == pop["uses_miniprogram"])
    home = pop["home_store_id"] != None  # noqa: E711 - elementwise on an object array
    assert np.all(home == pop["shops_offline"])


def test_high_value_share_and_traits(pop):
    high = pop["is_high_value"]
    assert 0.045 <= high.mean() <= 0.055
    assert pop["aov_multiplier"][high].mean() > 2 * pop["aov_multiplier"][~high].mean()
    premium = pop["persona"] == "premium_loyalist"
    assert high[premium].mean() > 5 * high[~premium].mean()


def test_personas_differ_in_age_and_gender(pop):
    age = (np.datetime64(START) - pop["birth_date"]).astype(int) / 365.25
    means = {p: age[pop["persona"] == p].mean() for p in PERSONAS}
    assert means["fashion_trendsetter"] < means["beauty_enthusiast"] < means["home_maker"]
    female = {p: (pop["gender"][pop["persona"] == p] == "F").mean() for p in PERSONAS}
    assert female["beauty_enthusiast"] > 0.85 > female["bargain_hunter"]


def test_churn_follows_first_activity(pop):
    churn = pop["churn_date"]
    has = ~np.isnat(churn)
    assert 0.1 < has.mean() < 0.3
    first = np.maximum(pop["signup_date"][has], np.datetime64(START))
    assert np.all((churn[has] - first).astype(int) >= 60)
    assert np.all(churn[has] <= np.datetime64(END))


def test_population_is_reproducible(stores):
    a = build_population(500, 3, START, END, stores)
    b = build_population(500, 3, START, END, stores)
    c = build_population(500, 4, START, END, stores)
    assert a["name"].equals(b["name"]) and a["phone"].equals(b["phone"])
    assert not a["phone"].equals(c["phone"])


def test_catalog_barcodes_skus_and_categories():
    cat = build_catalog(7, START, END)
    barcodes = cat["barcode"].to_pylist()
    assert all(ean_ok(b) for b in barcodes)
    assert len(set(barcodes)) == cat.size == len(set(cat["sku"].to_pylist()))
    assert set(cat["category"]) == set(CATEGORIES)
    subs = set(cat["subcategory"])
    assert {"foundation", "beauty_sponge"} <= subs
    assert FANS_PRODUCT_LINE in set(cat["product_line"])
    assert np.all(cat["cost"] < cat["price"])


def test_spike_item_is_one_recent_launch():
    cat = build_catalog(7, START, END)
    spike = np.flatnonzero(cat["is_spike"])
    assert len(spike) == 1
    day = spike_date(START, END)
    assert START < day < END
    launched = cat["launch_date"][spike[0]]
    assert launched == np.datetime64(day - timedelta(days=SPIKE_LEAD_DAYS))
    assert cat["popularity"][spike[0]] < np.median(cat["popularity"])


def test_make_context_rejects_bad_arguments(tmp_path: Path):
    with pytest.raises(ValueError, match="persons"):
        make_context(tmp_path, 0, 1)
    with pytest.raises(ValueError, match="end"):
        make_context(tmp_path, 10, 1, start=END, end=START)
    ctx = make_context(tmp_path, 50, 1)
    assert ctx.population.size == 50 and ctx.catalog.size > 500
    assert not (tmp_path / "data").exists()  # building the context writes nothing
