"""Live KPIs: the after-load hook, fed batch by batch exactly as the collector's loader feeds it
(events appended, then the identity and tracking hooks, then ours), leaves `campaign_kpis` equal
row for row to a rebuild from the log; a replayed batch changes nothing."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from jingzhun.activation import record_message_events
from jingzhun.collect.collector.tracking import TRACKING_SOURCE_ID
from jingzhun.core import Workspace
from jingzhun.engine import Engine, open_engine
from jingzhun.engine.parity import compare_tables
from jingzhun.identity.realtime import attribute_new_events
from jingzhun.measure import MeasureError, read_kpis, rebuild_kpis, update_kpis

SENT = datetime(2026, 11, 1, 2, tzinfo=UTC)
EVENT_FIELDS = ("message_id", "type", "event", "user_id", "anonymous_id", "timestamp", "received_at", "source_id",
                "channel", "properties", "context", "traits")


def _campaign(engine: Engine) -> list[dict]:
    """Campaign `flash` to 60 members: 30 SMS sent, 5 failed, 10 left out, 15 held out (5 would
    have been left out); campaign `news` e-mailed to 10 of them the next day."""
    people = engine.query("SELECT person_id, MIN(id_value) AS member FROM identities WHERE id_type = 'member_id' "
                          "GROUP BY person_id ORDER BY person_id LIMIT 60").to_pylist()
    plan = (["sent"] * 30 + ["failed"] * 5 + ["suppressed"] * 10 + ["held_out"] * 15)
    rows = []
    for n, (person, status) in enumerate(zip(people, plan, strict=True)):
        rows.append({"delivery_id": f"flash-{n}", "campaign_id": "flash", "person_id": person["person_id"],
                     "channel": "sms", "status": status, "variant": "control" if status == "held_out" else "treatment",
                     "reason": "no_consent" if status == "suppressed" or (status == "held_out" and n >= 55) else None,
                     "sent_at": SENT + timedelta(minutes=n) if status == "sent" else None, "scheduled_at": SENT,
                     "updated_at": SENT, "cost": 0.05 if status == "sent" else 0.0, "purpose": "marketing"})
    for n, person in enumerate(people[:10]):
        rows.append({"delivery_id": f"news-{n}", "campaign_id": "news", "person_id": person["person_id"],
                     "channel": "email", "status": "sent", "variant": "treatment", "reason": None,
                     "sent_at": SENT + timedelta(days=1), "scheduled_at": SENT + timedelta(days=1),
                     "updated_at": SENT + timedelta(days=1), "cost": 0.0, "purpose": "marketing"})
    engine.write_table("deliveries", pa.Table.from_pylist(rows))
    return [{**row, "member": person["member"]} for row, person in zip(rows, people + people[:10], strict=True)]


def _click(delivery_id: str, at: datetime) -> dict:
    return {"message_id": str(uuid.uuid4()), "type": "track", "event": "Link Clicked", "timestamp": at,
            "anonymous_id": delivery_id, "source_id": TRACKING_SOURCE_ID, "channel": "server",
            "properties": json.dumps({"delivery_id": delivery_id, "url": "https://shop.example.com/"})}


def _order(member: str, at: datetime, amount: float) -> dict:
    return {"message_id": str(uuid.uuid4()), "type": "track", "event": "Order Completed", "user_id": member,
            "timestamp": at, "source_id": "shop-server", "channel": "server",
            "properties": json.dumps({"order_id": f"L-{uuid.uuid4().hex[:8]}", "revenue": amount})}


def _load(workspace: Workspace, engine: Engine, batch: list[dict], loaded_at: datetime) -> int:
    """What the loader does with one batch: append to `events`, then run the hooks in order."""
    rows = [{name: row.get(name) for name in EVENT_FIELDS} | {"received_at": loaded_at, "loaded_at": loaded_at}
            for row in batch]
    fresh = pa.Table.from_pylist(rows)
    engine.write_table("events", fresh)
    fresh = engine.query(f"SELECT * FROM events WHERE loaded_at = TIMESTAMPTZ '{loaded_at.isoformat()}'")
    attribute_new_events(workspace, engine, fresh)
    record_message_events(workspace, engine, fresh)
    return update_kpis(workspace, engine, fresh).cells


def test_incremental_kpis_equal_a_rebuild(demo: Workspace) -> None:
    with open_engine(demo) as engine:
        sends = _campaign(engine)
        flash = {row["delivery_id"]: row for row in sends}
        clicks = [_click(f"flash-{n}", SENT + timedelta(hours=2 + n)) for n in range(6)]
        orders = [_order(flash[f"flash-{n}"]["member"], SENT + timedelta(days=2, hours=n), 120.0 + n)
                  for n in (0, 1, 2, 7, 50, 56)]  # clicked, sent, held out (eligible and not)
        late = [_order(flash["flash-3"]["member"], SENT + timedelta(days=12), 99.0),  # past the send's window,
                _click("news-4", SENT + timedelta(days=3))]                             # the e-mail's click
        now = datetime.now(UTC).replace(microsecond=0)
        touched = [_load(demo, engine, clicks, now), _load(demo, engine, orders, now + timedelta(seconds=1)),
                   _load(demo, engine, late, now + timedelta(seconds=2))]
        before = engine.read_table("campaign_kpis").drop_columns(["computed_at"])
        replayed = engine.query("SELECT * FROM events WHERE event = 'Link Clicked'")
        update_kpis(demo, engine, replayed)  # a batch handed over twice (the loader is at least once)
        after = engine.read_table("campaign_kpis").drop_columns(["computed_at"])
        live = read_kpis(engine, by=("campaign_id", "arm"), campaign_id="flash").frame.set_index("arm")
        kept_live = engine.query("SELECT * FROM conversion_orders")
        rebuild_kpis(demo, engine)
        rebuilt = engine.read_table("campaign_kpis").drop_columns(["computed_at"])
        kept_rebuilt = engine.query("SELECT * FROM conversion_orders")
    assert all(touched) and touched[0] >= 1
    assert compare_tables("replay", before, after).equal
    # the hook appended the tracked orders (once, despite the replay) to what a rebuild derives
    tracked = {row["order_id"] for row in kept_live.to_pylist() if row["order_id"].startswith("L-")}
    assert len(tracked) == len(orders) + 1 and kept_live.num_rows == kept_rebuilt.num_rows
    kept = compare_tables("conversion_orders", kept_live, kept_rebuilt)
    assert kept.equal, kept.differences
    report = compare_tables("campaign_kpis", after, rebuilt)
    assert report.equal, report.differences
    # flash: 6 clicks of 30 delivered; converted: the 4 sent buyers in the window (flash-3 bought too late)
    assert live.loc["treatment", "clicked"] == 6 and live.loc["treatment", "delivered"] == 30
    assert live.loc["treatment", "converted"] == 4 and float(live.loc["treatment", "gmv"]) == 120 + 121 + 122 + 127
    assert live.loc["treatment", "cost"] == pytest.approx(30 * 0.05)
    assert live.loc["control", "audience"] == 15 and live.loc["control", "converted"] == 2


def test_read_kpis_refuses_an_unknown_grouping(portrayed: Workspace) -> None:
    with open_engine(portrayed, read_only=True) as engine, pytest.raises(MeasureError, match="group KPIs by"):
        read_kpis(engine, by=("campaign_id", "person_id"))
