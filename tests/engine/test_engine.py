"""The Engine protocol, run on DuckDB and (with -m spark) on local Spark."""

from datetime import UTC, datetime
from decimal import Decimal

import pyarrow as pa
import pytest

from jingzhun.core.errors import EngineError
from jingzhun.engine import Column, Engine, MaterializeHints

ORDER_COLUMNS = [
    Column("order_id", "VARCHAR"),
    Column("placed_at", "TIMESTAMPTZ"),
    Column("net_amount", "DECIMAL(18, 2)"),
    Column("properties", "VARCHAR"),
]


def _orders(ids: list[str]) -> pa.Table:
    return pa.table({
        "order_id": ids,
        "placed_at": pa.array([datetime(2026, 1, 1, 16, 30, tzinfo=UTC)] * len(ids), pa.timestamp("us", tz="UTC")),
        "net_amount": [12.5] * len(ids),  # a double: the table's DECIMAL must win
        "properties": ['{"platform": "tmall"}'] * len(ids),
    })


def test_created_table_is_empty_and_typed(engine: Engine) -> None:
    engine.create_table("orders", ORDER_COLUMNS)
    engine.create_table("orders", ORDER_COLUMNS)  # idempotent
    empty = engine.read_table("orders")
    assert empty.num_rows == 0
    assert empty.schema.field("net_amount").type == pa.decimal128(18, 2)
    assert pa.types.is_timestamp(empty.schema.field("placed_at").type)
    assert engine.list_tables() == ["orders"]


def test_append_and_replace_keep_declared_types(engine: Engine) -> None:
    engine.create_table("orders", ORDER_COLUMNS)
    engine.write_table("orders", _orders(["a", "b"]))
    engine.write_table("orders", _orders(["c"]).drop_columns(["properties"]))  # missing column → NULL
    rows = engine.read_table("orders").sort_by("order_id").to_pylist()
    assert [r["order_id"] for r in rows] == ["a", "b", "c"]
    assert rows[0]["net_amount"] == Decimal("12.50")
    assert rows[2]["properties"] is None
    engine.write_table("orders", _orders(["z"]), mode="replace")
    assert engine.read_table("orders").column("order_id").to_pylist() == ["z"]


def test_materialize_keeps_the_sql_and_cuts_lineage(engine: Engine) -> None:
    engine.write_table("orders", _orders(["a", "b", "b"]))
    handle = engine.materialize(
        "order_totals", "SELECT order_id, COUNT(*) AS lines, SUM(net_amount) AS total FROM orders GROUP BY order_id"
    )
    assert "GROUP BY order_id" in handle.sql
    assert handle.row_count() == 2
    # Rebuilding a table from itself works because the new version is written first.
    engine.materialize("order_totals", "SELECT order_id, lines * 10 AS lines FROM order_totals")
    assert sorted(engine.read_table("order_totals").column("lines").to_pylist()) == [10, 20]


def test_scratch_tables_behave_like_tables_and_can_be_replaced_either_way(engine: Engine) -> None:
    engine.write_table("orders", _orders(["a", "b"]))
    scratch = MaterializeHints(scratch=True)
    engine.materialize("work_ids", "SELECT order_id FROM orders", scratch)
    assert "work_ids" in engine.list_tables() and engine.row_count("work_ids") == 2
    engine.materialize("work_ids", "SELECT order_id FROM work_ids WHERE order_id = 'a'", scratch)  # from itself
    assert engine.read_table("work_ids").column("order_id").to_pylist() == ["a"]
    engine.materialize("work_ids", "SELECT 'z' AS order_id")  # a durable table of the same name replaces it
    assert engine.read_table("work_ids").column("order_id").to_pylist() == ["z"]
    engine.materialize("work_ids", "SELECT 'y' AS order_id", scratch)  # and the other way round
    assert engine.read_table("work_ids").column("order_id").to_pylist() == ["y"]
    engine.drop_table("work_ids")
    assert "work_ids" not in engine.list_tables()


def test_json_and_local_time_mean_the_same_on_every_engine(engine: Engine) -> None:
    engine.write_table("orders", _orders(["a"]))
    row = engine.query(
        "SELECT properties->>'$.platform' AS platform, "
        "HOUR(CAST(placed_at AS TIMESTAMPTZ) AT TIME ZONE 'Asia/Shanghai') AS local_hour, "
        "CAST(CAST(placed_at AS TIMESTAMPTZ) AT TIME ZONE 'Asia/Shanghai' AS DATE) AS local_day FROM orders"
    ).to_pylist()[0]
    # 16:30 UTC on 1 Jan is 00:30 on 2 Jan in Shanghai.
    assert row["platform"] == "tmall"
    assert row["local_hour"] == 0
    assert str(row["local_day"]) == "2026-01-02"


def test_errors_name_the_table_and_carry_the_sql(engine: Engine) -> None:
    with pytest.raises(EngineError) as raised:
        engine.materialize("broken", "SELECT no_such_column FROM no_such_table")
    assert "broken" in raised.value.message
    assert "no_such_table" in raised.value.message
    with pytest.raises(EngineError, match="invalid table name"):
        engine.write_table("Robert'); DROP TABLE x;--", _orders(["a"]))


def test_drop_and_exists(engine: Engine) -> None:
    engine.write_table("orders", _orders(["a"]))
    assert engine.table_exists("orders")
    engine.drop_table("orders")
    assert not engine.table_exists("orders")
    engine.drop_table("orders")  # dropping twice is harmless


def test_transaction_rolls_back_where_supported(engine: Engine) -> None:
    engine.write_table("orders", _orders(["a"]))
    if not engine.SUPPORTS_TRANSACTIONS:
        pytest.skip(f"{engine.NAME} has no transactions; each table write is atomic instead")
    with pytest.raises(RuntimeError), engine.transaction():
        engine.write_table("orders", _orders(["b"]))
        raise RuntimeError("interrupted")
    assert engine.read_table("orders").column("order_id").to_pylist() == ["a"]


def test_tables_survive_reopening(engine: Engine, tmp_path, request) -> None:
    from tests.conftest import make_engine

    engine.write_table("orders", _orders(["a", "b"]))
    engine.close()
    reopened = make_engine(engine.NAME, tmp_path, request)
    assert reopened.row_count("orders") == 2
    reopened.close()


def test_hints_shape_storage_but_not_results(engine: Engine, tmp_path) -> None:
    from jingzhun.engine import MaterializeHints

    engine.write_table("orders", _orders([f"o{i}" for i in range(50)]))
    handle = engine.materialize(
        "orders_copy", "SELECT order_id, placed_at FROM orders", MaterializeHints(expected_rows=50)
    )
    assert handle.row_count() == 50
    if engine.NAME == "spark":  # a small table is one Parquet file, not one per partition
        version = tmp_path / "spark-warehouse" / "orders_copy" / handle.physical_name.split("/")[1]
        assert len(list(version.glob("part-*.parquet"))) == 1


def test_append_after_an_engine_rewrite_keeps_types(engine: Engine) -> None:
    """Rows appended from Arrow after the engine itself rewrote the table (as a
    migration does) must still read back: the files must agree on types."""
    engine.write_table("orders", _orders(["a"]))
    engine.materialize("orders", "SELECT *, CAST(NULL AS VARCHAR) AS note FROM orders")
    engine.write_table("orders", _orders(["b"]))
    rows = engine.read_table("orders").sort_by("order_id").to_pylist()
    assert [r["order_id"] for r in rows] == ["a", "b"]
    assert rows[1]["placed_at"] == rows[0]["placed_at"]
    assert engine.query("SELECT COUNT(*) AS n FROM orders WHERE placed_at IS NOT NULL").column("n")[0].as_py() == 2
