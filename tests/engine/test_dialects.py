"""Compiler-level tests: (name, SQL authored for DuckDB, expected SQL per dialect)."""

import pytest
from sqlglot import exp

from jingzhun.core.errors import EngineError, ReadOnlyQueryError, UnsupportedOnEngine
from jingzhun.engine import json_text, parse_sql, render, to_local_time
from jingzhun.engine.dialects import parse_read_only

RENDERINGS = [
    (
        "json property",
        "SELECT properties->>'$.sku' AS sku FROM events",
        "SELECT properties ->> '$.sku' AS sku FROM events",
        "SELECT GET_JSON_OBJECT(properties, '$.sku') AS sku FROM events",
    ),
    (
        "utc to local time",
        "SELECT CAST(ts AS TIMESTAMPTZ) AT TIME ZONE 'Asia/Shanghai' AS local_ts FROM t",
        "SELECT CAST(ts AS TIMESTAMPTZ) AT TIME ZONE 'Asia/Shanghai' AS local_ts FROM t",
        "SELECT FROM_UTC_TIMESTAMP(CAST(ts AS TIMESTAMP), 'Asia/Shanghai') AS local_ts FROM t",
    ),
    (
        "window with qualify",
        "SELECT user_id FROM events QUALIFY ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY timestamp) = 1",
        "SELECT user_id FROM events QUALIFY ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY timestamp) = 1",
        "SELECT user_id FROM (SELECT user_id, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY timestamp NULLS LAST)"
        " AS _w FROM events) AS _t WHERE _w = 1",
    ),
    (
        "hashing an identifier",
        "SELECT SHA256(phone) AS h FROM persons",
        "SELECT SHA256(phone) AS h FROM persons",
        "SELECT SHA2(phone, 256) AS h FROM persons",
    ),
    (
        "date formatting",
        "SELECT STRFTIME(placed_at, '%Y-%m') AS month FROM orders",
        "SELECT STRFTIME(placed_at, '%Y-%m') AS month FROM orders",
        "SELECT DATE_FORMAT(placed_at, 'yyyy-MM') AS month FROM orders",
    ),
]


@pytest.mark.parametrize(("name", "authored", "duckdb", "spark"), RENDERINGS, ids=[r[0] for r in RENDERINGS])
def test_rendering_per_dialect(name: str, authored: str, duckdb: str, spark: str) -> None:
    expression = parse_sql(authored)
    assert render(expression, "duckdb") == duckdb
    assert render(expression, "spark") == spark


def test_builders_render_for_both_engines() -> None:
    local = to_local_time(exp.column("placed_at"), "Asia/Shanghai")
    assert render(local, "duckdb") == "CAST(placed_at AS TIMESTAMPTZ) AT TIME ZONE 'Asia/Shanghai'"
    assert render(local, "spark") == "FROM_UTC_TIMESTAMP(CAST(placed_at AS TIMESTAMP), 'Asia/Shanghai')"
    sku = json_text(exp.column("properties"), "$.sku")
    assert render(sku, "spark") == "GET_JSON_OBJECT(properties, '$.sku')"


def test_unsupported_construct_raises_with_engine_name() -> None:
    # DuckDB's ARG_MAX(arg, val, n) returns the top n; Spark's MAX_BY has no count.
    # sqlglot only warns by default; rendering with RAISE makes it an error.
    top_three = parse_sql("SELECT ARG_MAX(product_id, amount, 3) AS top FROM order_items")
    assert "ARG_MAX" in render(top_three, "duckdb")
    with pytest.raises(UnsupportedOnEngine, match="spark"):
        render(top_three, "spark")


def test_parse_errors_are_engine_errors() -> None:
    with pytest.raises(EngineError, match="cannot parse"):
        parse_sql("SELEC 1 FROM")
    with pytest.raises(EngineError, match="one SQL statement"):
        parse_sql("SELECT 1; SELECT 2")


@pytest.mark.parametrize("query", ["SELECT 1", "WITH a AS (SELECT 1 AS x) SELECT x FROM a", "DESCRIBE events"])
def test_read_only_queries_pass(query: str) -> None:
    assert parse_read_only(query) is not None


@pytest.mark.parametrize(
    "query",
    ["INSERT INTO events VALUES (1)", "DELETE FROM events", "DROP TABLE events",
     "CREATE TABLE x AS SELECT 1", "COPY events TO 'out.csv'", "UPDATE events SET type = 'x'",
     "ATTACH 'other.duckdb'", "SET threads = 1"],
)
def test_writes_are_refused_in_read_only_queries(query: str) -> None:
    with pytest.raises(ReadOnlyQueryError) as raised:
        parse_read_only(query)
    assert raised.value.field == "query"
