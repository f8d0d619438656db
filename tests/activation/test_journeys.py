"""Journeys: definitions refused with the step path and the fix; a journey with wait_for and
its timeout, a split by trait, a random split, delay_until and delay walked on a simulated
clock, every person's path checked against an independent walk in Python; and a journey
run killed mid-send and resumed, nobody messaged twice."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from jingzhun.activation import (
    JourneyError,
    journey_paths,
    journey_status,
    load_send_policy,
    parse_journey,
    run_journey,
    save_journey,
)
from jingzhun.core import Workspace
from jingzhun.engine import open_engine
from tests.activation.campaign_fixtures import (
    WebhookReceiver,
    assert_policy_respected,
    wait_for,
    write_definitions,
)
from tests.activation.trigger_world import (
    add_events,
    demo_fixture,  # noqa: F401 — the `demo` fixture
    grant,
    reachable_persons,
)

JINGZHUN = str(Path(sys.executable).with_name("jingzhun"))
ZONE = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 2, 14, 0, tzinfo=ZONE).astimezone(UTC)  # carts abandoned at 14:00 local
RESCUE = {
    "journey_id": "cart_rescue", "name_zh": "购物车挽回", "name_en": "Cart rescue",
    "entry": {"event": "Cart Abandoned"}, "exit_on": {"event": "Order Completed"},
    "channels": ["sms"], "holdout": 0.25,
    "steps": [
        {"id": "wait_checkout", "wait_for": {"event": "Checkout Started", "timeout": "1h", "on_timeout": "nudge"},
         "next": "thanks"},
        {"id": "thanks", "message": {"template": "welcome_back"}, "next": "finish"},
        {"id": "nudge", "split": [{"when": {"trait": "gender", "op": "=", "value": "F"}, "goto": "coin"}],
         "else": "morning"},
        {"id": "coin", "random": [{"percent": 50, "goto": "remind"}, {"percent": 50, "goto": "finish"}]},
        {"id": "morning", "delay_until": "10:00"},
        {"id": "remind", "message": {"template": "welcome_back"}},
        {"id": "pause", "delay": "1d"},
        {"id": "finish", "exit": True},
    ],
}


def _steps(*changes: tuple[int, dict]) -> dict:
    steps = [dict(step) for step in RESCUE["steps"]]
    for index, change in changes:
        if index >= len(steps):
            steps.append(change)
        else:
            steps[index] = {**steps[index], **change}
    return {**RESCUE, "steps": steps}


@pytest.mark.parametrize(("definition", "path", "fix"), [
    (_steps((1, {"mesage": {"template": "welcome_back"}})), "steps[1] (thanks).mesage", "rename it to `message`"),
    (_steps((3, {"random": [{"percent": 50, "goto": "remindd"}, {"percent": 50, "goto": "finish"}]})),
     "steps[3] (coin).random[0].goto", "use 'remind'"),
    (_steps((3, {"random": [{"percent": 60, "goto": "remind"}, {"percent": 50, "goto": "finish"}]})),
     "steps[3] (coin)", "add up to 100"),
    (_steps((8, {"id": "orphan", "delay": "1h"})), "steps[8] (orphan)", "point a next"),
    (_steps((5, {"next": "nudge"})), "steps[2] (nudge)", "put a delay"),
    (_steps((4, {"delay_until": "10:00", "delay": "1d"})), "steps[4] (morning)", "split this step"),
    (_steps((0, {"wait_for": {"event": "Checkout Started", "timeout": "soon"}})), "steps[0] (wait_checkout).wait_for.timeout",
     "docs/journeys.md"),
    ({**RESCUE, "entry": {"event": "A", "segment": "vip"}}, "entry", "e.g. entry"),
    ({**RESCUE, "channels": []}, "steps[1] (thanks).message.channels", "add channels"),
])
def test_a_bad_journey_is_refused_naming_the_step_and_the_fix(definition: dict, path: str, fix: str) -> None:
    with pytest.raises(JourneyError) as refused:
        parse_journey(definition)
    problem = next(p for p in refused.value.problems if p.path.startswith(path))
    assert fix in problem.fix and problem.message_zh and problem.fix_zh, refused.value.problems


def test_templates_rules_and_audiences_are_checked_against_the_workspace(demo: Workspace) -> None:
    write_definitions(demo, smtp_port=None, webhook_url="http://127.0.0.1:9/send")
    wrong = _steps((1, {"message": {"template": "welcome_bak"}}), (5, {"message": {"template": "welcome_back",
                                                                                   "channels": ["wechat"]}}),
                   (2, {"split": [{"when": {"trait": "gendr", "op": "=", "value": "F"}, "goto": "coin"}]}))
    wrong = {**wrong, "entry": {"segment_entered": "top_members"}}
    with open_engine(demo) as engine, pytest.raises(JourneyError) as refused:
        save_journey(demo, engine, parse_journey(wrong))
    found = {p.path: p for p in refused.value.problems}
    assert "use 'welcome_back'" in found["steps[1] (thanks).message.template"].fix
    assert "no copy for wechat" in found["steps[5] (remind).message.channels"].message
    assert "gender" in found["steps[2] (nudge).split[0].when.trait"].fix
    assert any(path == "entry.segment_entered" for path in found)


def _draw(text: str) -> float:
    return int(hashlib.md5(text.encode()).hexdigest()[:6], 16) / 16 ** 6


def _ten_am_after(moment: datetime) -> datetime:
    local = moment.astimezone(ZONE)
    ten = datetime.combine(local.date(), time(10), tzinfo=ZONE)
    return (ten if ten >= local else ten + timedelta(days=1)).astimezone(UTC)


def expected_path(person: str, cart: datetime, events: dict[str, list[datetime]], woman: bool) -> list[tuple]:
    """The journey walked by hand: (to_step, outcome, at) from entry to the end."""
    if _draw(f"cart_rescue:{person}") < RESCUE["holdout"]:
        return [("wait_checkout", "held_out", cart)]
    path = [("wait_checkout", "entered", cart)]
    checkout = [t for t in events.get("Checkout Started", []) if cart < t <= cart + timedelta(hours=1)]
    if checkout:
        at = min(checkout)
        path += [("thanks", "event", at), ("finish", "message", at), ("end", "exit", at)]
    else:
        at = cart + timedelta(hours=1)
        path.append(("nudge", "timeout", at))
        if woman:
            path.append(("coin", "branch", at))
            if _draw(f"cart_rescue:coin:{person}") >= 0.5:
                path += [("finish", "branch", at), ("end", "exit", at)]
            else:
                path.append(("remind", "branch", at))
        else:
            path += [("morning", "branch", at)]
            at = _ten_am_after(at)
            path.append(("remind", "delay", at))
        if path[-1][0] == "remind":
            path += [("pause", "message", at), ("finish", "delay", at + timedelta(days=1)),
                     ("end", "exit", at + timedelta(days=1))]
    goals = [t for t in events.get("Order Completed", []) if t > cart]
    if goals:  # the goal takes the person out from wherever they wait
        goal = min(goals)
        kept = [move for move in path if move[2] <= goal]
        if kept[-1][0] != "end":
            path = [*kept, ("end", "goal", goal)]
    return path


def test_a_journey_walks_each_person_down_the_expected_path(demo: Workspace) -> None:
    gateway = WebhookReceiver()
    write_definitions(demo, smtp_port=None, webhook_url=gateway.url)
    try:
        with open_engine(demo) as engine:
            women = set(engine.query("SELECT person_id FROM person_traits WHERE gender = 'F'").column(0).to_pylist())
            pool = reachable_persons(engine, 80)
            kept = [p for p in pool if _draw(f"cart_rescue:{p}") >= RESCUE["holdout"]]
            held = [p for p in pool if p not in kept][:2]
            her, him = [p for p in kept if p in women][:6], [p for p in kept if p not in women][:6]
            # checkout, checkout, late checkout, goal while waiting, goal while pausing, the rest on their own
            persons = [her[0], him[0], her[1], him[1], him[2], *her[2:], *him[3:], *held]
            grant(engine, persons, T0 - timedelta(days=10))
            save_journey(demo, engine, parse_journey(RESCUE), now=T0 - timedelta(hours=1))
            planted: dict[str, dict[str, list[datetime]]] = {p: {} for p in persons}
            rows = [(p, "Cart Abandoned", T0 + timedelta(minutes=i)) for i, p in enumerate(persons)]
            rows += [(persons[0], "Checkout Started", T0 + timedelta(minutes=20)),
                     (persons[1], "Checkout Started", T0 + timedelta(minutes=50)),
                     (persons[2], "Checkout Started", T0 + timedelta(hours=2)),  # too late: timed out
                     (persons[3], "Order Completed", T0 + timedelta(hours=3)),
                     (persons[4], "Order Completed", T0 + timedelta(hours=30))]
            for person, event, at in rows:
                planted[person].setdefault(event, []).append(at)
            add_events(engine, rows)
            clock = [T0 + timedelta(minutes=5), T0 + timedelta(minutes=30), T0 + timedelta(minutes=65),
                     T0 + timedelta(hours=4), T0 + timedelta(hours=20, minutes=5), T0 + timedelta(hours=44),
                     T0 + timedelta(days=3)]
            runs = [run_journey(demo, engine, "cart_rescue", now=moment) for moment in clock]
            rerun = run_journey(demo, engine, "cart_rescue", now=clock[-1])
            paths = journey_paths(engine, "cart_rescue")
            status = journey_status(engine, "cart_rescue")
            deliveries = engine.query("SELECT person_id, step, status, sent_at FROM deliveries "
                                      "WHERE campaign_id = 'cart_rescue'").to_pandas()
            checked = assert_policy_respected(engine, demo, load_send_policy(demo))
    finally:
        gateway.close()
    assert sum(run.entered for run in runs) == len(persons) and runs[0].entered == 6  # carts until 14:05
    for person in persons:
        mine = paths[paths.person_id == person]
        walked = [(r.to_step, r.outcome, r.at.to_pydatetime()) for r in mine.itertuples()]
        assert walked == expected_path(person, planted[person]["Cart Abandoned"][0], planted[person],
                                       person in women), person
    walked_through = set(paths.to_step) | set(paths.outcome)
    assert walked_through >= {"held_out", "event", "timeout", "branch", "delay", "message", "goal", "exit",
                              "thanks", "coin", "morning", "remind", "pause", "finish"}  # every way is taken
    # Each message step's message went once to exactly the persons whose path passes it.
    messaged = {(r.person_id, r.to_step) for r in paths.itertuples() if r.outcome in ("message",)}
    through = {(p, "thanks" if step == "finish" else "remind") for p, step in messaged}
    assert set(zip(deliveries.person_id, deliveries.step, strict=True)) == through
    assert set(deliveries.status) == {"sent"} and len(gateway.delivered) == len(gateway.posts) == len(deliveries)
    assert checked == len(deliveries) and rerun.moves == {} and rerun.planned == {} and rerun.sent == 0
    assert status.steps[["active", "waiting"]].to_numpy().sum() == 0  # everyone finished
    assert status.messages.set_index("step")["sent"].sum() == len(deliveries)


def test_a_journey_killed_mid_send_resumes_without_sending_twice(demo: Workspace) -> None:
    """`jingzhun journey run` is SIGKILLed while the gateway holds a message; the next run
    resends the interrupted batch with the same idempotency keys and plans nothing again."""
    gateway = WebhookReceiver(delay=0.02, hold_at=4)
    write_definitions(demo, smtp_port=None, webhook_url=gateway.url,
                      policy=yaml.safe_dump({"quiet_hours": None}))
    simple = {**RESCUE, "holdout": 0.0, "exit_on": None,
              "steps": [{"id": "hello", "message": {"template": "welcome_back"}}, {"id": "bye", "exit": True}]}
    with open_engine(demo) as engine:
        persons = reachable_persons(engine, 12)
        grant(engine, persons, T0 - timedelta(days=10))
        save_journey(demo, engine, parse_journey({k: v for k, v in simple.items() if v is not None}),
                     now=T0 - timedelta(hours=1))
        add_events(engine, [(p, "Cart Abandoned", T0) for p in persons])
    run = [JINGZHUN, "journey", "run", "cart_rescue", "--workspace", str(demo.root),
           "--now", (T0 + timedelta(minutes=5)).isoformat()]
    try:
        process = subprocess.Popen(run, env={**os.environ, "JINGZHUN_LANG": "en"}, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        try:
            wait_for(lambda: gateway.holding.is_set() or process.poll() is not None, timeout=240, step=0.02)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(30)
        assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
        gateway.release.set()
        with open_engine(demo) as engine:
            interrupted = Counter(engine.query("SELECT status FROM deliveries WHERE campaign_id = 'cart_rescue'")
                                  .column(0).to_pylist())
            resumed = run_journey(demo, engine, "cart_rescue", now=T0 + timedelta(minutes=10))
            final = engine.query("SELECT person_id, step, status FROM deliveries WHERE campaign_id = 'cart_rescue'")
            moves = engine.query("SELECT person_id, to_step, COUNT(*) AS n FROM journey_transitions "
                                 "GROUP BY ALL").to_pandas()
    finally:
        gateway.close()
    assert interrupted["sending"] >= 1 and sum(interrupted.values()) == len(persons)  # planned once, mid-send
    assert resumed.entered == 0 and resumed.planned == {} and resumed.sent == interrupted["sending"] + interrupted["queued"]
    final = final.to_pandas()
    assert len(final) == len(persons) and set(final.status) == {"sent"} and final.person_id.is_unique
    assert set(gateway.delivered) == {m["delivery_id"] for m in gateway.delivered.values()}
    assert Counter(m["person_id"] for m in gateway.delivered.values()) == Counter(persons)  # once each
    assert len(gateway.posts) > len(gateway.delivered)  # the interrupted batch went again, deduplicated
    assert (moves.n == 1).all() and set(moves.to_step) == {"hello", "bye", "end"}
