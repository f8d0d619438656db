"""kill -9 in the middle of a load loses no acknowledged event and loads none twice.

Four senders post batches with unique messageIds and note which were acknowledged
(HTTP 200); a failed request is retried unchanged until acknowledged, as the SDKs
do. The official Segment SDK sends alongside. Three times, while the loader is
busy (it has loaded events and more are waiting), the server is SIGKILLed and
restarted on the same port; the clients carry on.
"""

from __future__ import annotations

import threading
import time

import httpx

from jingzhun.engine import open_engine
from tests.collect.collector.conftest import Server

BATCH = 50


def sender(url: str, key: str, number: int, acked: list[str], stop: threading.Event) -> None:
    """Send batches until `stop`; retry each until acknowledged; record acknowledged ids."""
    with httpx.Client(auth=(key, ""), timeout=5) as client:
        batch_no = 0
        while not stop.is_set():
            ids = [f"k{number}-{batch_no}-{i}" for i in range(BATCH)]
            body = {"batch": [{"type": "track", "event": "Viewed", "userId": f"u{i}", "messageId": m,
                               "properties": {"i": i}} for i, m in enumerate(ids)]}
            while True:  # never abandon a batch that may have been stored: retry until acknowledged
                try:
                    if client.post(f"{url}/v1/batch", json=body).status_code == 200:
                        acked.extend(ids)
                        break
                except httpx.TransportError:
                    time.sleep(0.05)  # the server is down
            batch_no += 1
            time.sleep(0.01)


def wait_mid_load(server: Server, timeout: float = 30) -> None:
    """Until the loader has loaded something and still has a backlog."""
    deadline = time.monotonic() + timeout
    while True:
        health = server.health()
        if health["loaded_events"] > 0 and health["pending"]:
            return
        assert time.monotonic() < deadline, f"no load in progress: {health}; {server.stderr.read_text()[-2000:]}"
        time.sleep(0.01)


def test_sigkill_mid_load_loses_nothing_acknowledged(server: Server, keyed_workspace) -> None:
    import segment.analytics as segment

    workspace, keys = keyed_workspace
    server.start()
    acked: list[str] = []
    stop = threading.Event()
    threads = [threading.Thread(target=sender, args=(server.url, keys["web"], n, acked, stop)) for n in range(4)]
    errors: list[object] = []
    sdk = segment.Client(keys["server"], host=server.url, max_retries=10, upload_interval=0.05,
                         on_error=lambda error, batch: errors.append(error))
    for thread in threads:
        thread.start()
    for n in range(1500):
        sdk.track(f"sdk-{n}", "Clicked", {"n": n}, message_id=f"sdk-{n}")
    for _ in range(3):
        wait_mid_load(server)
        server.kill()
        server.start()
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(60)
    sdk.shutdown()
    assert not errors
    server.stop()
    assert "leaked semaphore" not in server.stderr.read_text()  # a graceful stop leaves nothing behind
    with open_engine(workspace) as engine:
        ids = engine.query("SELECT message_id FROM events").column("message_id").to_pylist()
    assert len(ids) == len(set(ids)), "an event was loaded twice"
    assert set(ids) == set(acked) | {f"sdk-{n}" for n in range(1500)}
    assert len(acked) > 3000
