"""Event-triggered campaigns: the definition, the send policy on a simulated clock (consent,
suppression, caps, quiet hours, holdout, delay, no double sends), and a real collector on
127.0.0.1 whose loader fires a campaign at a real webhook gateway seconds after an event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import yaml

from jingzhun.activation import (
    fire_triggers,
    load_send_policy,
    parse_campaign,
    run_due,
    save_campaign,
    send_due,
)
from jingzhun.cli.collector import AFTER_LOAD_HOOKS
from jingzhun.collect.collector import add_source
from jingzhun.core import ConfigError, Workspace
from jingzhun.engine import open_engine
from tests.activation.campaign_fixtures import (
    WebhookReceiver,
    assert_policy_respected,
    wait_for,
    write_definitions,
)
from tests.activation.trigger_world import (
    add_events,
    deliveries_of,
    demo_fixture,  # noqa: F401 — the `demo` fixture
    grant,
    reachable_persons,
)
from tests.collect.collector.conftest import serving
from tests.segments.test_realtime import hooks_ready, send

TEN_AM = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


def triggered(campaign_id: str, event: str = "Cart Abandoned", holdout: float = 0.0, **trigger: object) -> dict:
    return {"campaign_id": campaign_id, "name_zh": f"触发 {campaign_id}", "name_en": f"Triggered {campaign_id}",
            "template_id": "welcome_back", "channels": ["sms"], "holdout": holdout,
            "schedule": {"trigger": {"event": event, **trigger}}}


@pytest.mark.parametrize(("schedule", "field", "words"), [
    ({"trigger": {"event": "A", "segment_entered": "live_one"}}, "schedule.triggered.trigger", "exactly one"),
    ({"trigger": {}}, "schedule.triggered.trigger", "exactly one"),
    ({"trigger": {"event": "A", "delay": "half an hour"}}, "schedule.triggered.trigger.delay", "30m"),
    ({"trigger": {"event": "A", "once_per": "hour"}}, "schedule.triggered.trigger.once_per", "day"),
    ({"when": "soon"}, "schedule", "trigger: {event"),
])
def test_a_trigger_schedule_is_checked_naming_the_field(schedule: dict, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_campaign({**triggered("cart"), "schedule": schedule})
    assert refused.value.field == field and words in refused.value.message and refused.value.message_zh


def test_a_trigger_schedule_round_trips_and_needs_no_audience() -> None:
    definition = parse_campaign(triggered("cart", delay="1h30m", within="2h", once_per="campaign"))
    trigger = definition.schedule.trigger
    assert (trigger.delay, trigger.within, trigger.once_per) == (timedelta(minutes=90), timedelta(hours=2), "campaign")
    assert parse_campaign(yaml.safe_load(definition.canonical_json())) == definition
    with pytest.raises(ConfigError) as refused:  # a scheduled campaign still needs its audience
        parse_campaign({**triggered("cart"), "schedule": {"kind": "once", "at": "2026-11-01T10:00:00"}})
    assert refused.value.field == "audience"


def test_triggers_fire_under_the_send_policy(demo: Workspace) -> None:
    gateway = WebhookReceiver()
    write_definitions(demo, smtp_port=None, webhook_url=gateway.url)
    try:
        with open_engine(demo) as engine:
            a, b, c, d, e, f, g, h, i = reachable_persons(engine, 9)
            crowd = reachable_persons(engine, 60, skip=9)
            grant(engine, [a, c, d, e, f, g, h, i, *crowd], TEN_AM - timedelta(days=30))
            phone = engine.query(f"SELECT id_value FROM identities WHERE person_id = '{c}' AND id_type = 'phone'")
            engine.execute("INSERT INTO suppressions (id_type, id_value, channel, reason, created_at) VALUES "
                           f"('phone', '{phone.column(0)[0].as_py()}', NULL, 'complaint', TIMESTAMPTZ '2026-10-01')")
            engine.execute("INSERT INTO deliveries (delivery_id, campaign_id, person_id, channel, status, sent_at, "
                           "scheduled_at, purpose) VALUES " + ", ".join(
                               f"('old-{k}', 'earlier', '{d}', 'sms', 'sent', TIMESTAMPTZ '{TEN_AM - timedelta(days=k + 1)}', "
                               f"TIMESTAMPTZ '{TEN_AM - timedelta(days=k + 1)}', 'marketing')" for k in range(2)))
            for definition in (triggered("cart_now"), triggered("cart_half", event="Wishlist Added", holdout=0.5),
                               triggered("cart_later", event="Coupon Viewed", delay="30m")):
                save_campaign(engine, parse_campaign(definition))
            policy = load_send_policy(demo)

            # 10:00: a, b, c, d, e (twice) abandon carts; f's event is two hours old when it arrives.
            batch = add_events(engine, [(p, "Cart Abandoned", TEN_AM - timedelta(seconds=5)) for p in (a, b, c, d, e)]
                               + [(e, "Cart Abandoned", TEN_AM - timedelta(seconds=2)),
                                  (f, "Cart Abandoned", TEN_AM - timedelta(hours=2))])
            fired = fire_triggers(demo, engine, batch, now=TEN_AM)
            sent = send_due(demo, engine, now=TEN_AM)
            now_rows = deliveries_of(engine, "cart_now").set_index("person_id")
            assert fired.fired == {"cart_now": 5} and sent["cart_now"].sent == 2
            assert set(now_rows.index) == {a, b, c, d, e}  # f: too old to fire; e: once
            assert now_rows.loc[[a, e], "status"].tolist() == ["sent", "sent"]
            assert now_rows.loc[[b, c, d], "reason"].tolist() == ["no_consent", "suppressed", "frequency_cap"]
            assert {m["person_id"] for m in gateway.delivered.values()} == {a, e}

            # The same batch again (a retried hook) and a later cart the same day send nothing new.
            assert fire_triggers(demo, engine, batch, now=TEN_AM + timedelta(seconds=30)).fired == {}
            again = add_events(engine, [(a, "Cart Abandoned", TEN_AM + timedelta(hours=1))])
            assert fire_triggers(demo, engine, again, now=TEN_AM + timedelta(hours=1)).fired == {}
            assert send_due(demo, engine, now=TEN_AM + timedelta(hours=1)) == {} and len(gateway.posts) == 2

            # 22:30: g's cart waits for the end of quiet hours, and is decided again then.
            night = TEN_AM + timedelta(hours=12, minutes=30)
            late = add_events(engine, [(g, "Cart Abandoned", night)])
            assert fire_triggers(demo, engine, late, now=night).planned == {"cart_now": {"deferred": 1}}
            assert send_due(demo, engine, now=night + timedelta(hours=10)) == {}  # 08:30: still quiet
            morning = send_due(demo, engine, now=night + timedelta(hours=10, minutes=31))
            assert morning["cart_now"].sent == 1

            # A holdout: half the crowd's wishlist events send nothing, by a hash anyone can recompute.
            wished = add_events(engine, [(p, "Wishlist Added", TEN_AM) for p in crowd])
            fire_triggers(demo, engine, wished, now=TEN_AM + timedelta(seconds=3))
            send_due(demo, engine, now=TEN_AM + timedelta(seconds=3))
            half = deliveries_of(engine, "cart_half")
            arms = engine.query("SELECT person_id, arm FROM experiments WHERE experiment_id = 'cart_half:holdout'")
            control = {r["person_id"] for r in arms.to_pylist() if r["arm"] == "control"}
            assert 15 <= len(control) <= 45 and set(half[half.status == "held_out"].person_id) == control
            assert set(half[half.status == "sent"].person_id) == set(crowd) - control

            # A delay: planned at once, decided when due; i withdraws meanwhile.
            viewed = add_events(engine, [(h, "Coupon Viewed", TEN_AM), (i, "Coupon Viewed", TEN_AM)])
            fire_triggers(demo, engine, viewed, now=TEN_AM + timedelta(seconds=5))
            later = deliveries_of(engine, "cart_later")
            assert set(later.status) == {"deferred"} and set(later.reason) == {"delay"}
            assert set(later.scheduled_at) == {TEN_AM + timedelta(minutes=30)}
            assert send_due(demo, engine, now=TEN_AM + timedelta(minutes=10)) == {}
            grant(engine, [i], TEN_AM + timedelta(minutes=15), status="withdrawn")
            send_due(demo, engine, now=TEN_AM + timedelta(minutes=31))
            later = deliveries_of(engine, "cart_later").set_index("person_id")
            assert later.loc[h, "status"] == "sent" and later.loc[i, "reason"] == "no_consent"
            checked = assert_policy_respected(engine, demo, policy)
    finally:
        gateway.close()
    assert checked == len(gateway.delivered) == len(gateway.posts)
    assert {m["campaign_id"] for m in gateway.delivered.values()} == {"cart_now", "cart_half", "cart_later"}


def test_run_due_sends_what_a_cron_finds_due(demo: Workspace) -> None:
    """`campaign run --due`'s function: a delayed trigger's message goes when its time comes."""
    gateway = WebhookReceiver()
    write_definitions(demo, smtp_port=None, webhook_url=gateway.url)
    try:
        with open_engine(demo) as engine:
            person = reachable_persons(engine, 1)
            grant(engine, person, TEN_AM - timedelta(days=1))
            save_campaign(engine, parse_campaign(triggered("cart_later", delay="2h")))
            fire_triggers(demo, engine, add_events(engine, [(person[0], "Cart Abandoned", TEN_AM)]), now=TEN_AM)
            early = run_due(demo, engine, now=TEN_AM + timedelta(hours=1))
            due = run_due(demo, engine, now=TEN_AM + timedelta(hours=2, minutes=1))
    finally:
        gateway.close()
    assert early.campaigns == {} and due.campaigns["cart_later"].sent == 1 and len(gateway.delivered) == 1


def test_a_triggered_campaign_fires_through_a_real_collector(demo: Workspace) -> None:
    """POST an event to the collector; the loader's hook plans the message and its sender
    thread delivers it to the gateway, while the loader goes on loading."""
    gateway = WebhookReceiver()
    zone = ZoneInfo("Asia/Shanghai")
    later = datetime.now(zone) + timedelta(hours=3)  # quiet hours well away from now
    policy = {"quiet_hours": {"start": later.strftime("%H:00"), "end": (later + timedelta(hours=1)).strftime("%H:00")}}
    write_definitions(demo, smtp_port=None, webhook_url=gateway.url, policy=yaml.safe_dump(policy))
    with open_engine(demo) as engine:
        _, key = add_source(engine, "shop-web", "web")
        members = engine.query(
            "SELECT m.id_value AS member, m.person_id FROM identities AS m JOIN identities AS p "
            "ON p.person_id = m.person_id AND p.id_type = 'phone' AND REGEXP_MATCHES(p.id_value, '^[+]861') "
            "WHERE m.id_type = 'member_id' ORDER BY m.id_value LIMIT 2").to_pylist()
        yes, no = members
        grant(engine, [yes["person_id"]], datetime.now(UTC) - timedelta(days=1))
        save_campaign(engine, parse_campaign(triggered("cart_live")))
    cart = {"type": "track", "event": "Cart Abandoned", "properties": {"cart_value": 299}}
    try:
        with serving(demo, after_load=AFTER_LOAD_HOOKS) as url:
            hooks_ready(url)
            first = [{**cart, "userId": yes["member"]}, {**cart, "userId": no["member"]}]
            send(url, key, first)
            wait_for(lambda: len(gateway.delivered) >= 1, timeout=60)
            send(url, key, [{**cart, "userId": yes["member"]}, dict(first[0])])  # again, and a replayed messageId
    finally:
        gateway.close()
    with open_engine(demo) as engine:
        rows = deliveries_of(engine, "cart_live").set_index("person_id")
        phone = engine.query(f"SELECT id_value FROM identities WHERE person_id = '{yes['person_id']}' "
                             "AND id_type = 'phone'").column(0).to_pylist()
    assert rows.loc[yes["person_id"], "status"] == "sent" and rows.loc[no["person_id"], "reason"] == "no_consent"
    assert len(rows) == 2 and len(gateway.delivered) == len(gateway.posts) == 1
    message = next(iter(gateway.delivered.values()))
    assert message["to"] in phone and message["campaign_id"] == "cart_live"
