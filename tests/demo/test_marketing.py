"""The marketing/social demo sources: real files on disk, patterns recoverable.

One small context (3000 persons) is generated once per module; every test reads
the written files back the way an importer or an analyst would (pandas, DuckDB)
and checks them against demo-truth/patterns_marketing.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from jingzhun.demo.ads import marginal_roi
from jingzhun.demo.context import DemoContext, DemoFile
from jingzhun.demo.generator import make_context
from jingzhun.demo.marketing import ages_at, write_marketing_sources

PERSONS = 3000
SEED = 11


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoContext, list[DemoFile]]:
    ctx = make_context(tmp_path_factory.mktemp("mk"), PERSONS, SEED)
    return ctx, write_marketing_sources(ctx)


@pytest.fixture(scope="module")
def truth(demo: tuple[DemoContext, list[DemoFile]]) -> dict:
    ctx, _ = demo
    return json.loads((ctx.truth_dir / "patterns_marketing.json").read_text(encoding="utf-8"))


def read(ctx: DemoContext, rel: str, encoding: str = "utf-8") -> pd.DataFrame:
    return pd.read_csv(ctx.data_dir / rel, encoding=encoding, dtype=str, keep_default_na=False,
                       na_values=[""])


def pop_col(ctx: DemoContext, name: str) -> np.ndarray:
    col = ctx.population[name]
    return np.asarray(col.to_pylist() if hasattr(col, "to_pylist") else col, dtype=object)


def ages(ctx: DemoContext) -> np.ndarray:
    return ages_at(ctx.population["birth_date"], ctx.end)


def lookup(ctx: DemoContext, id_column: str) -> dict[str, int]:
    values = pop_col(ctx, id_column)
    return {v: i for i, v in enumerate(values) if v is not None}


def ean13_ok(codes: pd.Series) -> np.ndarray:
    digits = np.array([[int(ch) for ch in c] for c in codes], dtype=int).reshape(-1, 13)
    weights = np.where(np.arange(12) % 2 == 0, 1, 3)
    return (10 - (digits[:, :12] * weights).sum(axis=1) % 10) % 10 == digits[:, 12]


# ---------------------------------------------------------------- files


def test_every_file_exists_and_parses_with_its_encoding(demo) -> None:
    ctx, files = demo
    assert len(files) == 12
    for f in files:
        assert f.path.exists(), f.path
        df = pd.read_csv(f.path, encoding=f.encoding, dtype=str)
        assert len(df) == f.rows > 0, f.path
        assert 0 < f.malformed_rows < 0.02 * f.rows + 2, f.path
    raw = (ctx.data_dir / "social/wechat_follows.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    survey = (ctx.data_dir / "surveys/survey_responses.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        survey.decode("utf-8")
    assert "提交答卷时间" in survey.decode("gb18030")


def test_malformed_counts_match_the_files(demo) -> None:
    ctx, files = demo
    by_source = {f.source: f for f in files}

    def count(source: str, rule) -> None:
        f = by_source[source]
        df = pd.read_csv(f.path, encoding=f.encoding, dtype=str, keep_default_na=False,
                         na_values=[""])
        assert int(rule(df).sum()) == f.malformed_rows, source

    count("wechat_follows", lambda d: d.openid.isna() | (d["关注时间"] == "0000-00-00 00:00:00"))
    count("douyin_interactions", lambda d: d["用户ID"].isna() | (d["互动时间"] == "--"))
    count("weibo_interactions", lambda d: d["用户UID"].isna() | (d["互动时间"] == "刚刚"))
    count("livestream_views", lambda d: d["用户ID"].isna() | (d["离开时间"] < d["进入时间"]))
    count("ad_spend", lambda d: d.spend == "--")
    for source in ("industry_benchmark", "competitor_search"):
        count(source, lambda d: pd.to_datetime(d["日期"], errors="coerce").isna())
    count("survey_responses", lambda d: d["手机号码"].fillna("").str.len().eq(10)
          & d["会员卡号"].isna())
    count("inventory_movements", lambda d: ~ean13_ok(d.barcode))
    count("stock_counts", lambda d: ~ean13_ok(d.barcode))
    count("message_history", lambda d: d.recipient.isna())
    count("prospects", lambda d: d.phone.str.len() == 7)


def test_platform_ids_join_the_population(demo) -> None:
    ctx, _ = demo
    douyin = read(ctx, "social/douyin_interactions.csv")["用户ID"].dropna()
    assert douyin.isin(lookup(ctx, "douyin_user_id")).all()
    weibo = read(ctx, "social/weibo_interactions.csv")["用户UID"].dropna()
    assert weibo.isin(lookup(ctx, "weibo_user_id")).all()
    wechat = read(ctx, "social/wechat_follows.csv", "utf-8-sig")
    assert wechat.unionid.dropna().isin(lookup(ctx, "wechat_unionid")).all()
    openids = pd.read_parquet(ctx.truth_dir / "social_wechat_openids.parquet")
    assert wechat.openid.dropna().isin(openids.openid).all()
    assert not wechat.openid.dropna().isin(lookup(ctx, "wechat_openid")).any()  # OA != mini-program
    live = read(ctx, "social/livestream_views.csv")["用户ID"].dropna()
    share_known = live.isin(lookup(ctx, "douyin_user_id")).mean()
    assert 0.6 < share_known < 0.95  # strangers are not customers


def test_leads_and_stock_rows_join_people_and_catalogue(demo, truth) -> None:
    ctx, _ = demo
    leads = read(ctx, "leads/prospects.csv")
    known = leads.phone.isin(lookup(ctx, "phone")).mean()
    assert abs(known - truth["leads"]["existing_customer_share"]) < 0.04
    outcomes = pd.read_parquet(ctx.truth_dir / "lead_outcomes.parquet")
    assert (outcomes.lead_id == leads.lead_id).all()
    moves = read(ctx, "inventory/inventory_movements.csv")
    assert moves.sku.isin(catalog_values(ctx, "sku")).all()
    good = moves[ean13_ok(moves.barcode)]
    assert good.barcode.isin(catalog_values(ctx, "barcode")).all()
    stores = set(ctx.stores["store_id"].to_pylist()) | set(truth["inventory"]["warehouses"])
    assert moves.location.isin(stores).all()


def catalog_values(ctx: DemoContext, name: str) -> set[str]:
    col = ctx.catalog[name]
    return set(col.to_pylist() if hasattr(col, "to_pylist") else col)


def test_addresses_in_the_message_log_join_their_channel_ids(demo) -> None:
    ctx, _ = demo
    log = read(ctx, "campaigns/message_history.csv").dropna(subset=["recipient"])
    openids = set(pd.read_parquet(ctx.truth_dir / "social_wechat_openids.parquet").openid)
    ids = {"sms": set(lookup(ctx, "phone")), "app_push": set(lookup(ctx, "member_id")),
           "email": set(lookup(ctx, "email")), "wechat_template": openids}
    for channel, known in ids.items():
        recipients = log.loc[log.channel == channel, "recipient"]
        assert len(recipients) > 1000, channel
        assert recipients.isin(known).all(), channel


def test_survey_respondents_join_and_agree_with_truth(demo, truth) -> None:
    ctx, _ = demo
    df = read(ctx, "surveys/survey_responses.csv", "gb18030")
    digits = df["手机号码"].fillna("").str.replace(r"\D", "", regex=True).str[-11:]
    by_phone, by_member = lookup(ctx, "phone"), lookup(ctx, "member_id")
    person = df["会员卡号"].map(by_member).fillna(digits.map(by_phone))
    assert person.notna().sum() == len(df) - truth["files"]["data/surveys/survey_responses.csv"][
        "malformed_rows"]
    ok = person.notna()
    idx = person[ok].astype(int).to_numpy()
    income_agree = (df.loc[ok, "1、您的月收入"].to_numpy() == pop_col(ctx, "income_band")[idx])
    job_agree = (df.loc[ok, "2、您的职业"].to_numpy() == pop_col(ctx, "job")[idx])
    s = truth["surveys"]
    assert abs(income_agree.mean() - (1 - s["income_noise"] * 0.8)) < 0.04
    assert abs(job_agree.mean() - (1 - s["job_noise"] * 0.9)) < 0.04


# ---------------------------------------------------------------- planted patterns


def test_line_fans_are_30_39_while_line_buyers_are_younger(demo, truth) -> None:
    ctx, _ = demo
    fb = truth["social"]["fans_vs_buyers"]
    age = ages(ctx)
    dy = read(ctx, "social/douyin_interactions.csv").dropna(subset=["用户ID"])
    fans = dy[(dy["账号名称"] == fb["douyin_account"]) & (dy["互动类型"] == "关注")]
    fan_age = age[fans["用户ID"].map(lookup(ctx, "douyin_user_id")).astype(int)]
    wx = read(ctx, "social/wechat_follows.csv", "utf-8-sig")
    keys = pd.read_parquet(ctx.truth_dir / "social_wechat_openids.parquet").set_index("openid")
    wx_fans = wx[wx["公众号"] == fb["wechat_account"]].dropna(subset=["openid"])
    wx_age = age[keys.loc[wx_fans.openid, "person_key"].to_numpy()]
    live = read(ctx, "social/livestream_views.csv").dropna(subset=["用户ID", "下单商品"])
    line = set(np.asarray(ctx.catalog["product_id"], dtype=object)[
        np.asarray(ctx.catalog["product_line"], dtype=object) == fb["product_line"]])
    buyers = live[live["下单商品"].isin(line)]
    buyer_age = age[buyers["用户ID"].map(lookup(ctx, "douyin_user_id")).astype(int)]
    in_30s = sum(fb["fan_age_shares"][2:4])
    for a in (fan_age, wx_age):
        assert abs(((a >= 30) & (a < 40)).mean() - in_30s) < 0.05
    assert abs(((buyer_age >= 30) & (buyer_age < 40)).mean() - sum(fb["buyer_age_shares"][2:4])
               ) < 0.05
    assert (buyer_age < 30).mean() > 0.55 > ((fan_age < 30).mean())


def test_competitor_launch_drops_our_search_but_not_the_market(demo, truth) -> None:
    ctx, _ = demo
    launch = truth["benchmarks"]["competitor_launch"]
    day = pd.Timestamp(launch["launch_date"])
    search = read(ctx, "benchmarks/competitor_search.csv")
    search["日期"] = pd.to_datetime(search["日期"], errors="coerce")
    search["整体指数"] = search["整体指数"].astype(float)
    market = read(ctx, "benchmarks/industry_benchmark.csv")
    market["日期"] = pd.to_datetime(market["日期"], errors="coerce")
    market["交易指数"] = market["交易指数"].astype(float)

    def ratio(df: pd.DataFrame, value: str) -> float:
        after = df[(df["日期"] >= day) & (df["日期"] < day + pd.Timedelta(days=28))]
        before = df[(df["日期"] < day) & (df["日期"] >= day - pd.Timedelta(days=28))]
        return after[value].mean() / before[value].mean()

    cat = search[search["类目"] == launch["category_zh"]]
    ours = ratio(cat[cat["品牌"].isin(launch["our_brands"])], "整体指数")
    theirs = ratio(cat[cat["品牌"] == launch["competitor"]], "整体指数")
    flat = ratio(market[market["行业类目"] == launch["category_zh"]], "交易指数")
    assert abs(ours - (1 - launch["our_search_drop"])) < 0.06
    assert ours < 0.8  # a drop an operator would notice ("断崖式下跌")
    assert abs(flat - 1) < 0.05
    assert theirs > 1.5
    other = search[(search["类目"] != launch["category_zh"])]
    assert abs(ratio(other, "整体指数") - 1) < 0.06


def test_under_invested_channel_has_the_highest_marginal_roi(demo, truth) -> None:
    ctx, _ = demo
    ads = truth["ads"]
    df = read(ctx, "ads/ad_spend.csv")
    df = df[df.spend != "--"].assign(spend=lambda d: d.spend.astype(float))
    daily = df.pivot_table(index="date", columns="channel", values="spend", aggfunc="sum")
    recent = daily.sort_index().tail(90).mean()
    names = list(ads["channels"])
    mroi = marginal_roi(recent[names].to_numpy(), ads["scale"])
    assert names[int(np.argmax(mroi))] == ads["under_invested_channel"]
    ranked = np.sort(mroi)
    assert ranked[-1] > 2 * ranked[-2]
    true = pd.read_parquet(ctx.truth_dir / "ad_response.parquet")
    params = ads["channels"]["xiaohongshu"]
    x = true[true.channel == "xiaohongshu"]
    expect = params["max_effect"] * x.adstock / (x.adstock + params["half_saturation"])
    assert np.allclose(expect, x.incremental_sales)
    assert np.allclose(x.adstock.to_numpy()[1:], x.spend.to_numpy()[1:]
                       + params["decay"] * x.adstock.to_numpy()[:-1])


def test_ctr_differs_by_channel_and_peaks_at_the_best_hour(demo, truth) -> None:
    ctx, _ = demo
    c = truth["campaigns"]
    log = read(ctx, "campaigns/message_history.csv")
    sent = log[(log.group == "treatment") & (log.delivered == "true")].copy()
    sent["hour"] = pd.to_datetime(sent.sent_at).dt.hour
    sent["click"] = sent.clicked_at.notna()
    observed = sent.groupby("channel").click.mean().sort_values().index.tolist()
    expected = sorted(c["channels"], key=lambda k: c["channels"][k]["expected_ctr_over_send_hours"])
    assert observed == expected
    by_hour = sent.pivot_table(index="hour", columns="channel", values="click", aggfunc="mean")
    smooth = by_hour.rolling(3, center=True, min_periods=1).mean()
    for channel, params in c["channels"].items():
        assert abs(int(smooth[channel].idxmax()) - params["best_hour"]) <= 1, channel
    assert log.loc[log.group == "holdout", "sent_at"].isna().all()


def test_holdout_lift_matches_the_stated_lift(demo, truth) -> None:
    ctx, _ = demo
    log = read(ctx, "campaigns/message_history.csv")
    rate = log.assign(conv=log.converted_order_id.notna()).groupby("group").conv.mean()
    lift = rate["treatment"] / rate["holdout"] - 1
    stated = truth["campaigns"]["pooled_expected_lift"]
    assert lift > 0.1
    assert abs(lift - stated) < 0.15
    share = (log.group == "holdout").mean()
    assert abs(share - truth["campaigns"]["holdout_share"]) < 0.01


def test_lead_conversion_follows_intent_and_freshness(demo, truth) -> None:
    ctx, _ = demo
    leads = read(ctx, "leads/prospects.csv")
    created = pd.to_datetime(leads.created_at)
    scored = created + pd.Timedelta(days=truth["leads"]["review_days"])
    fresh = ((scored - pd.to_datetime(leads.last_activity_at)).dt.total_seconds() // 86400)
    sources = ["livestream", "store_visit", "ad_click"]
    X = np.column_stack([np.ones(len(leads)), np.log1p(leads.pages_viewed.astype(float)),
                         leads.price_checks.astype(float), leads.sample_requested == "Y",
                         fresh] + [leads.source == s for s in sources]).astype(float)
    y = leads.converted_at.notna().to_numpy(dtype=float)
    beta, se = _logistic(X, y)
    coef = truth["leads"]["coefficients"]
    stated = np.array(list(coef.values()) + [truth["leads"]["source_effect"][s] for s in sources])
    assert np.all(np.abs(beta - stated) < 4 * se + 0.05), (beta, stated, se)
    assert y[fresh <= 3].mean() > y[fresh >= 11].mean() + 0.05
    intent = X[:, 1:4].sum(axis=1)
    assert y[intent >= np.quantile(intent, 0.75)].mean() > 2 * y[intent <= np.quantile(intent, 0.25)
                                                                  ].mean()


def _logistic(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood logistic regression by Newton steps; (coefficients, std errors)."""
    beta = np.zeros(X.shape[1])
    for _ in range(25):
        p = 1 / (1 + np.exp(-X @ beta))
        hessian = X.T @ (X * (p * (1 - p))[:, None])
        beta = beta + np.linalg.solve(hessian, X.T @ (y - p))
    return beta, np.sqrt(np.diag(np.linalg.inv(hessian)))


def test_stock_ledger_balances_counts_and_shows_the_planted_stockouts(demo, truth) -> None:
    ctx, _ = demo
    con = duckdb.connect()
    for name, rel in (("m", "inventory/inventory_movements.csv"),
                      ("c", "inventory/stock_counts.csv")):
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM read_csv(?, all_varchar=true)",
                    [str(ctx.data_dir / rel)])
    mismatched, counts, off = con.execute("""
        WITH steps AS (
            SELECT location, sku, CAST(left(occurred_at, 19) AS TIMESTAMP) AS t,
                   sum(CAST(quantity AS BIGINT)) AS q FROM m GROUP BY ALL),
        bal AS (SELECT location, sku, t, sum(q) OVER (PARTITION BY location, sku ORDER BY t)
                AS balance FROM steps)
        SELECT count(*) FILTER (WHERE balance <> CAST(system_qty AS BIGINT)), count(*),
               count(*) FILTER (WHERE counted_qty <> system_qty)
        FROM c ASOF JOIN bal ON c.location = bal.location AND c.sku = bal.sku
                            AND CAST(c.counted_at AS TIMESTAMP) >= bal.t""").fetchone()
    inv = truth["inventory"]
    assert counts == len(read(ctx, "inventory/stock_counts.csv")) and mismatched == 0
    assert off == inv["discrepancies"] > 0
    zero_days = con.execute("""
        WITH days AS (SELECT location, sku, CAST(left(occurred_at, 10) AS DATE) AS d,
                             sum(CAST(quantity AS BIGINT)) AS q FROM m GROUP BY ALL),
        cal AS (SELECT DISTINCT location, sku, unnest(generate_series(?::DATE, ?::DATE,
                INTERVAL 1 DAY))::DATE AS d FROM m WHERE location LIKE 'DC-%' AND sku = ?)
        SELECT cal.location, cal.d, sum(coalesce(q, 0)) OVER (PARTITION BY cal.location
               ORDER BY cal.d) AS closing FROM cal LEFT JOIN days USING (location, sku, d)
        QUALIFY closing = 0""", [ctx.start, ctx.end, inv["supplier_disruptions"][0]["sku"]]
    ).df()
    for d in inv["supplier_disruptions"][:1]:
        planted = [s for s in inv["stockouts"] if s["sku"] == d["sku"] and
                   s["location"].startswith("DC-")]
        expect = sum(s["days"] for s in planted)
        assert len(zero_days) == expect
        assert max(s["days"] for s in planted) >= 10
        longest = max(planted, key=lambda s: s["days"])
        assert d["no_purchase_orders_from"] <= longest["first_day"] <= d["to"]


def test_same_seed_gives_identical_files(demo, tmp_path: Path) -> None:
    ctx, files = demo
    again = make_context(tmp_path, PERSONS, SEED)
    second = write_marketing_sources(again)
    for a, b in zip(files, second, strict=True):
        assert a.path.read_bytes() == b.path.read_bytes(), a.path.name
    truth_a = (ctx.truth_dir / "patterns_marketing.json").read_text(encoding="utf-8")
    truth_b = (again.truth_dir / "patterns_marketing.json").read_text(encoding="utf-8")
    assert truth_a == truth_b
