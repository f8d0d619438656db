"""Send-time optimization: the demo personas' planted hour-of-day peaks recovered for persons
with enough history, and a campaign with `send_time: optimal` sent at each person's hour,
never in quiet hours."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from jingzhun.activation import (
    best_send_hours,
    load_send_policy,
    parse_campaign,
    run_campaign,
    save_campaign,
)
from jingzhun.activation.policy import QuietHours, SendPolicy, parsed_sql
from jingzhun.activation.send_time import allowed_hours, send_instants
from jingzhun.core import Workspace, open_workspace
from jingzhun.engine import open_engine, render
from tests.activation.campaign_fixtures import (
    WebhookReceiver,
    assert_policy_respected,
    write_definitions,
)
from tests.activation.trigger_world import (
    demo_fixture,  # noqa: F401 — the `demo` fixture
    grant,
)
from tests.segments.conftest import person_truth

ZONE = ZoneInfo("Asia/Shanghai")
AFTER_THE_DATA = datetime(2026, 11, 1, tzinfo=UTC)


def circular_distance(hour: float, peak: float) -> float:
    """Hours between two times of day, across midnight (23:30 and 00:15 are 0.75 apart)."""
    gap = abs(hour - peak) % 24
    return min(gap, 24 - gap)


def test_allowed_hours_and_send_instants() -> None:
    policy = SendPolicy(quiet_hours=QuietHours(start=time(21, 30), end=time(8, 0)))
    assert allowed_hours(policy, "marketing", "sms") == list(range(8, 21))  # 21:00-21:59 touches 21:30
    assert allowed_hours(policy, "transactional", "sms") == list(range(24))
    at = send_instants(datetime(2026, 5, 1, 13, 20, tzinfo=UTC), "Asia/Shanghai")  # 21:20 local
    assert at[21] == datetime(2026, 5, 1, 13, 20, tzinfo=UTC) and at[22] == datetime(2026, 5, 1, 14, tzinfo=UTC)
    assert at[8] == datetime(2026, 5, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize("dialect", ["duckdb", "spark"])
def test_the_send_time_query_renders_for_both_engines(dialect: str) -> None:
    from jingzhun.activation.send_time import best_hours_sql

    query = best_hours_sql(parsed_sql("SELECT person_id FROM persons"), ("sms", "email"), SendPolicy(),
                           "marketing", AFTER_THE_DATA, "Asia/Shanghai")
    assert "best_hour_local" in render(query, dialect)


def test_send_time_recovers_the_personas_peak_hours(portrayed_demo: Path, record_property) -> None:
    workspace = open_workspace(portrayed_demo)
    peaks = {name: [peak[0] for peak in persona["hour_peaks"]] for name, persona in json.loads(
        (portrayed_demo / "demo-truth" / "patterns.json").read_text())["personas"].items()}
    with open_engine(workspace, read_only=True) as engine:
        found = best_send_hours(workspace, engine, channels=("sms",), policy=SendPolicy(quiet_hours=None),
                                now=AFTER_THE_DATA)
        truth = person_truth(engine, portrayed_demo)
    hours = found.hours.set_index("person_id").join(truth[["persona"]], how="inner")
    enough = hours[hours.habits >= 5].copy()  # five visits' or orders' worth of their own
    fallback = int(hours[hours.basis != "person"].best_hour_local.mode()[0])  # the hour without a history

    def near(hour: float, persona: str) -> bool:
        return min(circular_distance(hour + 0.5, peak) for peak in peaks[persona]) <= 1.0

    enough["hit"] = [near(h, p) for h, p in zip(enough.best_hour_local, enough.persona, strict=True)]
    chance = sum(sum(near(h, p) for h in range(24)) / 24 for p in enough.persona) / len(enough)
    # Personas none of whose peaks lie near the fallback hour: every hit is personalization's.
    far = enough[[not near(fallback, p) for p in enough.persona]]
    record_property("send_time", {"persons": len(enough), "hit": round(enough.hit.mean(), 3),
                                  "chance": round(chance, 3), "fallback_hour": fallback, "far_persons": len(far),
                                  "far_hit": round(far.hit.mean(), 3)})
    assert len(enough) >= 100 and len(far) >= 50
    assert enough.hit.mean() >= 0.55 and enough.hit.mean() >= chance + 0.3
    assert far.hit.mean() >= 0.45  # the fallback hour would hit none of them
    for persona, group in enough.groupby("persona"):  # every well-represented persona, well above chance
        odds = sum(near(h, persona) for h in range(24)) / 24
        assert len(group) < 30 or group.hit.mean() >= 1.5 * odds, (persona, group.best_hour_local.value_counts())
    assert set(found.hours.basis) <= {"person", "segment", "channel"} and "person" in set(found.hours.basis)
    assert "record_persons" in found.sql


def test_an_optimal_campaign_goes_at_each_persons_hour(demo: Workspace) -> None:
    gateway = WebhookReceiver()
    write_definitions(demo, smtp_port=None, webhook_url=gateway.url)
    start = datetime(2026, 11, 2, 10, 0, tzinfo=ZONE).astimezone(UTC)
    definition = {"campaign_id": "good_hour", "name_zh": "最佳时段", "name_en": "At their hour",
                  "audience": {"segment_id": "valuable_at_risk"}, "template_id": "welcome_back",
                  "channels": ["sms"], "schedule": {"kind": "once", "at": start.isoformat()}, "send_time": "optimal"}
    try:
        with open_engine(demo) as engine:
            members = engine.query("SELECT DISTINCT person_id FROM segment_members "
                                   "WHERE segment_id = 'valuable_at_risk'").column(0).to_pylist()
            grant(engine, members, start - timedelta(days=30))
            save_campaign(engine, parse_campaign(definition))
            policy = load_send_policy(demo)
            best = best_send_hours(demo, engine, parsed_sql("SELECT person_id FROM segment_members WHERE "
                                                            "segment_id = 'valuable_at_risk'"), ("sms",), now=start)
            first = run_campaign(demo, engine, "good_hour", now=start)
            planned = engine.query("SELECT person_id, status, reason, scheduled_at FROM deliveries "
                                   "WHERE campaign_id = 'good_hour'").to_pandas()
            times = sorted(set(planned[planned.reason == "send_time"].scheduled_at))
            for moment in times:  # a scheduler calling `campaign run` at each of those hours
                run_campaign(demo, engine, "good_hour", now=moment.to_pydatetime() + timedelta(minutes=1))
            final = engine.query("SELECT person_id, status, sent_at FROM deliveries "
                                 "WHERE campaign_id = 'good_hour'").to_pandas()
            checked = assert_policy_respected(engine, demo, policy)
    finally:
        gateway.close()
    hour_of = best.hours.set_index("person_id").best_hour_local
    waiting = planned[planned.reason == "send_time"]
    local = waiting.scheduled_at.dt.tz_convert(ZONE)
    assert len(waiting) > 20 and len(times) >= 3 and first.sent == (planned.status == "sent").sum()
    assert (local.dt.hour.to_numpy() == hour_of.loc[waiting.person_id].to_numpy()).all()
    assert set(local.dt.hour) <= set(allowed_hours(policy, "marketing", "sms"))  # never in quiet hours
    sent = final[final.status == "sent"]
    sent_hours = pd.Series(sent.sent_at.dt.tz_convert(ZONE).dt.hour.to_numpy(), index=sent.person_id)
    assert (sent_hours == hour_of.loc[sent_hours.index]).all()  # each went at the person's own hour
    assert checked == len(sent) == len(gateway.delivered) and not set(final.status) & {"queued", "deferred"}
