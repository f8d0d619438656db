"""generate_demo end to end: real files on disk, read back the way importers will.

One module-scoped run (8,000 persons over the default two years) feeds the format
and pattern tests; the patterns are recovered from the written files only
(plus demo-truth where the test needs ground truth, e.g. who churned).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pyarrow.parquet as pq
import pytest

from jingzhun.demo import DemoSummary, generate_demo
from jingzhun.demo.crm import HEADERS as CRM_HEADERS
from jingzhun.demo.pos import HEADERS as POS_HEADERS

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
TRACK_EVENTS = {"Products Searched", "Product List Viewed", "Product Viewed", "Product Added",
                "Cart Viewed", "Checkout Started", "Order Completed", "Coupon Applied",
                "Signed Up", "Livestream Viewed"}
PHONE_OK = re.compile(r"1\d{10}|1\d\d\*{4}\d{4}")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, DemoSummary]:
    out = tmp_path_factory.mktemp("demo")
    return out, generate_demo(out, persons=8000, seed=11)


@pytest.fixture(scope="module")
def patterns(demo) -> dict:
    return json.loads((demo[0] / "demo-truth" / "patterns.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def events(demo) -> pd.DataFrame:
    """Every parseable event line with its channel and file."""
    rows = []
    for f in demo[1].files:
        if f.source.endswith("_events"):
            for line in f.path.read_text(encoding="utf-8").splitlines():
                try:
                    msg = json.loads(line)
                except json.JSONDecodeError:
                    continue
                msg["_channel"] = f.source.removesuffix("_events")
                rows.append(msg)
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def products(demo) -> pd.DataFrame:
    return pd.read_csv(demo[0] / "data" / "catalog" / "products.csv", dtype=str)


@pytest.fixture(scope="module")
def pos(demo) -> pd.DataFrame:
    files = sorted((demo[0] / "data" / "pos").glob("store_sales-*.csv"))
    return pd.concat([pd.read_csv(f, encoding="gbk", dtype=str) for f in files])


@pytest.fixture(scope="module")
def online(demo) -> list[dict]:
    out = []
    for f in sorted((demo[0] / "data" / "orders").glob("online_orders-*.jsonl")):
        out += [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines()]
    return out


@pytest.fixture(scope="module")
def members(demo) -> pd.DataFrame:
    wb = openpyxl.load_workbook(demo[0] / "data" / "crm" / "members.xlsx", read_only=True)
    rows = [r for ws in wb.worksheets for r in ws.iter_rows(min_row=2, values_only=True)]
    header = next(wb.worksheets[0].iter_rows(max_row=1, values_only=True))
    wb.close()
    return pd.DataFrame(rows, columns=list(header))


# -- files and formats ------------------------------------------------------------------


def test_every_source_written_and_summarised(demo):
    out, summary = demo
    counts = summary.counts_by_source()
    for source in ("web_events", "app_events", "miniprogram_events", "online_orders",
                   "pos_sales", "crm_members", "products", "stores"):
        assert counts.get(source, 0) > 0, source
    for f in summary.files:
        assert f.path.is_file() and f.path.is_relative_to(out / "data"), f.path
    assert sum(counts.values()) == sum(f.rows for f in summary.files)
    assert summary.persons == 8000 and summary.seconds > 0
    for name in ("persons.parquet", "identifiers.parquet", "patterns.json"):
        assert (out / "demo-truth" / name).is_file()
    assert not (out / "jingzhun.yaml").exists()  # the workspace config is the CLI's job


def test_events_are_ten_to_twenty_per_person(demo):
    counts = demo[1].counts_by_source()
    per_person = sum(v for k, v in counts.items() if k.endswith("_events")) / 8000
    assert 8 <= per_person <= 20


def test_pos_csv_is_gbk_with_chinese_headers(demo, pos):
    first = sorted((demo[0] / "data" / "pos").glob("*.csv"))[0].read_bytes()
    with pytest.raises(UnicodeDecodeError):
        first.decode("utf-8")
    assert list(pos.columns) == list(POS_HEADERS)
    pos_rows = sum(f.rows for f in demo[1].files if f.source == "pos_sales")
    assert len(pos) == pos_rows


def test_pos_phones_come_in_many_formats(pos):
    phones = pos["会员手机号"].dropna()
    shapes = {re.sub(r"\d", "9", p) for p in phones}
    for shape in ("99999999999", "999-9999-9999", "+99 999 9999 9999", "99-99999999999",
                  "999****9999"):
        assert shape in shapes, shape


def test_crm_workbook_opens_read_only(demo, members):
    assert list(members.columns) == list(CRM_HEADERS)
    crm = [f for f in demo[1].files if f.source == "crm_members"][0]
    assert len(members) == crm.rows
    assert members["注册时间"].map(lambda v: isinstance(v, datetime)).all()


def test_event_lines_follow_the_segment_spec(events):
    assert set(events["type"]) == {"track", "identify", "page", "screen"}
    assert events["messageId"].map(lambda m: bool(UUID.fullmatch(m))).all()
    assert events["messageId"].is_unique
    for col in ("timestamp", "originalTimestamp", "sentAt", "receivedAt"):
        assert events[col].map(lambda t: bool(ISO_MS.fullmatch(t))).all(), col
    assert events["anonymousId"].notna().all() and "userId" in events.columns
    track = events[events["type"] == "track"]
    assert set(track["event"]) == TRACK_EVENTS
    assert track["properties"].map(lambda p: isinstance(p, dict)).all()
    assert events.loc[events["type"] == "identify", "traits"].map(
        lambda t: isinstance(t, dict) and "phone" in t).all()
    assert events.loc[events["type"].isin(["page", "screen"]), "name"].notna().all()
    ctx = events["context"]
    assert ctx.map(lambda c: c["locale"] == "zh-CN" and c["timezone"] == "Asia/Shanghai"
                   and {"name", "version"} <= set(c["library"]) and "ip" in c
                   and "userAgent" in c).all()


def test_context_shape_per_channel(events):
    by = {ch: events[events["_channel"] == ch]["context"] for ch in ("web", "app", "miniprogram")}
    assert by["web"].map(lambda c: {"path", "url", "title", "referrer"} <= set(c["page"])).all()
    assert by["app"].map(lambda c: {"app", "device", "os"} <= set(c)).all()
    assert by["app"].map(lambda c: c["library"]["name"]).isin(
        ["analytics-ios", "analytics-android"]).all()
    mp_identify = events[(events["_channel"] == "miniprogram") & (events["type"] == "identify")]
    assert mp_identify["traits"].map(lambda t: "wechat_openid" in t).all()


def test_commerce_properties(events):
    orders = events[events["event"] == "Order Completed"]["properties"]
    assert orders.map(lambda p: p["currency"] == "CNY" and p["order_id"].startswith("JZ")
                      and len(p["products"]) >= 1 and p["revenue"] > 0).all()
    checkout = events[events["event"] == "Checkout Started"]["properties"]
    assert checkout.map(lambda p: len(p["products"]) >= 1 and p["value"] > 0).all()
    assert checkout.map(lambda p: "order_id" in p).mean() < 1  # some checkouts are abandoned
    viewed = events[events["event"] == "Product Viewed"]["properties"]
    assert viewed.map(lambda p: {"product_id", "sku", "category", "price"} <= set(p)).all()
    searched = events[events["event"] == "Products Searched"]["properties"]
    assert searched.map(lambda p: bool(p["query"])).all()


def test_anonymous_first_then_identified(events):
    """Before its first identify, a stream's events carry no userId; after, they do."""
    ordered = events.sort_values("timestamp")
    first_identify = ordered[ordered["type"] == "identify"].groupby(
        ["_channel", "anonymousId"])["timestamp"].min()
    merged = ordered.join(first_identify.rename("first_id"), on=["_channel", "anonymousId"])
    before = merged[merged["timestamp"] < merged["first_id"]]
    assert len(before) > 0 and before["userId"].isna().all()
    assert events["userId"].isna().mean() > 0.2  # plenty of anonymous traffic
    ids_per_user = events.dropna(subset=["userId"]).groupby("userId")["anonymousId"].nunique()
    assert (ids_per_user > 1).sum() > 50  # people on several devices / cookies


def test_event_user_ids_are_known_members(demo, events):
    ids = pq.read_table(demo[0] / "demo-truth" / "identifiers.parquet").to_pandas()
    members = set(ids.loc[ids["id_type"] == "member_id", "id_value"])
    assert set(events["userId"].dropna()) <= members
    anon = set(ids.loc[ids["id_type"].isin(["anonymous_id", "device_id", "wechat_openid"]),
                       "id_value"])
    assert set(events["anonymousId"]) <= anon


def test_online_orders_per_platform(online):
    by = defaultdict(list)
    for o in online:
        by[o["platform"]].append(o)
    assert set(by) == {"web", "app", "miniprogram", "tmall", "jd", "douyin_shop"}
    assert all("member_id" in o and "openid" in o for o in by["miniprogram"])
    assert all(re.fullmatch(r"\d{3}\*{4}\d{4}", o["receiver_phone"]) for o in by["tmall"])
    assert all("buyer_open_uid" in o and "member_id" not in o for o in by["tmall"])
    good = [o for o in online if o["placed_at"].endswith("+08:00")]
    assert all(o["currency"] == "CNY" and o["items"] for o in good)
    statuses = {o["status"] for o in online}
    assert statuses == {"paid", "shipped", "completed", "refunded", "cancelled"}


# -- reproducibility ----------------------------------------------------------------------


def _digests(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((out / "data").rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
    start, end = date(2025, 1, 1), date(2025, 6, 30)
    a = generate_demo(tmp_path / "a", persons=1500, seed=5, start=start, end=end)
    b = generate_demo(tmp_path / "b", persons=1500, seed=5, start=start, end=end)
    c = generate_demo(tmp_path / "c", persons=1500, seed=6, start=start, end=end)
    da, db, dc = (_digests(tmp_path / k) for k in "abc")
    assert da == db
    assert a.counts_by_source() == b.counts_by_source()
    mine = [k for k in da if k.split("/")[1] in ("events", "orders", "pos", "crm")]
    assert mine and all(da[k] != dc.get(k) for k in mine)
    assert c.counts_by_source() != a.counts_by_source()


# -- malformed rows ------------------------------------------------------------------------


def _ean_ok(code: str) -> bool:
    if not re.fullmatch(r"\d{13}", code):
        return False
    d = [int(c) for c in code]
    return (10 - sum(x * (3 if i % 2 else 1) for i, x in enumerate(d[:12])) % 10) % 10 == d[12]


def _phone_ok(text: str | None) -> bool:
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return True
    digits = re.sub(r"[\s-]", "", text)
    digits = re.sub(r"^\+?86(?=1\d{10}$)", "", digits)
    return bool(PHONE_OK.fullmatch(digits))


def _malformed(demo, source: str) -> int:
    return sum(f.malformed_rows for f in demo[1].files if f.source == source)


def test_pos_malformed_rows_match_stated_count(demo, pos, products):
    names = set(products["name"])
    bad_phone = ~pos["会员手机号"].map(_phone_ok)
    negative = pos["数量"].astype(int) < 0
    bad_code = ~pos["商品条码"].map(_ean_ok)
    mojibake = ~pos["商品名称"].isin(names)
    bad_date = pd.to_datetime(pos["交易时间"], format="%Y-%m-%d %H:%M:%S", errors="coerce").isna()
    flags = pd.concat([bad_phone, negative, bad_code, mojibake, bad_date], axis=1)
    assert (flags.sum(axis=1) <= 1).all()  # one defect per broken row
    assert all(flags[c].sum() > 0 for c in flags.columns)
    assert int(flags.any(axis=1).sum()) == _malformed(demo, "pos_sales") > 0


def test_crm_malformed_rows_match_stated_count(demo, members):
    bad_phone = ~members["手机号"].map(_phone_ok)
    bad_date = members["生日"].map(lambda v: isinstance(v, str))
    mojibake = ~members["姓名"].map(lambda s: bool(re.fullmatch(r"[\u4e00-\u9fff]{2,4}", s)))
    flags = pd.concat([bad_phone, bad_date, mojibake], axis=1)
    assert all(flags[c].sum() > 0 for c in flags.columns)
    assert int(flags.any(axis=1).sum()) == _malformed(demo, "crm_members") > 0


def test_online_malformed_rows_match_stated_count(demo, online):
    def broken(o: dict) -> bool:
        try:
            datetime.fromisoformat(o["placed_at"])
            valid_date = o["placed_at"].endswith("+08:00")
        except ValueError:
            valid_date = False
        return not valid_date or any(i["quantity"] <= 0 for i in o["items"])

    assert sum(map(broken, online)) == _malformed(demo, "online_orders") > 0


def test_event_files_have_exactly_the_stated_non_json_lines(demo):
    total = 0
    for f in demo[1].files:
        if f.source.endswith("_events"):
            lines = f.path.read_text(encoding="utf-8").splitlines()
            assert len(lines) == f.rows
            bad = 0
            for line in lines:
                try:
                    json.loads(line)
                except json.JSONDecodeError:
                    bad += 1
            assert bad == f.malformed_rows, f.path
            total += bad
    assert total > 0


# -- duplicates ---------------------------------------------------------------------------


def test_crm_duplicates_and_typos(demo, members, patterns):
    ids = pq.read_table(demo[0] / "demo-truth" / "identifiers.parquet").to_pandas()
    member_ids = ids[ids["id_type"] == "member_id"]
    twice = (member_ids.groupby("person_key").size() > 1).sum()
    assert twice == patterns["duplicates"]["crm_duplicates"] > 0
    owner = dict(zip(member_ids["id_value"], member_ids["person_key"], strict=True))
    persons = pq.read_table(demo[0] / "demo-truth" / "persons.parquet").to_pandas()
    true_name = persons.set_index("person_key")["name"]
    crm_names = members.set_index("会员编号")["姓名"]
    typo = [crm_names[m] != true_name[owner[m]] for m in crm_names.index]
    assert 0.02 < np.mean(typo) < 0.08  # 3% typos + 40% of 2.5% duplicates + mojibake


# -- planted patterns ---------------------------------------------------------------------


def _local_day(ts: pd.Series) -> pd.Series:
    return (pd.to_datetime(ts, utc=True) + pd.Timedelta(hours=8)).dt.date


def test_livestream_spike_is_recoverable(events, patterns):
    spike = patterns["livestream_spike"]
    views = events[(events["event"] == "Product Viewed") & events["_channel"].isin(["web", "app"])]
    day = _local_day(views["timestamp"])
    per_day = day.value_counts()
    assert per_day.idxmax().isoformat() == spike["date"]
    assert per_day.max() >= 3 * per_day.median()
    on_day = views[day == date.fromisoformat(spike["date"])]["properties"].map(
        lambda p: p["product_id"])
    assert on_day.value_counts().index[0] == spike["product_id"]
    assert (on_day == spike["product_id"]).mean() > 0.6


def _baskets(online: list[dict], pos: pd.DataFrame, products: pd.DataFrame) -> list[set]:
    by_sku = dict(zip(products["sku"], products["subcategory"], strict=True))
    by_code = dict(zip(products["barcode"], products["subcategory"], strict=True))
    baskets = [{by_sku[i["sku"]] for i in o["items"]} for o in online]
    for _, group in pos.groupby("小票号"):
        baskets.append({by_code.get(c, "?") for c in group["商品条码"]})
    return baskets


def test_foundation_sponge_lift_is_recoverable(online, pos, products, patterns):
    baskets = _baskets(online, pos, products)
    found = [b for b in baskets if "foundation" in b]
    p_cond = np.mean(["beauty_sponge" in b for b in found])
    p_base = np.mean(["beauty_sponge" in b for b in baskets])
    truth = patterns["foundation_sponge"]
    assert p_cond >= truth["p_add_sponge_to_foundation_basket"]
    assert abs(p_cond - truth["realized"]["p_sponge_given_foundation"]) < 0.02
    assert p_cond / p_base == pytest.approx(truth["realized"]["lift"], rel=0.1)
    assert p_cond / p_base > 3


def _member_lines(online: list[dict], pos: pd.DataFrame, products: pd.DataFrame,
                  members: pd.DataFrame) -> pd.DataFrame:
    """(day, gender, category) per order line of identified members."""
    gender = dict(zip(members["会员编号"], members["性别"], strict=True))
    category = dict(zip(products["sku"], products["category"], strict=True))
    by_code = dict(zip(products["barcode"], products["category"], strict=True))
    rows = [(o["placed_at"][:10], gender.get(o.get("member_id")), category[i["sku"]])
            for o in online if o.get("member_id") and o["placed_at"].endswith("+08:00")
            for i in o["items"]]
    rows += list(zip(pos["交易时间"].str[:10], pos["会员卡号"].map(gender),
                     pos["商品条码"].map(by_code), strict=True))
    lines = pd.DataFrame(rows, columns=["day", "gender", "category"]).dropna()
    lines["day"] = pd.to_datetime(lines["day"], errors="coerce").dt.date
    return lines.dropna()


def test_holiday_multiplier_for_women_is_recoverable(online, pos, products, members,
                                                     patterns):
    truth = patterns["holiday_women_apparel_cosmetics"]
    start, end = (date.fromisoformat(patterns["generator"][k]) for k in ("start", "end"))
    window = {date.fromisoformat(h["date"]) + timedelta(days=k)
              for h in truth["holidays"] for k in range(-3, 4)}
    window = {d for d in window if start <= d <= end}
    lines = _member_lines(online, pos, products, members)
    inside = lines["day"].isin(window)
    target = (lines["gender"] == "女") & lines["category"].isin(["apparel", "cosmetics"])
    n_in, n_out = len(window), (end - start).days + 1 - len(window)

    def ratio(sel: pd.Series) -> float:
        return ((sel & inside).sum() / n_in) / ((sel & ~inside).sum() / n_out)

    did = ratio(target) / ratio(~target)
    assert did == pytest.approx(truth["multiplier"], rel=0.25)
    assert ratio(~target) == pytest.approx(1.0, rel=0.25)


def test_churner_activity_decays_with_the_stated_half_life(demo, events, patterns):
    out = demo[0]
    persons = pq.read_table(out / "demo-truth" / "persons.parquet").to_pandas()
    ids = pq.read_table(out / "demo-truth" / "identifiers.parquet").to_pandas()
    owner = dict(zip(ids["id_value"], ids["person_key"], strict=True))
    active = pd.DataFrame({"person": events["anonymousId"].map(owner),
                           "day": _local_day(events["timestamp"])}).drop_duplicates()
    churn = persons.dropna(subset=["churn_date"]).set_index("person_key")["churn_date"]
    active = active[active["person"].isin(churn.index)]
    since = (pd.to_datetime(active["day"]) - pd.to_datetime(
        active["person"].map(churn))).dt.days
    end = date.fromisoformat(patterns["generator"]["end"])
    rates = []
    for lo in range(0, 120, 15):  # active person-days per person-day at risk
        at_risk = sum(max(0, min(15, (end - d).days - lo)) for d in churn)
        rates.append(((since >= lo) & (since < lo + 15)).sum() / at_risk)
    before = ((since >= -60) & (since < 0)).sum() / (60 * len(churn))
    slope = np.polyfit(np.arange(7.5, 120, 15), np.log(rates), 1)[0]
    half_life = -math.log(2) / slope
    assert half_life == pytest.approx(patterns["churn"]["half_life_days"], rel=0.35)
    assert rates[-1] < 0.25 * before


def test_background_workbook_matches_inline_and_reports_failures(tmp_path):
    from jingzhun.demo import make_context
    from jingzhun.demo.crm import XlsxJob, crm_table, write_xlsx

    ctx = make_context(tmp_path, 300, 3)
    table, _ = crm_table(ctx)
    created = datetime(2026, 10, 31, 23)
    write_xlsx(tmp_path / "inline.xlsx", table, created)
    XlsxJob(tmp_path / "child.xlsx", table, created).result()
    assert (tmp_path / "inline.xlsx").read_bytes() == (tmp_path / "child.xlsx").read_bytes()
    with pytest.raises(RuntimeError, match="members.xlsx"):
        XlsxJob(tmp_path / "missing" / "dir" / "x.xlsx", table, created).result()
