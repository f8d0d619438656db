"""`jingzhun serve` itself on 127.0.0.1: the collector keeps loading while the API works, and
the CLI's writing commands name the server (and the API to use) while it holds the database."""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid

import httpx

from tests.web.conftest import JINGZHUN, LiveServer


def batch(run: str, start: int, size: int = 100) -> dict:
    return {"batch": [{"type": "track", "event": "Zz Load Test", "userId": f"zz-{n % 50}",
                       "messageId": f"{run}-{n}", "properties": {"n": n}} for n in range(start, start + size)]}


def test_the_collector_keeps_loading_while_api_calls_run(live_server: LiveServer) -> None:
    url, admin = live_server.url, live_server.headers()
    source = httpx.post(f"{url}/api/v1/sources", json={"name": f"load-{uuid.uuid4().hex[:6]}"}, headers=admin).json()
    before = httpx.get(f"{url}/health").json()["loaded_events"]
    run, sent, seen = uuid.uuid4().hex[:8], [], []
    stop = threading.Event()

    def send() -> None:
        with httpx.Client(base_url=url, auth=(source["write_key"], ""), timeout=30) as client:
            while not stop.is_set() and len(sent) < 400:
                answer = client.post("/v1/batch", json=batch(run, len(sent) * 100))
                assert answer.json() == {"success": True}
                sent.append(100)
                time.sleep(0.05)

    def watch() -> None:
        while not stop.is_set():
            seen.append((time.monotonic(), httpx.get(f"{url}/health").json()["loaded_events"]))
            time.sleep(0.1)

    threads = [threading.Thread(target=send), threading.Thread(target=watch)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    slow_started, slow = time.monotonic(), []
    while time.monotonic() - slow_started < 3.0:  # heavy calls (the stock ledger, materialized) for 3 s at least
        slow.append(httpx.get(f"{url}/api/v1/inventory/checks", headers=admin, params={"limit": 5},
                              timeout=120).status_code)
    slow_ended = time.monotonic()
    quick = [httpx.get(f"{url}/api/v1/{path}", headers=admin, timeout=60).status_code
             for path in ("tags?limit=5", "audiences", "analytics/cube?measure=orders&by=month", "jobs")]
    stop.set()
    for thread in threads:
        thread.join(60)
    assert set(slow) == {200} and quick == [200] * 4
    during = [loaded for moment, loaded in seen if slow_started <= moment <= slow_ended]
    assert during and during[-1] > during[0], "no events were loaded while the slow API call ran"
    deadline = time.monotonic() + 90
    while httpx.get(f"{url}/health").json()["loaded_events"] - before < sum(sent) and time.monotonic() < deadline:
        time.sleep(0.2)
    health = httpx.get(f"{url}/health").json()
    assert health["loaded_events"] - before == sum(sent) and not health["pending"]  # each once, none lost


def test_writing_commands_name_the_server_and_the_api_to_use(live_server: LiveServer) -> None:
    env = {**os.environ, "JINGZHUN_LANG": "en", "COLUMNS": "200"}
    expected = {("pipeline",): "POST /api/v1/pipeline/runs", ("campaign", "run", "zz"): "POST /api/v1/campaigns/{id}/run"}
    running = {command: subprocess.Popen([JINGZHUN, *command, "-w", str(live_server.workspace.root)], env=env,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for command in expected}  # side by side: each jingzhun start costs seconds
    for command, api in expected.items():
        _, stderr = running[command].communicate(timeout=120)
        assert running[command].returncode == 2, stderr
        message = " ".join(stderr.split())
        assert "held by `jingzhun serve`" in message and live_server.url in message, message
        assert f"pid {live_server.process.pid}" in message and api in message, message
