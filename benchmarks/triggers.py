"""Triggered campaigns: seconds from an event's POST to its delivery row and to the SMS gateway.

Claim (issue 7, item 4): a campaign triggered by an event sends to the person within
seconds of the event reaching the collector.

Method: a copy of a portrayed demo workspace (the 1,500-person test demo by default, or
`--workspace`) gets a write key, a webhook SMS gateway on 127.0.0.1 (a plain HTTP server in
this process that notes when each message arrives), marketing consent for N members with a
mainland mobile, and the campaign `cart_bench` triggered by `Cart Abandoned`. The real
`jingzhun serve` (its default after-load hooks: identity.realtime, segments.realtime,
tracking, then activation.triggers) runs on 127.0.0.1. Each member sends one `Cart
Abandoned` as a single `/v1/track` call, paced open-loop at `--rate` events/s. The client
notes each POST's wall time and the gateway each message's arrival; after a graceful stop
the warehouse says when each event reached `events` (`loaded_at`) and when each delivery
was planned (`deliveries.scheduled_at`, the decision's instant). In the same run and on the
same clock:

- loader: POST → `events` (the collector's own latency: it batches for up to a second),
- planned: POST → delivery row (the loader, then every hook up to the trigger's plan),
- gateway: POST → the message at the SMS gateway (plus the sender thread and the HTTP call),
- hooks: `events` → delivery row; sender: delivery row → gateway.

Usage: .venv/bin/python benchmarks/triggers.py [--workspace WS] [--members 100] [--rate 10]
Without --workspace it builds the 1,500-person demo first (several minutes). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.realtime_segments import (  # noqa: E402 — the shared serve/measure helpers of the real-time benchmark
    JINGZHUN,
    build_demo,
    free_port,
    health,
    summary,
    wait_for_loader,
    warm_up,
)

CAMPAIGN = {"campaign_id": "cart_bench", "name_zh": "购物车提醒", "name_en": "Cart reminder",
            "template_id": "welcome_back", "channels": ["sms"], "schedule": {"trigger": {"event": "Cart Abandoned"}}}


class Gateway:
    """An SMS gateway on 127.0.0.1 that answers 200 and notes when each delivery arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 — the http.server API
                message = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                gateway.arrived.setdefault(message["delivery_id"], time.time())
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/send"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def prepare(source: Path, folder: Path, members: int, gateway: Gateway) -> tuple[Path, str, list[str]]:
    """Copy the workspace; template, delivery and policy files, a write key, consent, the campaign."""
    from tests.activation.campaign_fixtures import write_definitions
    from tests.conftest import copy_workspace

    from jingzhun.activation import parse_campaign, save_campaign
    from jingzhun.collect.collector import add_source
    from jingzhun.engine import open_engine
    from jingzhun.schema import migrate

    workspace = copy_workspace(source, folder)
    later = datetime.now(ZoneInfo(workspace.config.timezone)) + timedelta(hours=3)  # quiet hours away from now
    policy = {"quiet_hours": {"start": later.strftime("%H:00"), "end": (later + timedelta(hours=1)).strftime("%H:00")}}
    write_definitions(workspace, smtp_port=None, webhook_url=gateway.url, policy=yaml.safe_dump(policy))
    with open_engine(workspace) as engine:
        migrate(engine)
        _, key = add_source(engine, "bench-web", "web")
        rows = engine.query(
            "SELECT DISTINCT m.id_value AS member, m.person_id FROM identities AS m JOIN identities AS p "
            "ON p.person_id = m.person_id AND p.id_type = 'phone' AND REGEXP_MATCHES(p.id_value, '^[+]861[3-9]') "
            f"WHERE m.id_type = 'member_id' ORDER BY m.id_value LIMIT {members}").to_pylist()
        granted = ", ".join(f"('{r['person_id']}', 'marketing', 'granted', TIMESTAMPTZ '2020-01-01')" for r in rows)
        engine.execute(f"INSERT INTO consents (person_id, purpose, status, recorded_at) VALUES {granted}")
        save_campaign(engine, parse_campaign(CAMPAIGN))
    return workspace.root, key, [r["member"] for r in rows]


def serve(root: Path) -> tuple[subprocess.Popen, str]:
    """`jingzhun serve` with its default hooks; returns once the loader has started them."""
    port = free_port()
    server = subprocess.Popen([JINGZHUN, "serve", "--workspace", str(root), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=(root / "serve.stderr").open("wb"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if health(url)["after_load"]:
                return server, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.kill()
    raise RuntimeError((root / "serve.stderr").read_text())


def send(url: str, key: str, members: list[str], rate: float) -> dict[str, float]:
    """One `Cart Abandoned` per member, one per /v1/track call at its scheduled time; returns
    message id → POST wall time."""
    posted: dict[str, float] = {}
    start = time.monotonic() + 0.5
    with httpx.Client(auth=(key, ""), timeout=30) as client:
        for index, member in enumerate(members):
            time.sleep(max(0.0, start + index / rate - time.monotonic()))
            message_id = f"bench-cart-{member}-{uuid.uuid4().hex[:8]}"
            posted[message_id] = time.time()
            answer = client.post(f"{url}/v1/track", json={
                "type": "track", "event": "Cart Abandoned", "userId": member, "messageId": message_id,
                "properties": {"cart_value": 299}})
            assert answer.json() == {"success": True}, answer.text
    return posted


def measured(root: Path, posted: dict[str, float], arrived: dict[str, float]) -> dict[str, object]:
    from jingzhun.core import open_workspace
    from jingzhun.engine import open_engine

    ids = ", ".join(f"'{m}'" for m in posted)
    with open_engine(open_workspace(root), read_only=True) as engine:
        loaded = {r["message_id"]: r["loaded_at"].timestamp() for r in engine.query(
            f"SELECT message_id, loaded_at FROM events WHERE message_id IN ({ids})").to_pylist()}
        planned = engine.query(
            "SELECT d.delivery_id, d.status, d.scheduled_at, rp.record_id AS message_id FROM deliveries AS d "
            "JOIN record_persons AS rp ON rp.person_id = d.person_id AND rp.record_kind = 'event' "
            f"WHERE d.campaign_id = 'cart_bench' AND rp.record_id IN ({ids})").to_pylist()
    row = [p["scheduled_at"].timestamp() - posted[p["message_id"]] for p in planned]
    hooks = [p["scheduled_at"].timestamp() - loaded[p["message_id"]] for p in planned if p["message_id"] in loaded]
    wire = [arrived[p["delivery_id"]] - posted[p["message_id"]] for p in planned if p["delivery_id"] in arrived]
    sender = [arrived[p["delivery_id"]] - p["scheduled_at"].timestamp() for p in planned if p["delivery_id"] in arrived]
    return {"events_sent": len(posted), "events_stored": len(loaded), "deliveries": len(planned),
            "sent": sum(1 for p in planned if p["status"] == "sent"), "at_gateway": len(arrived),
            "loader_post_to_events_s": summary([loaded[m] - posted[m] for m in posted if m in loaded]),
            "trigger_post_to_delivery_row_s": summary(row), "trigger_post_to_gateway_s": summary(wire),
            "hooks_events_to_row_s": summary(hooks), "sender_row_to_gateway_s": summary(sender)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, help="a portrayed demo workspace to copy")
    parser.add_argument("--persons", type=int, default=1500, help="demo size to build without --workspace")
    parser.add_argument("--members", type=int, default=100, help="members abandoning a cart each")
    parser.add_argument("--rate", type=float, default=10.0, help="events per second")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="jz-triggers-"))
    gateway = Gateway()
    try:
        source = args.workspace or build_demo(folder, args.persons)
        root, key, members = prepare(source, folder / "live", args.members, gateway)
        server, url = serve(root)
        try:
            warm_up(url, key)
            posted = send(url, key, members, args.rate)
            wait_for_loader(url, max(posted.values()))
            deadline = time.monotonic() + 120  # the sender thread delivers after the hooks
            while len(gateway.arrived) < len(members) and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(300)
        result = {"workspace": str(source), "members": len(members), "rate_events_per_s": args.rate,
                  "load_average": os.getloadavg(), **measured(root, posted, gateway.arrived)}
        print(json.dumps(result, indent=2, default=str))
    finally:
        gateway.close()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
