"""`jingzhun report funnel|retention|paths|seasonality|hypotheses` on the demo workspace.

In-process (Typer's runner), so the tests do not pay the CLI's start-up four times.
"""

from __future__ import annotations

import csv
from pathlib import Path

from typer.testing import CliRunner

from jingzhun.analytics import AnalyticsError
from jingzhun.cli import app
from tests.conftest import copy_workspace

runner = CliRunner()


def test_funnel_prints_csv_and_its_sql(portrayed_demo: Path) -> None:
    done = runner.invoke(app, ["report", "funnel", "-w", str(portrayed_demo), "--step", "Product Viewed", "--step",
                               '{"order": {"platform": ["web", "app", "miniprogram"]}}', "--by", "channel",
                               "-f", "csv", "--sql"])
    assert done.exit_code == 0, done.output
    rows = list(csv.DictReader(done.output.split("\n-- funnel")[0].splitlines()))
    assert {row["channel"] for row in rows if row["step"] == "1"} == {"web", "app", "miniprogram"}
    assert "next_2" in done.output  # the query behind the numbers


def test_retention_writes_the_triangle_and_a_chart(portrayed_demo: Path, tmp_path: Path) -> None:
    table, chart = tmp_path / "retention.csv", tmp_path / "retention.png"
    done = runner.invoke(app, ["report", "retention", "-w", str(portrayed_demo), "--period", "month",
                               "-o", str(table), "--chart", str(chart), "--offsets", "3"])
    assert done.exit_code == 0, done.output
    header = table.read_text(encoding="utf-8-sig").splitlines()[0].split(",")
    assert header[:4] == ["cohort", "cohort_size", "0", "1"] and len(header) > 20
    assert chart.stat().st_size > 10_000 and "100%" in done.output


def test_hypotheses_refuse_a_writing_query(portrayed_demo: Path, tmp_path: Path) -> None:
    root = copy_workspace(portrayed_demo, tmp_path / "ws").root
    done = runner.invoke(app, ["report", "hypotheses", "-w", str(root), "--baseline", "2025-03", "--current",
                               "2025-04", "--hypothesis", "bad=DROP TABLE orders"])
    assert isinstance(done.exception, AnalyticsError)
    assert done.exception.field == "hypotheses[0].sql" and "只读" in done.exception.message_zh
