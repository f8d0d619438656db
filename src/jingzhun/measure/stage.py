"""The pipeline's last stage, `measure`: everything rebuilt from the log, then the alerts.

In order: the imported message history resolved to persons (`history_deliveries`),
the kept orders with their person (`conversion_orders`), `campaign_kpis` rebuilt (the same query the live hook runs per cell), every attribution
model's credit, the closed-loop tables the next run reads (`channel_responses`,
`send_time_preferences`), and finally the KPI alerts, judged on the fresh numbers.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from jingzhun.core.i18n import MESSAGES
from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine
from jingzhun.identity.tables import replace_rows
from jingzhun.measure.alerts import evaluate_alerts
from jingzhun.measure.attribution import compute_attribution, write_attribution
from jingzhun.measure.kpis import kpi_rows_sql, refresh_conversion_orders
from jingzhun.measure.loop import channel_responses_sql, send_time_sql
from jingzhun.measure.settings import MeasureSettings, load_measure_settings
from jingzhun.measure.sources import history_deliveries_sql
from jingzhun.schema.tables import (
    ALERT_HISTORY,
    ATTRIBUTION_CREDITS,
    CAMPAIGN_KPIS,
    CHANNEL_RESPONSES,
    CONVERSION_ORDERS,
    HISTORY_DELIVERIES,
    SEND_TIME_PREFERENCES,
)

MESSAGES.update({
    "note.measure_kpis": {"zh": "活动指标 {rows} 行（{campaigns} 个活动，其中导入的历史发送 {history} 条）",
                          "en": "campaign KPIs: {rows} rows ({campaigns} campaigns; {history} imported past sends)"},
    "note.measure_attribution": {"zh": "归因：{conversions} 笔有触点的订单，{channels} 个触点渠道，6 种模型",
                                 "en": "attribution: {conversions} orders with touches, {channels} touch channels, "
                                       "6 models"},
    "note.measure_loop": {"zh": "回流：{responses} 行渠道响应，{hours} 人次的最佳发送时段",
                          "en": "loop back: {responses} channel-response rows, {hours} best send hours"},
    "note.measure_alerts": {"zh": "告警：检查 {rules} 条，触发 {fired} 条",
                            "en": "alerts: {rules} checked, {fired} fired"},
})
Progress = Callable[[str, int, int], None]
STEPS = ("history", "kpis", "attribution", "loop", "alerts")


@dataclass
class MeasureResult:
    tables: dict[str, int] = field(default_factory=dict)
    notes: list[tuple[str, dict]] = field(default_factory=list)
    sql: dict[str, str] = field(default_factory=dict)


def run_measure(workspace: Workspace, engine: Engine, progress: Progress | None = None) -> MeasureResult:
    """The measure stage (see the module docstring)."""
    settings = load_measure_settings(workspace)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    result = MeasureResult()
    step = _stepper(progress)
    with engine.transaction():  # readers never see half a rebuild
        _rebuild_kpis(workspace, engine, settings, now, result, step)
        step("attribution")
        attribution = compute_attribution(workspace, engine, settings.attribution)
        result.tables[ATTRIBUTION_CREDITS.name] = write_attribution(engine, attribution, now)
        linear = attribution.credits[(attribution.credits.model == "linear")
                                     & (attribution.credits.touch_channel != "(direct)")]
        result.notes.append(("note.measure_attribution", {"conversions": round(float(linear.conversions.sum())),
                                                          "channels": int(attribution.removal.shape[0])}))
        result.sql.update(attribution.sql)
        _loop_back(workspace, engine, settings, now, result, step)
    step("alerts")
    alerts = evaluate_alerts(workspace, engine, now=now)
    result.tables[ALERT_HISTORY.name] = engine.row_count(ALERT_HISTORY.name)
    result.notes.append(("note.measure_alerts", {"rules": len(alerts.judgements), "fired": len(alerts.fired)}))
    result.sql.update(alerts.sql)
    return result


def _rebuild_kpis(workspace: Workspace, engine: Engine, settings: MeasureSettings, now: dt.datetime,
                  result: MeasureResult, step: Callable[[str], None]) -> None:
    """The imported history resolved to persons, then every KPI cell from every send."""
    step("history")
    history = history_deliveries_sql(workspace)
    result.tables[HISTORY_DELIVERIES.name] = replace_rows(engine, HISTORY_DELIVERIES, history.sql("duckdb"))
    step("kpis")
    result.sql.update(refresh_conversion_orders(engine))
    result.tables[CONVERSION_ORDERS.name] = engine.row_count(CONVERSION_ORDERS.name)
    kpis = kpi_rows_sql(settings.conversion_window, workspace.config.timezone, now)
    result.tables[CAMPAIGN_KPIS.name] = replace_rows(engine, CAMPAIGN_KPIS, kpis.sql("duckdb"))
    campaigns = engine.query("SELECT COUNT(DISTINCT campaign_id) AS n FROM campaign_kpis").column("n")[0].as_py()
    result.notes.append(("note.measure_kpis", {"rows": result.tables[CAMPAIGN_KPIS.name], "campaigns": campaigns,
                                               "history": result.tables[HISTORY_DELIVERIES.name]}))
    result.sql.update({"history_deliveries": engine.render(history), "campaign_kpis": engine.render(kpis)})


def _loop_back(workspace: Workspace, engine: Engine, settings: MeasureSettings, now: dt.datetime,
               result: MeasureResult, step: Callable[[str], None]) -> None:
    """The tables the next run reads: responses per person and channel, best send hours."""
    from jingzhun.profiles.tags import data_as_of

    step("loop")
    responses = channel_responses_sql(settings, data_as_of(engine), now)
    result.tables[CHANNEL_RESPONSES.name] = replace_rows(engine, CHANNEL_RESPONSES, responses.sql("duckdb"))
    hours = send_time_sql(settings, workspace.config.timezone, now)
    result.tables[SEND_TIME_PREFERENCES.name] = replace_rows(engine, SEND_TIME_PREFERENCES, hours.sql("duckdb"))
    result.notes.append(("note.measure_loop", {"responses": result.tables[CHANNEL_RESPONSES.name],
                                               "hours": result.tables[SEND_TIME_PREFERENCES.name]}))
    result.sql.update({"channel_responses": engine.render(responses), "send_time_preferences": engine.render(hours)})


def _stepper(progress: Progress | None) -> Callable[[str], None]:
    started = time.perf_counter()

    def step(name: str) -> None:
        if progress is not None:
            progress(f"measure: {name} ({time.perf_counter() - started:.0f} s)", STEPS.index(name), len(STEPS))

    return step
