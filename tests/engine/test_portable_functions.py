"""Functions whose stock sqlglot rendering runs on Spark but means something else.

Each query runs on DuckDB and on Spark over the same rows (chosen to sit on
unit boundaries) and the results must match row for row. These cases were found
by this harness; `PortableSpark` in engine/dialects.py holds the fixes.
"""

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from jingzhun.engine.parity import compare_tables

PAIRS = [
    (datetime(2026, 1, 4, 10, 0, 0, 900000, tzinfo=UTC), datetime(2026, 1, 4, 10, 0, 2, 100000, tzinfo=UTC)),
    (datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC), datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)),
    (datetime(2026, 1, 3, 23, 0, tzinfo=UTC), datetime(2026, 1, 12, 1, 0, tzinfo=UTC)),
    (datetime(2024, 2, 29, 12, 0, tzinfo=UTC), datetime(2026, 3, 1, 1, 0, tzinfo=UTC)),
    (datetime(2026, 3, 1, 1, 0, tzinfo=UTC), datetime(2024, 2, 29, 12, 0, tzinfo=UTC)),
]
MOMENTS = pa.table({
    "started_at": pa.array([p[0] for p in PAIRS], pa.timestamp("us", tz="UTC")),
    "ended_at": pa.array([p[1] for p in PAIRS], pa.timestamp("us", tz="UTC")),
    "amount": [1, 2, 3, 4, 10],
})

QUERIES = {
    "day of week (Sunday = 0)": "SELECT started_at, DAYOFWEEK(started_at) AS d, DAYOFWEEK(ended_at) AS e FROM moments",
    "ISO day of week": "SELECT started_at, ISODOW(started_at) AS d, ISODOW(ended_at) AS e FROM moments",
    "day and month names": "SELECT started_at, DAYNAME(started_at) AS d, MONTHNAME(started_at) AS m FROM moments",
    "epoch keeps fractions": "SELECT started_at, EPOCH(ended_at) - EPOCH(started_at) AS seconds FROM moments",
    "continuous quantile": "SELECT QUANTILE_CONT(amount, 0.5) AS q50, QUANTILE_CONT(amount, 0.9) AS q90 FROM moments",
    **{
        f"date_diff counts {unit} boundaries": (
            f"SELECT started_at, DATE_DIFF('{unit}', started_at, ended_at) AS n FROM moments"
        )
        for unit in ("second", "minute", "hour", "day", "week", "month", "quarter", "year")
    },
    "date_diff on dates": (
        "SELECT started_at, DATE_DIFF('day', CAST(started_at AS DATE), CAST(ended_at AS DATE)) AS n FROM moments"
    ),
    "local calendar day in Shanghai": (
        "SELECT started_at, CAST(CAST(started_at AS TIMESTAMPTZ) AT TIME ZONE 'Asia/Shanghai' AS DATE) AS d FROM moments"
    ),
}


@pytest.mark.spark
@pytest.mark.parametrize("name", list(QUERIES))
def test_same_meaning_on_duckdb_and_spark(both_engines, name: str) -> None:
    duck, spark = both_engines
    for engine in both_engines:
        engine.write_table("moments", MOMENTS, mode="replace")
    report = compare_tables(name, duck.query(QUERIES[name]), spark.query(QUERIES[name]))
    assert report.equal, f"{name}: {report.differences}\nSpark SQL: {spark.render(QUERIES[name])}"
