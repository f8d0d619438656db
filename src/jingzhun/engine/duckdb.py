"""The default engine: one embedded DuckDB file in the workspace.

No server to install: a marketing team starts jingzhun on a laptop. Timestamps are
stored as TIMESTAMPTZ and the session time zone is pinned to UTC so that results
do not depend on the laptop's own time zone.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import duckdb
import pyarrow as pa
from sqlglot import exp

from jingzhun.engine.base import Column, Engine, MaterializeHints, WriteMode
from jingzhun.engine.dialects import render

_INCOMING = "__jingzhun_incoming"


class DuckDBEngine(Engine):
    """Engine over a DuckDB database file (or ':memory:')."""

    NAME: ClassVar[str] = "duckdb"
    DIALECT: ClassVar[str] = "duckdb"
    SUPPORTS_TRANSACTIONS: ClassVar[bool] = True
    SUPPORTS_UPDATE_DELETE: ClassVar[bool] = True
    SUPPORTS_MERGE: ClassVar[bool] = True

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        read_only: bool = False,
        threads: int | None = None,
        memory_limit: str | None = None,
    ) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        config: dict[str, str | int] = {}
        if threads:
            config["threads"] = threads
        if memory_limit:
            config["memory_limit"] = memory_limit
        self.connection = duckdb.connect(self.path, read_only=read_only, config=config)
        self.connection.execute("SET TimeZone = 'UTC'")
        self._database = self.connection.execute("SELECT current_database()").fetchall()[0][0]

    def close(self) -> None:
        self.connection.close()

    def _run(self, sql: str) -> pa.Table | None:
        relation = self.connection.sql(sql)  # a relation for queries, None for statements
        return relation.to_arrow_table() if relation is not None else None

    def _materialize(self, name: str, select_sql: str, hints: MaterializeHints) -> str:
        if hints.scratch:
            # In memory (spilled to DuckDB's temp directory when large), never compressed
            # into the file and checkpointed: 2-3x cheaper for a 5M-row work table. A
            # durable table of the same name (left by an older version) is dropped so
            # it cannot reappear when the scratch table goes.
            self.connection.execute(f'DROP TABLE IF EXISTS "{self._database}".main."{name}"')
            self.connection.execute(f'CREATE OR REPLACE TEMP TABLE "{name}" AS {select_sql}')
            return name
        self.connection.execute(f'DROP TABLE IF EXISTS temp.main."{name}"')
        self.connection.execute(f'CREATE OR REPLACE TABLE "{name}" AS {select_sql}')
        return name

    def _create_table(self, name: str, columns: list[Column]) -> None:
        definitions = [
            exp.ColumnDef(
                this=exp.to_identifier(column.name),
                kind=exp.DataType.build(column.type, dialect="duckdb"),
                constraints=[] if column.nullable else [exp.ColumnConstraint(kind=exp.NotNullColumnConstraint())],
            )
            for column in columns
        ]
        schema = exp.Schema(this=exp.to_table(name), expressions=definitions)
        create = exp.Create(this=schema, kind="TABLE", exists=True)
        self.connection.execute(render(create, self.DIALECT, self.NAME))

    def _write_arrow(self, name: str, table: pa.Table, mode: WriteMode) -> None:
        self.connection.register(_INCOMING, table)
        try:
            if not self.table_exists(name):
                self.connection.execute(f'CREATE TABLE "{name}" AS SELECT * FROM {_INCOMING}')
                return
            # An existing table keeps its declared types: rows are cast into them,
            # and columns the Arrow table lacks become NULL (INSERT ... BY NAME).
            if mode == "replace":
                self.connection.execute(f'DELETE FROM "{name}"')
            self.connection.execute(f'INSERT INTO "{name}" BY NAME SELECT * FROM {_INCOMING}')
        finally:
            self.connection.unregister(_INCOMING)

    def _list_tables(self) -> list[str]:
        rows = self.connection.execute(
            "SELECT DISTINCT table_name FROM information_schema.tables "
            "WHERE table_schema = 'main' AND table_catalog IN (current_database(), 'temp')"
        ).fetchall()
        return [row[0] for row in rows]

    def _drop_table(self, name: str) -> None:
        self.connection.execute(f'DROP TABLE IF EXISTS "{name}"')

    def _begin(self) -> None:
        self.connection.execute("BEGIN TRANSACTION")

    def _commit(self) -> None:
        self.connection.execute("COMMIT")

    def _rollback(self) -> None:
        self.connection.execute("ROLLBACK")
