"""Placeholder times (1970-01-01, 2099-12-31) parse as valid times: they are quarantined,
not stored decades away from the order they date."""

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson

from jingzhun.collect.importers import import_file
from jingzhun.core import Workspace
from jingzhun.engine import Engine

from .conftest import scalar

ITEMS = [{"product_id": "P1", "quantity": 1, "unit_price": 10}]


def write_orders(path: Path, placed: dict[str, str]) -> Path:
    path.write_bytes(b"\n".join(orjson.dumps({"order_id": order_id, "platform": "web", "member_id": "M" + order_id,
                                              "placed_at": at, "items": ITEMS, "total_amount": 10})
                                for order_id, at in placed.items()))
    return path


def test_placeholder_times_are_quarantined_with_the_window(workspace: Workspace, engine: Engine,
                                                           tmp_path: Path) -> None:
    today = datetime.now(ZoneInfo(workspace.config.timezone)).date()  # the window is in the workspace's days
    tomorrow, after = today + timedelta(days=1), today + timedelta(days=3)
    path = write_orders(tmp_path / "orders.jsonl", {
        "epoch": "1970-01-01T00:00:00", "excel": "1900-01-01 00:00:00", "far": "2099-12-31 00:00:00",
        "soon": f"{after} 00:00:00", "first": "1990-01-01 00:00:00", "real": "2025-05-01 10:00:00",
        "today": f"{tomorrow} 23:59:59"})
    result = import_file(workspace, engine, "online_orders", path)
    assert result.balanced and (result.rows_loaded, result.rows_quarantined) == (3, 4)
    stored = engine.query("SELECT order_id FROM orders ORDER BY order_id").column(0).to_pylist()
    assert stored == ["first", "real", "today"]
    rows = engine.query("SELECT reason_code, field, reason FROM quarantine ORDER BY reason").to_pylist()
    assert {row["reason_code"] for row in rows} == {"implausible_time"}
    assert {row["field"] for row in rows} == {"placed_at"}
    assert all(f"1990-01-01 至 {tomorrow}" in row["reason"] and "not_before" in row["reason"] for row in rows)
    assert scalar(engine, "SELECT min(placed_at) FROM orders").year == 1989  # 1990-01-01 local is 1989 UTC


def test_mapping_can_widen_or_narrow_the_window(workspace: Workspace, engine: Engine, tmp_path: Path) -> None:
    mapping = tmp_path / "orders.yaml"
    mapping.write_text(
        "kind: online_orders\nformat: jsonl\nnatural_key: [order_id]\nfields:\n"
        "  order_id: {required: true}\n  platform: {required: true}\n  member_id: {}\n"
        "  placed_at: {type: timestamp, required: true, not_before: 1960-01-01, not_after: 2024-12-31}\n"
        "  items: {type: json, required: true}\n  total_amount: {type: decimal, min: 0}\n", encoding="utf-8")
    path = write_orders(tmp_path / "orders.jsonl", {"old": "1970-01-01T00:00:00", "late": "2025-01-01 00:00:00",
                                                    "edge": "2024-12-31 23:59:59"})
    result = import_file(workspace, engine, "online_orders", path, mapping=mapping)
    assert (result.rows_loaded, result.rows_quarantined) == (2, 1)
    assert scalar(engine, "SELECT string_agg(order_id, ',' ORDER BY order_id) FROM orders") == "edge,old"
