"""KPI alerts: the robust-z and threshold judgements (a table of cases), a campaign-KPI anomaly that
fires once with its drill-down through a real webhook gateway, and a cube alert explained by the
analytics root cause and sent by e-mail through a real SMTP server."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pyarrow as pa
import pytest

from jingzhun.core import Workspace
from jingzhun.engine import open_engine
from jingzhun.measure import MeasureError, evaluate_alerts, judge, load_alert_rules
from jingzhun.measure.alerts import Rule
from jingzhun.schema import migrate
from tests.activation.campaign_fixtures import (
    WEBHOOK_SECRET,
    SmtpSink,
    WebhookReceiver,
    write_definitions,
)

MONDAY = dt.date(2026, 10, 26)


def _series(values: dict[int, float]) -> pd.DataFrame:
    """day offsets before MONDAY → value."""
    return pd.DataFrame({"day": [MONDAY - dt.timedelta(days=k) for k in values], "value": list(values.values())})


WEEKLY = {7 * k: v for k, v in enumerate([3.0, 10, 11, 9, 10, 12, 10, 11, 9])}  # MONDAY first: 3.0
NOISY_OTHER_DAYS = {**WEEKLY, **{7 * k + 1: 100.0 for k in range(8)}}


@pytest.mark.parametrize(("name", "series", "rule", "fired", "score"), [
    ("drop, robust z", _series(WEEKLY), Rule(kind="anomaly", direction="down", z=3), True, (3 - 10) / 1.4826),
    ("drop, but only rises alert", _series(WEEKLY), Rule(kind="anomaly", direction="up", z=3), False, None),
    ("other weekdays ignored", _series(NOISY_OTHER_DAYS), Rule(kind="anomaly", z=3), True, (3 - 10) / 1.4826),
    ("other weekdays counted", _series(NOISY_OTHER_DAYS), Rule(kind="anomaly", z=3, same_weekday=False), False, None),
    ("too little history", _series({0: 3.0, 7: 10, 14: 10}), Rule(kind="anomaly", z=3), False, None),
    ("threshold", _series({0: 0.004}), Rule(kind="threshold", op="<", value=0.005), True, 0.004),
    ("threshold not met", _series({0: 0.006}), Rule(kind="threshold", op="<", value=0.005), False, None),
])
def test_judgements(name: str, series: pd.DataFrame, rule: Rule, fired: bool, score: float | None) -> None:
    judgement = judge(series, rule)
    assert judgement.day == MONDAY and judgement.fired is fired, name
    if score is not None:
        assert judgement.score == pytest.approx(score), name


def _kpi_rows() -> pa.Table:
    """Nine Mondays of SMS campaigns at about 3% CTR; on the last, campaign `flash` clicks at 0.2%."""
    rows = []
    for week in range(9):
        day = MONDAY - dt.timedelta(weeks=week)
        rows.append(("weekly", day, 1000, 30 + week % 3))
        if week == 0:
            rows.append(("flash", day, 4000, 8))
    return pa.table({
        "campaign_id": [r[0] for r in rows], "channel": ["sms"] * len(rows), "day": pa.array([r[1] for r in rows]),
        "arm": ["treatment"] * len(rows), "origin": ["jingzhun"] * len(rows),
        "delivered": pa.array([r[2] for r in rows], pa.int64()), "clicked": pa.array([r[3] for r in rows], pa.int64())})


def test_a_campaign_kpi_anomaly_fires_once_with_its_drill_down(workspace: Workspace) -> None:
    gateway = WebhookReceiver()
    (workspace.root / ".jingzhun" / "alert_secret").write_text(WEBHOOK_SECRET, encoding="utf-8")
    (workspace.definitions_dir / "alerts").mkdir()
    (workspace.definitions_dir / "alerts" / "ctr.yaml").write_text(f"""alerts:
  - alert_id: sms_ctr_drop
    name: {{zh: 短信点击率异常下降, en: SMS click-through dropped}}
    kpi: {{source: campaign_kpis, measure: ctr, where: {{channel: [sms]}}}}
    rule: {{kind: anomaly, direction: down, z: 3, weeks: 8}}
    notify: {{via: webhook, url: "{gateway.url}", secret_file: .jingzhun/alert_secret}}
""", encoding="utf-8")
    try:
        with open_engine(workspace) as engine:
            migrate(engine)
            engine.write_table("campaign_kpis", _kpi_rows())
            first = evaluate_alerts(workspace, engine)
            again = evaluate_alerts(workspace, engine)
            history = engine.read_table("alert_history").to_pandas()
    finally:
        gateway.close()
    assert len(first.fired) == 1 and not again.fired and len(history) == 1  # once per day judged
    fired = first.fired[0]
    assert fired["notify_status"] == "sent" and fired["day"] == MONDAY.isoformat()
    assert fired["value"] == pytest.approx(38 / 5000)
    assert fired["drill_down"][0]["campaign_id"] == "flash"  # the campaign that pulled it down
    notice = next(iter(gateway.delivered.values()))
    assert gateway.bad_signatures == 0 and notice["fields"]["drill_down"][0]["campaign_id"] == "flash"
    assert "短信点击率异常下降" in notice["body"] and "SMS click-through dropped" in notice["body"]
    assert history.notify_status.tolist() == ["sent"] and json.loads(history.drill_down[0])[0]["campaign_id"] == "flash"


def test_a_cube_alert_carries_the_root_cause_by_email(demo: Workspace) -> None:
    smtp = SmtpSink()
    write_definitions(demo, smtp_port=smtp.port, webhook_url=None)
    (demo.definitions_dir / "alerts").mkdir()
    (demo.definitions_dir / "alerts" / "gmv.yaml").write_text("""alerts:
  - alert_id: gmv_watch
    name: {zh: 成交额监控, en: GMV watch}
    kpi: {source: cube, measure: gmv}
    rule: {kind: threshold, op: ">", value: 0}
    drill_down: {dimensions: [platform, channel, category]}
    notify: {via: email, to: [ops@shop.example.com]}
""", encoding="utf-8")
    try:
        with open_engine(demo) as engine:
            run = evaluate_alerts(demo, engine, day=dt.date(2026, 10, 24))
    finally:
        smtp.close()
    assert len(run.fired) == 1 and run.fired[0]["notify_status"] == "sent"
    drill = run.fired[0]["drill_down"]
    assert drill and {"explanatory_power", "surprise"} <= set(drill[0])
    assert any(name.startswith("gmv_watch:level_") for name in run.sql)  # the root cause's own SQL
    (recipients, mail), = smtp.messages
    assert recipients == ["ops@shop.example.com"] and "成交额监控" in mail["Subject"]


def test_rule_errors_name_the_key(workspace: Workspace) -> None:
    (workspace.definitions_dir / "alerts").mkdir()
    path = workspace.definitions_dir / "alerts" / "bad.yaml"
    path.write_text("alerts:\n  - alert_id: x_1\n    name: {zh: 坏, en: bad}\n    kpi: {measure: clicks}\n"
                    "    rule: {kind: anomaly}\n", encoding="utf-8")
    with pytest.raises(MeasureError, match="kpi.measure"):
        load_alert_rules(workspace)
    path.write_text("alerts:\n  - alert_id: x_1\n    name: {zh: 坏, en: bad}\n    kpi: {measure: ctr}\n"
                    "    rule: {kind: anomaly, zz: 3}\n", encoding="utf-8")
    with pytest.raises(Exception, match="rule.zz"):
        load_alert_rules(workspace)
