"""Analyze: the analyst's toolbox — cube, comparisons, root-cause drill-down, related
products, hypothesis checks, fans vs buyers, funnels, retention, paths, seasonality and
data-source evaluation.

Every analysis is a function of an engine returning an `Analysis`: a DataFrame, the SQL
that produced it, a chart spec and plain readings. Public functions are re-exported
here; the modules are internal.
"""

from jingzhun.analytics.result import Analysis, AnalyticsError, Chart

__all__ = ["Analysis", "AnalyticsError", "Chart"]
