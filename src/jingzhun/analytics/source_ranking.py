"""Which data source predicts a goal best: every source of ours, and a partner's columns,
ranked by the out-of-time AUC of a small model on that source's features alone.

    T1 = as_of − 2·window          T2 = as_of − window              as_of
    ── features at T1 ──┤ goal in (T1, T2] ┤
                        ── features at T2 ─────────┤ goal in (T2, as_of] ┤
    fit on the T1 rows                  score the T2 rows: AUC, out of time

The features are the scores' (`profiles.scores_features`: each computed from records at
or before the cut-off only), grouped by the source they come from — transactions,
search, clicks and browsing, channel context, social and livestreams, CRM membership —
plus the portrait's stable attributes (CRM demographics, survey answers). A partner file
contributes its tag values and scores as known at each cut-off (rows dated later are
left out) and a "matched" flag. For each source the table gives its AUC alone with a
95% interval (Hanley & McNeil), the share of persons it says anything about, and its
increment: how much the AUC of all our sources drops without it — for the partner's file
(and for being in it at all), how much it adds on top of all of ours, which is what the
file is worth; for each of its columns, how much its values add on top of ours and of
being in the file (every matched row has some value, so a column's presence alone only
says "matched").
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlglot import exp

from jingzhun.analytics.result import Analysis, AnalyticsError, Chart
from jingzhun.analytics.source_value import (
    DEFAULT_GOAL,
    DEFAULT_WINDOW_DAYS,
    IdentityMatch,
    PartnerData,
    Window,
    sql_literal,
)
from jingzhun.analytics.staging import inline
from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine, parse_sql
from jingzhun.profiles.rules import DEFAULT_TIMEZONE
from jingzhun.profiles.rules_compiler import literal
from jingzhun.profiles.scores_features import (
    feature_names,
    product_categories,
    sample_threshold,
    snapshot_features_sql,
)
from jingzhun.profiles.scores_models import ESTIMATOR_PARAMS, ModelSpec, fit_classifier, predict
from jingzhun.segments.insight import goal_sql
from jingzhun.segments.insight_stats import MIN_CLASS_ROWS, rank_auc
from jingzhun.segments.portrait_matrix import portrait_matrix

# (source, zh, en, feature-name pattern) over the scores' features.
BEHAVIOUR_SOURCES = (
    ("transactions", "交易", "transactions",
     r"^(orders_|gmv_|refund|cancelled_|coupon_order|days_since_(last|first)_order|aov$|offline_order|"
     r"marketplace_order|days_between_orders|categories_bought|items_total|category_share_)"),
    ("search", "站内搜索", "search", r"^searches_"),
    ("browsing", "浏览与点击", "clicks and browsing",
     r"^(events_|active_days_|product_views_|cart_adds|checkouts_|coupons_applied_|logins_total|"
     r"days_since_(last|first)_event)"),
    ("context", "渠道与设备", "context (channels)", r"_event_share$"),
    ("social", "社交与直播", "social and livestreams", r"^(interactions_|follows_|livestream_views)"),
    ("membership", "会员入会", "CRM membership", r"^(is_member|days_since_member_signup)$"),
)
# Stable attributes from the current portrait: (source, zh, en, numeric, categorical).
PORTRAIT_SOURCES = (
    ("demographics", "人口属性（CRM）", "demographics (CRM)", ("age",), ("gender", "age_band", "province")),
    ("survey", "问卷", "survey answers", ("price_sensitivity",), ("income_band", "job")),
)
# A small model: the scores' trees, 60 rounds at twice the rate (about the fit of 120 at
# the scores' rate, at a third of the cost: two dozen fits per ranking).
SMALL_MODEL = {**ESTIMATOR_PARAMS["lightgbm"], "n_estimators": 60, "learning_rate": 0.1}
MAX_ROWS = 100_000  # persons per snapshot, sampled by the engine beyond this
FIT_THREADS = 1


@dataclass(frozen=True)
class _Rows:
    """Feature rows of both snapshots: `train` (T1) and `test` (T2), with labels."""

    train: pd.DataFrame
    test: pd.DataFrame
    y_train: np.ndarray
    y_test: np.ndarray
    groups: dict[str, list[str]]  # source -> its feature columns
    names: dict[str, tuple[str, str, str]]  # source -> (kind, zh, en)
    sql: dict[str, str]


def rows_sql(goal: object, windows: list[Window], categories: list[str], timezone: str,
             below: str | None) -> exp.Expression:
    """Every person known at each cut-off: snapshot, person_id, the scores' features and
    `converted` (the goal reached in the window after that cut-off)."""
    reached = "\nUNION ALL ".join(f"SELECT DISTINCT {k} AS snapshot, person_id FROM goal_{k}" for k in range(len(windows)))
    sample = "\nWHERE SUBSTR(MD5(f.person_id), 1, 6) < :below" if below is not None else ""
    sql = (f"SELECT f.*, CASE WHEN g.person_id IS NULL THEN 0 ELSE 1 END AS converted\nFROM features AS f\n"
           f"LEFT JOIN ({reached}) AS g ON g.snapshot = f.snapshot AND g.person_id = f.person_id{sample}\n"
           "ORDER BY f.snapshot, f.person_id")
    query = parse_sql(sql)
    if below is not None:
        query = exp.replace_placeholders(query, below=exp.convert(below))
    parts = {f"goal_{k}": goal_sql(goal, w.cutoff, w.days, timezone) for k, w in enumerate(windows)}
    return inline(query, features=snapshot_features_sql([w.cutoff for w in windows], categories), **parts)


def partner_features_sql(partner: PartnerData, windows: list[Window], workspace: Workspace | None) -> exp.Expression:
    """(snapshot, person_id, feature, value) of the partner's data as known at each cut-off:
    1 per tag value held, the highest score per score column, 1 for `matched`."""
    cutoffs = " UNION ALL ".join(f"SELECT {k} AS snapshot, :cutoff_{k} AS cutoff" for k in range(len(windows)))
    known = ("SELECT c.snapshot, r.person_id, f.* FROM row_persons AS r JOIN {table} AS f ON f.row_no = r.row_no "
             "CROSS JOIN ({cutoffs}) AS c WHERE f.observed_at IS NULL OR f.observed_at <= c.cutoff")
    parts = ["SELECT snapshot, person_id, 'matched' AS feature, 1.0 AS value FROM known"]
    parts += [f"SELECT snapshot, person_id, CONCAT({sql_literal(tag + '=')}, {tag}), 1.0 FROM known WHERE {tag} IS NOT NULL"
              for tag in partner.tags]
    parts += [f"SELECT snapshot, person_id, {sql_literal(score)}, {score} FROM known WHERE {score} IS NOT NULL"
              for score in partner.scores]
    sql = (f"WITH {IdentityMatch.of(workspace).ctes(partner)},\nknown AS ({known.format(table=partner.table, cutoffs=cutoffs)})\n"
           f"SELECT snapshot, person_id, feature, MAX(value) AS value FROM ({' UNION ALL '.join(parts)}) AS p\n"
           "GROUP BY snapshot, person_id, feature ORDER BY snapshot, person_id, feature")
    return exp.replace_placeholders(parse_sql(sql), **{f"cutoff_{k}": literal(w.cutoff) for k, w in enumerate(windows)})


def _behaviour_groups(columns: list[str]) -> tuple[dict[str, list[str]], dict[str, tuple[str, str, str]]]:
    groups, names = {}, {}
    for source, zh, en, pattern in BEHAVIOUR_SOURCES:
        groups[source] = [c for c in columns if re.search(pattern, c)]
        names[source] = ("ours", zh, en)
    return groups, names


def _portrait(engine: Engine, index: pd.Index) -> tuple[pd.DataFrame, dict[str, list[str]], str]:
    numeric = [n for _, _, _, nums, _ in PORTRAIT_SOURCES for n in nums]
    categorical = [c for _, _, _, _, cats in PORTRAIT_SOURCES for c in cats]
    matrix = portrait_matrix(engine, numeric, categorical)
    groups = {source: [f for f in matrix.features if f in nums or f.split("=", 1)[0] in cats]
              for source, _, _, nums, cats in PORTRAIT_SOURCES}
    return matrix.frame.reindex(index), groups, matrix.sql


def _partner_frame(engine: Engine, partner: PartnerData, windows: list[Window], workspace: Workspace | None,
                   index: pd.MultiIndex) -> tuple[pd.DataFrame, dict[str, list[str]], dict[str, tuple], str]:
    """The partner's features, grouped: the whole file, `matched` alone (being in the file at
    all), and each tag or score column (its values; every matched row has one, so a column's
    gain is measured on top of `matched`)."""
    query = partner_features_sql(partner, windows, workspace)
    long = engine.query(query).to_pandas()
    # one row per (snapshot, person, feature) already: unstack, no aggregation
    wide = long.set_index(["snapshot", "person_id", "feature"])["value"].unstack("feature").reindex(index)
    tags = [c for c in wide.columns if "=" in c or c == "matched"]
    wide[tags] = wide[tags].fillna(0.0)  # a tag not held (or not matched) is a 0, not unknown
    columns = [*partner.tags, *partner.scores]
    groups = {"partner": list(wide.columns), "partner:matched": ["matched"]}
    groups |= {f"partner:{partner.label(col)}": [c for c in wide.columns if c == col or c.startswith(col + "=")]
               for col in columns}
    names = {"partner": ("partner", f"合作方数据 {partner.name}（全部列）", f"partner file {partner.name} (all columns)"),
             "partner:matched": ("partner", "合作方：是否在文件中（覆盖）", "partner: in the file at all (coverage)")}
    names |= {f"partner:{partner.label(col)}": ("partner", f"合作方：{partner.label(col)}", f"partner: {partner.label(col)}")
              for col in columns}
    prefixed = {k: [f"partner|{c}" for c in v] for k, v in groups.items()}
    return wide.add_prefix("partner|"), prefixed, names, engine.render(query)


def _read(engine: Engine, goal: object, windows: list[Window], partner: PartnerData | None,
          workspace: Workspace | None, timezone: str) -> _Rows:
    categories = product_categories(engine)
    available = engine.row_count("persons")
    query = rows_sql(goal, windows, categories, timezone, sample_threshold(MAX_ROWS, available))
    table = engine.query(query).to_pandas().set_index(["snapshot", "person_id"])
    y = table.pop("converted").to_numpy(np.int64)
    table = table[feature_names(categories)].astype(np.float64)
    groups, names = _behaviour_groups(list(table.columns))
    profile, profile_groups, profile_sql = _portrait(engine, table.index.get_level_values("person_id"))
    profile.index = table.index
    groups.update(profile_groups)
    names.update({source: ("ours", zh, en) for source, zh, en, _, _ in PORTRAIT_SOURCES})
    frames, sql = [table, profile], {"rows": engine.render(query), "portrait": profile_sql}
    if partner is not None:
        extra, partner_groups, partner_names, sql["partner"] = _partner_frame(engine, partner, windows, workspace,
                                                                               table.index)
        frames.append(extra)
        groups.update(partner_groups)
        names.update(partner_names)
    whole = pd.concat(frames, axis=1)
    train = whole.index.get_level_values("snapshot") == 0
    return _Rows(whole[train], whole[~train], y[train], y[~train], groups, names, sql)


def auc_interval(auc: float, positives: int, negatives: int, z: float = 1.959964) -> tuple[float, float]:
    """Hanley & McNeil (1982) 95% interval of an AUC.

    Example:
        >>> low, high = auc_interval(0.8, 100, 900)
        >>> round(low, 3), round(high, 3)
        (0.757, 0.843)
    """
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)) / (
        positives * negatives)
    half = z * math.sqrt(max(variance, 0.0))
    return max(0.0, auc - half), min(1.0, auc + half)


def out_of_time_auc(rows: _Rows, columns: list[str]) -> float:
    """Fit on the T1 rows' `columns`, score the T2 rows, return the AUC (0.5 without features)."""
    if not columns:
        return 0.5
    spec = ModelSpec(model="source_value", horizon_days=0, buyers_only=False, positive_is_purchase=True,
                     params=SMALL_MODEL, threads=FIT_THREADS)
    model = fit_classifier(spec, rows.train[columns].to_numpy(np.float64), rows.y_train)
    return float(rank_auc(rows.y_test, predict(model, rows.test[columns].to_numpy(np.float64), FIT_THREADS)))


def _coverage(rows: _Rows, columns: list[str]) -> float:
    """Share of the T2 persons the source says anything about (a non-zero, non-missing value)."""
    if not columns:
        return 0.0
    values = rows.test[columns].to_numpy(np.float64)
    return float((np.nan_to_num(values, nan=0.0) != 0).any(axis=1).mean())


def _check_rows(rows: _Rows) -> None:
    for part, y in (("training (T1)", rows.y_train), ("test (T2)", rows.y_test)):
        if min(int(y.sum()), int(len(y) - y.sum())) < MIN_CLASS_ROWS:
            raise AnalyticsError(
                f"the {part} window has {int(y.sum())} converters among {len(y)} persons: too few to fit a model.",
                field="window_days", fix="widen window_days, move as_of, or choose a more common goal",
                message_zh=f"{part} 时间窗 {len(y)} 人中仅 {int(y.sum())} 人转化，无法训练模型。",
                fix_zh="加大 window_days、调整 as_of，或选更常见的目标")


def _score(rows: _Rows) -> pd.DataFrame:
    ours = [c for source, (kind, _, _) in rows.names.items() if kind == "ours" for c in rows.groups[source]]
    all_ours = out_of_time_auc(rows, ours)
    positives, negatives = int(rows.y_test.sum()), int(len(rows.y_test) - rows.y_test.sum())
    records = [("all_ours", "ours", "我方全部数据", "all our sources", len(ours), _coverage(rows, ours), all_ours, 0.0)]
    matched = rows.groups.get("partner:matched", [])
    ours_and_matched = out_of_time_auc(rows, ours + matched) if matched else all_ours
    for source, (kind, zh, en) in rows.names.items():
        columns = rows.groups[source]
        alone = out_of_time_auc(rows, columns)
        if kind == "ours":
            gain = all_ours - out_of_time_auc(rows, [c for c in ours if c not in columns])
        elif source in ("partner", "partner:matched"):
            gain = out_of_time_auc(rows, ours + columns) - all_ours
        else:  # a column's values beyond being in the file
            gain = out_of_time_auc(rows, ours + matched + columns) - ours_and_matched
        records.append((source, kind, zh, en, len(columns), _coverage(rows, columns), alone, gain))
    frame = pd.DataFrame(records, columns=["source", "kind", "name_zh", "name_en", "features", "coverage", "auc",
                                           "auc_gain"])
    bounds = [auc_interval(a, positives, negatives) for a in frame["auc"]]
    frame.insert(7, "auc_low", [b[0] for b in bounds])
    frame.insert(8, "auc_high", [b[1] for b in bounds])
    ranked = frame.iloc[1:].sort_values(["auc", "source"], ascending=[False, True], kind="stable")
    return pd.concat([frame.iloc[:1], ranked], ignore_index=True).assign(
        rank=lambda f: [0, *range(1, len(f))])


def _readings(frame: pd.DataFrame, windows: list[Window]) -> list[tuple[str, str]]:
    best = frame.iloc[1]
    whole = frame.iloc[0]
    readings = [(f"单独预测力最强的是「{best['name_zh']}」（样本外 AUC {best['auc']:.3f}）；我方全部数据 AUC {whole['auc']:.3f}。"
                 f"训练截止 {windows[0].cutoff:%Y-%m-%d}，检验截止 {windows[1].cutoff:%Y-%m-%d}，窗口 {windows[0].days} 天。",
                 f"The most predictive source alone is {best['name_en']} (out-of-time AUC {best['auc']:.3f}); all our "
                 f"sources together {whole['auc']:.3f}. Trained at {windows[0].cutoff:%Y-%m-%d}, tested at "
                 f"{windows[1].cutoff:%Y-%m-%d}, {windows[0].days}-day windows.")]
    for row in frame[frame["kind"] == "partner"].itertuples():
        column = row.source not in ("partner", "partner:matched")
        on_zh, on_en = ("我方数据及“是否在文件中”", "all of ours and being in the file") if column else ("我方数据", "all of ours")
        readings.append((f"「{row.name_zh}」单独 AUC {row.auc:.3f}，覆盖 {row.coverage:.0%} 的客户；在{on_zh}之上使 AUC "
                         f"{'提高' if row.auc_gain >= 0 else '降低'} {abs(row.auc_gain):.3f}。",
                         f"{row.name_en}: AUC {row.auc:.3f} alone, covering {row.coverage:.0%} of persons; on top of "
                         f"{on_en} it moves the AUC by {row.auc_gain:+.3f}."))
    return readings


def rank_sources(engine: Engine, goal: object = None, window_days: int = DEFAULT_WINDOW_DAYS,
                 as_of: dt.datetime | None = None, partner: PartnerData | None = None, workspace: Workspace | None = None,
                 timezone: str = DEFAULT_TIMEZONE) -> Analysis:
    """Rank every source of ours (and a partner file's columns) by out-of-time AUC for `goal`.

    Args:
        goal: an event name or event/order rule without a window (default: any purchase).
        window_days: the outcome window; the training cut-off is two windows before as_of.
        as_of: the end of the test window (default: the latest data).
        partner: a file loaded with `load_partner_file`, to rank beside our sources.

    Returns:
        An `Analysis` named `source_ranking`: the first row is all our sources together,
        then each source best first with its AUC alone, interval, coverage and increment.
    """
    end = Window.ending(engine, as_of, window_days)
    windows = [Window(end.cutoff - dt.timedelta(days=end.days), end.days), end]
    rows = _read(engine, goal if goal is not None else DEFAULT_GOAL, windows, partner, workspace, timezone)
    _check_rows(rows)
    frame = _score(rows)
    return Analysis(name="source_ranking", frame=frame, sql=rows.sql,
                    chart=Chart("bar", "source", ("auc",), title_zh="各数据源的样本外 AUC",
                                title_en="Out-of-time AUC of each data source"),
                    readings=_readings(frame, windows),
                    params={"goal": goal if goal is not None else DEFAULT_GOAL, "window_days": end.days,
                            "train_cutoff": windows[0].cutoff, "test_cutoff": windows[1].cutoff,
                            "train_persons": len(rows.y_train), "test_persons": len(rows.y_test),
                            "test_converters": int(rows.y_test.sum()),
                            "features": {k: v for k, v in rows.groups.items()}})
