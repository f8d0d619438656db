"""`jingzhun report NAME` on a real workspace with a small stock ledger."""

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from jingzhun.core import WorkspaceConfig, init_workspace
from jingzhun.engine import open_engine
from jingzhun.schema import migrate
from tests.cli.test_foundation import run


def _workspace_with_stock(tmp_path: Path) -> Path:
    workspace = init_workspace(tmp_path / "ws", WorkspaceConfig(name="report"))
    at = pa.array([datetime(2026, 10, 1, 2, tzinfo=UTC), datetime(2026, 10, 2, 2, tzinfo=UTC)], pa.timestamp("us", tz="UTC"))
    with open_engine(workspace) as engine:
        migrate(engine)
        engine.write_table("inventory_movements", pa.table({
            "movement_id": ["m1", "m2"], "occurred_at": at, "location_id": ["SH001", "SH001"],
            "barcode": ["6970000000014", "6970000000014"], "sku": ["SKU-1", "SKU-1"],
            "product_id": ["P1", "P1"], "movement_type": ["in", "out"], "quantity": pa.array([10, 3], pa.int32()),
        }))
    return workspace.root


def test_stock_report_prints_rows_and_its_sql(tmp_path: Path) -> None:
    root = _workspace_with_stock(tmp_path)
    done = run("report", "stock", "-w", str(root), "--format", "csv", "--sql")
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.splitlines()[:2]
    assert "on_hand" in header and ",7," in row
    assert "SELECT" in done.stdout  # the query behind the numbers


def test_unknown_report_is_refused_and_list_names_the_choices(tmp_path: Path) -> None:
    done = run("report", "nope", "-w", str(_workspace_with_stock(tmp_path)))
    assert done.returncode == 2 and "nope" in done.stderr
    listed = run("report", "list")
    assert listed.returncode == 0 and "stockouts" in listed.stdout and "inventory-checks" in listed.stdout
