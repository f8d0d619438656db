"""The Engine: one small protocol, policy here, a few hooks per backend.

Shaped like splink's DatabaseAPI: the base class owns the policy (parse, render
with `ErrorLevel.RAISE`, log, wrap errors with the logical name, physical name
and SQL, keep the SQL beside each result) and marks it `@final`; each backend
fills a handful of `_hooks`. Engine differences are class constants that callers
test (`if engine.SUPPORTS_TRANSACTIONS:`), never `isinstance` checks.

The engine never knows stage table names: stages pass names in.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar, Literal, final

import pyarrow as pa
from sqlglot import exp

from jingzhun.core.errors import EngineError, JingzhunError
from jingzhun.engine.dialects import as_expression, render

log = logging.getLogger(__name__)

WriteMode = Literal["append", "replace"]
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class Column:
    """A column of a table definition: name and type in DuckDB's SQL spelling."""

    name: str
    type: str
    nullable: bool = True
    description: str = ""


@dataclass(frozen=True)
class MaterializeHints:
    """Physical tuning a stage may suggest; each engine applies what it understands."""

    partition_by: tuple[str, ...] = ()
    expected_rows: int | None = None
    # A stage's own work table, dropped before the stage ends: nothing else reads it and
    # it need not survive a crash, so an engine may keep it out of durable storage.
    scratch: bool = False


@dataclass
class TableHandle:
    """A materialized table and the SQL that made it (so every number is traceable)."""

    logical_name: str
    physical_name: str
    sql: str
    engine: Engine = field(repr=False)

    def to_arrow(self) -> pa.Table:
        return self.engine.read_table(self.logical_name)

    def row_count(self) -> int:
        return self.engine.row_count(self.logical_name)


def check_table_name(name: str) -> str:
    """Table names are lower_snake identifiers: safe on every engine and filesystem."""
    if not _NAME.match(name):
        raise EngineError(
            f"invalid table name {name!r}.",
            fix="use lower-case letters, digits and underscores, starting with a letter",
            field="table", message_zh=f"无效的表名 {name!r}。",
            fix_zh="只用小写字母、数字和下划线，并以字母开头",
        )
    return name


class Engine(ABC):
    """Runs SQL over named tables on one backend. Subclasses fill the `_hooks`."""

    NAME: ClassVar[str] = "abstract"
    DIALECT: ClassVar[str] = "duckdb"
    SUPPORTS_TRANSACTIONS: ClassVar[bool] = False
    SUPPORTS_UPDATE_DELETE: ClassVar[bool] = False
    SUPPORTS_MERGE: ClassVar[bool] = False

    # ---- policy -----------------------------------------------------------------

    @final
    def render(self, query: str | exp.Expression) -> str:
        """The SQL this engine would run for `query` (DuckDB-dialect text or expression)."""
        return render(as_expression(query), self.DIALECT, self.NAME)

    @final
    def query(self, query: str | exp.Expression) -> pa.Table:
        """Run a SELECT and return its rows as Arrow."""
        sql = self.render(query)
        result = self._run_logged(sql, logical_name="query")
        return result if result is not None else pa.table({})

    @final
    def execute(self, statement: str | exp.Expression) -> None:
        """Run a statement that returns nothing (DDL, DML where the engine has it)."""
        self._run_logged(self.render(statement), logical_name="statement")

    @final
    def materialize(
        self, name: str, query: str | exp.Expression, hints: MaterializeHints | None = None
    ) -> TableHandle:
        """Create or replace table `name` from a SELECT; keep the SQL beside it."""
        check_table_name(name)
        sql = self.render(query)
        try:
            physical = self._materialize(name, sql, hints or MaterializeHints())
        except JingzhunError:
            raise
        except Exception as failure:
            raise self._execution_error(failure, name, sql) from failure
        log.debug("materialized %s as %s: %s", name, physical, sql)
        return TableHandle(logical_name=name, physical_name=physical, sql=sql, engine=self)

    @final
    def create_table(self, name: str, columns: Sequence[Column]) -> None:
        """Create an empty table with these columns unless it exists."""
        check_table_name(name)
        if not self.table_exists(name):
            self._create_table(name, list(columns))

    @final
    def write_table(self, name: str, table: pa.Table, mode: WriteMode = "append") -> None:
        """Append Arrow rows to `name` (created if missing) or replace its contents."""
        check_table_name(name)
        if mode not in ("append", "replace"):
            raise EngineError(f"unknown write mode {mode!r}.", fix="use 'append' or 'replace'")
        try:
            self._write_arrow(name, table, mode)
        except JingzhunError:
            raise
        except Exception as failure:
            raise self._execution_error(failure, name, f"<write {table.num_rows} rows, {mode}>") from failure

    @final
    def read_table(self, name: str) -> pa.Table:
        """All rows of `name` as Arrow."""
        return self.query(exp.select("*").from_(exp.to_table(check_table_name(name))))

    @final
    def row_count(self, name: str) -> int:
        counted = self.query(exp.select(exp.func("count", exp.Star()).as_("n")).from_(name))
        return int(counted.column("n")[0].as_py())

    @final
    def list_tables(self) -> list[str]:
        return sorted(self._list_tables())

    @final
    def table_exists(self, name: str) -> bool:
        return name in self._list_tables()

    @final
    def drop_table(self, name: str) -> None:
        if self.table_exists(check_table_name(name)):
            self._drop_table(name)

    @final
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All-or-nothing where the backend has transactions; a plain block elsewhere.

        On engines without transactions (Spark over Parquet) each write is still
        atomic per table (a new version is published only once complete).
        """
        if not self.SUPPORTS_TRANSACTIONS:
            yield
            return
        self._begin()
        try:
            yield
        except BaseException:
            self._rollback()
            raise
        self._commit()

    @abstractmethod
    def close(self) -> None:
        """Release the connection or session."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @final
    def _run_logged(self, sql: str, logical_name: str) -> pa.Table | None:
        log.debug("%s %s: %s", self.NAME, logical_name, sql)
        try:
            return self._run(sql)
        except JingzhunError:
            raise
        except Exception as failure:
            raise self._execution_error(failure, logical_name, sql) from failure

    @final
    def _execution_error(self, failure: Exception, logical_name: str, sql: str) -> EngineError:
        reason = str(failure).strip().splitlines()[0] if str(failure).strip() else type(failure).__name__
        return EngineError(
            f"{self.NAME} failed on {logical_name}: {reason}\nSQL: {sql}",
            fix="check the table and column names in the query",
            message_zh=f"{self.NAME} 执行 {logical_name} 失败：{reason}\nSQL: {sql}",
            fix_zh="检查查询中的表名和列名",
        )

    # ---- hooks: each backend fills these --------------------------------------

    @abstractmethod
    def _run(self, sql: str) -> pa.Table | None:
        """Run rendered SQL; return rows for queries, None for statements."""

    @abstractmethod
    def _materialize(self, name: str, select_sql: str, hints: MaterializeHints) -> str:
        """Store the SELECT's rows as table `name`; return the physical name."""

    @abstractmethod
    def _create_table(self, name: str, columns: list[Column]) -> None:
        """Create empty table `name` (it does not exist yet)."""

    @abstractmethod
    def _write_arrow(self, name: str, table: pa.Table, mode: WriteMode) -> None:
        """Append or replace rows of `name` from Arrow (create it if missing)."""

    @abstractmethod
    def _list_tables(self) -> list[str]:
        """Logical names of the tables this engine holds."""

    @abstractmethod
    def _drop_table(self, name: str) -> None:
        """Remove table `name` (it exists)."""

    # Called only when SUPPORTS_TRANSACTIONS is true; such a backend overrides all three.
    def _begin(self) -> None:
        raise EngineError(f"engine {self.NAME!r} has no transactions.", fix="check SUPPORTS_TRANSACTIONS first")

    def _commit(self) -> None:
        raise EngineError(f"engine {self.NAME!r} has no transactions.", fix="check SUPPORTS_TRANSACTIONS first")

    def _rollback(self) -> None:
        raise EngineError(f"engine {self.NAME!r} has no transactions.", fix="check SUPPORTS_TRANSACTIONS first")
