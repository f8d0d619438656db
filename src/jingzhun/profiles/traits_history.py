"""The long `traits` table and its history: the portrait of any past day can be read back.

Each run turns the wide `person_traits` into (person_id, trait, value, value_type,
source) rows and compares them with the open rows of `traits` (valid_to NULL):

- a value that changed or disappeared closes its open row: `valid_to = as_of`;
- a new or changed value opens a row: `valid_from = as_of`, `valid_to = NULL`;
- an unchanged value is untouched (its `valid_from` keeps the day it was first seen).

History lives on the data's time axis (`as_of`), not the wall clock, so replaying the
data day by day builds the same history as running live, and the portrait on day D is
`WHERE valid_from <= D AND (valid_to IS NULL OR valid_to > D)`. A row opened and closed
at the same `as_of` (the data was corrected before the next day) is dropped, never kept
as an empty interval. Values are text in one spelling on both engines: numbers as
written by CAST (DOUBLE to 4 decimals), dates ISO, timestamps `YYYY-MM-DD HH:MM:SSZ`
(UTC), booleans `true`/`false`.

Incremental where cheap: the new wide rows are first compared with the previous
`person_traits` column by column, and only persons whose row changed (or who appeared
or left) are turned into long rows and compared with their open rows. A rerun on the
same data therefore touches no history at all. `full=True` compares everyone (use it
after editing `traits` by hand, or when the previous run was interrupted between the
history update and publishing `person_traits` on an engine without transactions).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlglot import exp

from jingzhun.engine import Engine, MaterializeHints, parse_sql
from jingzhun.profiles.traits_sql import TraitsError, utc
from jingzhun.schema.tables import TRAITS, TableDef

DIFF = "traits_diff"
CHANGED = "traits_changed_persons"
SCRATCH = MaterializeHints(scratch=True)

# Traits that are a plain function of as_of and another trait: they would change every
# day without anything happening, so they are served in person_traits only.
NOT_IN_HISTORY = frozenset({"person_id", "as_of", "computed_at", "days_since_last_order"})

# Where a trait comes from when the base-attribute winners do not say (they do for the
# CRM/survey/SDK/social attributes, see traits_base.py).
_SOURCE_BY_PREFIX = (
    ("rfm_", "rfm"), ("has_", "identities"), ("age", "derived"),
    ("livestream_", "social"), ("social_", "social"), ("follows_", "social"),
)
_ORDER_TRAITS = frozenset({
    "orders_total", "orders_365d", "gmv_total", "gmv_365d", "aov", "refund_rate", "first_order_at",
    "last_order_at", "online_order_share", "offline_order_share", "coupon_order_share",
    "holiday_order_share", "preferred_store_id", "price_band",
})


class TraitsHistoryError(TraitsError):
    """The traits history cannot be updated as asked."""


@dataclass(frozen=True)
class HistoryChange:
    """Rows of `traits` opened and closed by one run."""

    opened: int
    closed: int


def _value_sql(column: str, kind: str) -> tuple[str, str]:
    """(text expression, value_type) for a typed column, spelled alike on both engines."""
    kind = kind.upper()
    if kind.startswith("VARCHAR"):
        return column, "string"
    if kind == "DOUBLE":  # Spark would write 1.0E-4; through DECIMAL both write 0.0001
        return f"CAST(CAST({column} AS DECIMAL(18, 4)) AS VARCHAR)", "number"
    if kind.startswith(("INTEGER", "BIGINT", "DECIMAL")):
        return f"CAST({column} AS VARCHAR)", "number"
    if kind == "DATE":
        return f"CAST({column} AS VARCHAR)", "date"
    if kind == "TIMESTAMPTZ":
        return f"STRFTIME({column}, '%Y-%m-%d %H:%M:%S') || 'Z'", "timestamp"
    if kind == "BOOLEAN":
        return f"CAST({column} AS VARCHAR)", "boolean"
    raise TraitsHistoryError(f"no text form for trait column {column} of type {kind}.", field=column)


def _static_source(trait: str) -> str:
    for prefix, source in _SOURCE_BY_PREFIX:
        if trait.startswith(prefix):
            return source
    return "orders" if trait in _ORDER_TRAITS else "behaviour"


def current_values_sql(
    wide: TableDef, rows: str | None = None, base_values: str = "traits_base_values", only: str | None = None,
) -> exp.Expression:
    """Today's long rows: one per person and non-NULL trait of `wide` (stored as table
    `rows`, default `wide.name`), with its source; only the persons in table `only`, if given.

    Example:
        >>> from jingzhun.profiles.traits import PERSON_TRAITS
        >>> "CROSS JOIN" in current_values_sql(PERSON_TRAITS).sql(dialect="spark")
        True
    """
    columns = [c for c in wide.columns if c.name not in NOT_IN_HISTORY]
    values, types = [], []
    for column in columns:
        text, value_type = _value_sql(f"w.{column.name}", column.type)
        values.append(f"WHEN '{column.name}' THEN {text}")
        types.append(f"('{column.name}', '{value_type}', '{_static_source(column.name)}')")
    sql = f"""
    SELECT person_id, trait, value, value_type, source FROM (
      SELECT w.person_id, t.trait, CASE t.trait {' '.join(values)} END AS value, t.value_type,
        COALESCE(b.source, t.source) AS source
      FROM {rows or wide.name} AS w {_only(only, 'w')}
      CROSS JOIN (VALUES {', '.join(types)}) AS t(trait, value_type, source)
      LEFT JOIN {base_values} AS b ON b.person_id = w.person_id AND b.trait = t.trait
    ) AS long WHERE value IS NOT NULL
    """
    return parse_sql(sql)


def _only(persons: str | None, alias: str) -> str:
    """A semi-join restricting `alias` to the persons in table `persons` (or nothing)."""
    return f"JOIN {persons} AS only_these ON only_these.person_id = {alias}.person_id" if persons else ""


def history_columns(wide: TableDef) -> list[str]:
    """The columns of `wide` that have a history in `traits`."""
    return [c.name for c in wide.columns if c.name not in NOT_IN_HISTORY]


def changed_persons_sql(wide: TableDef, current: str, previous: str) -> exp.Expression:
    """The SELECT behind `traits_changed_persons`: persons whose history columns differ
    between the `current` and `previous` wide tables, or who are in only one of them.

    Example:
        >>> from jingzhun.profiles.traits import PERSON_TRAITS
        >>> "IS DISTINCT FROM" in changed_persons_sql(PERSON_TRAITS, "a", "b").sql()
        True
    """
    differs = " OR ".join(f"c.{name} IS DISTINCT FROM p.{name}" for name in history_columns(wide))
    sql = f"""
    SELECT COALESCE(c.person_id, p.person_id) AS person_id
    FROM {current} AS c FULL OUTER JOIN {previous} AS p ON p.person_id = c.person_id
    WHERE c.person_id IS NULL OR p.person_id IS NULL OR {differs}
    """
    return parse_sql(sql)


# One pass: the open rows against today's values, keyed by (person, trait). A row of the
# diff closes the open row (`closes`), opens today's value (`opens`), or both.
DIFF_SQL = f"""
WITH today AS ({{current}}),
open_rows AS (
  SELECT t.person_id, t.trait, t.value FROM {TRAITS.name} AS t {{only}} WHERE t.valid_to IS NULL
)
SELECT COALESCE(c.person_id, o.person_id) AS person_id, COALESCE(c.trait, o.trait) AS trait,
  o.person_id IS NOT NULL AS closes,
  c.person_id IS NOT NULL AS opens, c.value, c.value_type, c.source
FROM open_rows AS o FULL OUTER JOIN today AS c ON c.person_id = o.person_id AND c.trait = o.trait
WHERE o.value IS DISTINCT FROM c.value
"""
# Engines without UPDATE (Spark over Parquet) rebuild the table from itself. A row opened
# at this same as_of and now closed again is dropped (no empty intervals).
REBUILT_SQL = f"""
SELECT t.person_id, t.trait, t.value, t.value_type, t.source, t.valid_from,
  CASE WHEN t.valid_to IS NULL AND d.person_id IS NOT NULL THEN :as_of ELSE t.valid_to END AS valid_to
FROM {TRAITS.name} AS t LEFT JOIN {DIFF} AS d
  ON t.valid_to IS NULL AND d.closes AND d.person_id = t.person_id AND d.trait = t.trait
WHERE NOT (t.valid_to IS NULL AND d.person_id IS NOT NULL AND t.valid_from = :as_of)
UNION ALL
SELECT person_id, trait, value, value_type, source, :as_of, CAST(NULL AS TIMESTAMPTZ) FROM {DIFF} WHERE opens
"""
_MATCHES_CLOSING = (
    f"EXISTS (SELECT 1 FROM {DIFF} AS d WHERE d.closes AND d.person_id = {TRAITS.name}.person_id "
    f"AND d.trait = {TRAITS.name}.trait)"
)
DROP_EMPTY_SQL = f"DELETE FROM {TRAITS.name} WHERE valid_to IS NULL AND valid_from = :as_of AND {_MATCHES_CLOSING}"
CLOSE_SQL = f"UPDATE {TRAITS.name} SET valid_to = :as_of WHERE valid_to IS NULL AND {_MATCHES_CLOSING}"
OPEN_SQL = (
    f"INSERT INTO {TRAITS.name} (person_id, trait, value, value_type, source, valid_from, valid_to) "
    f"SELECT person_id, trait, value, value_type, source, :as_of, NULL FROM {DIFF} WHERE opens"
)
COUNTS_SQL = (
    f"SELECT COALESCE(SUM(CASE WHEN opens THEN 1 ELSE 0 END), 0) AS opened, "
    f"COALESCE(SUM(CASE WHEN closes THEN 1 ELSE 0 END), 0) AS closed FROM {DIFF}"
)


def _bind(sql: str, as_of: dt.datetime) -> exp.Expression:
    return exp.replace_placeholders(parse_sql(sql), as_of=exp.convert(as_of))


def _check_not_backwards(engine: Engine, as_of: dt.datetime) -> None:
    """History only moves forward: refuse an as_of before the latest recorded change."""
    latest = engine.query(f"SELECT MAX(valid_from) AS at FROM {TRAITS.name}").column("at")[0].as_py()
    if latest is not None and as_of < utc(latest):
        raise TraitsHistoryError(
            f"traits history already has values from {latest.isoformat()}, after as_of {as_of.isoformat()}.",
            fix="compute traits as of that time or later, or drop the traits table to rebuild history",
            field="as_of", location=TRAITS.name,
            message_zh=f"画像历史中已有 {latest.isoformat()} 的取值，晚于 as_of {as_of.isoformat()}。",
            fix_zh="请按该时间或更晚的时间计算画像，或删除 traits 表后重建历史",
        )


def diff_sql(wide: TableDef, rows: str | None = None, only: str | None = None) -> exp.Expression:
    """The SELECT behind `traits_diff`: what closes and what opens in `traits`, for the
    persons of table `only` (everyone when None)."""
    current = current_values_sql(wide, rows, only=only).sql(dialect="duckdb")
    return parse_sql(DIFF_SQL.format(current=current, only=_only(only, "t")))


def _comparable(engine: Engine, wide: TableDef, previous: str) -> bool:
    """Can `previous` stand for the open history? It must exist, have every history
    column, and `traits` must have open rows (else history was dropped: rebuild it)."""
    if not engine.table_exists(previous):
        return False
    stored = set(engine.query(f"SELECT * FROM {previous} LIMIT 0").column_names)
    if not set(history_columns(wide)) <= stored:
        return False
    return engine.query(f"SELECT COUNT(*) AS n FROM {TRAITS.name} WHERE valid_to IS NULL").column("n")[0].as_py() > 0


def diff_history(engine: Engine, wide: TableDef, as_of: dt.datetime, current: str, full: bool = False) -> HistoryChange:
    """Materialize `traits_diff`: the history changes that bring `traits` to the wide
    rows in table `current` (compared with the published `wide.name` unless `full`)."""
    engine.create_table(TRAITS.name, TRAITS.columns)
    _check_not_backwards(engine, as_of)
    only = None
    if not full and _comparable(engine, wide, wide.name):
        engine.materialize(CHANGED, changed_persons_sql(wide, current, wide.name), SCRATCH)
        only = CHANGED
    engine.materialize(DIFF, diff_sql(wide, current, only), SCRATCH)
    counts = engine.query(COUNTS_SQL).to_pylist()[0]
    return HistoryChange(opened=int(counts["opened"]), closed=int(counts["closed"]))


def apply_history(engine: Engine, change: HistoryChange, as_of: dt.datetime) -> None:
    """Apply `traits_diff` to `traits` (the caller holds the transaction, if any)."""
    if change.opened or change.closed:
        if engine.SUPPORTS_UPDATE_DELETE:
            engine.execute(_bind(DROP_EMPTY_SQL, as_of))
            engine.execute(_bind(CLOSE_SQL, as_of))
            engine.execute(_bind(OPEN_SQL, as_of))
        else:  # Spark over Parquet: rewrite the table from itself, one atomic publish
            engine.materialize(TRAITS.name, _bind(REBUILT_SQL, as_of))
    for name in (DIFF, CHANGED):
        engine.drop_table(name)
