"""Campaign definitions: validation that names the key, schedules, versions with audit rows,
pause and resume — and the `jingzhun campaign` commands over them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time

import pytest
import yaml
from typer.testing import CliRunner

from jingzhun.activation.campaigns import (
    CampaignError,
    OnceSchedule,
    RecurringSchedule,
    due_occurrence,
    list_campaigns,
    load_campaign,
    parse_campaign,
    save_campaign,
    set_campaign_status,
)
from jingzhun.activation.sending import check_template, run_campaign
from jingzhun.cli import app
from jingzhun.core import Workspace
from jingzhun.core.errors import ConfigError
from jingzhun.engine import Engine, open_engine
from jingzhun.schema import migrate
from tests.activation.campaign_fixtures import campaign, free_port, write_definitions

SHANGHAI = "Asia/Shanghai"


@pytest.fixture
def storage(workspace: Workspace):
    with open_engine(workspace) as engine:
        migrate(engine)
        yield engine


@pytest.mark.parametrize(("change", "field"), [
    ({"channels": ["sms", "fax"]}, "channels.1"),
    ({"channels": ["sms", "sms"]}, "channels"),
    ({"holdout": 0.95}, "holdout"),
    ({"schedule": {"kind": "recurring", "every": "weekly", "at": "10:00"}}, "schedule.recurring"),
    ({"schedule": {"kind": "monthly"}}, "schedule"),
    ({"audience": {"segment_id": "Bad Name"}}, "audience.segment_id"),
    ({"budget": {"max_messages": 0}}, "budget.max_messages"),
    ({"quiet_hours": "ignore"}, "quiet_hours"),
])
def test_invalid_definitions_name_the_key(change: dict, field: str) -> None:
    with pytest.raises(ConfigError) as bad:
        parse_campaign({**campaign("spring", ["sms"]), **change})
    assert bad.value.field.startswith(field), bad.value.field
    assert bad.value.fix and bad.value.message_zh != bad.value.message


def test_a_typo_gets_the_closest_key() -> None:
    with pytest.raises(ConfigError) as bad:
        parse_campaign({**campaign("spring", ["sms"]), "holdot": 0.1})
    assert "`holdout`" in bad.value.fix


@pytest.mark.parametrize(("schedule", "now", "expected"), [
    (OnceSchedule(kind="once", at=datetime(2026, 5, 1, 10)), "2026-05-01T01:59:00+00:00", None),
    (OnceSchedule(kind="once", at=datetime(2026, 5, 1, 10)), "2026-05-01T02:00:00+00:00",
     ("once", "2026-05-01T02:00:00+00:00")),  # a time without offset is the workspace's local time
    (RecurringSchedule(kind="recurring", every="daily", at=time(10)), "2026-05-01T01:00:00+00:00",
     ("2026-04-30", "2026-04-30T02:00:00+00:00")),
    (RecurringSchedule(kind="recurring", every="daily", at=time(10)), "2026-05-01T03:00:00+00:00",
     ("2026-05-01", "2026-05-01T02:00:00+00:00")),
    (RecurringSchedule(kind="recurring", every="weekly", at=time(20), on=("mon",)),  # 2026-05-01 is a Friday
     "2026-05-01T03:00:00+00:00", ("2026-04-27", "2026-04-27T12:00:00+00:00")),
    (RecurringSchedule(kind="recurring", every="daily", at=time(10), start=datetime(2026, 5, 2).date()),
     "2026-05-01T03:00:00+00:00", None),
])
def test_due_occurrence(schedule, now: str, expected) -> None:
    found = due_occurrence(schedule, datetime.fromisoformat(now), SHANGHAI)
    assert (None if found is None else (found.run_id, found.scheduled_for.isoformat())) == expected


def test_versions_audit_pause_and_resume(storage: Engine, workspace: Workspace) -> None:
    definition = parse_campaign(campaign("spring", ["sms"]))
    assert save_campaign(storage, definition, "alice") == 1
    assert save_campaign(storage, definition, "alice") == 1  # unchanged: no new version
    changed = parse_campaign({**campaign("spring", ["sms"]), "holdout": 0.3})
    assert save_campaign(storage, changed, "bob") == 2
    set_campaign_status(storage, "spring", "paused", "carol")
    stored = load_campaign(storage, "spring")
    assert (stored.version, stored.status, stored.definition.holdout) == (2, "paused", 0.3)
    assert save_campaign(storage, parse_campaign(campaign("spring", ["sms", "email"])), "bob") == 3
    assert load_campaign(storage, "spring").status == "paused"  # a new version keeps the pause
    with pytest.raises(CampaignError, match="paused"):
        run_campaign(workspace, storage, "spring", now=datetime(2026, 11, 1, 3, tzinfo=UTC), adapters={})
    set_campaign_status(storage, "spring", "active")
    audit = storage.query("SELECT actor, action, details FROM audit_log WHERE object_id = 'spring' "
                          "ORDER BY occurred_at, action").to_pylist()
    assert [(a["actor"], a["action"]) for a in audit][:3] == [("alice", "campaign.version"), ("bob", "campaign.version"),
                                                              ("carol", "campaign.pause")]
    assert {a["action"] for a in audit} == {"campaign.version", "campaign.pause", "campaign.resume"}
    assert json.loads(audit[0]["details"])["version"] == 1
    listed = list_campaigns(storage)
    assert listed[["campaign_id", "version", "status", "channel"]].values.tolist() == [["spring", 3, "active", "sms,email"]]
    with pytest.raises(CampaignError, match="unknown campaign 'autumn'"):
        load_campaign(storage, "autumn")


def test_a_campaign_not_due_plans_nothing(storage: Engine, workspace: Workspace) -> None:
    write_definitions(workspace, smtp_port=None, webhook_url="http://127.0.0.1:9/x")
    save_campaign(storage, parse_campaign(campaign("later", ["sms"], at="2026-12-24T10:00:00+08:00")))
    report = run_campaign(workspace, storage, "later", now=datetime(2026, 11, 1, 3, tzinfo=UTC), adapters={})
    assert report.notes == ["not_due"] and not report.planned
    assert storage.row_count("deliveries") == 0 and storage.row_count("campaign_runs") == 0


def test_templates_are_checked_against_the_campaign(workspace: Workspace) -> None:
    write_definitions(workspace, smtp_port=None, webhook_url=None)
    with pytest.raises(CampaignError, match="no copy for app_push"):
        check_template(workspace, parse_campaign(campaign("spring", ["sms", "app_push"])))
    with pytest.raises(CampaignError, match="marketing copy"):
        check_template(workspace, parse_campaign({**campaign("spring", ["sms"]), "purpose": "transactional"}))
    assert check_template(workspace, parse_campaign(campaign("spring", ["ads"]))) is None  # ads need no copy


def test_cli_create_list_pause_resume_run_results(workspace: Workspace, tmp_path) -> None:
    write_definitions(workspace, smtp_port=free_port(), webhook_url="http://127.0.0.1:9/send")
    path = tmp_path / "spring.yaml"
    path.write_text(yaml.safe_dump(campaign("spring", ["sms", "email"]), allow_unicode=True), encoding="utf-8")
    runner = CliRunner()
    common = ["--workspace", str(workspace.root)]
    created = runner.invoke(app, ["campaign", "create", str(path), *common])
    assert created.exit_code == 0, created.output
    assert "Saved campaign spring (version 1)" in created.output
    listed = runner.invoke(app, ["campaign", "list", *common, "--format", "json"])
    assert json.loads(listed.output)[0]["channel"] == "sms,email"
    paused = runner.invoke(app, ["campaign", "pause", "spring", *common])
    assert "paused" in paused.output
    assert runner.invoke(app, ["campaign", "resume", "spring", *common]).exit_code == 0
    ran = runner.invoke(app, ["campaign", "run", "spring", *common])  # 2026-11-01 has passed: due, no one consented
    assert ran.exit_code == 0, ran.output
    assert "Sent 0, failed 0" in ran.output and "planned" in ran.output
    results = runner.invoke(app, ["campaign", "results", "spring", *common, "--format", "json"])
    assert {row["channel"] for row in json.loads(results.output)} <= {"sms", "email"}
    path.write_text(yaml.safe_dump({**campaign("spring", ["sms"]), "channels": ["pager"]}), encoding="utf-8")
    bad = runner.invoke(app, ["campaign", "create", str(path), *common])
    assert bad.exit_code != 0 and isinstance(bad.exception, ConfigError)
