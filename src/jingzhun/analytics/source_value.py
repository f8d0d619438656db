"""Data-source value: what a partner's data file is worth before paying for it.

A data vendor offers a file of identifiers with tags or scores (e.g. phone_md5 + "beauty
lover"). Three questions decide its value, each answered by engine queries:

1. **Overlap** — how many of its rows are our persons, per identifier type. Raw values
   are normalized and, under salted PII storage, hashed exactly as the ID graph does
   (identity's own SQL, `jingzhun.identity.identifiers`); hashed phones and e-mails
   (MD5 / SHA-256 in every ad platform's spelling) also match our plain phones and
   e-mails through identity's `hash_forms_sql`.
2. **Lift** — do its tags predict *our* conversions? For each tag value (and each score
   quintile): the conversion rate of the matched persons holding it against the matched
   persons without it, with Wilson intervals, the rate ratio's 95% interval, Fisher's
   test and Benjamini-Hochberg q-values (`segments.insight_stats`). Out of time: tags
   as known at the cut-off (rows dated after it are left out), conversions in the window
   after it, among persons we knew at the cut-off.
3. **Freshness** — how old its records are, from the file's own time column.

`source_ranking.rank_sources` ranks every source of ours, and the partner's columns, by
the out-of-time AUC of a small model on that source's features alone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from sqlglot import exp

from jingzhun.analytics.result import Analysis, AnalyticsError, Chart
from jingzhun.analytics.staging import inline
from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine, parse_sql
from jingzhun.identity.config import load_identity_config
from jingzhun.identity.graph import normalize_settings
from jingzhun.identity.identifiers import (
    hash_forms_sql,
    normalized_type_sql,
    plain_value_sql,
    stored_value_sql,
)
from jingzhun.identity.links import HASH_TYPES
from jingzhun.identity.registry import Registry
from jingzhun.profiles.rules import DEFAULT_TIMEZONE
from jingzhun.profiles.rules_compiler import literal
from jingzhun.profiles.tags import data_as_of
from jingzhun.segments.insight import goal_sql
from jingzhun.segments.insight_stats import _with_rates  # the insight's lift table, reused as is

DEFAULT_GOAL: dict[str, object] = {"order": {}}  # any purchase (not cancelled, not refunded)
DEFAULT_WINDOW_DAYS = 30
TIME_COLUMNS = ("observed_at", "updated_at", "update_time", "timestamp", "time", "date", "更新时间", "时间", "日期")
SCORE_BINS = 5
FRESHNESS_BUCKETS = ((30, "0-30"), (90, "31-90"), (180, "91-180"), (365, "181-365"))
TABLE_PREFIX = "analytics_partner_"


@dataclass(frozen=True)
class PartnerData:
    """A partner's file as the engine holds it (table `table`, one row per file row).

    Columns: `row_no`, `id_<n>` (raw identifiers; `id_types` gives each one's type),
    `tag_<n>` (text), `score_<n>` (numbers), `observed_at` (UTC; NULL without a time
    column). `columns` maps each stored column to the file's own column name.
    """

    name: str
    table: str
    rows: int
    id_types: dict[str, str]
    tags: list[str]
    scores: list[str]
    columns: dict[str, str]
    timed: bool

    def label(self, column: str) -> str:
        return self.columns.get(column, column)


def _partner_error(message: str, message_zh: str, where: str, fix: str, fix_zh: str) -> AnalyticsError:
    return AnalyticsError(message, field=where, fix=fix, message_zh=message_zh, fix_zh=fix_zh)


def _read_file(source: Path | pa.Table | pd.DataFrame, encoding: str) -> pd.DataFrame:
    """Every column as text (phones and ids must keep their leading zeros and digits)."""
    if isinstance(source, pa.Table):
        return source.to_pandas().astype("string")
    if isinstance(source, pd.DataFrame):
        return source.astype("string")
    path = Path(source)
    if not path.is_file():
        raise _partner_error(f"no partner file at {path}.", f"找不到合作方文件 {path}。", "file",
                             "check the path", "请检查路径")
    if path.suffix.lower() in (".xlsx", ".xls"):
        return pd.read_excel(path, dtype=str).astype("string")
    return pd.read_csv(path, dtype=str, encoding=encoding, keep_default_na=False, na_values=[""]).astype("string")


def _id_columns(frame: pd.DataFrame, registry: Registry,
                id_columns: Mapping[str, str] | Sequence[str] | None) -> dict[str, str]:
    """File column → id type: given, or every column named like an id type or alias."""
    def id_type(name: str) -> str | None:
        key = name.strip().lower()
        key = registry.aliases.get(key, key)
        return key if registry.get(key) is not None else None

    if isinstance(id_columns, Mapping):
        chosen = {column: registry.aliases.get(kind, kind) for column, kind in id_columns.items()}
    else:
        names = list(id_columns) if id_columns is not None else list(frame.columns)
        chosen = {column: id_type(column) for column in names if id_type(column) or id_columns is not None}
    for column, kind in chosen.items():
        if column not in frame.columns:
            raise _partner_error(f"the file has no column {column!r}.", f"文件中没有列 {column!r}。", "id_columns",
                                 f"columns: {', '.join(map(str, frame.columns))}", f"已有列：{'、'.join(map(str, frame.columns))}")
        if kind is None or registry.get(kind) is None:
            raise _partner_error(f"column {column!r} is not a known identifier type.", f"列 {column!r} 不是已知的标识类型。",
                                 "id_columns", f"name it as one of: {', '.join(registry.names())}",
                                 f"请用以下类型之一：{'、'.join(registry.names())}")
    if not chosen:
        raise _partner_error("the file has no identifier column.", "文件中没有标识列。", "id_columns",
                             f"name a column after its type (phone_md5, phone, email, …) or pass id_columns; "
                             f"types: {', '.join(registry.names())}", "请把标识列命名为其类型（如 phone_md5），或指定 id_columns")
    return chosen


def _utc_times(values: pd.Series, timezone: str) -> pd.Series:
    """Parsed times in UTC; a time without a zone is the workspace's local time."""
    parsed = pd.to_datetime(values, errors="coerce", format="mixed")
    if parsed.dt.tz is None:
        parsed = parsed.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
    return parsed.dt.tz_convert("UTC")


def _table_name(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if not slug or not slug[0].isalpha() or len(slug) > 40:
        slug = "f" + hashlib.sha256(name.encode()).hexdigest()[:12]
    return TABLE_PREFIX + slug


def load_partner_file(engine: Engine, source: Path | str | pa.Table | pd.DataFrame, *, name: str | None = None,
                      id_columns: Mapping[str, str] | Sequence[str] | None = None,
                      tag_columns: Sequence[str] | None = None, score_columns: Sequence[str] | None = None,
                      time_column: str | None = None, timezone: str = DEFAULT_TIMEZONE, encoding: str = "utf-8",
                      workspace: Workspace | None = None) -> PartnerData:
    """Store a partner's file (CSV, Excel, Arrow or pandas) in the engine for evaluation.

    The table `analytics_partner_<name>` stays in the warehouse, so the SQL of every
    number can be rerun; loading the same name again replaces it.

    Args:
        id_columns: file column → id type ({"手机号MD5": "phone_md5"}), or columns named
            after their type; default: every column named like an id type.
        tag_columns: text columns whose values are tags (default: the other columns
            that are not numbers).
        score_columns: numeric columns (default: the other columns that are numbers).
        time_column: when each row was observed (default: a column named like
            updated_at / 更新时间); times without a zone are in `timezone`.
    """
    frame = _read_file(Path(source) if isinstance(source, str) else source, encoding)
    registry = load_identity_config(workspace).registry()
    ids = _id_columns(frame, registry, id_columns)
    time = time_column or next((c for c in frame.columns if str(c).strip().lower() in TIME_COLUMNS), None)
    if time is not None and time not in frame.columns:
        raise _partner_error(f"the file has no column {time!r}.", f"文件中没有列 {time!r}。", "time_column",
                             f"columns: {', '.join(map(str, frame.columns))}", f"已有列：{'、'.join(map(str, frame.columns))}")
    rest = [c for c in frame.columns if c not in ids and c != time]
    numeric = {c for c in rest if frame[c].notna().any() and pd.to_numeric(frame[c], errors="coerce").notna().sum()
               == frame[c].notna().sum()}
    scores = list(score_columns) if score_columns is not None else [c for c in rest if c in numeric]
    tags = list(tag_columns) if tag_columns is not None else [c for c in rest if c not in numeric and c not in scores]
    columns: dict[str, str] = {}
    data: dict[str, pa.Array] = {"row_no": pa.array(np.arange(1, len(frame) + 1, dtype=np.int64))}
    for prefix, chosen, kind in (("id", list(ids), pa.string()), ("tag", tags, pa.string()), ("score", scores, None)):
        for index, column in enumerate(chosen):
            stored = f"{prefix}_{index}"
            columns[stored] = str(column)
            values = frame[column].str.strip().replace("", pd.NA)
            data[stored] = (pa.array(pd.to_numeric(values, errors="coerce"), pa.float64()) if kind is None
                            else pa.array(values.astype(object).where(values.notna(), None), kind))
    times = _utc_times(frame[time], timezone) if time is not None else pd.Series(pd.NaT, index=frame.index)
    data["observed_at"] = pa.array(times.astype(object).where(times.notna(), None), pa.timestamp("us", tz="UTC"))
    label = name or (Path(source).stem if isinstance(source, str | Path) else "partner")
    table = _table_name(label)
    engine.write_table(table, pa.table(data), mode="replace")
    return PartnerData(label, table, len(frame), {f"id_{i}": kind for i, kind in enumerate(ids.values())},
                       [f"tag_{i}" for i in range(len(tags))], [f"score_{i}" for i in range(len(scores))],
                       columns, time is not None)


# ---- matching ------------------------------------------------------------------------------


def sql_literal(value: str) -> str:
    """A string as a DuckDB-dialect SQL literal (quoted and escaped by sqlglot)."""
    return exp.convert(value).sql(dialect="duckdb")


def matching_ctes(partner: PartnerData, registry: Registry, salted: bool, settings: object) -> str:
    """CTEs file_ids, stored (normalized as the ID graph stores them) and row_persons
    (row_no, id_column, person_id of every active person a row's identifier matches)."""
    file_ids = "\n  UNION ALL ".join(
        f"SELECT row_no, {sql_literal(column)} AS id_column, {sql_literal(kind)} AS raw_type, {column} AS raw_value "
        f"FROM {partner.table} WHERE {column} IS NOT NULL" for column, kind in partner.id_types.items())
    typed = normalized_type_sql("raw_type", "raw_value")
    plain = plain_value_sql("id_type", "raw_value", registry, settings)  # type: ignore[arg-type]
    stored = stored_value_sql("id_type", "plain_value", registry, settings)  # type: ignore[arg-type]
    hashed = [kind for kind in partner.id_types.values() if kind in HASH_TYPES]
    by_hash = "" if salted or not hashed else """
  UNION SELECT s.row_no, s.id_column, i.person_id FROM stored AS s
  JOIN hash_forms AS h ON h.hash_type = s.id_type AND h.hash_value = s.id_value
  JOIN identities AS i ON i.id_type = h.id_type AND i.id_value = h.id_value"""
    forms = "" if not by_hash else (
        ",\nour_plain AS (SELECT id_type, id_value, id_value AS plain_value FROM identities "
        "WHERE id_type IN ('phone', 'email')),\nhash_forms AS (" + hash_forms_sql("our_plain") + ")")
    return f"""file_ids AS ({file_ids}),
typed AS (SELECT row_no, id_column, raw_value, {typed} AS id_type FROM file_ids),
plain AS (SELECT row_no, id_column, raw_value, id_type, {plain} AS plain_value FROM typed),
stored AS (SELECT row_no, id_column, id_type, {stored} AS id_value FROM plain WHERE plain_value IS NOT NULL){forms},
links AS (SELECT s.row_no, s.id_column, i.person_id FROM stored AS s
  JOIN identities AS i ON i.id_type = s.id_type AND i.id_value = s.id_value{by_hash}),
row_persons AS (SELECT DISTINCT l.row_no, l.id_column, l.person_id FROM links AS l
  JOIN persons AS p ON p.person_id = l.person_id AND p.status = 'active')"""


@dataclass(frozen=True)
class IdentityMatch:
    """The ID graph's id types and PII settings, to normalize and match a partner's identifiers."""

    registry: Registry
    salted: bool
    settings: object

    @classmethod
    def of(cls, workspace: Workspace | None) -> IdentityMatch:
        settings = normalize_settings(workspace)
        return cls(load_identity_config(workspace).registry(), settings.salted, settings)

    def ctes(self, partner: PartnerData) -> str:
        return matching_ctes(partner, self.registry, self.salted, self.settings)


OVERLAP_SQL = """WITH {ctes},
per_column AS (
  SELECT f.id_column, COUNT(*) AS rows_with_value, COUNT(s.row_no) AS valid_rows
  FROM file_ids AS f LEFT JOIN (SELECT DISTINCT row_no, id_column FROM stored) AS s
    ON s.row_no = f.row_no AND s.id_column = f.id_column
  GROUP BY f.id_column),
matched AS (SELECT id_column, COUNT(DISTINCT row_no) AS matched_rows, COUNT(DISTINCT person_id) AS matched_persons
  FROM row_persons GROUP BY id_column),
whole AS (SELECT '*' AS id_column, :rows AS rows_with_value,
    (SELECT COUNT(DISTINCT row_no) FROM stored) AS valid_rows,
    (SELECT COUNT(DISTINCT row_no) FROM row_persons) AS matched_rows,
    (SELECT COUNT(DISTINCT person_id) FROM row_persons) AS matched_persons),
ours AS (SELECT COUNT(*) AS persons FROM persons WHERE status = 'active')
SELECT c.id_column, c.rows_with_value, c.valid_rows, c.matched_rows, c.matched_persons,
  CAST(c.matched_rows AS DOUBLE) / NULLIF(c.rows_with_value, 0) AS match_rate,
  CAST(c.matched_persons AS DOUBLE) / NULLIF(o.persons, 0) AS share_of_our_persons
FROM (SELECT p.id_column, p.rows_with_value, p.valid_rows, COALESCE(m.matched_rows, 0) AS matched_rows,
        COALESCE(m.matched_persons, 0) AS matched_persons
      FROM per_column AS p LEFT JOIN matched AS m ON m.id_column = p.id_column
      UNION ALL SELECT * FROM whole) AS c
CROSS JOIN ours AS o
ORDER BY c.id_column"""


def overlap_sql(partner: PartnerData, workspace: Workspace | None = None) -> exp.Expression:
    """Per identifier column and overall ('*'): rows with a value, valid rows, rows and
    persons matched, the match rate and the share of our active persons covered."""
    sql = OVERLAP_SQL.format(ctes=IdentityMatch.of(workspace).ctes(partner))
    return exp.replace_placeholders(parse_sql(sql), rows=exp.convert(int(partner.rows)))


def partner_overlap(engine: Engine, partner: PartnerData, workspace: Workspace | None = None) -> Analysis:
    """How much of the partner's file is our persons, per identifier type (see module doc)."""
    query = overlap_sql(partner, workspace)
    frame = engine.query(query).to_pandas()
    registry = load_identity_config(workspace).registry()
    kinds = {**partner.id_types, "*": "*"}
    frame.insert(1, "id_type", frame["id_column"].map(kinds))
    frame.insert(0, "column", frame["id_column"].map(lambda c: "(any)" if c == "*" else partner.label(c)))
    whole = frame[frame["id_column"] == "*"].iloc[0]
    readings = [(f"文件 {partner.rows} 行中 {int(whole['matched_rows'])} 行匹配到我方客户（{whole['match_rate']:.1%}），"
                 f"共 {int(whole['matched_persons'])} 人，占我方客户 {whole['share_of_our_persons']:.1%}。",
                 f"{int(whole['matched_rows'])} of the file's {partner.rows} rows match our persons "
                 f"({whole['match_rate']:.1%}): {int(whole['matched_persons'])} persons, "
                 f"{whole['share_of_our_persons']:.1%} of ours.")]
    for row in frame[frame["id_column"] != "*"].itertuples():
        kind = registry.get(row.id_type)
        zh, en = (kind.label_zh, kind.label_en) if kind is not None else (row.id_type, row.id_type)
        readings.append((f"「{row.column}」（{zh}）：{int(row.valid_rows)}/{int(row.rows_with_value)} 行格式有效，"
                         f"匹配率 {row.match_rate:.1%}。", f"“{row.column}” ({en}): {int(row.valid_rows)} of "
                         f"{int(row.rows_with_value)} rows valid, match rate {row.match_rate:.1%}."))
    if IdentityMatch.of(workspace).salted and any(kind in HASH_TYPES for kind in partner.id_types.values()):
        readings.append(("工作区以加盐哈希存储手机号和邮箱，哈希标识只能与已观察到的同类哈希匹配。",
                         "Phones and e-mails are stored salted here: hashed identifiers match only hashes "
                         "we observed ourselves."))
    return Analysis(name="source_overlap", frame=frame.drop(columns=["id_column"]), sql={"overlap": engine.render(query)},
                    chart=Chart("bar", "column", ("match_rate",), title_zh="合作方数据匹配率",
                                title_en="Match rate of the partner's data"),
                    readings=readings, params={"partner": partner.name, "table": partner.table})


# ---- lift on our conversions ---------------------------------------------------------------

KNOWN_AT_SQL = """SELECT rp.person_id FROM record_persons AS rp JOIN orders AS o
  ON rp.record_kind = 'order' AND rp.record_id = o.order_id WHERE o.placed_at <= :cutoff
UNION SELECT rp.person_id FROM record_persons AS rp JOIN events AS e
  ON rp.record_kind = 'event' AND rp.record_id = e.message_id WHERE e.timestamp <= :cutoff
UNION SELECT rp.person_id FROM record_persons AS rp JOIN source_records AS s
  ON rp.record_kind = 'source_record' AND rp.record_id = s.record_id WHERE s.occurred_at <= :cutoff"""


def known_at_sql(cutoff: dt.datetime) -> exp.Expression:
    """SELECT person_id of everyone with a record (order, event, imported row) at or before `cutoff`."""
    return exp.replace_placeholders(parse_sql(KNOWN_AT_SQL), cutoff=literal(cutoff))


def holders_ctes(partner: PartnerData) -> str:
    """CTEs person_rows (matched persons' rows as known at :cutoff) and holders
    (tag_column, value, person_id): each tag value, and each score's quintile Q1 (lowest)..Q5."""
    person_rows = (f"person_rows AS (SELECT DISTINCT r.person_id, f.* FROM row_persons AS r "
                   f"JOIN {partner.table} AS f ON f.row_no = r.row_no "
                   f"WHERE f.observed_at IS NULL OR f.observed_at <= :cutoff)")
    parts = [f"SELECT DISTINCT {sql_literal(tag)} AS tag_column, {tag} AS value, person_id FROM person_rows "
             f"WHERE {tag} IS NOT NULL" for tag in partner.tags]
    quintiles = []
    for score in partner.scores:
        quintiles.append(f"{score}_bins AS (SELECT person_id, NTILE({SCORE_BINS}) OVER (ORDER BY top, person_id) AS bin "
                         f"FROM (SELECT person_id, MAX({score}) AS top FROM person_rows WHERE {score} IS NOT NULL "
                         f"GROUP BY person_id) AS s)")
        parts.append(f"SELECT {sql_literal(score)} AS tag_column, CONCAT('Q', CAST(bin AS VARCHAR)) AS value, person_id "
                     f"FROM {score}_bins")
    holders = "holders AS (" + ("\n  UNION ALL ".join(parts) or
                                "SELECT CAST(NULL AS VARCHAR) AS tag_column, CAST(NULL AS VARCHAR) AS value, "
                                "CAST(NULL AS VARCHAR) AS person_id WHERE FALSE") + ")"
    return ",\n".join([person_rows, *quintiles, holders])


TAG_LIFT_SQL = """WITH {matching},
{holders},
population AS (SELECT DISTINCT r.person_id FROM person_rows AS r JOIN known_at AS k ON k.person_id = r.person_id),
converters AS (SELECT DISTINCT person_id FROM goal_reached),
per_value AS (SELECT h.tag_column, h.value, COUNT(*) AS holders, COUNT(c.person_id) AS holder_converters
  FROM holders AS h JOIN population AS p ON p.person_id = h.person_id
  LEFT JOIN converters AS c ON c.person_id = h.person_id
  GROUP BY h.tag_column, h.value),
totals AS (SELECT COUNT(*) AS persons, COUNT(c.person_id) AS converters
  FROM population AS p LEFT JOIN converters AS c ON c.person_id = p.person_id)
SELECT v.tag_column, v.value, v.holders, v.holder_converters, t.persons, t.converters
FROM per_value AS v CROSS JOIN totals AS t
ORDER BY v.tag_column, v.value"""


@dataclass(frozen=True)
class Window:
    """Features (tags) as known at `cutoff`; the goal reached in (cutoff, cutoff + days]."""

    cutoff: dt.datetime
    days: int

    @classmethod
    def ending(cls, engine: Engine, as_of: dt.datetime | None, days: int) -> Window:
        if int(days) < 1:
            raise _partner_error("window_days must be at least 1.", "window_days 至少为 1。", "window_days",
                                 "e.g. window_days=30", "例如 window_days=30")
        end = as_of.astimezone(dt.UTC) if as_of is not None else data_as_of(engine)
        return cls(end - dt.timedelta(days=int(days)), int(days))


def tag_lift_sql(partner: PartnerData, goal: object, window: Window, workspace: Workspace | None = None,
                 timezone: str = DEFAULT_TIMEZONE) -> exp.Expression:
    """Per tag value: matched persons known at the cut-off holding it, how many of them
    reached the goal in the window, and the totals over all matched persons."""
    sql = TAG_LIFT_SQL.format(matching=IdentityMatch.of(workspace).ctes(partner), holders=holders_ctes(partner))
    query = exp.replace_placeholders(parse_sql(sql), cutoff=literal(window.cutoff))
    return inline(query, known_at=known_at_sql(window.cutoff),
                  goal_reached=goal_sql(goal, window.cutoff, window.days, timezone))


def _lift_reading(row: pd.Series, base: float) -> tuple[str, str]:
    what_zh, what_en = f"「{row['tag']}={row['value']}」", f"“{row['tag']} = {row['value']}”"
    if not np.isfinite(row["rate_ratio"]):
        return (f"{what_zh}：所有匹配客户都有此标签，无可比较的对照组。",
                f"{what_en}: every matched person holds it; nobody to compare with.")
    sure = "" if row["significant"] else "，差异不显著"
    sure_en = "" if row["significant"] else "; not significant"
    return (f"{what_zh}的客户转化率 {row['rate_with']:.1%}，无此标签的 {row['rate_without']:.1%}，"
            f"是其 {row['rate_ratio']:.2f} 倍（95% CI {row['rate_ratio_low']:.2f}–{row['rate_ratio_high']:.2f}）{sure}。",
            f"{what_en}: {row['rate_with']:.1%} convert against {row['rate_without']:.1%} without it, "
            f"{row['rate_ratio']:.2f}× (95% CI {row['rate_ratio_low']:.2f}–{row['rate_ratio_high']:.2f}){sure_en}.")


LIFT_COLUMNS = ["tag", "value", "holders", "holder_converters", "share", "rate_with", "rate_with_low",
                "rate_with_high", "rate_without", "rate_ratio", "rate_ratio_low", "rate_ratio_high", "lift",
                "lift_low", "lift_high", "p_value", "q_value", "significant"]


def partner_tag_lift(engine: Engine, partner: PartnerData, goal: object = None,
                     window_days: int = DEFAULT_WINDOW_DAYS, as_of: dt.datetime | None = None,
                     workspace: Workspace | None = None, timezone: str = DEFAULT_TIMEZONE) -> Analysis:
    """The conversion of matched persons holding each tag value (or score quintile) against
    the matched persons without it, best rate ratio first (see module doc)."""
    if not partner.tags and not partner.scores:
        raise _partner_error("the file has no tag or score column to evaluate.", "文件中没有可评估的标签或分数列。",
                             "tag_columns", "pass tag_columns or score_columns", "请指定 tag_columns 或 score_columns")
    window = Window.ending(engine, as_of, window_days)
    query = tag_lift_sql(partner, goal if goal is not None else DEFAULT_GOAL, window, workspace, timezone)
    counts = engine.query(query).to_pandas()
    persons = int(counts["persons"].iloc[0]) if len(counts) else 0
    converters = int(counts["converters"].iloc[0]) if len(counts) else 0
    if persons == 0 or converters in (0, persons):
        raise _partner_error(
            f"{persons} matched persons known at the cut-off {window.cutoff:%Y-%m-%d}, {converters} converted: "
            "no conversion contrast to measure.", f"截止 {window.cutoff:%Y-%m-%d} 已知的匹配客户 {persons} 人，"
            f"其中转化 {converters} 人，无法比较。", "window_days", "widen window_days, move as_of, or change the goal",
            "加大 window_days、调整 as_of，或更换目标")
    table = counts.assign(feature=counts["tag_column"] + "=" + counts["value"]).set_index("feature")
    table = _with_rates(table[["holders", "holder_converters"]], persons, converters)
    table = table.join(counts.assign(feature=counts["tag_column"] + "=" + counts["value"]).set_index("feature")
                       [["tag_column", "value"]])
    table["tag"] = table["tag_column"].map(partner.label)
    frame = table.sort_values(["significant", "rate_ratio"], ascending=False, kind="stable").reset_index(drop=True)
    base = converters / persons
    readings = [(f"匹配且截止 {window.cutoff:%Y-%m-%d} 已知的 {persons} 人中，{converters} 人在其后 {window.days} 天内转化"
                 f"（{base:.1%}）。", f"Of the {persons} matched persons known at {window.cutoff:%Y-%m-%d}, {converters} "
                 f"converted in the next {window.days} days ({base:.1%}).")]
    readings += [_lift_reading(row, base) for _, row in frame.head(5).iterrows()]
    return Analysis(name="source_tag_lift", frame=frame[LIFT_COLUMNS], sql={"tag_lift": engine.render(query)},
                    chart=Chart("bar", "value", ("rate_ratio",), series="tag", title_zh="合作方标签对转化的提升",
                                title_en="Lift of the partner's tags on our conversions"),
                    readings=readings, params={"partner": partner.name, "cutoff": window.cutoff,
                                               "window_days": window.days, "persons": persons,
                                               "converters": converters})


# ---- freshness -----------------------------------------------------------------------------


def freshness_sql(partner: PartnerData, as_of: dt.datetime) -> exp.Expression:
    """Rows per age bucket (days from observed_at to `as_of`), with the oldest and newest ages
    and each bucket's share; rows without a time are 'unknown'."""
    cases = " ".join(f"WHEN age <= {days} THEN '{label}'" for days, label in FRESHNESS_BUCKETS)
    order = " ".join(f"WHEN '{label}' THEN {i}" for i, (_, label) in enumerate(FRESHNESS_BUCKETS))
    sql = f"""SELECT bucket, COUNT(*) AS rows, CAST(COUNT(*) AS DOUBLE) / :rows AS share,
  MIN(age) AS min_age_days, MAX(age) AS max_age_days
FROM (SELECT CASE WHEN age IS NULL THEN 'unknown' {cases} ELSE '>365' END AS bucket, age
      FROM (SELECT DATE_DIFF('day', observed_at, :as_of) AS age FROM {partner.table}) AS a) AS b
GROUP BY bucket
ORDER BY CASE bucket {order} WHEN '>365' THEN {len(FRESHNESS_BUCKETS)} ELSE {len(FRESHNESS_BUCKETS) + 1} END"""
    return exp.replace_placeholders(parse_sql(sql), rows=exp.convert(max(int(partner.rows), 1)),
                                    as_of=literal(as_of))


def partner_freshness(engine: Engine, partner: PartnerData, as_of: dt.datetime | None = None) -> Analysis:
    """How old the partner's records are at `as_of` (default: our latest data)."""
    moment = as_of.astimezone(dt.UTC) if as_of is not None else data_as_of(engine)
    query = freshness_sql(partner, moment)
    frame = engine.query(query).to_pandas()
    dated = frame[frame["bucket"] != "unknown"]
    recent = float(dated.loc[dated["bucket"].isin(["0-30", "31-90"]), "rows"].sum()) / max(int(dated["rows"].sum()), 1)
    if dated.empty:
        readings = [("文件没有时间列，无法判断新鲜度。", "The file has no time column: its freshness is unknown.")]
    else:
        readings = [(f"有时间的记录中 {recent:.0%} 在近 90 天内；最新 {int(dated['min_age_days'].min())} 天前，"
                     f"最旧 {int(dated['max_age_days'].max())} 天前（截至 {moment:%Y-%m-%d}）。",
                     f"{recent:.0%} of the dated records are from the last 90 days; the newest is "
                     f"{int(dated['min_age_days'].min())} days old, the oldest {int(dated['max_age_days'].max())} "
                     f"(at {moment:%Y-%m-%d}).")]
    return Analysis(name="source_freshness", frame=frame, sql={"freshness": engine.render(query)},
                    chart=Chart("bar", "bucket", ("rows",), title_zh="合作方记录的新鲜度（天）",
                                title_en="Age of the partner's records (days)"),
                    readings=readings, params={"partner": partner.name, "as_of": moment})
