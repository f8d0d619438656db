"""Real-time audiences: seconds from an event's POST to its person's membership row.

Claim (issue 5): an audience whose rule depends only on a person's own new events is
updated within seconds of the event reaching the collector.

Method: a copy of a portrayed demo workspace (the 1,500-person test demo by default, or
`--workspace` for another, e.g. the 20,000-person `make demo`) gets a real-time audience
"viewed a cosmetics product at least twice in the last 7 days" and a write key; the real
`jingzhun serve` (its default after-load hooks: identity.realtime, then
segments.realtime) runs on 127.0.0.1. N known members each send two cosmetics
`Product Viewed` events as single `/v1/track` calls (the second views after all the
first ones), paced open-loop at `--rate` events/s. The client notes each POST's wall
time; after a graceful stop the warehouse says when each event reached `events`
(`loaded_at`) and when each member's entry was written (`segment_live_members.changed_at`,
triggered by the second view). So, in the same run and on the same clock:

- loader: POST → `events` (the collector's own latency: it batches for up to a second),
- membership: POST of the qualifying event → membership row,
- hooks: `events` → membership row (attribution plus audience evaluation for the batch).

Then the same events go to a fresh copy served with `--no-realtime`: the loader's latency
without hooks, to show what running them costs loading (they run in the loader, between
batches).

Usage: .venv/bin/python benchmarks/realtime_segments.py [--workspace WS] [--members 150] [--rate 20]
Without --workspace it builds the 1,500-person demo first (several minutes). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
JINGZHUN = str(Path(sys.executable).with_name("jingzhun"))
SEGMENT = "cosmetics_viewers_live"
AUDIENCE = {"segment_id": SEGMENT, "name_zh": "近 7 天两次浏览美妆", "name_en": "Viewed cosmetics twice in 7 days",
            "realtime": True, "rule": {"event": {"name": "Product Viewed", "product": {"category": "cosmetics"},
                                                 "window": {"last": "7d"}, "count": {"op": ">=", "value": 2}}}}


def build_demo(folder: Path, persons: int) -> Path:
    """A portrayed demo workspace: generated, loaded through the collector and importers, pipelined."""
    root = folder / "demo"
    for command in (["demo", "generate", str(root), "--persons", str(persons), "--seed", "11"],
                    ["demo", "load", str(root)], ["pipeline", "--workspace", str(root)]):
        subprocess.run([JINGZHUN, *command], check=True, capture_output=True)
    return root


def prepare(source: Path, folder: Path, members: int) -> tuple[Path, str, list[str], str]:
    """Copy the workspace, add the audience and a write key; pick members and a product."""
    from tests.conftest import copy_workspace

    from jingzhun.collect.collector import add_source
    from jingzhun.engine import open_engine
    from jingzhun.schema import migrate

    workspace = copy_workspace(source, folder)
    (workspace.definitions_dir / "segments").mkdir(parents=True, exist_ok=True)
    (workspace.definitions_dir / "segments" / "live.yaml").write_text(yaml.safe_dump(AUDIENCE, allow_unicode=True))
    with open_engine(workspace) as engine:
        migrate(engine)
        _, key = add_source(engine, "bench-web", "web")
        ids = engine.query("SELECT id_value FROM identities WHERE id_type = 'member_id' "
                           f"ORDER BY id_value LIMIT {members}").column(0).to_pylist()
        product = engine.query("SELECT MIN(product_id) FROM products WHERE category = 'cosmetics'").column(0)[0]
    return workspace.root, key, ids, product.as_py()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def health(url: str) -> dict:
    return httpx.get(f"{url}/health", timeout=10).json()


def serve(root: Path, realtime: bool) -> tuple[subprocess.Popen, str]:
    """`jingzhun serve` (with its default hooks, or `--no-realtime`); returns once it answers
    and the loader has started its hooks."""
    port = free_port()
    flag = "--realtime" if realtime else "--no-realtime"
    server = subprocess.Popen([JINGZHUN, "serve", "--workspace", str(root), "--port", str(port), flag],
                              stdout=subprocess.DEVNULL, stderr=(root / "serve.stderr").open("wb"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if health(url)["after_load"] or not realtime:
                return server, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.kill()
    raise RuntimeError((root / "serve.stderr").read_text())


def send(url: str, key: str, members: list[str], product: str, rate: float) -> dict[str, float]:
    """Two views per member (all first views, then all second views), one per /v1/track call,
    each at its scheduled time; returns message id → POST wall time."""
    posted: dict[str, float] = {}
    plan = [(member, turn) for turn in (1, 2) for member in members]
    start = time.monotonic() + 0.5
    with httpx.Client(auth=(key, ""), timeout=30) as client:
        for index, (member, turn) in enumerate(plan):
            time.sleep(max(0.0, start + index / rate - time.monotonic()))
            message_id = f"bench-{turn}-{member}-{uuid.uuid4().hex[:8]}"
            posted[message_id] = time.time()
            answer = client.post(f"{url}/v1/track", json={
                "type": "track", "event": "Product Viewed", "userId": member, "messageId": message_id,
                "properties": {"product_id": product}})
            assert answer.json() == {"success": True}, answer.text
    return posted


def warm_up(url: str, key: str) -> None:
    """One event from a stranger, loaded (and hooked) before the clock starts: the loader
    process has started, imported its hooks and opened the database."""
    answer = httpx.post(f"{url}/v1/track", auth=(key, ""), timeout=30, json={
        "type": "track", "event": "Page Viewed", "anonymousId": f"warm-up-{uuid.uuid4().hex}"})
    assert answer.json() == {"success": True}, answer.text
    sent = time.time()
    deadline = time.monotonic() + 300
    while health(url)["loaded_events"] < 1:
        assert time.monotonic() < deadline, "the loader did not start"
        time.sleep(0.2)
    wait_for_loader(url, sent)


def wait_for_loader(url: str, since: float, timeout: float = 300) -> None:
    """Until the log is loaded and every hook has handled the events posted up to `since`."""
    from datetime import UTC, datetime

    deadline = time.monotonic() + timeout
    moment = datetime.fromtimestamp(since, UTC)
    while time.monotonic() < deadline:
        state = health(url)
        done = [h["through"] and datetime.fromisoformat(h["through"]) >= moment for h in state["after_load"].values()]
        if not state["pending"] and all(done):
            return
        time.sleep(0.2)
    raise RuntimeError("the loader or its hooks did not catch up")


def run(source: Path, folder: Path, args: argparse.Namespace, realtime: bool) -> dict[str, object]:
    """One serve-and-send run on a fresh copy; what the warehouse says afterwards."""
    root, key, members, product = prepare(source, folder / ("live" if realtime else "plain"), args.members)
    server, url = serve(root, realtime)
    try:
        warm_up(url, key)
        posted = send(url, key, members, product, args.rate)
        wait_for_loader(url, max(posted.values()))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(300)
    return measured(root, posted)


def measured(root: Path, posted: dict[str, float]) -> dict[str, object]:
    from jingzhun.core import open_workspace
    from jingzhun.engine import open_engine

    ids = ", ".join(f"'{m}'" for m in posted)
    with open_engine(open_workspace(root), read_only=True) as engine:
        loaded = {r["message_id"]: r["loaded_at"].timestamp() for r in engine.query(
            f"SELECT message_id, loaded_at FROM events WHERE message_id IN ({ids})").to_pylist()}
        entries = engine.query(f"SELECT person_id, trigger_message_id, changed_at FROM segment_live_members "
                               f"WHERE segment_id = '{SEGMENT}' AND change = 'entered'").to_pylist()
        batches = engine.query(f"SELECT COUNT(DISTINCT loaded_at) AS n FROM events WHERE message_id IN ({ids})")
    loader = [loaded[m] - posted[m] for m in posted if m in loaded]
    member = [e["changed_at"].timestamp() - posted[e["trigger_message_id"]] for e in entries
              if e["trigger_message_id"] in posted]
    hooks = [e["changed_at"].timestamp() - loaded[e["trigger_message_id"]] for e in entries
             if e["trigger_message_id"] in loaded]
    return {"events_sent": len(posted), "events_stored": len(loaded), "batches": batches.column(0)[0].as_py(),
            "members_entered": len(member), "loader_post_to_events_s": summary(loader),
            "membership_post_to_row_s": summary(member), "hooks_events_to_row_s": summary(hooks)}


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(share: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 3)

    return {"p50": at(0.5), "p99": at(0.99), "max": round(ordered[-1], 3), "n": len(ordered)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, help="a portrayed demo workspace to copy")
    parser.add_argument("--persons", type=int, default=1500, help="demo size to build without --workspace")
    parser.add_argument("--members", type=int, default=150, help="members sending two views each")
    parser.add_argument("--rate", type=float, default=20.0, help="events per second")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="jz-realtime-"))
    try:
        source = args.workspace or build_demo(folder, args.persons)
        live = run(source, folder, args, realtime=True)
        plain = run(source, folder, args, realtime=False)
        result = {"workspace": str(source), "members": args.members, "rate_events_per_s": args.rate,
                  "load_average": os.getloadavg(), "realtime": live,
                  "without_hooks": {key: plain[key] for key in ("events_stored", "batches", "loader_post_to_events_s")}}
        print(json.dumps(result, indent=2, default=str))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
