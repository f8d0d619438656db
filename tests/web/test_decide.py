"""The decision API through a real server: the web app under uvicorn on 127.0.0.1 (as `jingzhun
serve` runs it: the engine process owns the database, the HTTP process answers from memory).

Any identifier finds the person; a marketing placement obeys consent, suppressions, the
campaigns' frequency caps and its own daily cap; an unknown visitor gets popular products;
`/v1/decide` answers like `/api/v1/decide` and opens only to API keys and sessions, never to
a write key; a snapshot left on disk is served only while current, and a restart keeps the
day's impression counts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn

from jingzhun.activation import refresh_snapshot
from jingzhun.activation.decisions_snapshot import POPULAR_SQL
from jingzhun.collect.collector import add_source
from jingzhun.core import Workspace
from jingzhun.engine import open_engine
from jingzhun.web import create_app
from tests.activation.test_decisions import expected_offers, national
from tests.collect.collector.conftest import free_port
from tests.web.conftest import PASSWORDS, prepared_workspace

PATHS = ("/api/v1/decide", "/v1/decide")
# No quiet hours: the server runs on the wall clock (quiet hours are tested on a fixed clock
# in tests/activation/test_decisions.py).
POLICY = "quiet_hours: null\n"


@contextmanager
def serving(workspace: Workspace, key: str) -> Iterator[str]:
    """The whole web app under uvicorn in a thread; ready once the decision snapshot is in."""
    app = create_app(workspace, load_interval=0.05)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 90
        url = f"http://127.0.0.1:{server.config.port}"
        while not server.started or not httpx.get(f"{url}/api/v1/decide/status", timeout=30,
                                                  headers={"Authorization": f"Bearer {key}"}).json()["ready"]:
            assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
            time.sleep(0.05)
        yield url
    finally:
        server.should_exit = True
        thread.join(120)


@dataclass
class World:
    """The server's workspace, its keys, and the persons the tests ask about."""

    workspace: Workspace
    keys: dict[str, str]
    write_key: str
    people: list[dict]
    popular: list[str]
    stale_version: str
    url: str = ""
    stop: Callable[[], None] = lambda: None

    @property
    def consenting(self) -> dict:
        return self.people[0]

    @property
    def capped(self) -> dict:  # consented, but a campaign sent them a push an hour ago
        return self.people[1]

    @property
    def withdrawn(self) -> dict:
        return self.people[2]

    @property
    def suppressed(self) -> dict:
        return self.people[3]

    @property
    def silent(self) -> dict:  # no consent on record (opt-in: no marketing messages)
        return self.people[4]

    def headers(self, role: str = "viewer") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}", "Accept-Language": "en"}

    def decide(self, body: dict, path: str = PATHS[0], **options: object) -> httpx.Response:
        options.setdefault("headers", self.headers())
        return httpx.post(self.url + path, json=body, timeout=30, **options)  # type: ignore[arg-type]


def _prepare(portrayed_demo: Path, folder: Path) -> World:
    workspace, keys = prepared_workspace(portrayed_demo, folder)
    (workspace.definitions_dir / "send_policy.yaml").write_text(POLICY, encoding="utf-8")
    with open_engine(workspace) as engine:
        _, write_key = add_source(engine, "decide-web", "web")
        people = engine.query("""
            SELECT p.person_id, MIN(ph.id_value) AS phone, MIN(e.id_value) AS email, MIN(a.id_value) AS anon,
                   MIN(m.id_value) AS member_id
            FROM persons AS p
            JOIN identities AS ph ON ph.person_id = p.person_id AND ph.id_type = 'phone'
            JOIN identities AS e ON e.person_id = p.person_id AND e.id_type = 'email'
            JOIN identities AS a ON a.person_id = p.person_id AND a.id_type = 'anonymous_id'
            JOIN identities AS d ON d.person_id = p.person_id AND d.id_type = 'device_id'
            LEFT JOIN identities AS m ON m.person_id = p.person_id AND m.id_type = 'member_id'
            WHERE p.status = 'active' AND p.person_id IN (SELECT person_id FROM recommendations WHERE kind = 'guess_you_like')
            GROUP BY p.person_id ORDER BY p.person_id LIMIT 8""").to_pylist()
        assert len(people) == 8, "the demo should have persons with a phone, an e-mail, a cookie and a device"
        for row in people:
            row["expected"] = expected_offers(engine, row["person_id"])
        # A snapshot on disk from before the consents below: the server must not serve it.
        stale = refresh_snapshot(engine, workspace)
        granted = ", ".join(f"('{row['person_id']}', 'marketing', 'app_push', 'granted', TIMESTAMPTZ "
                            "'2026-01-01 00:00:00+00')" for row in [*people[:4], *people[6:]])
        engine.execute(f"INSERT INTO consents (person_id, purpose, channel, status, recorded_at) VALUES {granted}, "
                       f"('{people[2]['person_id']}', 'marketing', NULL, 'withdrawn', now())")
        engine.execute("INSERT INTO suppressions (id_type, id_value, channel, reason, created_at) VALUES "
                       f"('phone', '{people[3]['phone']}', NULL, 'complaint', now())")
        sent = datetime.now(UTC) - timedelta(hours=1)
        engine.execute("INSERT INTO deliveries (delivery_id, campaign_id, person_id, channel, status, purpose, "
                       f"scheduled_at, sent_at) VALUES ('zz-d1', 'zz-campaign', '{people[1]['person_id']}', "
                       f"'app_push', 'sent', 'marketing', TIMESTAMPTZ '{sent.isoformat()}', "
                       f"TIMESTAMPTZ '{sent.isoformat()}')")
        popular = engine.query(POPULAR_SQL.replace(":n", "3")).column("product_id").to_pylist()
    return World(workspace, keys, write_key, people, popular, stale.version)


@pytest.fixture(scope="module")
def world(portrayed_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    found = _prepare(portrayed_demo, tmp_path_factory.mktemp("decide-server"))
    with ExitStack() as running:
        found.url = running.enter_context(serving(found.workspace, found.keys["viewer"]))
        found.stop = running.close  # the restart test stops this server and starts another
        yield found


def test_any_identifier_finds_the_person_on_both_paths(world: World) -> None:
    row = world.people[5]
    asks = [{"identifier": {"type": "phone", "value": national(row["phone"])}},
            {"identifier": {"type": "email", "value": row["email"].upper()}},
            {"identifier": {"type": "anonymous_id", "value": row["anon"]}},
            {"anonymous_id": row["anon"]}, {"person_id": row["person_id"]},
            {"identifier": f"phone:{row['phone']}"}, {"identifier": row["email"]}]
    if row["member_id"]:
        asks.append({"user_id": row["member_id"]})
    for path in PATHS:
        for ask in asks:
            answer = world.decide({**ask, "placement": "home_banner"}, path)
            assert answer.status_code == 200, (path, ask, answer.text)
            body = answer.json()
            assert (body["person_id"], body["outcome"]) == (row["person_id"], "personal"), (path, ask)
            assert [offer["product_id"] for offer in body["offers"]] == row["expected"], (path, ask)
            assert body["copy"]["zh"]["title"] == "猜你喜欢" and body["offers"][0]["name"] in body["copy"]["zh"]["body"]


def test_a_marketing_placement_obeys_consent_and_caps(world: World) -> None:
    first = world.decide({"person_id": world.consenting["person_id"], "placement": "push"}).json()
    assert first["outcome"] == "personal" and first["offers"] and first["copy"]["zh"]["body"]
    again = world.decide({"person_id": world.consenting["person_id"], "placement": "push"}, PATHS[1]).json()
    assert (again["outcome"], again["offers"], again["copy"]) == ("impression_cap", [], None)  # daily_cap: 1
    for person, reason in ((world.capped, "frequency_cap"), (world.withdrawn, "no_consent"),
                           (world.suppressed, "suppressed"), (world.silent, "no_consent")):
        for path in PATHS:
            body = world.decide({"identifier": {"type": "email", "value": person["email"]}, "placement": "push"},
                                path).json()
            assert (body["person_id"], body["outcome"], body["offers"]) == (person["person_id"], reason, []), path
    stranger = world.decide({"anonymous_id": "zz-a-cookie-nobody-has", "placement": "push"}).json()
    assert (stranger["outcome"], stranger["offers"]) == ("no_consent", [])
    # a page placement is not a message: the person without consent still sees offers there
    page = world.decide({"person_id": world.silent["person_id"], "placement": "home_banner"}).json()
    assert page["outcome"] == "personal" and page["offers"]


def test_unknown_visitors_get_popular_products(world: World) -> None:
    for ask in ({"identifier": {"type": "phone", "value": "13900000000"}}, {"anonymous_id": "zz-new-cookie"},
                {"identifier": "zz-no-such-member"}, {}):
        for path in PATHS:
            body = world.decide({**ask, "placement": "home_banner"}, path).json()
            assert (body["person_id"], body["known"], body["outcome"]) == (None, False, "fallback"), (ask, path)
            assert [offer["product_id"] for offer in body["offers"]] == world.popular
            assert {offer["kind"] for offer in body["offers"]} == {"popular"}


def test_v1_decide_opens_to_keys_and_sessions_never_to_write_keys(world: World) -> None:
    body = {"placement": "home_banner"}
    for path in PATHS:
        assert world.decide(body, path, headers={}).status_code == 401
        assert world.decide(body, path, headers={}, auth=(world.write_key, "")).status_code == 401
        assert world.decide(body, path, headers={"Authorization": f"Bearer {world.write_key}"}).status_code == 401
    login = httpx.post(f"{world.url}/api/v1/auth/login", json={"username": "viewer", "password": PASSWORDS["viewer"]})
    session = {"Cookie": f"jz_session={login.cookies['jz_session']}"}
    assert world.decide(body, PATHS[1], headers=session).status_code == 403  # a browser's change needs its token
    csrf = {**session, "X-CSRF-Token": login.json()["csrf_token"]}
    assert world.decide(body, PATHS[1], headers=csrf).json()["outcome"] == "fallback"
    wrong = world.decide({"placement": "nowhere"}, PATHS[1])
    assert wrong.status_code == 400 and wrong.json()["error"]["field"] == "placement"
    assert world.decide({"placement": "home_banner", "colour": "red"}, PATHS[1]).status_code == 422
    # the collector's own routes stay the write keys' alone
    assert httpx.post(f"{world.url}/v1/track", headers=world.headers("admin"),
                      json={"event": "x", "userId": "y"}).status_code == 401


def test_a_restart_serves_the_current_snapshot_and_keeps_the_day_s_caps(world: World) -> None:
    status = httpx.get(f"{world.url}/api/v1/decide/status", headers=world.headers()).json()
    assert status["ready"] and status["snapshot"]["rows"]["persons"] > 1000
    assert status["snapshot"]["version"] != world.stale_version  # the one on disk predated the consents
    assert httpx.post(f"{world.url}/api/v1/decide/refresh", headers=world.headers()).status_code == 403
    refreshed = httpx.post(f"{world.url}/api/v1/decide/refresh", headers=world.headers("marketer"), timeout=60).json()
    assert refreshed["snapshot"]["version"] != status["snapshot"]["version"]
    late = world.people[6]["person_id"]  # shown after the last snapshot was built: only the log knows
    assert world.decide({"person_id": late, "placement": "push"}).json()["outcome"] == "personal"
    # a new placement: the refresh compiles the definitions again and keeps today's counts
    (world.workspace.definitions_dir / "decisions.yaml").write_text("placements:\n  zz_strip: {offers: 1}\n",
                                                                    encoding="utf-8")
    assert world.decide({"placement": "zz_strip"}).status_code == 400
    redefined = httpx.post(f"{world.url}/api/v1/decide/refresh", headers=world.headers("marketer"), timeout=60).json()
    assert "zz_strip" in redefined["placements"]
    assert len(world.decide({"person_id": late, "placement": "zz_strip"}).json()["offers"]) == 1
    assert world.decide({"person_id": late, "placement": "push"}).json()["outcome"] == "impression_cap"
    world.stop()  # flushes the decision log before the engine process stops
    with serving(world.workspace, world.keys["viewer"]) as url:
        world.url = url
        again = httpx.get(f"{url}/api/v1/decide/status", headers=world.headers()).json()
        assert again["snapshot"]["version"] == redefined["snapshot"]["version"]  # current: served from disk
        for person in (late, world.consenting["person_id"]):
            assert world.decide({"person_id": person, "placement": "push"}).json()["outcome"] == "impression_cap"
        other = world.people[7]["person_id"]
        assert world.decide({"person_id": other, "placement": "push"}).json()["outcome"] == "personal"
    with open_engine(world.workspace, read_only=True) as engine:
        logged = engine.query("SELECT placement, outcome, COUNT(*) AS n FROM decisions GROUP BY ALL").to_pylist()
        when = engine.query("SELECT MIN(decided_at) > now() - INTERVAL 1 HOUR AND MAX(decided_at) <= now() AS recent, "
                            "BOOL_AND(day = CAST(timezone('Asia/Shanghai', decided_at) AS DATE)) AS local_day "
                            "FROM decisions").to_pylist()[0]
    assert when == {"recent": True, "local_day": True}
    counts = {(row["placement"], row["outcome"]): row["n"] for row in logged}
    assert counts[("push", "personal")] == 3 and counts[("push", "impression_cap")] == 4
