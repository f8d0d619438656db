"""What every analysis returns: a table, the SQL behind it, a chart and plain readings.

Analysts rerun the SQL to check any number; the console draws `chart` with ECharts and
`jingzhun report … --chart out.png` draws it with matplotlib; `readings` are the
one-line verdicts a marketer reads ("buyers are younger than followers").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from jingzhun.core.errors import JingzhunError

ChartKind = Literal["bar", "line", "pie", "heatmap", "funnel", "scatter", "table"]


class AnalyticsError(JingzhunError):
    """An analysis cannot run as asked (unknown measure, dimension, period or item)."""


@dataclass(frozen=True)
class Chart:
    """How to draw an analysis: which column goes on which axis.

    `x` is the category or time axis, `y` one or more numeric columns, `series` an
    optional column whose values become separate lines or bar groups.
    """

    kind: ChartKind
    x: str
    y: tuple[str, ...]
    series: str | None = None
    title_zh: str = ""
    title_en: str = ""

    def title(self, language: str = "zh") -> str:
        return self.title_zh if language.startswith("zh") else self.title_en


@dataclass(frozen=True)
class Analysis:
    """One analysis's answer.

    Attributes:
        name: the report name (`cube`, `compare`, `root_cause`, …).
        frame: the result, one row per cell/item/bucket, columns in the domain's words.
        sql: every query that produced `frame`, by name, runnable as it stands with
            `jingzhun sql` on the same workspace.
        chart: how to draw `frame`, when a picture beats a table.
        readings: plain verdicts as (zh, en) pairs, most important first.
        params: the parameters the analysis ran with (periods, measures, filters).
    """

    name: str
    frame: pd.DataFrame
    sql: dict[str, str]
    chart: Chart | None = None
    readings: list[tuple[str, str]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def reading_lines(self, language: str = "zh") -> list[str]:
        """The readings in one language."""
        index = 0 if language.startswith("zh") else 1
        return [pair[index] for pair in self.readings]
