"""Real-time attribution on a copy of the portrayed demo: new events go to their known
person at once, identify calls bind new anonymous ids, and the next full rebuild gives
exactly what it gives without any of it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from jingzhun.collect.collector import add_source
from jingzhun.core import Workspace
from jingzhun.engine import Engine, open_engine, parse_sql, render
from jingzhun.identity import IdentityConfig, build_identity
from jingzhun.identity.config import SourceSettings
from jingzhun.identity.identifiers import NormalizeSettings
from jingzhun.identity.observations import ObservationPlan
from jingzhun.identity.realtime import attribute_new_events, attribution_steps, waiting_sql
from jingzhun.schema import migrate
from tests.conftest import copy_workspace


def event(source_id: str, *, user_id: str | None = None, anonymous_id: str | None = None,
          kind: str = "track", traits: str | None = None) -> dict:
    now = datetime.now(UTC)
    return {"message_id": uuid.uuid4().hex, "type": kind, "event": "Product Viewed" if kind == "track" else None,
            "user_id": user_id, "anonymous_id": anonymous_id, "timestamp": now, "received_at": now,
            "source_id": source_id, "channel": "web", "context": "{}", "traits": traits, "loaded_at": now}


def load(engine: Engine, rows: list[dict]) -> pa.Table:
    """What the collector's loader does before its hooks run: append the rows to `events`."""
    table = pa.Table.from_pylist(rows, schema=engine.query("SELECT * FROM events LIMIT 0").schema)
    engine.write_table("events", table)
    return table


def owners(engine: Engine, rows: list[dict]) -> dict[str, str]:
    ids = ", ".join(f"'{row['message_id']}'" for row in rows)
    found = engine.query(f"SELECT record_id, person_id FROM record_persons WHERE record_kind = 'event' "
                         f"AND record_id IN ({ids})").to_pylist()
    return {row["record_id"]: row["person_id"] for row in found}


def members(engine: Engine, n: int) -> list[tuple[str, str]]:
    """(member id, person) of n demo members."""
    rows = engine.query("SELECT id_value, person_id FROM identities WHERE id_type = 'member_id' "
                        f"ORDER BY id_value LIMIT {n}").to_pylist()
    return [(row["id_value"], row["person_id"]) for row in rows]


@pytest.fixture
def demo(portrayed_demo: Path, tmp_path: Path) -> tuple[Workspace, Engine, str]:
    workspace = copy_workspace(portrayed_demo, tmp_path / "ws")
    engine = open_engine(workspace)
    migrate(engine)
    web = engine.query("SELECT source_id FROM sources WHERE name = 'demo-web'").column(0)[0].as_py()
    yield workspace, engine, web
    engine.close()


def test_new_events_go_to_their_known_person_and_identify_binds_new_anonymous_ids(demo) -> None:
    workspace, engine, web = demo
    (m1, p1), (m2, p2), (m3, p3) = members(engine, 3)
    waiting = event(web, anonymous_id="cookie-b")  # nobody knows cookie-b yet
    first = [event(web, user_id=f" {m1} "), waiting, stranger := event(web, anonymous_id="never-seen"),
             event(web, user_id=m2, anonymous_id="cookie-a", kind="identify", traits='{"phone": "13800138000"}'),
             after_identify := event(web, anonymous_id="cookie-a")]
    done = attribute_new_events(workspace, engine, load(engine, first))
    got = owners(engine, first)
    assert got[first[0]["message_id"]] == p1  # userId typed as member_id, trimmed like the batch graph
    assert got[first[3]["message_id"]] == p2 and got[after_identify["message_id"]] == p2
    assert waiting["message_id"] not in got and stranger["message_id"] not in got
    assert (done.attributed, done.backfilled, done.bound) == (2, 1, 1)

    second = [event(web, user_id=m3, anonymous_id="cookie-b", kind="identify"), event(web, anonymous_id="cookie-a")]
    table = load(engine, second)
    done = attribute_new_events(workspace, engine, table)
    assert owners(engine, second) == {second[0]["message_id"]: p3, second[1]["message_id"]: p2}
    assert owners(engine, [waiting]) == {waiting["message_id"]: p3}  # the event that waited for cookie-b
    assert owners(engine, [stranger]) == {}  # still unknown: the next pipeline run decides
    bindings = engine.query("SELECT id_type, id_value, person_id FROM identity_live_bindings "
                            "ORDER BY id_value").to_pylist()
    assert bindings == [{"id_type": "anonymous_id", "id_value": "cookie-a", "person_id": p2},
                        {"id_type": "anonymous_id", "id_value": "cookie-b", "person_id": p3}]  # not the test phone

    before = engine.row_count("record_persons")
    again = attribute_new_events(workspace, engine, table)  # a replayed batch adds nothing
    assert (again.attributed, again.bound, engine.row_count("record_persons")) == (0, 0, before)
    assert not [name for name in engine.list_tables() if name.startswith("identity_work_") or "live_batch" in name]


def test_a_source_whose_user_id_is_a_phone_is_normalized_like_the_batch_graph(demo) -> None:
    workspace, engine, _ = demo
    (workspace.definitions_dir / "identity.yaml").write_text("sources:\n  shop-app: {user_id_type: phone}\n")
    source, _ = add_source(engine, "shop-app", "app")
    phone, person = engine.query("SELECT id_value, person_id FROM identities WHERE id_type = 'phone' "
                                 "ORDER BY id_value LIMIT 1").to_pylist()[0].values()
    typed = f"{phone[3:6]}-{phone[6:10]} {phone[10:]}"  # +8613812345678 typed as 138-1234 5678
    rows = [event(source.source_id, user_id=typed)]
    attribute_new_events(workspace, engine, load(engine, rows))
    assert owners(engine, rows) == {rows[0]["message_id"]: person}


def rebuild_batches(engine: Engine) -> list[list[dict]]:
    """Two batches: a member's event and a new cookie's; then an identify binding the cookie,
    the cookie again, and a cookie nobody knows. Message ids are fixed, so two copies agree."""
    web = engine.query("SELECT source_id FROM sources WHERE name = 'demo-web'").column(0)[0].as_py()
    (m1, _), (m2, _) = members(engine, 2)
    batches = [[event(web, user_id=m1), event(web, anonymous_id="cookie-x")],
               [event(web, user_id=m2, anonymous_id="cookie-x", kind="identify"),
                event(web, anonymous_id="cookie-x"), event(web, anonymous_id="unknown-y")]]
    for number, batch in enumerate(batches):
        for index, row in enumerate(batch):
            row["message_id"] = f"rt-{number}-{index}"
    return batches


def test_the_next_rebuild_gives_the_same_record_persons_as_without_real_time(
        portrayed_demo: Path, tmp_path: Path) -> None:
    outcomes = {}
    for mode in ("live", "plain"):
        workspace = copy_workspace(portrayed_demo, tmp_path / mode)
        with open_engine(workspace) as engine:
            migrate(engine)
            batches = rebuild_batches(engine)
            rows = [row for batch in batches for row in batch]
            for batch in batches:
                table = load(engine, batch)
                if mode == "live":
                    attribute_new_events(workspace, engine, table)
            live = owners(engine, rows)
            build_identity(workspace, engine)
            rebuilt = engine.query("SELECT record_kind, record_id, person_id FROM record_persons "
                                   "ORDER BY record_kind, record_id").to_pylist()
            outcomes[mode] = (rebuilt, live, owners(engine, rows))
    (with_live, live, after), (without, _, _) = outcomes["live"], outcomes["plain"]
    assert with_live == without
    assert sorted(live) == ["rt-0-0", "rt-0-1", "rt-1-0", "rt-1-1"]  # unknown-y waited for the rebuild
    assert all(after[key] == person for key, person in live.items())  # and the rebuild agrees


@pytest.mark.parametrize("dialect", ["duckdb", "spark"])
def test_every_attribution_query_renders_for_both_engines(dialect: str) -> None:
    config = IdentityConfig(sources={"shop-app": SourceSettings(user_id_type="phone")})
    plan = ObservationPlan(config.registry(), NormalizeSettings(salt_hex="00ff"), config,
                           {"src_app": "phone"}, {"src_app": "device_id"})
    moment = "2026-01-01T00:00:00+00:00"
    for sql in [*attribution_steps(plan, junk_table=True, now=moment).values(), waiting_sql(moment)]:
        assert render(parse_sql(sql), dialect).strip()
