"""How Splink reaches each engine for one matching run.

A run hands Splink the prepared member table, lets it train and score, and hands
the scored pairs back as a table the engine can query; then it cleans up.

* **DuckDB**: Splink works in its own in-memory DuckDB, reading the member table as
  Arrow (zero-copy). Its dozens of intermediate tables (sampled pairs, comparison
  vectors, term frequencies) would otherwise be written to the workspace file and
  dropped again; only the scored pairs above the review threshold (a few per
  thousand members) come back into the warehouse.
* **Spark**: Splink works on the engine's own session, reading the member table's
  Parquet-backed view by name; its intermediate frames are persisted in the session's
  cache, and the scored pairs stay a view the engine queries directly. No Scala UDF
  jar is needed: the comparisons use Spark's own `levenshtein`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import duckdb
import pyarrow as pa

from jingzhun.engine import Engine
from jingzhun.identity.matching_model import MatchingError

if TYPE_CHECKING:  # splink is imported by the run's `_open`, not by every jingzhun process
    from splink.internals.database_api import DatabaseAPI
    from splink.internals.splink_dataframe import SplinkDataFrame

SCORED = "identity_match_scored"


class SplinkRun(ABC):
    """One run's Splink DatabaseAPI over an engine. Subclasses fill the three hooks."""

    ENGINE: ClassVar[str] = "abstract"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.db_api = self._open()

    @abstractmethod
    def _open(self) -> DatabaseAPI:
        """Splink's DatabaseAPI for this engine."""

    @abstractmethod
    def source(self, records: str) -> str | pa.Table:
        """What Splink should register for the engine table `records`."""

    @abstractmethod
    def scored_table(self, scored: SplinkDataFrame) -> str:
        """The name under which the engine can query Splink's scored pairs."""

    def close(self) -> None:
        """Drop every intermediate table Splink made, and whatever the run cached."""
        self.db_api.delete_tables_created_by_splink_from_db()


class DuckDBSplinkRun(SplinkRun):
    ENGINE = "duckdb"

    def _open(self) -> DatabaseAPI:
        from splink import DuckDBAPI

        self.connection = duckdb.connect(":memory:")
        return DuckDBAPI(self.connection)

    def source(self, records: str) -> pa.Table:
        return self.engine.read_table(records)

    def scored_table(self, scored: SplinkDataFrame) -> str:
        self.engine.write_table(SCORED, scored.as_pyarrow_table(), mode="replace")
        return SCORED

    def close(self) -> None:
        self.engine.drop_table(SCORED)
        self.connection.close()  # the in-memory database and all of Splink's tables with it


class SparkSplinkRun(SplinkRun):
    ENGINE = "spark"

    def _open(self) -> DatabaseAPI:
        from splink import SparkAPI

        return SparkAPI(spark_session=self.engine.spark,  # type: ignore[attr-defined]
                        break_lineage_method="persist", register_udfs_automatically=False)

    def source(self, records: str) -> str:
        return records  # the engine registers every table as a temporary view

    def scored_table(self, scored: SplinkDataFrame) -> str:
        return scored.physical_name

    def close(self) -> None:
        """Also drop the views Splink registers outside its own bookkeeping (e.g.
        `__splink__m_u_counts_…`) and its persisted frames: our Spark engine caches
        nothing itself (it reads Parquet), so the session's cache holds only Splink's."""
        super().close()
        catalog = self.engine.spark.catalog  # type: ignore[attr-defined]
        for view in catalog.listTables():
            if view.isTemporary and view.name.startswith("__splink__"):
                catalog.dropTempView(view.name)
        catalog.clearCache()


SPLINK_RUNS: dict[str, type[SplinkRun]] = {run.ENGINE: run for run in (DuckDBSplinkRun, SparkSplinkRun)}


def open_splink_run(engine: Engine) -> SplinkRun:
    """Splink over `engine` for one matching run; `close()` it when done."""
    run = SPLINK_RUNS.get(engine.NAME)
    if run is None:
        raise MatchingError(
            f"probabilistic matching has no Splink backend for engine {engine.NAME!r}.",
            fix="run the pipeline on duckdb or spark", field="engine",
            message_zh=f"引擎 {engine.NAME!r} 没有对应的 Splink 后端，无法做概率匹配。",
            fix_zh="请在 duckdb 或 spark 上运行",
        )
    return run(engine)
