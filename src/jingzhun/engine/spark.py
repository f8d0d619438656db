"""The scale-out engine: Apache Spark (PySpark) over Parquet tables.

Each table is a folder under the warehouse path holding immutable versions::

    <warehouse>/<table>/v000001/part-*.parquet
    <warehouse>/<table>/_current          # the name of the published version

A write produces a new version and then publishes it, so readers never see half a
table, and every materialize cuts Spark's lineage (the next query reads Parquet,
not the plan that made it). Tables are registered as temporary views under their
logical names, so SQL written for DuckDB runs unchanged after sqlglot renders it.
The warehouse may be a local folder or any URI pyarrow and Spark both understand
(hdfs://, s3://), since files are handled through `pyarrow.fs`.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, ClassVar

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from sqlglot import exp

from jingzhun.core.errors import EngineError
from jingzhun.engine.base import Column, Engine, MaterializeHints, WriteMode

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)
CURRENT = "_current"
SMALL_TABLE_ROWS = 1_000_000  # a table this small is written as a single Parquet file


def spark_type(duckdb_type: str) -> str:
    """A column type in DuckDB spelling, rendered as Spark DDL (via sqlglot)."""
    return exp.DataType.build(duckdb_type, dialect="duckdb").sql(dialect="spark")


def import_pyspark() -> object:
    """Import pyspark lazily, with an install hint instead of a bare ImportError."""
    try:
        import pyspark
    except ImportError:
        raise EngineError(
            "the Spark engine needs PySpark, which is not installed.",
            fix="pip install 'jingzhun[spark]' (and Java 17+)",
            message_zh="Spark 引擎需要 PySpark，但尚未安装。",
            fix_zh="pip install 'jingzhun[spark]'（并安装 Java 17+）",
        ) from None
    return pyspark


def build_spark_session(master: str, app_name: str, conf: dict[str, str]) -> SparkSession:
    """A SparkSession whose semantics match the DuckDB engine (UTC session time)."""
    import_pyspark()
    from pyspark.sql import SparkSession

    # PySpark logs every failed query's JVM stack as JSON; we raise EngineError with
    # the first line and the SQL instead, so keep that logger quiet.
    logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
    builder = SparkSession.builder.master(master).appName(app_name)
    settings = {
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.showConsoleProgress": "false",
        # Spark's default INT96 timestamps read back in pyarrow as naive nanoseconds, and
        # files pyarrow then appends no longer match; standard UTC microseconds round-trip.
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    }
    settings.update(conf)
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


class SparkEngine(Engine):
    """Engine over a SparkSession and a Parquet warehouse."""

    NAME: ClassVar[str] = "spark"
    DIALECT: ClassVar[str] = "spark"
    SUPPORTS_TRANSACTIONS: ClassVar[bool] = False
    SUPPORTS_UPDATE_DELETE: ClassVar[bool] = False
    SUPPORTS_MERGE: ClassVar[bool] = False

    def __init__(self, spark: SparkSession, warehouse: str) -> None:
        self.spark = spark
        self.filesystem, root = pafs.FileSystem.from_uri(_as_uri(warehouse))
        self.root = root.rstrip("/")
        self.uri_prefix = warehouse.rstrip("/") if "://" in warehouse else "file://" + self.root
        self.filesystem.create_dir(self.root, recursive=True)
        self.refresh()

    def refresh(self) -> None:
        """(Re-)register every published table as a view, e.g. after another process
        or session published new versions into the same warehouse."""
        for name in self._list_tables():
            self._register(name)

    # ---- versions on storage ----------------------------------------------------

    def _current_version(self, name: str) -> str | None:
        pointer = f"{self.root}/{name}/{CURRENT}"
        if self.filesystem.get_file_info(pointer).type != pafs.FileType.File:
            return None
        with self.filesystem.open_input_stream(pointer) as stream:
            return stream.read().decode().strip()

    def _next_version(self, name: str) -> str:
        current = self._current_version(name)
        number = int(current.removeprefix("v")) + 1 if current else 1
        return f"v{number:06d}"

    def _publish(self, name: str, version: str) -> None:
        """Point `_current` at `version` (write-then-rename), drop the old version."""
        old = self._current_version(name)
        staging = f"{self.root}/{name}/{CURRENT}.{uuid.uuid4().hex}"
        with self.filesystem.open_output_stream(staging) as stream:
            stream.write(version.encode())
        self.filesystem.move(staging, f"{self.root}/{name}/{CURRENT}")
        self._register(name)
        if old and old != version:
            self.filesystem.delete_dir(f"{self.root}/{name}/{old}")

    def _register(self, name: str) -> None:
        version = self._current_version(name)
        frame = self.spark.read.parquet(f"{self.uri_prefix}/{name}/{version}")
        frame.createOrReplaceTempView(name)

    def _schema(self, name: str) -> pa.Schema:
        path = f"{self.root}/{name}/{self._current_version(name)}"
        return pq.ParquetDataset(path, filesystem=self.filesystem).schema

    # ---- hooks ------------------------------------------------------------------

    def close(self) -> None:
        """Forget this warehouse's views; the session may be shared, so it stays up."""
        for name in self._list_tables():
            self.spark.catalog.dropTempView(name)

    def _run(self, sql: str) -> pa.Table | None:
        frame = self.spark.sql(sql)
        if not frame.columns:
            return None
        return frame.toArrow()

    def _materialize(self, name: str, select_sql: str, hints: MaterializeHints) -> str:
        version = self._next_version(name)
        frame = self.spark.sql(select_sql)
        if hints.expected_rows is not None and hints.expected_rows <= SMALL_TABLE_ROWS:
            frame = frame.coalesce(1)  # one file, not one per shuffle partition
        writer = frame.write.mode("error")
        if hints.partition_by:
            writer = writer.partitionBy(*hints.partition_by)
        writer.parquet(f"{self.uri_prefix}/{name}/{version}")
        self._publish(name, version)
        return f"{name}/{version}"

    def _create_table(self, name: str, columns: list[Column]) -> None:
        from pyspark.sql.pandas.types import to_arrow_schema

        ddl = ", ".join(f"`{column.name}` {spark_type(column.type)}" for column in columns)
        schema = to_arrow_schema(self.spark.createDataFrame([], ddl).schema, timezone="UTC")
        self._write_arrow(name, schema.empty_table(), "replace")

    def _write_arrow(self, name: str, table: pa.Table, mode: WriteMode) -> None:
        current = self._current_version(name)
        if current is None or mode == "replace":
            if current is not None:
                table = _conform(table, self._schema(name))
            version = self._next_version(name)
            self.filesystem.create_dir(f"{self.root}/{name}/{version}", recursive=True)
            self._add_part(f"{self.root}/{name}/{version}", table)
            self._publish(name, version)
            return
        # Append: one more immutable part file in the published version.
        self._add_part(f"{self.root}/{name}/{current}", _conform(table, self._schema(name)))
        self._register(name)

    def _add_part(self, folder: str, table: pa.Table) -> None:
        """Write then rename, so a concurrent reader never lists a half-written file
        (Spark and pyarrow skip names starting with '_')."""
        part = uuid.uuid4().hex
        staging = f"{folder}/_writing-{part}.parquet"
        pq.write_table(table, staging, filesystem=self.filesystem)
        self.filesystem.move(staging, f"{folder}/part-{part}.parquet")

    def _list_tables(self) -> list[str]:
        infos = self.filesystem.get_file_info(pafs.FileSelector(self.root, allow_not_found=True))
        return [
            info.base_name
            for info in infos
            if info.type == pafs.FileType.Directory and self._current_version(info.base_name)
        ]

    def _drop_table(self, name: str) -> None:
        self.spark.catalog.dropTempView(name)
        self.filesystem.delete_dir(f"{self.root}/{name}")


def _as_uri(warehouse: str) -> str:
    return warehouse if "://" in warehouse else "file://" + str(_absolute(warehouse))


def _absolute(path: str) -> str:
    from pathlib import Path

    return str(Path(path).expanduser().resolve())


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast incoming rows to the table's stored schema; missing columns become NULL."""
    columns = [
        table.column(field.name).cast(field.type) if field.name in table.column_names
        else pa.nulls(table.num_rows, field.type)
        for field in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)
