"""Writing the identity tables on either engine, and removing rows where only one can.

DuckDB keeps declared column types when rows are replaced with DELETE + INSERT; Spark
over Parquet has no DELETE, so a table is rewritten from a SELECT (a new immutable
version, which is also how Spark cuts lineage). Callers test nothing: these helpers
read `engine.SUPPORTS_UPDATE_DELETE`.
"""

from __future__ import annotations

import datetime as dt

from jingzhun.core.errors import SchemaError
from jingzhun.engine import Engine, MaterializeHints, TableHandle
from jingzhun.schema.tables import TableDef

WORK_PREFIX = "identity_work_"

SOURCE_TABLES = ("events", "orders", "order_items", "source_records", "survey_responses")
IDENTITY_TABLES = ("identities", "identity_links", "persons", "record_persons", "identity_changes",
                   "identity_overrides", "erased_identifiers", "match_candidates")


def utc_now() -> dt.datetime:
    """One instant per operation, to the second, so every row it writes agrees."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def count_rows(engine: Engine, sql: str) -> int:
    """How many rows `sql` returns."""
    counted = engine.query(f"SELECT COUNT(*) AS n FROM ({sql}) AS counted")
    return int(counted.column("n")[0].as_py())


def require_tables(engine: Engine, names: tuple[str, ...] = SOURCE_TABLES + IDENTITY_TABLES) -> None:
    """Refuse to run on a workspace whose schema is older than the identity stage."""
    present = set(engine.list_tables())  # one catalog lookup, not one per table
    missing = [name for name in names if name not in present]
    if missing:
        raise SchemaError(
            f"the identity stage needs tables that do not exist yet: {', '.join(missing)}.",
            fix="run `jingzhun migrate` (or the pipeline, which migrates first)",
            message_zh=f"身份识别阶段需要的数据表尚不存在：{'、'.join(missing)}。",
            fix_zh="先运行 `jingzhun migrate`（或直接运行流水线，它会先迁移）",
        )


def typed_select(table: TableDef, select_sql: str) -> str:
    """`select_sql` projected onto exactly the table's columns, cast to their types."""
    columns = ", ".join(f"CAST({c.name} AS {c.type}) AS {c.name}" for c in table.columns)
    return f"SELECT {columns} FROM ({select_sql}) AS rows"


def replace_rows(engine: Engine, table: TableDef, select_sql: str, order_by: str | None = None) -> int:
    """Replace every row of `table` with the rows of `select_sql`; return the count.

    Callers group several replacements in one `engine.transaction()` where the
    engine has transactions, so readers never see half a rebuild. `order_by` stores the
    rows in that order on DuckDB (it keeps insertion order), so a lookup by that column
    reads only the row groups whose min/max can hold the value; the look-ups it is for are
    the collector's real-time hooks, which run on DuckDB only, so Spark skips the sort.
    """
    typed = typed_select(table, select_sql)
    if engine.SUPPORTS_UPDATE_DELETE:
        names = ", ".join(table.column_names)
        engine.execute(f"DELETE FROM {table.name}")
        engine.execute(f"INSERT INTO {table.name} ({names}) {typed}" + (f" ORDER BY {order_by}" if order_by else ""))
    else:
        materialize(engine, table.name, typed)
    return engine.row_count(table.name)


def append_rows(engine: Engine, table: TableDef, select_sql: str) -> None:
    """Add the rows of `select_sql` to `table`."""
    typed = typed_select(table, select_sql)
    if engine.SUPPORTS_UPDATE_DELETE:
        engine.execute(f"INSERT INTO {table.name} ({', '.join(table.column_names)}) {typed}")
    else:
        materialize(engine, table.name, f"SELECT * FROM {table.name} UNION ALL {typed}")


def delete_keys(engine: Engine, table: str, key: str, keys_sql: str) -> int:
    """Remove the rows of `table` whose `key` (an expression over alias `t`) is among
    the `key` column of `keys_sql`; return how many were removed."""
    matched = f"SELECT 1 FROM {table} AS t SEMI JOIN ({keys_sql}) AS k ON {key} = k.key"
    removed = count_rows(engine, matched)
    if removed == 0:
        return 0
    if engine.SUPPORTS_UPDATE_DELETE:
        engine.execute(f"DELETE FROM {table} AS t WHERE {key} IN (SELECT key FROM ({keys_sql}) AS k)")
    else:
        materialize(engine, table, f"SELECT t.* FROM {table} AS t ANTI JOIN ({keys_sql}) AS k ON {key} = k.key")
    return removed


def materialize(engine: Engine, name: str, sql: str) -> TableHandle:
    """`engine.materialize`, with the stage's `identity_work_*` tables as scratch tables
    (on DuckDB: in memory, never written into the file; they are dropped at the end)."""
    return engine.materialize(name, sql, MaterializeHints(scratch=name.startswith(WORK_PREFIX)))


def drop_work_tables(engine: Engine) -> None:
    """Remove the stage's intermediate tables."""
    for name in engine.list_tables():
        if name.startswith(WORK_PREFIX):
            engine.drop_table(name)


# Activation history (and real-time audience entries) written with a person_id at the
# time; it follows merges here. (Portrait tables are recomputed from record_persons by
# their own stages.)
FOLLOW_MERGES = ("deliveries", "message_events", "experiments", "consents", "segment_live_members")
MERGED = "SELECT person_id AS old_id, merged_into FROM persons WHERE status = 'merged' AND merged_into IS NOT NULL"


def follow_merges(engine: Engine, tables: tuple[str, ...] = FOLLOW_MERGES) -> dict[str, int]:
    """Point rows of merged persons at the person they were merged into."""
    moved: dict[str, int] = {}
    for table in tables:
        if not engine.table_exists(table):
            continue
        count = count_rows(engine, f"SELECT 1 FROM {table} AS t JOIN ({MERGED}) AS m ON m.old_id = t.person_id")
        if count == 0:
            continue
        if engine.SUPPORTS_UPDATE_DELETE:
            engine.execute(f"UPDATE {table} AS t SET person_id = m.merged_into FROM ({MERGED}) AS m "
                           "WHERE t.person_id = m.old_id")
        else:
            names = engine.query(f"SELECT * FROM {table} LIMIT 0").column_names
            columns = ", ".join("COALESCE(m.merged_into, t.person_id) AS person_id" if name == "person_id"
                                else f"t.{name}" for name in names)
            materialize(engine, table, f"SELECT {columns} FROM {table} AS t "
                                      f"LEFT JOIN ({MERGED}) AS m ON m.old_id = t.person_id")
        moved[table] = count
    return moved
