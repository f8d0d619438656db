"""The shared loaded demo holds data in every collected table, and copies are independent."""

from __future__ import annotations

from pathlib import Path

from jingzhun.engine import open_engine
from tests.conftest import copy_workspace


def test_loaded_demo_has_events_orders_and_members(loaded_demo: Path, tmp_path: Path) -> None:
    workspace = copy_workspace(loaded_demo, tmp_path / "copy")
    with open_engine(workspace) as engine:
        counts = {name: engine.row_count(name) for name in ("events", "orders", "order_items", "source_records")}
    assert all(count > 0 for count in counts.values()), counts
    assert (workspace.root / "demo-truth" / "identifiers.parquet").exists()
