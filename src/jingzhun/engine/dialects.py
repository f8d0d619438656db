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
from sqlglot.errors import ErrorLevel, ParseError, UnsupportedError

from jingzhun.core.errors import EngineError, UnsupportedOnEngine

AUTHORING_DIALECT = "duckdb"


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
        return expression.sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE)
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
