"""Analyze: the analyst's toolbox — cube, comparisons, root-cause drill-down, related
products, hypothesis checks, fans vs buyers, funnels, retention, paths, seasonality and
data-source evaluation.

Every analysis is a function of an engine returning an `Analysis`: a DataFrame, the SQL
that produced it, a chart spec and plain readings. Public functions are re-exported
here; the modules are internal.
"""

from jingzhun.analytics.calendar import HOLIDAYS, Period, compare_to, holiday_period, parse_period
from jingzhun.analytics.compare import compare_periods, compare_with_benchmark
from jingzhun.analytics.cube import CubeQuery, build_cube_sql, pivot_frame, run_cube
from jingzhun.analytics.measures import DIMENSIONS, MEASURES, allowed_dimensions
from jingzhun.analytics.result import Analysis, AnalyticsError, Chart
from jingzhun.analytics.root_cause import Thresholds, find_root_cause

__all__ = ["Analysis", "AnalyticsError", "Chart"]
__all__ += ["DIMENSIONS", "HOLIDAYS", "MEASURES", "CubeQuery", "Period", "Thresholds", "allowed_dimensions",
            "build_cube_sql", "compare_periods", "compare_to", "compare_with_benchmark", "find_root_cause",
            "holiday_period", "parse_period", "pivot_frame", "run_cube"]
