"""After-load hooks: order, replay after a crash, retries, giving up without losing events.

The runner is tested on a real DuckDB file; the crash test kills a real loader process
between its commit and its hooks and restarts the server.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pyarrow as pa
import pytest

from jingzhun.collect.collector import CollectorError
from jingzhun.collect.collector.hooks import CATCH_UP, STATE_FILE, HookRunner, hook_name
from jingzhun.core import Workspace
from jingzhun.engine import Engine, open_engine
from jingzhun.schema import migrate
from tests.collect.collector.conftest import serving

SEEN: list[tuple[str, list[str]]] = []  # what the in-process hooks were given
HERE = __name__


def remember(workspace: Workspace, engine: Engine, events: pa.Table) -> None:
    SEEN.append(("remember", sorted(events.column("message_id").to_pylist())))


def explode(workspace: Workspace, engine: Engine, events: pa.Table) -> None:
    raise RuntimeError("hook is broken")


def store_seen(workspace: Workspace, engine: Engine, events: pa.Table) -> None:
    """In the loader process: note the message ids in a table the test reads afterwards."""
    engine.write_table("test_hook_seen", events.select(["message_id"]))


def die_once(workspace: Workspace, engine: Engine, events: pa.Table) -> None:
    """Kill the loader the first time (after its commit, before any hook's work is saved)."""
    marker = workspace.root / "died"
    if not marker.exists():
        marker.touch()
        os._exit(1)


def _event_rows(engine: Engine, ids: list[str], loaded_at: datetime) -> pa.Table:
    schema = engine.query("SELECT * FROM events LIMIT 0").schema
    rows = [{"message_id": i, "type": "track", "event": "Viewed", "user_id": "u1", "timestamp": loaded_at,
             "received_at": loaded_at, "loaded_at": loaded_at} for i in ids]
    table = pa.Table.from_pylist(rows, schema=schema)
    engine.write_table("events", table)
    return table


@pytest.fixture
def storage(workspace: Workspace) -> Iterator[Engine]:
    with open_engine(workspace) as engine:
        migrate(engine)
        yield engine
    SEEN.clear()


def _runner(workspace: Workspace, engine: Engine, *hooks: str) -> HookRunner:
    runner = HookRunner(workspace, engine, [f"{HERE}:{h}" for h in hooks], workspace.log_dir / STATE_FILE)
    assert runner.ready(timeout=60)  # imported in a thread beside the loading
    return runner


def test_hooks_are_named_as_importable_functions() -> None:
    assert hook_name(remember) == f"{HERE}:remember"
    assert hook_name("jingzhun.identity.realtime:attribute_new_events").endswith(":attribute_new_events")
    for bad in (lambda w, e, t: None, "jingzhun.identity.realtime:no_such_hook", "no_colon"):
        with pytest.raises(CollectorError) as refused:
            hook_name(bad)
        assert refused.value.field == "after_load" and "module:function" in refused.value.fix


def test_a_hook_behind_gets_what_it_missed_then_fresh_batches(workspace: Workspace, storage: Engine) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    _event_rows(storage, ["a"], t0)
    _event_rows(storage, ["b"], t0 + timedelta(seconds=1))  # committed, but the loader died before the hook
    (workspace.log_dir / STATE_FILE).write_bytes(orjson.dumps({f"{HERE}:remember": {"through": t0.isoformat()}}))
    runner = _runner(workspace, storage, "remember")
    runner.start()
    assert SEEN == [("remember", ["b"])]
    later = t0 + timedelta(seconds=2)
    runner.after_batch(later, _event_rows(storage, ["c"], later))
    assert SEEN[-1] == ("remember", ["c"])
    saved = orjson.loads((workspace.log_dir / STATE_FILE).read_bytes())
    assert saved[f"{HERE}:remember"] == {"through": later.isoformat(), "failures": 0}


def test_a_failing_hook_is_retried_then_recorded_and_the_next_hooks_catch_up(
        workspace: Workspace, storage: Engine) -> None:
    runner = _runner(workspace, storage, "explode", "remember")
    runner.start()  # no events yet: both start from the beginning
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for step, name in enumerate(["a", "b", "c"]):
        moment = t0 + timedelta(seconds=step)
        runner.after_batch(moment, _event_rows(storage, [name], moment))
        if step < 2:  # still retrying: the hooks after it wait
            assert SEEN == [] and runner.state[f"{HERE}:explode"].failures == step + 1
    assert SEEN == [("remember", ["a", "b", "c"])]  # given up on: later hooks get every event
    held = storage.query("SELECT * FROM quarantine WHERE kind = 'collector_hook'").to_pylist()
    assert len(held) == 1 and held[0]["field"] == f"{HERE}:explode" and held[0]["reason_code"] == "hook_failed"
    assert "hook is broken" in held[0]["reason"]
    assert orjson.loads(held[0]["payload"])["loaded_through"] == (t0 + timedelta(seconds=2)).isoformat()
    assert storage.row_count("events") == 3


def test_a_hook_long_stopped_resumes_recently_and_records_the_gap(workspace: Workspace, storage: Engine) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    old = now - CATCH_UP - timedelta(minutes=5)
    _event_rows(storage, ["old"], old)
    _event_rows(storage, ["recent"], now - timedelta(minutes=1))
    (workspace.log_dir / STATE_FILE).write_bytes(
        orjson.dumps({f"{HERE}:remember": {"through": (old - timedelta(seconds=1)).isoformat()}}))
    runner = _runner(workspace, storage, "remember")
    runner.start()
    assert SEEN == [("remember", ["recent"])]
    held = storage.query("SELECT reason_code FROM quarantine WHERE kind = 'collector_hook'").column(0).to_pylist()
    assert held == ["hook_skipped"]


def wait_for(check, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_loader_killed_between_commit_and_hooks_replays_the_batch_to_them(keyed_workspace) -> None:
    workspace, keys = keyed_workspace
    hooks = [f"{HERE}:die_once", f"{HERE}:store_seen"]
    batch = {"batch": [{"type": "track", "event": "Viewed", "userId": "u1", "messageId": f"m{i}"}
                       for i in range(5)]}
    with serving(workspace, after_load=hooks) as url:
        assert httpx.post(f"{url}/v1/batch", json=batch, auth=(keys["web"], "")).json() == {"success": True}
        wait_for(lambda: not httpx.get(f"{url}/health").json()["loader_alive"])
    with serving(workspace, after_load=hooks) as url:  # the restarted loader hands the hooks the committed batch
        wait_for(lambda: all(h["through"] for h in httpx.get(f"{url}/health").json()["after_load"].values()))
    with open_engine(workspace) as engine:
        assert engine.row_count("events") == 5
        seen = engine.query("SELECT message_id FROM test_hook_seen").column(0).to_pylist()
    assert sorted(seen) == [f"m{i}" for i in range(5)]
