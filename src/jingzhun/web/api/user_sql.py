"""SQL a caller sends (hypothesis checks, an audience given as a query): read tables, nothing else.

The analyses accept read-only SELECTs (`parse_read_only`), which is enough on a command line:
but over the network a read-only query can still read the server's files through DuckDB's
table functions (`read_text('/…')`, `read_csv`, `glob`, or a quoted path after FROM). So every
table a caller's query names must be a table of the workspace or one of the query's own CTEs.
"""

from __future__ import annotations

from sqlglot import exp

from jingzhun.core.errors import JingzhunError
from jingzhun.engine import Engine
from jingzhun.engine.dialects import parse_read_only


class UserSqlError(JingzhunError):
    """A caller's SQL reads something other than the workspace's tables."""


def check_user_sql(engine: Engine, sql: str, field: str) -> str:
    """`sql` if it only reads the workspace's tables (and its own CTEs); else a UserSqlError naming `field`."""
    statement = parse_read_only(sql)
    tables = set(engine.list_tables())
    ctes = {cte.alias_or_name for cte in statement.find_all(exp.CTE)}
    for table in statement.find_all(exp.Table):
        name = table.this
        schema = table.args.get("db")
        if not isinstance(name, exp.Identifier) or name.name not in tables | ctes or table.args.get("catalog") \
                or (schema is not None and schema.name != "main"):
            shown = table.sql(dialect="duckdb")[:80]
            raise UserSqlError(
                f"{field} may only read the workspace's tables, not {shown}.", field=field,
                fix="name tables such as orders, events, person_traits (files and table functions are not allowed)",
                message_zh=f"{field} 只能读取工作区的数据表，不能读取 {shown}。",
                fix_zh="请使用 orders、events、person_traits 等数据表（不允许读取文件或使用表函数）")
    return sql
