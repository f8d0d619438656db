"""Fans vs buyers: does the portrait of those who follow us match the portrait of those who buy?

A brand's social accounts draw one crowd and its products sell to another; when they
differ, content aimed at the followers misses the buyers (the demo's 水光润泽系列: fans
mostly 30-39, buyers mostly under 30). Two audiences are compared on portrait
dimensions (age band, gender, province, member level, …) taken from `person_traits`:

- side by side: persons and share of each bucket in audience A, audience B and the base
  (everyone with a portrait, or a base audience), shares among the persons whose value
  is known (the unknown are counted on their own row);
- TGI per bucket: share in the audience / share in the base × 100 (100 = as common as
  in the base), and B's index over A;
- a divergence per dimension: the Jensen–Shannon distance of the two distributions
  (base 2: 0 identical, 1 disjoint) and a chi-square test of homogeneity with its p-value;
- a verdict: "matched" when the distance is immaterial (JS < 0.1), "not significant"
  when it is material but could be chance (p ≥ 0.05, small groups), else "different";
  for age, the direction ("buyers are younger than
  followers") from the chance that a B member is in a younger band than an A member.

Audiences are the followers of social accounts (follows, and optionally any interaction,
in `source_records`, attributed to persons by the ID graph), any audience rule (buyers
of a product line: {"order": {"product": {"product_line": …}}}), a saved audience, or a
query returning person_id. Counts, shares and TGI are one engine query; Python only
runs the tests on the small bucket table.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from sqlglot import exp

from jingzhun.analytics.result import Analysis, AnalyticsError, Chart
from jingzhun.analytics.staging import inline, query_staged
from jingzhun.engine import Engine, parse_sql
from jingzhun.profiles import build_rule_sql
from jingzhun.profiles.rules import DEFAULT_TIMEZONE
from jingzhun.profiles.tags import data_as_of

DIMENSIONS: dict[str, tuple[str, str]] = {
    "age_band": ("年龄段", "age band"), "gender": ("性别", "gender"), "province": ("省份", "province"),
    "city": ("城市", "city"), "member_level": ("会员等级", "member level"), "rfm_class": ("RFM 分层", "RFM class"),
    "preferred_channel": ("偏好渠道", "preferred channel"), "favourite_category": ("偏好品类", "favourite category"),
    "price_band": ("价格带", "price band"), "income_band": ("收入段", "income band"),
    "device_type": ("设备类型", "device type"),
}
DEFAULT_DIMENSIONS = ("age_band", "gender", "province", "member_level")
AGE_BANDS = ("<25", "25-29", "30-34", "35-39", "40-49", "50+")  # person_traits.age_band, youngest first
SIGNIFICANCE = 0.05
MATERIAL_JS = 0.1  # a JS distance below this is called matched even when significant (big samples)
MIN_KNOWN = 20  # fewer persons with a known value in either audience: too few to compare
UNKNOWN = "(unknown)"

FOLLOWERS_SQL = """SELECT DISTINCT rp.person_id
FROM source_records AS s
JOIN record_persons AS rp ON rp.record_kind = 'source_record' AND rp.record_id = s.record_id
WHERE {accounts}({kinds})"""
_FOLLOW = ("(s.kind = 'follow' AND s.attributes->>'$.unfollowed_at' IS NULL) "
           "OR (s.kind = 'interaction' AND s.attributes->>'$.interaction_type' = 'follow')")
_INTERACT = "s.kind IN ('follow', 'interaction')"


class Audience(BaseModel):
    """One group of persons to portray: exactly one of `followers`, `rule`, `segment`, `sql`.

    `followers` lists social accounts (the `account` of follows and interactions; empty:
    every account); with `interactions` anyone who interacted with them counts, not only
    followers. `rule` is an audience rule, `segment` a saved audience's id, `sql` a query
    returning person_id. `label_zh` / `label_en` name the group in the verdicts.
    """

    model_config = ConfigDict(extra="forbid")

    followers: list[str] | None = None
    interactions: bool = False
    rule: dict[str, Any] | None = None
    segment: str | None = None
    sql: str | None = None
    label_zh: str = ""
    label_en: str = ""

    @model_validator(mode="after")
    def _exactly_one(self) -> Audience:
        given = [name for name in ("followers", "rule", "segment", "sql") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of followers, rule, segment, sql (got {', '.join(given) or 'none'})")
        return self

    def labels(self, fallback: tuple[str, str]) -> tuple[str, str]:
        return self.label_zh or fallback[0], self.label_en or fallback[1]


def parse_audience_spec(data: object, where: str = "audience") -> Audience:
    """An `Audience` from its data, or an error naming the field and the fix."""
    if isinstance(data, Audience):
        return data
    try:
        return Audience.model_validate(data)
    except ValidationError as invalid:
        problem = invalid.errors()[0]
        raise AnalyticsError(f"{where}: {problem['msg']}", field=where,
                             fix='e.g. {"followers": ["玉肌水光润泽"]} or {"rule": {"order": {"product": '
                                 '{"product_line": "水光润泽系列"}}}} or {"segment": "high_value"}',
                             message_zh=f"{where}：人群定义无效（{problem['msg']}）",
                             fix_zh='例如 {"followers": ["玉肌水光润泽"]}、{"rule": {...}} 或 {"segment": "high_value"}') from None


def _known_accounts(engine: Engine) -> list[str]:
    rows = engine.query("SELECT DISTINCT s.attributes->>'$.account' AS account FROM source_records AS s "
                        "WHERE s.kind IN ('follow', 'interaction')").column("account").to_pylist()
    return sorted(account for account in rows if account)


def _check_accounts(engine: Engine, accounts: list[str], where: str) -> None:
    known = _known_accounts(engine)
    for account in accounts:
        if account not in known:
            close = difflib.get_close_matches(account, known, n=1)
            hint = (f"did you mean {close[0]!r}? " if close else "") + f"Known: {', '.join(known) or '(none)'}"
            raise AnalyticsError(f"no follow or interaction record names the account {account!r}.",
                                 field=f"{where}.followers", fix=hint,
                                 message_zh=f"没有关注或互动记录属于账号 {account!r}。",
                                 fix_zh=(f"是否想写 {close[0]!r}？" if close else "") + f"已有：{'、'.join(known) or '（无）'}")


def followers_sql(accounts: list[str], interactions: bool = False) -> exp.Expression:
    """SELECT person_id of the current followers of `accounts` (all accounts when empty),
    or of everyone who interacted with them.

    Example:
        >>> "unfollowed_at" in followers_sql(["玉肌水光润泽"]).sql(dialect="duckdb")
        True
    """
    names = ", ".join(f":account_{i}" for i in range(len(accounts)))
    chosen = f"s.attributes->>'$.account' IN ({names}) AND " if accounts else ""
    query = parse_sql(FOLLOWERS_SQL.format(accounts=chosen, kinds=_INTERACT if interactions else _FOLLOW))
    return exp.replace_placeholders(query, **{f"account_{i}": exp.convert(a) for i, a in enumerate(accounts)})


def audience_members_sql(engine: Engine, audience: Audience, as_of: dt.datetime, timezone: str,
                         where: str = "audience") -> exp.Expression:
    """SELECT person_id of an audience."""
    if audience.followers is not None:
        _check_accounts(engine, audience.followers, where)
        return followers_sql(audience.followers, audience.interactions)
    if audience.sql is not None:
        query = parse_sql(audience.sql)
        if not isinstance(query, exp.Query) or "person_id" not in query.named_selects:
            raise AnalyticsError(f"{where}.sql must be a SELECT returning person_id.", field=f"{where}.sql",
                                 fix="e.g. SELECT person_id FROM person_traits WHERE gender = 'F'",
                                 message_zh=f"{where}.sql 须为返回 person_id 的 SELECT 查询。",
                                 fix_zh="例如 SELECT person_id FROM person_traits WHERE gender = 'F'")
        return query
    if audience.segment is not None:
        _check_segment(engine, audience.segment, where)
    rule = audience.rule if audience.rule is not None else {"segment": audience.segment}
    return build_rule_sql(rule, as_of=as_of, timezone=timezone)


def _check_segment(engine: Engine, segment: str, where: str) -> None:
    """A saved audience with at least one snapshot, or an error naming the known ones."""
    known = sorted(engine.query("SELECT DISTINCT segment_id FROM segment_members").column("segment_id").to_pylist())
    if segment not in known:
        close = difflib.get_close_matches(segment, known, n=1)
        shown = ", ".join(known) or "(none)"
        raise AnalyticsError(f"no snapshot of the audience {segment!r}.", field=f"{where}.segment",
                             fix=(f"did you mean {close[0]!r}? " if close else "") + f"Snapshotted: {shown}; "
                                 "run `jingzhun segment snapshot` for a new one",
                             message_zh=f"人群 {segment!r} 没有快照。",
                             fix_zh=(f"是否想写 {close[0]!r}？" if close else "") + f"已有快照：{shown}；"
                                    "新人群请先运行 `jingzhun segment snapshot`")


def _check_not_empty(frame: pd.DataFrame, side: str, labels: tuple[str, str]) -> None:
    """An audience nobody is in cannot be portrayed: say so rather than print empty shares."""
    first = frame[frame["dimension"] == frame["dimension"].iloc[0]]
    if int(first[f"{side}_persons"].sum()) == 0:
        raise AnalyticsError(f"{labels[1]} has no persons.", field=side,
                             fix="check its accounts, rule, audience id or query",
                             message_zh=f"{labels[0]}中没有任何人。", fix_zh="检查其账号、规则、人群编号或查询")


def distribution_sql(a: exp.Expression, b: exp.Expression, dimensions: list[str],
                     base: exp.Expression | None = None) -> exp.Expression:
    """Per dimension and bucket: persons and share in A, B and the base, TGI of A and B
    against the base and B's index over A. Shares are among persons with a known value;
    the unknown get their own row (`known` false) without shares.

    Example:
        >>> a = parse_sql("SELECT person_id FROM x")
        >>> "b_tgi" in distribution_sql(a, a, ["gender"]).sql(dialect="duckdb")
        True
    """
    cells = "\nUNION ALL\n".join(
        f"SELECT m.audience, '{d}' AS dimension, t.{d} AS bucket, COUNT(*) AS persons FROM members AS m "
        f"LEFT JOIN person_traits AS t ON t.person_id = m.person_id GROUP BY m.audience, t.{d}" for d in dimensions)
    age_order = "CASE bucket " + " ".join(f"WHEN '{band}' THEN {i}" for i, band in enumerate(AGE_BANDS)) + " ELSE 99 END"
    share = ("CASE WHEN c.bucket IS NOT NULL THEN CAST(SUM(CASE WHEN c.audience = '{0}' THEN c.persons ELSE 0 END) "
             "AS DOUBLE) / MAX(k.{0}_known) END")
    pick = "SUM(CASE WHEN c.audience = '{0}' THEN c.persons ELSE 0 END)"
    sql = f"""WITH members AS (
  SELECT DISTINCT 'a' AS audience, person_id FROM group_a
  UNION ALL SELECT DISTINCT 'b', person_id FROM group_b
  UNION ALL SELECT DISTINCT 'base', person_id FROM group_base),
cells AS ({cells}),
known AS (SELECT dimension,
    SUM(CASE WHEN audience = 'a' THEN persons ELSE 0 END) AS a_known,
    SUM(CASE WHEN audience = 'b' THEN persons ELSE 0 END) AS b_known,
    SUM(CASE WHEN audience = 'base' THEN persons ELSE 0 END) AS base_known
  FROM cells WHERE bucket IS NOT NULL GROUP BY dimension),
shares AS (SELECT c.dimension, COALESCE(c.bucket, '{UNKNOWN}') AS bucket, c.bucket IS NOT NULL AS known,
    {pick.format('a')} AS a_persons, {share.format('a')} AS a_share,
    {pick.format('b')} AS b_persons, {share.format('b')} AS b_share,
    {pick.format('base')} AS base_persons, {share.format('base')} AS base_share
  FROM cells AS c LEFT JOIN known AS k ON k.dimension = c.dimension
  GROUP BY c.dimension, c.bucket)
SELECT dimension, bucket, known, a_persons, a_share, b_persons, b_share, base_persons, base_share,
  a_share * 100 / NULLIF(base_share, 0) AS a_tgi, b_share * 100 / NULLIF(base_share, 0) AS b_tgi,
  b_share * 100 / NULLIF(a_share, 0) AS b_vs_a
FROM shares ORDER BY dimension, known DESC, {age_order}, bucket"""
    everyone = parse_sql("SELECT person_id FROM person_traits")
    return inline(parse_sql(sql), group_a=a, group_b=b, group_base=base if base is not None else everyone)


# ---- statistics and verdicts ---------------------------------------------------------------


def _younger_chance(a: np.ndarray, b: np.ndarray) -> float:
    """P(a random B member is in a younger band than a random A member), ties counting half
    (the Mann-Whitney common-language effect size over ordered bands)."""
    below = np.concatenate([[0.0], np.cumsum(a)[:-1]])  # A members in younger bands than each band
    older_a = a.sum() - below - a
    return float((b * older_a).sum() + 0.5 * (b * a).sum()) / float(a.sum() * b.sum())


def dimension_test(dimension: str, rows: pd.DataFrame) -> dict[str, Any]:
    """JS distance, chi-square test and verdict of one dimension's known buckets."""
    known = rows[rows["known"]]
    if dimension == "age_band":
        known = known.assign(order=known["bucket"].map({b: i for i, b in enumerate(AGE_BANDS)})).sort_values("order")
    a, b = known["a_persons"].to_numpy(np.float64), known["b_persons"].to_numpy(np.float64)
    result: dict[str, Any] = {"dimension": dimension, "a_known": int(a.sum()), "b_known": int(b.sum()),
                              "js_distance": math.nan, "chi2": math.nan, "p_value": math.nan,
                              "younger_chance": math.nan, "verdict": "too_few"}
    if min(a.sum(), b.sum()) < MIN_KNOWN:
        return result
    from scipy import stats  # imported by the test that needs it, not by every jingzhun process
    from scipy.spatial.distance import jensenshannon

    used = (a + b) > 0
    result["js_distance"] = float(jensenshannon(a / a.sum(), b / b.sum(), base=2))
    if used.sum() >= 2:
        test = stats.chi2_contingency(np.vstack([a[used], b[used]]))
        result["chi2"], result["p_value"] = float(test.statistic), float(test.pvalue)
    material = result["js_distance"] >= MATERIAL_JS
    differ = material and result["p_value"] < SIGNIFICANCE
    result["verdict"] = "different" if differ else "not_significant" if material else "matched"
    if dimension == "age_band":
        result["younger_chance"] = _younger_chance(a, b)
        if differ:
            result["verdict"] = "younger" if result["younger_chance"] > 0.5 else "older"
    top = known.assign(gap=known["b_share"] - known["a_share"]).sort_values("gap", ascending=False).iloc[0]
    result.update(top_bucket=top["bucket"], top_a_share=top["a_share"], top_b_share=top["b_share"])
    return result


def _under_30(rows: pd.DataFrame, side: str) -> float:
    known = rows[rows["known"]]
    return float(known.loc[known["bucket"].isin(AGE_BANDS[:2]), f"{side}_share"].sum())


def verdict(test: dict[str, Any], rows: pd.DataFrame, a: tuple[str, str], b: tuple[str, str]) -> tuple[str, str]:
    """The plain zh/en sentence for one dimension."""
    name_zh, name_en = DIMENSIONS[test["dimension"]]
    kind, stat = test["verdict"], f"JS {test['js_distance']:.2f}, p = {test['p_value']:.2g}"
    if kind == "too_few":
        return (f"{name_zh}：已知{name_zh}的{a[0]} {test['a_known']} 人、{b[0]} {test['b_known']} 人，少于 {MIN_KNOWN} 人，无法比较。",
                f"{name_en}: {test['a_known']} {a[1]} and {test['b_known']} {b[1]} with a known {name_en}; "
                f"fewer than {MIN_KNOWN}, too few to compare.")
    if kind == "matched":
        return (f"{name_zh}：{b[0]}与{a[0]}的分布一致（{stat}）。", f"{name_en}: {b[1]} and {a[1]} match ({stat}).")
    if kind == "not_significant":
        return (f"{name_zh}：{b[0]}与{a[0]}的分布看似不同，但差异不显著（{stat}，已知人数 {test['a_known']} / "
                f"{test['b_known']}）。", f"{name_en}: {b[1]} and {a[1]} look different but the difference is not "
                f"significant ({stat}; {test['a_known']} and {test['b_known']} with a known value).")
    if kind in ("younger", "older"):
        under_a, under_b = _under_30(rows, "a"), _under_30(rows, "b")
        word_zh, word_en = ("更年轻", "younger") if kind == "younger" else ("更年长", "older")
        return (f"{name_zh}：{b[0]}比{a[0]}{word_zh}——30 岁以下占 {under_b:.0%}，{a[0]}为 {under_a:.0%}"
                f"（{b[0]}更年轻的概率 {test['younger_chance']:.0%}；{stat}）。",
                f"{name_en}: {b[1]} are {word_en} than {a[1]} — {under_b:.0%} under 30 against {under_a:.0%} "
                f"(chance a {b[1][:-1] if b[1].endswith('s') else b[1]} is younger: {test['younger_chance']:.0%}; {stat}).")
    bucket, share_a, share_b = test["top_bucket"], test["top_a_share"], test["top_b_share"]
    return (f"{name_zh}：{b[0]}与{a[0]}不同，{b[0]}中「{bucket}」占 {share_b:.0%}，{a[0]}中为 {share_a:.0%}（{stat}）。",
            f"{name_en}: {b[1]} differ from {a[1]}; “{bucket}” is {share_b:.0%} of {b[1]} against {share_a:.0%} "
            f"of {a[1]} ({stat}).")


def _check_dimensions(dimensions: list[str]) -> None:
    unknown = [d for d in dimensions if d not in DIMENSIONS]
    if unknown or not dimensions:
        raise AnalyticsError(f"unknown portrait dimension {', '.join(unknown) or '(none given)'}.", field="dimensions",
                             fix=f"use some of: {', '.join(DIMENSIONS)}",
                             message_zh=f"未知的画像维度 {'、'.join(unknown) or '（未指定）'}。",
                             fix_zh=f"可选：{'、'.join(DIMENSIONS)}")


def compare_audiences(engine: Engine, a: Audience | dict[str, Any], b: Audience | dict[str, Any],
                      dimensions: list[str] | tuple[str, ...] = DEFAULT_DIMENSIONS,
                      base: Audience | dict[str, Any] | None = None, as_of: dt.datetime | None = None,
                      timezone: str = DEFAULT_TIMEZONE) -> Analysis:
    """Compare the portrait of audience `b` with that of audience `a`, dimension by dimension.

    Args:
        engine: the workspace's engine; counts, shares and TGI are one query it runs.
        a, b: the audiences (`Audience` or its data); `b` is described against `a`.
        dimensions: person_traits columns (see `DIMENSIONS`).
        base: the population TGI is measured against (default: everyone with a portrait).
        as_of: the instant rules are evaluated at (default: the latest data).
        timezone: for local-time filters in rules.

    Returns:
        An `Analysis` named `audience_compare`: one row per dimension and bucket; the
        per-dimension tests in `params["tests"]`; one verdict per dimension in `readings`.
    """
    dimensions = list(dimensions)
    _check_dimensions(dimensions)
    first, second = parse_audience_spec(a, "a"), parse_audience_spec(b, "b")
    moment = as_of or data_as_of(engine)
    queries = [audience_members_sql(engine, first, moment, timezone, "a"),
               audience_members_sql(engine, second, moment, timezone, "b")]
    base_query = (audience_members_sql(engine, parse_audience_spec(base, "base"), moment, timezone, "base")
                  if base is not None else None)
    query = distribution_sql(*queries, dimensions, base_query)
    frame = query_staged(engine, query).to_pandas()
    labels_a, labels_b = first.labels(("人群A", "audience A")), second.labels(("人群B", "audience B"))
    _check_not_empty(frame, "a", labels_a)
    _check_not_empty(frame, "b", labels_b)
    tests = [dimension_test(d, frame[frame["dimension"] == d]) for d in dimensions]
    readings = [verdict(test, frame[frame["dimension"] == test["dimension"]], labels_a, labels_b) for test in tests]
    if all(test["verdict"] == "matched" for test in tests):
        readings.insert(0, (f"{labels_b[0]}与{labels_a[0]}的画像一致。", f"{labels_b[1]} and {labels_a[1]} are matched."))
    return Analysis(name="audience_compare", frame=frame, sql={"distribution": engine.render(query)},
                    chart=Chart("bar", "bucket", ("a_share", "b_share"), title_zh=f"{labels_a[0]}与{labels_b[0]}画像对比",
                                title_en=f"Portrait of {labels_a[1]} vs {labels_b[1]}"),
                    readings=readings, params={"a": first.model_dump(exclude_defaults=True),
                                               "b": second.model_dump(exclude_defaults=True),
                                               "dimensions": dimensions, "as_of": moment,
                                               "tests": pd.DataFrame(tests)})


def fans_vs_buyers(engine: Engine, accounts: list[str], product_line: str | None = None,
                   product: dict[str, Any] | None = None, dimensions: list[str] | tuple[str, ...] = DEFAULT_DIMENSIONS,
                   interactions: bool = False, as_of: dt.datetime | None = None,
                   timezone: str = DEFAULT_TIMEZONE) -> Analysis:
    """The followers of social `accounts` against the buyers of a product line (or of any
    product filter: {"brand": …}, {"subcategory": …}); see `compare_audiences`.

    Example (the demo):
        fans_vs_buyers(engine, ["玉肌水光润泽", "玉肌水光润泽官方号"], product_line="水光润泽系列")
        → "age band: buyers are younger than followers — 57% under 30 against 10% …"
    """
    chosen = product if product is not None else ({"product_line": product_line} if product_line else None)
    if not chosen:
        raise AnalyticsError("say whose buyers to compare with: a product line or a product filter.",
                             field="product_line", fix="e.g. product_line='水光润泽系列' or product={'brand': '玉肌'}",
                             message_zh="请指定购买者范围：产品线或商品条件。",
                             fix_zh="例如 product_line='水光润泽系列' 或 product={'brand': '玉肌'}")
    fans = Audience(followers=list(accounts), interactions=interactions,
                    label_zh="互动用户" if interactions else "粉丝", label_en="interacting users" if interactions else "followers")
    buyers = Audience(rule={"order": {"product": chosen}}, label_zh="购买者", label_en="buyers")
    analysis = compare_audiences(engine, fans, buyers, dimensions, as_of=as_of, timezone=timezone)
    return Analysis(name="fans_vs_buyers", frame=analysis.frame, sql=analysis.sql, chart=analysis.chart,
                    readings=analysis.readings, params={**analysis.params, "accounts": list(accounts),
                                                        "product": chosen})
