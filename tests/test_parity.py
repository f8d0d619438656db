"""The parity harness: the pipeline and representative queries on DuckDB and Spark.

The session's demo workspace (`loaded_demo`: events sent through the collector over
HTTP, files through the importers) provides the collected tables; the same Arrow rows
are written to both engines, every pipeline stage runs on both, and every canonical table plus each representative query is compared row
for row after normalizing types and sorting. Later stages add themselves simply by
registering in `jingzhun.pipeline.STAGES` (their tables are compared here) and by
adding queries to tests/parity_queries/.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from jingzhun.engine.parity import compare_tables
from jingzhun.schema import canonical_tables
from tests.conftest import COLLECTED, load

QUERY_DIR = Path(__file__).parent / "parity_queries"
QUERIES = sorted(QUERY_DIR.glob("*.sql"))


def test_demo_sources_fill_the_tables(demo_tables: dict[str, pa.Table]) -> None:
    """The harness must compare real data, not empty tables."""
    for name in ("events", "orders", "order_items", "products", "stores", "source_records", "quarantine"):
        assert demo_tables[name].num_rows > 0, name
    assert demo_tables["events"].num_rows > demo_tables["orders"].num_rows
    assert len(set(demo_tables["events"].column("channel").to_pylist())) >= 3


def test_queries_return_rows_on_duckdb(tmp_path: Path, demo_tables) -> None:
    """Every representative query has rows to compare (run on DuckDB alone, fast)."""
    from jingzhun.engine import DuckDBEngine

    with DuckDBEngine(tmp_path / "warehouse.duckdb") as engine:
        load(engine, demo_tables)
        for path in QUERIES:
            assert engine.query(path.read_text(encoding="utf-8")).num_rows > 0, path.stem


# Columns that record when a stage ran (the wall clock), not what it computed: they differ
# between any two runs, so parity compares everything else.
WALL_CLOCK = {"computed_at", "trained_at", "created_at", "updated_at", "occurred_at", "applied_at",
              "reviewed_at"}


# Splink's saved settings embed SQL rendered for the engine (sql_dialect, function names);
# what it learned is compared through model_version, a hash of the prior and every m and u.
ENGINE_RENDERED = {"model_runs": {"params"}}


def _computed(table_name: str, rows: pa.Table) -> pa.Table:
    if table_name in COLLECTED:
        return rows
    skip = WALL_CLOCK | ENGINE_RENDERED.get(table_name, set())
    return rows.drop_columns([name for name in rows.column_names if name in skip])


@pytest.mark.spark
def test_pipeline_parity(pipelines_on_both) -> None:
    (duck, spark), results = pipelines_on_both
    spark.refresh()
    assert [r.tables for r in results["duckdb"]] == [r.tables for r in results["spark"]]
    for table in canonical_tables():
        report = compare_tables(table.name, _computed(table.name, duck.read_table(table.name)),
                                _computed(table.name, spark.read_table(table.name)))
        assert report.equal, f"{table.name}: {report.differences}"


@pytest.mark.spark
@pytest.mark.parametrize("path", QUERIES, ids=lambda p: p.stem)
def test_query_parity(pipelines_on_both, path: Path) -> None:
    (duck, spark), _ = pipelines_on_both
    spark.refresh()
    query = path.read_text(encoding="utf-8")
    report = compare_tables(path.stem, duck.query(query), spark.query(query))
    assert report.left_rows > 0
    assert report.equal, f"{path.stem}: {report.differences}\nSpark SQL: {spark.render(query)}"
