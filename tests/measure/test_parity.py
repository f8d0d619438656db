"""KPIs, attribution, the loop-back tables and lift on DuckDB and Spark: the same demo, the same
pipeline, the same rows (the statistics are computed from each engine's own counts)."""

from __future__ import annotations

import pandas as pd
import pytest

from jingzhun.core import Workspace
from jingzhun.engine import render
from jingzhun.engine.parity import compare_tables
from jingzhun.measure import (
    MeasureSettings,
    kpi_rows_sql,
    lift_counts_sql,
    measure_lift,
    rule_credits_sql,
    send_time_sql,
    transitions_sql,
)

STORED = ("history_deliveries", "campaign_kpis", "attribution_credits", "channel_responses", "send_time_preferences")


def test_every_measure_query_renders_for_both_engines(demo_workspace: Workspace) -> None:
    import datetime as dt

    settings, now = MeasureSettings(), dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    for query in (kpi_rows_sql(settings.conversion_window, "Asia/Shanghai", now), rule_credits_sql(settings.attribution),
                  transitions_sql(settings.attribution), lift_counts_sql(settings, "Asia/Shanghai"),
                  send_time_sql(settings, "Asia/Shanghai", now)):
        for dialect in ("duckdb", "spark"):
            assert render(query, dialect)


@pytest.mark.spark
def test_measure_parity(pipelines_on_both, demo_workspace: Workspace) -> None:
    (duck, spark), _ = pipelines_on_both
    spark.refresh()
    for table in STORED:  # written by each engine's measure stage
        left, right = duck.read_table(table), spark.read_table(table)
        drop = [name for name in ("computed_at",) if name in left.column_names]
        report = compare_tables(table, left.drop_columns(drop), right.drop_columns(drop))
        assert report.left_rows > 0 and report.equal, f"{table}: {report.differences}"
    counts = lift_counts_sql(MeasureSettings(), demo_workspace.config.timezone)
    report = compare_tables("lift_counts", duck.query(counts), spark.query(counts))
    assert report.left_rows > 0 and report.equal, report.differences
    as_of = pd.Timestamp("2026-12-01", tz="UTC")
    lifts = [measure_lift(demo_workspace, engine, as_of=as_of).frame for engine in (duck, spark)]
    pd.testing.assert_frame_equal(*lifts, check_exact=False, rtol=1e-9)
