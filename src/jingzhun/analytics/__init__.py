"""Analyze: the analyst's toolbox — cube, comparisons, root-cause drill-down, related
products, hypothesis checks, fans vs buyers, funnels, retention, paths, seasonality and
data-source evaluation.

Every analysis is a function of an engine returning an `Analysis`: a DataFrame, the SQL
that produced it, a chart spec and plain readings. Public functions are re-exported
here; the modules are internal.
"""

from jingzhun.analytics.basket import BasketSpec, association_rules, cross_sell, rules_sql
from jingzhun.analytics.basket_offers import bundle_suggestions, livestream_lineup
from jingzhun.analytics.calendar import HOLIDAYS, Period, compare_to, holiday_period, parse_period
from jingzhun.analytics.compare import compare_periods, compare_with_benchmark
from jingzhun.analytics.cube import CubeQuery, build_cube_sql, pivot_frame, run_cube
from jingzhun.analytics.fans import Audience, compare_audiences, fans_vs_buyers
from jingzhun.analytics.funnels import FunnelStep, funnel, funnel_sql, parse_step
from jingzhun.analytics.hypotheses import UserHypothesis, hypothesis_checks
from jingzhun.analytics.measures import DIMENSIONS, MEASURES, allowed_dimensions
from jingzhun.analytics.paths import paths, paths_sql
from jingzhun.analytics.result import Analysis, AnalyticsError, Chart
from jingzhun.analytics.retention import retention, retention_sql, retention_triangle
from jingzhun.analytics.root_cause import Thresholds, find_root_cause
from jingzhun.analytics.seasonality import holiday_windows, seasonality, seasonality_sql
from jingzhun.analytics.source_ranking import rank_sources
from jingzhun.analytics.source_value import (
    PartnerData,
    load_partner_file,
    partner_freshness,
    partner_overlap,
    partner_tag_lift,
)

__all__ = ["Analysis", "AnalyticsError", "Chart"]
__all__ += ["DIMENSIONS", "HOLIDAYS", "MEASURES", "CubeQuery", "Period", "Thresholds", "allowed_dimensions",
            "build_cube_sql", "compare_periods", "compare_to", "compare_with_benchmark", "find_root_cause",
            "holiday_period", "parse_period", "pivot_frame", "run_cube"]
__all__ += ["Audience", "BasketSpec", "PartnerData", "association_rules", "bundle_suggestions", "compare_audiences",
            "cross_sell", "fans_vs_buyers", "livestream_lineup", "load_partner_file", "partner_freshness",
            "partner_overlap", "partner_tag_lift", "rank_sources", "rules_sql"]
__all__ += ["FunnelStep", "UserHypothesis", "funnel", "funnel_sql", "holiday_windows", "hypothesis_checks", "parse_step",
            "paths", "paths_sql", "retention", "retention_sql", "retention_triangle", "seasonality", "seasonality_sql"]
