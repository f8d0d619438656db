"""KPI alerts: a threshold or an anomaly on any campaign KPI or cube measure, with the drill-down.

Rules are YAML under `definitions/alerts/*.yaml`::

    alerts:
      - alert_id: gmv_drop
        name: {zh: 成交额异常下降, en: GMV dropped}
        kpi: {source: cube, measure: gmv, where: {channel: [online]}}    # or source: campaign_kpis, measure: ctr
        rule: {kind: anomaly, direction: down, z: 3, weeks: 8, same_weekday: true}
        # rule: {kind: threshold, op: "<", value: 0.01}
        drill_down: {dimensions: [platform, province, category]}        # cube KPIs: Adtributor root cause
        notify: {via: webhook, url: "https://hooks.brand.cn/kpi", secret_env: JINGZHUN_ALERT_SECRET}
        # notify: {via: email, to: ops@brand.cn}                       # through delivery.yaml's e-mail adapter

The KPI's daily series comes from `campaign_kpis` (sums per day, ratios recomputed) or
from the analytics cube (`run_cube` by day). The **anomaly** rule judges the latest day
against the same weekday of the trailing `weeks` weeks (or every trailing day) with a
robust z-score, (x − median) / (1.4826 · MAD): a promotion day or a holiday in the history
moves a mean and a standard deviation, barely a median. When a rule fires, the drill-down
that explains it is attached — for a cube measure the analytics root cause
(`find_root_cause`, the day against the same weekday a week before), for a campaign KPI
the campaigns and channels whose value moved most — the notice goes out through the
delivery adapters (a signed webhook, or e-mail), and `alert_history` keeps the firing.
An alert fires once per day judged, however often the stage runs.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from jingzhun.core.config_errors import ConfigFile, config_error
from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine, parse_sql
from jingzhun.measure.kpis import COUNTS
from jingzhun.measure.settings import MeasureError
from jingzhun.schema.tables import ALERT_HISTORY

ALERTS_DIR = "alerts"
ALERTS_DOC = ConfigFile(" in the alert file", "告警文件中", "docs/measure.md")
KPI_COLUMNS = {*COUNTS, "gmv", "cost", "ctr", "cvr", "roi"}
KPI_FILTERS = ("campaign_id", "channel", "segment_id", "arm", "origin")
RATIOS = {"ctr": ("clicked", "delivered"), "cvr": ("converted", "delivered"), "roi": ("gmv", "cost")}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Names(_Strict):
    zh: str
    en: str


class Kpi(_Strict):
    source: Literal["campaign_kpis", "cube"] = "campaign_kpis"
    measure: str
    where: dict[str, tuple[str, ...]] = Field(default_factory=dict)


class Rule(_Strict):
    kind: Literal["anomaly", "threshold"]
    direction: Literal["down", "up", "both"] = "both"
    z: float = Field(3.0, gt=0)
    weeks: int = Field(8, ge=2, le=104)
    same_weekday: bool = True
    min_history: int = Field(4, ge=2)
    op: Literal["<", "<=", ">", ">="] | None = None
    value: float | None = None


class DrillDown(_Strict):
    measure: str | None = None  # a cube measure; default: the KPI's own when it is a cube measure
    dimensions: tuple[str, ...] | None = None


class Notify(_Strict):
    via: Literal["webhook", "email"]
    url: str | None = Field(None, pattern=r"^https?://")
    secret_env: str | None = None
    secret_file: str | None = None
    to: tuple[str, ...] = ()


class AlertRule(_Strict):
    alert_id: str = Field(pattern=r"^[a-z][a-z0-9_]{1,62}$")
    name: Names
    kpi: Kpi
    rule: Rule
    drill_down: DrillDown = DrillDown()
    notify: Notify | None = None
    enabled: bool = True


_RULES = TypeAdapter(list[AlertRule])


def load_alert_rules(workspace: Workspace) -> list[AlertRule]:
    """Every enabled rule of `definitions/alerts/*.yaml`, checked (errors name the file and key)."""
    from jingzhun.profiles.tags import read_yaml

    folder = workspace.definitions_dir / ALERTS_DIR
    rules: list[AlertRule] = []
    for path in sorted(folder.glob("*.y*ml")) if folder.is_dir() else []:
        document = read_yaml(path, MeasureError)
        items = document.get("alerts", []) if isinstance(document, dict) else document
        try:
            parsed = _RULES.validate_python(items)
        except ValidationError as invalid:
            error = invalid.errors()[0]
            raise config_error({**error, "loc": error["loc"][1:]}, path, AlertRule, ALERTS_DOC) from None
        rules += [_checked(rule, path) for rule in parsed if rule.enabled]
    return rules


def _checked(rule: AlertRule, path: Path) -> AlertRule:
    """Refuse what pydantic cannot see: an unknown KPI, a threshold without its bound, a notice without address."""
    problems = []
    if rule.kpi.source == "campaign_kpis" and rule.kpi.measure not in KPI_COLUMNS:
        problems.append(("kpi.measure", f"use one of: {', '.join(sorted(KPI_COLUMNS))}"))
    if rule.kpi.source == "campaign_kpis" and set(rule.kpi.where) - set(KPI_FILTERS):
        problems.append(("kpi.where", f"filter on: {', '.join(KPI_FILTERS)}"))
    if rule.kpi.source == "cube":
        from jingzhun.analytics import MEASURES

        if rule.kpi.measure not in MEASURES:
            problems.append(("kpi.measure", f"use a cube measure: {', '.join(MEASURES)}"))
    if rule.rule.kind == "threshold" and (rule.rule.op is None or rule.rule.value is None):
        problems.append(("rule.op", "a threshold rule needs op (<, <=, >, >=) and value"))
    if rule.notify and rule.notify.via == "webhook" and not rule.notify.url:
        problems.append(("notify.url", "a webhook notice needs url (and secret_env or secret_file)"))
    if rule.notify and rule.notify.via == "email" and not rule.notify.to:
        problems.append(("notify.to", "an e-mail notice needs to: [address, …]"))
    if problems:
        key, fix = problems[0]
        raise MeasureError(f"alert {rule.alert_id!r}: invalid `{key}`.", field=key, location=path, fix=fix,
                           message_zh=f"告警 {rule.alert_id!r}：`{key}` 无效。", fix_zh=fix)
    return rule


# ---- the series and the judgement ----------------------------------------------------------------


def kpi_series(engine: Engine, kpi: Kpi, timezone: str) -> tuple[pd.DataFrame, str]:
    """day, value: the KPI per day, and the SQL that gave it."""
    if kpi.source == "cube":
        from jingzhun.analytics import CubeQuery, run_cube

        analysis = run_cube(engine, CubeQuery(measures=(kpi.measure,), by=("day",), where=kpi.where), timezone)
        frame = analysis.frame.rename(columns={kpi.measure: "value"})[["day", "value"]]
        return frame, analysis.sql["cube"]
    where = " AND ".join(f"{column} IN ({', '.join(_text(v) for v in values)})"
                         for column, values in kpi.where.items()) or "TRUE"
    if kpi.measure in RATIOS:
        top, bottom = RATIOS[kpi.measure]
        value = f"CAST(SUM({top}) AS DOUBLE) / NULLIF(CAST(SUM({bottom}) AS DOUBLE), 0)"
    else:
        value = f"CAST(SUM({kpi.measure}) AS DOUBLE)"
    query = parse_sql(f"SELECT day, {value} AS value FROM campaign_kpis WHERE {where} AND arm = 'treatment' "
                      "GROUP BY day ORDER BY day")
    return engine.query(query).to_pandas(), engine.render(query)


def _text(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


@dataclass(frozen=True)
class Judgement:
    day: dt.date
    value: float
    expected: float
    score: float
    fired: bool
    history: int


def judge(series: pd.DataFrame, rule: Rule, day: dt.date | None = None) -> Judgement | None:
    """The rule's verdict on `day` (default: the latest day of the series); None without data."""
    frame = series.dropna(subset=["value"]).copy()
    if frame.empty:
        return None
    frame["day"] = pd.to_datetime(frame["day"]).dt.date
    day = day or max(frame["day"])
    today = frame[frame["day"] == day]
    if today.empty:
        return None
    value = float(today["value"].iloc[0])
    if rule.kind == "threshold":
        fired = {"<": value < rule.value, "<=": value <= rule.value, ">": value > rule.value,
                 ">=": value >= rule.value}[rule.op]  # type: ignore[index]
        return Judgement(day, value, float(rule.value), value, bool(fired), 0)
    start = day - dt.timedelta(weeks=rule.weeks)
    past = frame[(frame["day"] < day) & (frame["day"] >= start)]
    if rule.same_weekday:
        past = past[[d.weekday() == day.weekday() for d in past["day"]]]
    values = past["value"].to_numpy(dtype=float)
    if len(values) < rule.min_history:
        return Judgement(day, value, math.nan, math.nan, False, len(values))
    median = float(np.median(values))
    spread = 1.4826 * float(np.median(np.abs(values - median)))
    if spread == 0:  # more than half the history is one value: fall back to the mean deviation
        spread = 1.2533 * float(np.mean(np.abs(values - median)))
    score = (value - median) / spread if spread > 0 else (0.0 if value == median else math.copysign(math.inf, value - median))
    fired = {"down": score <= -rule.z, "up": score >= rule.z, "both": abs(score) >= rule.z}[rule.direction]
    return Judgement(day, value, median, float(score), bool(fired), len(values))


# ---- the drill-down ------------------------------------------------------------------------------------


def drill_down(engine: Engine, rule: AlertRule, judgement: Judgement, timezone: str) -> tuple[pd.DataFrame, list, dict]:
    """What explains the day: (rows, readings as (zh, en) pairs, SQL by name)."""
    measure = rule.drill_down.measure or (rule.kpi.measure if rule.kpi.source == "cube" else None)
    if measure is not None:
        from jingzhun.analytics import find_root_cause

        where = {k: v[0] for k, v in rule.kpi.where.items() if len(v) == 1} if rule.kpi.source == "cube" else {}
        analysis = find_root_cause(engine, measure, judgement.day.isoformat(),
                                   base=(judgement.day - dt.timedelta(days=7)).isoformat(),
                                   dimensions=rule.drill_down.dimensions, where=where, timezone=timezone)
        return analysis.frame.head(10), analysis.readings, analysis.sql
    return _kpi_breakdown(engine, rule, judgement)


def _kpi_breakdown(engine: Engine, rule: AlertRule, judgement: Judgement) -> tuple[pd.DataFrame, list, dict]:
    """The day's campaigns and channels ranked by how far each pulled the KPI from what was expected."""
    measure = rule.kpi.measure
    top, bottom = RATIOS.get(measure, (measure, None))
    where = " AND ".join(f"{c} IN ({', '.join(_text(v) for v in vs)})" for c, vs in rule.kpi.where.items()) or "TRUE"
    weight = f"CAST(SUM({bottom}) AS DOUBLE)" if bottom else "CAST(1 AS DOUBLE)"
    query = parse_sql(f"""
SELECT campaign_id, channel, CAST(SUM({top}) AS DOUBLE) AS part, {weight} AS weight FROM campaign_kpis
WHERE {where} AND arm = 'treatment' AND day = DATE '{judgement.day.isoformat()}'
GROUP BY campaign_id, channel""")
    frame = engine.query(query).to_pandas()
    if frame.empty:
        return frame, [], {"breakdown": engine.render(query)}
    total = frame["weight"].sum()
    frame["value"] = frame["part"] / frame["weight"].where(frame["weight"] > 0) if bottom else frame["part"]
    expected = judgement.expected if math.isfinite(judgement.expected) else judgement.value
    frame["pull"] = ((frame["value"] - expected) * frame["weight"] / total if bottom
                     else frame["part"] - expected * frame["part"] / frame["part"].sum())
    frame = frame.reindex(frame["pull"].abs().sort_values(ascending=False).index).head(10)
    first = frame.iloc[0]
    readings = [(f"影响最大：活动 {first.campaign_id}（{first.channel}），{measure} 为 {first.value:.4g}。",
                 f"Largest pull: campaign {first.campaign_id} ({first.channel}), {measure} {first.value:.4g}.")]
    return frame.reset_index(drop=True), readings, {"breakdown": engine.render(query)}


# ---- notices and history ---------------------------------------------------------------------------------


def _notify(workspace: Workspace, rule: AlertRule, message: dict) -> tuple[str, str | None]:
    """Send the notice through a delivery adapter; (status, error)."""
    if rule.notify is None:
        return "none", None
    from jingzhun.activation.delivery import (
        DeliveryError,
        Outgoing,
        WebhookAdapter,
        WebhookSettings,
        build_adapter,
        load_delivery_config,
    )

    notify = rule.notify
    if notify.via == "webhook":
        settings = WebhookSettings(adapter="webhook", url=notify.url, secret_env=notify.secret_env,
                                   secret_file=notify.secret_file)
        adapter = WebhookAdapter(settings, settings.secret(workspace, "secret"))
        addresses = [notify.url or ""]
    else:
        email = load_delivery_config(workspace).channels.get("email")
        if email is None:
            raise DeliveryError("an e-mail alert needs channels.email in definitions/delivery.yaml.",
                                field="notify.via", fix="configure the SMTP adapter (docs/campaigns.md)",
                                message_zh="邮件告警需要 definitions/delivery.yaml 中的 channels.email。",
                                fix_zh="请配置 SMTP 发送（见 docs/campaigns.md）")
        adapter, addresses = build_adapter(workspace, email), list(notify.to)
    errors = []
    try:
        for address in addresses:
            outcome = adapter.send(Outgoing(
                message["notice_id"], f"alert:{rule.alert_id}", "", notify.via, address, message["title"],
                message["body"], {key: message[key] for key in ("alert_id", "kpi", "day", "value", "expected",
                                                                 "score", "drill_down", "readings")},
                workspace.config.language))
            if not outcome.ok:
                errors.append(f"{address}: {outcome.error}")
    finally:
        adapter.close()
    return ("failed", "; ".join(errors)[:1000]) if errors else ("sent", None)


def _already_fired(engine: Engine, alert_id: str, day: dt.date) -> bool:
    query = parse_sql(f"SELECT COUNT(*) AS n FROM {ALERT_HISTORY.name} WHERE alert_id = {_text(alert_id)} "
                      f"AND day = DATE '{day.isoformat()}'")
    return int(engine.query(query).column("n")[0].as_py()) > 0


def _message(rule: AlertRule, j: Judgement, rows: pd.DataFrame, readings: list) -> dict:
    expected = "—" if not math.isfinite(j.expected) else f"{j.expected:.4g}"
    why = (f"稳健 z 分数 {j.score:+.1f}（阈值 {rule.rule.z}）" if rule.rule.kind == "anomaly"
           else f"阈值 {rule.rule.op} {rule.rule.value}")
    why_en = (f"robust z {j.score:+.1f} (threshold {rule.rule.z})" if rule.rule.kind == "anomaly"
              else f"threshold {rule.rule.op} {rule.rule.value}")
    zh = f"【告警】{rule.name.zh}：{j.day} 的 {rule.kpi.measure} 为 {j.value:.4g}，预期 {expected}，{why}。"
    en = f"[Alert] {rule.name.en}: {rule.kpi.measure} on {j.day} was {j.value:.4g}, expected {expected}, {why_en}."
    drill = json.loads(rows.to_json(orient="records", date_format="iso", force_ascii=False)) if not rows.empty else []
    lines = "\n".join(f"- {zh_line} / {en_line}" for zh_line, en_line in readings)
    return {"notice_id": f"alert:{rule.alert_id}:{j.day.isoformat()}", "alert_id": rule.alert_id,
            "kpi": rule.kpi.measure, "day": j.day.isoformat(), "value": j.value,
            "expected": j.expected if math.isfinite(j.expected) else None, "score": j.score,
            "title": f"{rule.name.zh} / {rule.name.en}", "body": f"{zh}\n{en}\n{lines}".strip(),
            "message_zh": zh, "message_en": en, "drill_down": drill,
            "readings": [list(pair) for pair in readings]}


@dataclass
class AlertRun:
    """Every rule's judgement and the alerts that fired (with their notices)."""

    judgements: pd.DataFrame
    fired: list[dict] = field(default_factory=list)
    sql: dict[str, str] = field(default_factory=dict)


def evaluate_alerts(workspace: Workspace, engine: Engine, day: dt.date | None = None, notify: bool = True,
                    now: dt.datetime | None = None) -> AlertRun:
    """Judge every rule on `day` (default: each KPI's latest day); fire, drill down, notify, record."""
    timezone = workspace.config.timezone
    run = AlertRun(pd.DataFrame(columns=["alert_id", "day", "value", "expected", "score", "fired", "history"]))
    rows = []
    for rule in load_alert_rules(workspace):  # a handful of rules
        series, sql = kpi_series(engine, rule.kpi, timezone)
        run.sql[rule.alert_id] = sql
        judgement = judge(series, rule.rule, day)
        if judgement is None:
            continue
        rows.append({"alert_id": rule.alert_id, **judgement.__dict__})
        if not judgement.fired or _already_fired(engine, rule.alert_id, judgement.day):
            continue
        frame, readings, drill_sql = drill_down(engine, rule, judgement, timezone)
        run.sql.update({f"{rule.alert_id}:{name}": text for name, text in drill_sql.items()})
        message = _message(rule, judgement, frame, readings)
        status, error = _notify(workspace, rule, message) if notify else ("none", None)
        _record(engine, rule, judgement, message, status, error, now or dt.datetime.now(dt.UTC))
        run.fired.append({**message, "notify_status": status, "notify_error": error})
    if rows:
        run.judgements = pd.DataFrame(rows)
    return run


def _record(engine: Engine, rule: AlertRule, j: Judgement, message: dict, status: str, error: str | None,
            now: dt.datetime) -> None:
    row = {"alert_id": [rule.alert_id], "day": pa.array([j.day], pa.date32()),
           "fired_at": pa.array([now], pa.timestamp("us", tz="UTC")), "kpi": [rule.kpi.measure],
           "value": [j.value], "expected": [j.expected if math.isfinite(j.expected) else None],
           "score": [j.score if math.isfinite(j.score) else None], "rule": [rule.rule.model_dump_json()],
           "message_zh": [message["message_zh"]], "message_en": [message["message_en"]],
           "drill_down": [json.dumps(message["drill_down"], ensure_ascii=False)],
           "notify_status": [status], "notify_error": pa.array([error], pa.string())}
    engine.write_table(ALERT_HISTORY.name, pa.table(row), mode="append")
