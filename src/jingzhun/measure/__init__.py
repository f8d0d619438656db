"""Measure: live campaign KPIs, lift against holdouts, attribution, channel budget, KPI alerts,
and the loop back into the next pipeline run.

Public functions are re-exported here; the modules are internal. Each returns DataFrames
with the SQL that produced them (docs/measure.md).

The names are imported on first use: the collector's loader imports the live-KPI hook
(`jingzhun.measure.kpis:update_kpis`) and should not wait for statsmodels and scipy,
which only the experiments and the budget need.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "alerts": ("AlertRule", "AlertRun", "evaluate_alerts", "judge", "kpi_series", "load_alert_rules"),
    "attribution": ("MODELS", "AttributionResult", "compute_attribution", "conversion_probability",
                    "removal_effects", "rule_credits_sql", "transition_matrix", "transitions_sql"),
    "budget": ("BudgetPlan", "Curve", "allocate", "fit_curve", "plan_budget"),
    "experiments": ("Arms", "LiftReport", "lift_counts_sql", "measure_lift", "minimum_detectable_lift", "msprt",
                    "rate_test", "sample_size", "welch_test"),
    "kpis": ("KpiReport", "KpiResult", "kpi_rows_sql", "read_kpis", "rebuild_kpis", "update_kpis"),
    "loop": ("channel_responses_sql", "send_time_sql"),
    "settings": ("MeasureError", "MeasureSettings", "load_measure_settings"),
    "sources": ("history_deliveries_sql",),
    "stage": ("MeasureResult", "run_measure"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'jingzhun.measure' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"jingzhun.measure.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__

