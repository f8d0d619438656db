"""`jingzhun demo load DIR`: load a generated demo the way real data arrives.

Events go over HTTP to a running collector (`/v1/import`, which keeps the
historical timestamps), exactly as an SDK backfill would send them; files go
through the importers with their built-in mappings. Nothing is inserted directly.
"""

from __future__ import annotations

import base64
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import orjson
import pyarrow as pa
import typer
from rich.table import Table
from sqlglot import exp

from jingzhun.cli.common import console, language_of, progress_bar
from jingzhun.cli.foundation import demo_app
from jingzhun.collect import quarantine_rows
from jingzhun.collect.collector import add_source, list_sources
from jingzhun.collect.importers import import_file
from jingzhun.core import JingzhunError, open_workspace
from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine, open_engine

# Import order matters: stores and products first, so references resolve.
DEMO_FILES: tuple[tuple[str, str], ...] = (
    ("stores", "catalog/stores.csv"), ("products", "catalog/products.csv"),
    ("crm_members", "crm/members.xlsx"), ("online_orders", "orders/*.jsonl"),
    ("pos_sales", "pos/*.csv"), ("inventory_movements", "inventory/inventory_movements.csv"),
    ("stock_counts", "inventory/stock_counts.csv"), ("ad_spend", "ads/ad_spend.csv"),
    ("industry_benchmark", "benchmarks/industry_benchmark.csv"),
    ("competitor_search", "benchmarks/competitor_search.csv"),
    ("survey_responses", "surveys/survey_responses.csv"),
    ("wechat_follows", "social/wechat_follows.csv"), ("douyin_interactions", "social/douyin_interactions.csv"),
    ("weibo_interactions", "social/weibo_interactions.csv"), ("livestream_views", "social/livestream_views.csv"),
    ("message_history", "campaigns/message_history.csv"),
)
CHANNELS = ("web", "app", "miniprogram")
BATCH_BYTES = 400_000  # under Segment's 500 KB batch limit


@demo_app.command("load")
def demo_load(
    directory: Annotated[Path, typer.Argument(help="The demo workspace (after `demo generate`).")],
    port: Annotated[int, typer.Option(help="Port for the temporary collector.")] = 0,
) -> None:
    """Send the demo's events to the collector and import its files. 加载演示数据。"""
    workspace = open_workspace(directory)
    language = language_of(workspace)
    sources = _demo_sources(workspace)
    sent = _send_events(workspace, sources, port or _free_port())
    table = Table("source", "file(s)", "read", "loaded", "quarantined", "duplicate")
    for channel, counts in sent.items():
        table.add_row(f"{channel}_events", "HTTP /v1/import", *(f"{n:,}" for n in counts))
    with open_engine(workspace) as engine:
        for kind, pattern in DEMO_FILES:
            for path in sorted((workspace.root / "data").glob(pattern)):
                result = import_file(workspace, engine, kind, path)
                table.add_row(kind, str(path.relative_to(workspace.root)), f"{result.rows_read:,}",
                              f"{result.rows_loaded:,}", f"{result.rows_quarantined:,}",
                              f"{result.rows_duplicate:,}")
    console.print(table)
    console.print("演示数据已加载" if language == "zh" else "Demo data loaded")


def _demo_sources(workspace: Workspace) -> dict[str, tuple[str, str]]:
    """One collector source per digital channel: its source_id and write key."""
    suffix = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    with open_engine(workspace) as engine:
        taken = set(list_sources(engine).column("name").to_pylist())
        sources = {channel: add_source(engine, name if name not in taken else f"{name}-{suffix}", channel)
                   for channel in CHANNELS for name in [f"demo-{channel}"]}
    return {channel: (source.source_id, key) for channel, (source, key) in sources.items()}


def _send_events(workspace: Workspace, sources: dict[str, tuple[str, str]],
                 port: int) -> dict[str, tuple[int, ...]]:
    """Run a collector, post every event file to it, wait until all are loaded, and count
    per channel what the warehouse holds: the collector quarantines bad messages in its
    loader, so the HTTP answers alone cannot say how many were set aside."""
    server = subprocess.Popen([sys.executable, "-m", "jingzhun", "serve", "-w", str(workspace.root),
                               "--port", str(port)], stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _get(f"{base}/health") is not None, 60, "the collector did not start")
        unreadable: list[tuple[Path, int, str]] = []
        sent = {channel: _send_channel(workspace, base, channel, sources[channel][1], unreadable)
                for channel in CHANNELS}
        _wait(lambda: (_get(f"{base}/health") or {}).get("pending") is False, 600,
              "the collector's loader did not finish")
    finally:
        server.terminate()
        server.wait(timeout=60)
    _quarantine_unreadable(workspace, unreadable)  # once the collector has released the database
    with open_engine(workspace, read_only=True) as engine:
        return {channel: _stored(engine, sources[channel][0], read, unreadable_lines)
                for channel, (read, unreadable_lines) in sent.items()}


def _stored(engine: Engine, source_id: str, read: int, unreadable: int) -> tuple[int, ...]:
    """read, loaded, quarantined, duplicate for one channel's source, from the warehouse."""
    source = exp.convert(source_id)
    loaded = engine.query(exp.select("count(*)").from_("events")
                          .where(exp.column("source_id").eq(source))).column(0)[0].as_py()
    rejected = engine.query(exp.select("count(*)").from_("quarantine")
                            .where(exp.column("source_id").eq(source))).column(0)[0].as_py()
    return read, loaded, rejected + unreadable, read - loaded - rejected - unreadable


def _send_channel(workspace: Workspace, base: str, channel: str, key: str,
                  unreadable_lines: list[tuple[Path, int, str]]) -> tuple[int, int]:
    """Post one channel's event files; return lines read and lines that are not JSON."""
    files = sorted((workspace.root / "data" / "events" / channel).glob("*.jsonl"))
    read = unreadable_count = 0
    with progress_bar() as progress:
        task = progress.add_task(f"{channel} → {base}/v1/import", total=len(files))
        for path in files:
            for batch, unreadable in _batches(path):
                read += len(batch) + len(unreadable)
                if batch:
                    _post(f"{base}/v1/import", key, batch)
                unreadable_count += len(unreadable)
                unreadable_lines += [(path, number, text) for number, text in unreadable]
            progress.advance(task)
    return read, unreadable_count


def _batches(path: Path) -> Iterator[tuple[list[dict], list[tuple[int, str]]]]:
    """Messages in batches under the size limit, and the lines that are not JSON."""
    batch: list[dict] = []
    unreadable: list[tuple[int, str]] = []
    size = 0
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            try:
                batch.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                unreadable.append((number, line.decode("utf-8", "replace")))
                continue
            size += len(line)
            if size >= BATCH_BYTES:
                yield batch, unreadable
                batch, unreadable, size = [], [], 0
    yield batch, unreadable


def _quarantine_unreadable(workspace: Workspace, lines: list[tuple[Path, int, str]]) -> int:
    """A line an SDK could never have sent is kept in quarantine, not dropped."""
    if not lines:
        return 0
    with open_engine(workspace) as engine:
        return quarantine_rows(engine, pa.table({
            "reason_code": ["not_json"] * len(lines),
            "reason": ["line is not a JSON message / 该行不是 JSON 消息"] * len(lines),
            "kind": ["events"] * len(lines),
            "source_file": [str(path.relative_to(workspace.root)) for path, _, _ in lines],
            "line_no": pa.array([number for _, number, _ in lines], pa.int64()),
            "payload": [text for _, _, text in lines],
        }))


def _post(url: str, key: str, batch: list[dict]) -> dict:
    auth = base64.b64encode(f"{key}:".encode()).decode()
    request = urllib.request.Request(url, data=orjson.dumps({"batch": batch}), method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Basic {auth}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return orjson.loads(response.read())


def _get(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return orjson.loads(response.read())
    except OSError:
        return None


def _wait(ready, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            raise JingzhunError(f"{what} within {seconds:.0f} s.", fix="see the collector's output; rerun")
        time.sleep(0.2)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
