"""The send policy on a hand-made world where each person trips one rule (policy_dataset.py):
consent per purpose and channel, suppression, reachability, frequency caps across
campaigns, quiet hours, budget, holdout — one SQL query for the whole audience — and the
same decisions on Spark."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, time
from decimal import Decimal

import pytest

from jingzhun.activation.policy import (
    FrequencyCap,
    PolicyError,
    QuietHours,
    SendPolicy,
    SendRequest,
    hash_fraction_sql,
    next_allowed,
    parse_send_policy,
    policy_sql,
    quiet_channels,
)
from jingzhun.core.errors import ConfigError
from jingzhun.engine import DuckDBEngine, Engine, parse_sql
from jingzhun.segments import members_sql
from tests.activation.policy_dataset import EXPECTED_SMS, NOW, SEGMENT, load_policy_world

SHANGHAI = "Asia/Shanghai"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    engine = DuckDBEngine(tmp_path_factory.mktemp("policy") / "warehouse.duckdb")
    load_policy_world(engine)
    yield engine
    engine.close()


def decide(engine: Engine, policy: SendPolicy | None = None, **changes: object) -> dict[str, dict]:
    request = SendRequest(**{"campaign_id": "spring", "run_id": "once", "purpose": "marketing",
                             "channels": ("sms",), "audience": members_sql(SEGMENT), "now": NOW, **changes})
    rows = engine.query(policy_sql(request, policy or SendPolicy())).to_pylist()
    return {row["person_id"]: row for row in rows}


def test_each_rule_excludes_its_person_with_the_reason(world: Engine) -> None:
    decided = decide(world)
    assert {p: (row["status"], row["reason"]) for p, row in decided.items()} == EXPECTED_SMS
    assert "P12" not in decided  # merged persons are nobody's audience
    assert {row["variant"] for row in decided.values()} == {"treatment"}
    queued = [row for row in decided.values() if row["status"] == "queued"]
    assert all(row["cost"] == Decimal("0.045") for row in queued)
    assert all(row["cost"] == 0 for row in decided.values() if row["status"] != "queued")


def test_delivery_id_is_a_hash_of_campaign_run_person_and_step(world: Engine) -> None:
    decided = decide(world, step="reminder")
    expected = hashlib.md5(b"spring:once:P01:reminder").hexdigest()
    assert decided["P01"]["delivery_id"] == expected


def test_a_second_channel_catches_who_the_first_cannot_reach(world: Engine) -> None:
    decided = decide(world, channels=("sms", "email"))
    assert (decided["P03"]["status"], decided["P03"]["channel"]) == ("queued", "email")  # SMS withdrawn
    assert (decided["P01"]["status"], decided["P01"]["channel"]) == ("queued", "sms")  # first choice wins
    # Nobody else has an e-mail: their reason is the first channel's.
    assert (decided["P05"]["reason"], decided["P05"]["channel"]) == ("unreachable", "sms")


def test_opt_out_regime_needs_no_grant_but_respects_withdrawals(world: Engine) -> None:
    decided = decide(world, parse_send_policy({"consent_regime": "opt_out"}))
    assert decided["P02"]["status"] == "queued"
    assert decided["P03"]["reason"] == "no_consent"


def test_transactional_messages_skip_marketing_consent_and_caps(world: Engine) -> None:
    decided = decide(world, purpose="transactional")
    assert decided["P02"]["status"] == "queued"  # no marketing grant needed
    assert decided["P06"]["status"] == "queued"  # the marketing cap does not apply
    assert decided["P08"]["reason"] == "no_consent"  # but a transactional withdrawal does


def test_caps_count_every_campaign_within_the_window(world: Engine) -> None:
    tight = parse_send_policy({"frequency_caps": [{"channel": "sms", "max_messages": 1, "days": 7}]})
    decided = decide(world, tight)
    assert decided["P08"]["reason"] == "frequency_cap"  # its marketing SMS counts; the transactional one not
    assert decided["P07"]["status"] == "queued"  # older than the window
    across = parse_send_policy({"frequency_caps": [{"channel": "all", "max_messages": 2, "days": 7}]})
    assert decide(world, across, channels=("email",))["P06"]["reason"] == "unreachable"
    assert decide(world, across, channels=("sms", "email"))["P06"]["reason"] == "frequency_cap"


def test_sensitive_data_needs_its_own_grant(world: Engine) -> None:
    decided = decide(world, sensitive=True)
    assert {row["reason"] for row in decided.values()} >= {"no_consent"}
    assert not [row for row in decided.values() if row["status"] == "queued"]


def test_budget_takes_a_fixed_random_order(world: Engine) -> None:
    first = decide(world, max_messages=3)
    queued = sorted(p for p, row in first.items() if row["status"] == "queued")
    assert len(queued) == 3
    assert {first[p]["reason"] for p in first if first[p]["status"] == "suppressed"} >= {"budget"}
    by_delivery = sorted((row["delivery_id"], p) for p, row in first.items() if row["reason"] in (None, "budget"))
    assert queued == sorted(p for _, p in by_delivery[:3])  # the first three by delivery id
    assert decide(world, max_messages=3) == first
    cost = decide(world, max_cost=Decimal("0.09"))
    assert sum(row["status"] == "queued" for row in cost.values()) == 2


def test_quiet_hours_defer_or_drop(world: Engine) -> None:
    until = datetime(2026, 11, 2, 1, tzinfo=UTC)
    deferred = decide(world, quiet=("sms",), defer_until=until)
    assert deferred["P01"]["status"] == "deferred" and deferred["P01"]["reason"] == "quiet_hours"
    assert deferred["P01"]["scheduled_at"] == until
    assert deferred["P02"]["reason"] == "no_consent"  # a person excluded anyway stays excluded
    dropped = decide(world, quiet=("sms",), quiet_action="drop")
    assert (dropped["P01"]["status"], dropped["P01"]["reason"]) == ("suppressed", "quiet_hours")


@pytest.mark.parametrize(("local", "expected"), [
    ("2026-05-01T20:59:00", None),
    ("2026-05-01T21:00:00", "2026-05-02T09:00:00"),
    ("2026-05-01T23:30:00", "2026-05-02T09:00:00"),
    ("2026-05-02T03:00:00", "2026-05-02T09:00:00"),
    ("2026-05-02T09:00:00", None),
])
def test_next_allowed_after_quiet_hours(local: str, expected: str | None) -> None:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(SHANGHAI)
    moment = datetime.fromisoformat(local).replace(tzinfo=zone).astimezone(UTC)
    found = next_allowed(moment, SHANGHAI, QuietHours())
    assert (found.astimezone(zone).replace(tzinfo=None).isoformat() if found else None) == expected


def test_quiet_hours_are_for_marketing_on_the_listed_channels() -> None:
    night = datetime(2026, 5, 1, 15, tzinfo=UTC)  # 23:00 in Shanghai
    policy = SendPolicy()
    assert quiet_channels(night, SHANGHAI, policy, "marketing", ("sms", "ads"))[0] == ("sms",)
    assert quiet_channels(night, SHANGHAI, policy, "transactional", ("sms",)) == ((), None)
    daytime = QuietHours(start=time(12, 0), end=time(14, 0))
    assert daytime.covers(time(13, 0)) and not daytime.covers(time(14, 0))


def test_holdout_arms_match_an_independent_hash(world: Engine) -> None:
    decided = decide(world, holdout=0.4)
    for person, row in decided.items():
        fraction = int(hashlib.md5(f"spring:{person}".encode()).hexdigest()[:6], 16) / 16**6
        assert row["variant"] == ("control" if fraction < 0.4 else "treatment"), person
        if row["variant"] == "control":
            assert row["status"] == "held_out" and row["reason"] == EXPECTED_SMS[person][1]
    assert {row["variant"] for row in decided.values()} == {"control", "treatment"}
    sql = hash_fraction_sql("'spring:P01'")
    value = world.query(parse_sql(f"SELECT {sql} AS f")).column("f")[0].as_py()
    assert value == int(hashlib.md5(b"spring:P01").hexdigest()[:6], 16) / 16**6


def test_bad_requests_and_policy_files_name_the_field() -> None:
    with pytest.raises(PolicyError, match="channels"):
        policy_sql(SendRequest("c", "r", "marketing", ("fax",), parse_sql("SELECT 'P1' AS person_id"), NOW),
                   SendPolicy())
    with pytest.raises(ConfigError) as bad:
        parse_send_policy({"frequency_caps": [{"channel": "sms", "max_messages": 0, "days": 7}]})
    assert bad.value.field == "frequency_caps.0.max_messages"
    with pytest.raises(ConfigError, match="consent_regim"):
        parse_send_policy({"consent_regim": "opt_out"})
    assert FrequencyCap(channel="all", max_messages=1, days=1).channel == "all"


@pytest.mark.spark
def test_policy_decides_the_same_on_duckdb_and_spark(both_engines) -> None:
    from jingzhun.engine.parity import compare_tables

    duck, spark = both_engines
    tables = []
    for engine in (duck, spark):
        load_policy_world(engine)
        request = SendRequest("spring", "once", "marketing", ("sms", "email"), members_sql(SEGMENT), NOW,
                              holdout=0.3, max_messages=4, quiet=("email",), defer_until=NOW)
        tables.append(engine.query(policy_sql(request, SendPolicy())))
    report = compare_tables("send policy", tables[0], tables[1])
    assert report.equal, report.differences
    statuses = set(tables[0].column("status").to_pylist())
    assert statuses == {"queued", "held_out", "suppressed", "deferred"}
