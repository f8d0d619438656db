"""SQL dialect handling: parse once in DuckDB's dialect, render for any engine.

jingzhun authors SQL in DuckDB's dialect (a portable subset) or builds sqlglot
expressions directly. Rendering for an engine uses `ErrorLevel.RAISE`, so a
construct the target cannot express fails loudly instead of being dropped
silently (sqlglot's default only warns).

Functions whose meaning differs between engines go through the small builders
below, which produce sqlglot nodes that both generators render correctly.
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp
from sqlglot.dialects.spark import Spark
from sqlglot.errors import ErrorLevel, ParseError, UnsupportedError

from jingzhun.core.errors import EngineError, UnsupportedOnEngine

AUTHORING_DIALECT = "duckdb"

_SECONDS_PER = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600}


def _paren(sql: str) -> str:
    return f"({sql})"


def _day_of_week(gen: Spark.Generator, node: exp.DayOfWeek) -> str:
    # DuckDB: Sunday = 0 … Saturday = 6. Spark's DAYOFWEEK: Sunday = 1 … Saturday = 7.
    return _paren(f"DAYOFWEEK({gen.sql(node, 'this')}) - 1")


def _iso_day_of_week(gen: Spark.Generator, node: exp.DayOfWeekIso) -> str:
    # ISO: Monday = 1 … Sunday = 7. sqlglot's stock rendering gives Monday = 3.
    return _paren(f"((DAYOFWEEK({gen.sql(node, 'this')}) + 5) % 7) + 1")


def _epoch_seconds(gen: Spark.Generator, node: exp.TimeToUnix) -> str:
    # DuckDB's EPOCH keeps fractions of a second; Spark's UNIX_TIMESTAMP drops them.
    return _paren(f"UNIX_MICROS({gen.sql(node, 'this')}) / 1000000.0")


def _boundary_date_diff(gen: Spark.Generator, node: exp.DateDiff) -> str:
    """DuckDB's DATE_DIFF counts unit boundaries crossed; Spark's counts whole units
    elapsed (DATE_DIFF('day', 23:00, 01:00 next day) is 1 in DuckDB, 0 in Spark)."""
    unit = (node.text("unit") or "DAY").upper()
    end, start = gen.sql(node, "this"), gen.sql(node, "expression")
    if unit in _SECONDS_PER:
        size = _SECONDS_PER[unit]
        return _paren(f"FLOOR(UNIX_SECONDS({end}) / {size}) - FLOOR(UNIX_SECONDS({start}) / {size})")
    days = f"DATEDIFF(CAST({end} AS DATE), CAST({start} AS DATE))"
    if unit == "DAY":
        return days
    if unit == "WEEK":  # DuckDB: day boundaries crossed, divided by 7, truncated toward zero
        return _paren(f"{days} DIV 7")
    per_year = {"MONTH": ("MONTH", 12), "QUARTER": ("QUARTER", 4), "YEAR": (None, 1)}.get(unit)
    if per_year is None:
        gen.unsupported(f"DATE_DIFF with unit {unit} has no boundary-counting equivalent on Spark")
        return f"DATEDIFF({unit}, {start}, {end})"
    part, count = per_year
    def index(value: str) -> str:
        return f"YEAR({value}) * {count} + {part}({value})" if part else f"YEAR({value})"
    return _paren(f"({index(end)}) - ({index(start)})")


class PortableSpark(Spark):
    """Spark SQL, with renderings fixed where sqlglot's stock ones change a result.

    Each fix below was found by the parity harness: the stock rendering runs on
    Spark but returns a different value than DuckDB for the same data.
    """

    class Generator(Spark.Generator):
        TRANSFORMS = {
            **Spark.Generator.TRANSFORMS,
            exp.DayOfWeek: _day_of_week,
            exp.DayOfWeekIso: _iso_day_of_week,
            exp.TimeToUnix: _epoch_seconds,
            exp.DateDiff: _boundary_date_diff,
            exp.Dayname: lambda gen, node: f"DATE_FORMAT({gen.sql(node, 'this')}, 'EEEE')",
            exp.Monthname: lambda gen, node: f"DATE_FORMAT({gen.sql(node, 'this')}, 'MMMM')",
            exp.PercentileCont: lambda gen, node: (
                f"PERCENTILE({gen.sql(node, 'this')}, {gen.sql(node, 'expression')})"
            ),
        }


# How each engine's dialect name is rendered: our portable variants where we have them.
RENDER_DIALECTS: dict[str, str | type[sqlglot.Dialect]] = {"duckdb": "duckdb", "spark": PortableSpark}


def parse_sql(sql: str) -> exp.Expression:
    """Parse one statement authored in DuckDB's dialect.

    Example:
        >>> parse_sql("SELECT 1 AS one").sql()
        'SELECT 1 AS one'
    """
    try:
        statements = [s for s in sqlglot.parse(sql, read=AUTHORING_DIALECT) if s is not None]
    except ParseError as broken:
        raise EngineError(
            f"cannot parse SQL: {broken.errors[0]['description'] if broken.errors else broken}",
            fix="check the statement's syntax (DuckDB dialect)",
            message_zh="无法解析 SQL 语句。", fix_zh="检查语句语法（DuckDB 方言）",
        ) from None
    if len(statements) != 1:
        raise EngineError(
            f"expected one SQL statement, got {len(statements)}.",
            fix="run statements one at a time",
            message_zh=f"应为一条 SQL 语句，实际为 {len(statements)} 条。", fix_zh="请逐条执行",
        )
    return statements[0]


def as_expression(query: str | exp.Expression) -> exp.Expression:
    """Accept SQL text (DuckDB dialect) or an expression; always return an expression."""
    return query if isinstance(query, exp.Expression) else parse_sql(query)


def render(expression: exp.Expression, dialect: str, engine_name: str | None = None) -> str:
    """Render `expression` for `dialect`, raising if anything cannot be expressed.

    Example:
        >>> render(parse_sql("SELECT properties->>'$.sku' AS sku FROM events"), "spark")
        "SELECT GET_JSON_OBJECT(properties, '$.sku') AS sku FROM events"
    """
    try:
        target = RENDER_DIALECTS.get(dialect, dialect)
        return expression.sql(dialect=target, unsupported_level=ErrorLevel.RAISE)
    except UnsupportedError as unsupported:
        name = engine_name or dialect
        raise UnsupportedOnEngine(
            f"engine {name!r} cannot run this query: {unsupported}. Query: {expression.sql()}",
            fix=f"rewrite the query with functions {name} supports, or run it on DuckDB",
            message_zh=f"引擎 {name!r} 无法执行此查询：{unsupported}",
            fix_zh=f"改用 {name} 支持的函数，或在 DuckDB 上执行",
        ) from None


def to_local_time(timestamp: exp.Expression, timezone: str) -> exp.Expression:
    """Wall-clock time in `timezone` for a UTC instant.

    DuckDB's `AT TIME ZONE` means "UTC instant → local wall clock" only for
    TIMESTAMPTZ input (for a plain TIMESTAMP it means the opposite), so the
    instant is cast to TIMESTAMPTZ first; sqlglot renders this as Spark's
    `FROM_UTC_TIMESTAMP(CAST(x AS TIMESTAMP), tz)`.

    Example:
        >>> render(to_local_time(exp.column("ts"), "Asia/Shanghai"), "spark")
        "FROM_UTC_TIMESTAMP(CAST(ts AS TIMESTAMP), 'Asia/Shanghai')"
    """
    instant = exp.cast(timestamp, exp.DataType.build("TIMESTAMPTZ"))
    return exp.AtTimeZone(this=instant, zone=exp.Literal.string(timezone))


def json_text(document: exp.Expression, path: str) -> exp.Expression:
    """A JSON property as text, e.g. `json_text(col("properties"), "$.sku")`.

    Example:
        >>> render(json_text(exp.column("properties"), "$.sku"), "spark")
        "GET_JSON_OBJECT(properties, '$.sku')"
    """
    return exp.JSONExtractScalar(this=document, expression=exp.Literal.string(path))


_WRITES = (
    exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter,
    exp.Copy, exp.Command, exp.Set, exp.Use, exp.TruncateTable, exp.Transaction,
    exp.Commit, exp.Rollback, exp.Pragma, exp.Attach, exp.Detach, exp.Install, exp.LoadData,
)
_READS = (exp.Query, exp.Describe, exp.Show)


def parse_read_only(sql: str) -> exp.Expression:
    """Parse a user's query and refuse anything that could change data.

    Used by `jingzhun sql` and the console's SQL box, where analysts may only read.
    """
    from jingzhun.core.errors import ReadOnlyQueryError

    statement = parse_sql(sql)
    writes = [node for node in statement.walk() if isinstance(node, _WRITES)]
    if writes or not isinstance(statement, _READS):
        what = type(writes[0] if writes else statement).__name__.upper()
        raise ReadOnlyQueryError(
            f"only read-only queries are allowed here; {what} statements could change data.",
            fix="use SELECT (or WITH … SELECT, DESCRIBE, SHOW); changes go through jingzhun's commands",
            field="query",
            message_zh=f"此处只允许只读查询，但这是一条 {what} 语句。",
            fix_zh="请使用 SELECT（或 WITH … SELECT、DESCRIBE、SHOW）；修改数据请使用 jingzhun 的命令",
        )
    return statement
