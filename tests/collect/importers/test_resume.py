"""An import killed with SIGKILL mid-way resumes where it stopped: nothing lost, nothing twice."""

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from jingzhun.collect.importers.synthetic import write_pos_file
from jingzhun.core import Workspace
from jingzhun.engine import DuckDBEngine

from .conftest import scalar

ROWS = 300_000
CLI = [sys.executable, "-m", "jingzhun"]


def _kill_after(process: subprocess.Popen, rows: int) -> bytes:
    """Read the live progress bar; SIGKILL the import once `rows` rows are committed."""
    seen = bytearray()
    while chunk := process.stdout.read1(4096):  # type: ignore[union-attr]
        seen += chunk
        counts = [int(n.replace(b",", b"")) for n in re.findall(rb"\((\d[\d,]*)\)", seen[-400:])]
        if counts and max(counts) >= rows:
            process.send_signal(signal.SIGKILL)
            break
    process.wait()
    return bytes(seen)


def test_sigkill_then_rerun_loads_every_row_exactly_once(workspace: Workspace, tmp_path: Path) -> None:
    path = write_pos_file(tmp_path / "store_sales-big.csv", ROWS)
    env = {**os.environ, "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "COLUMNS": "160"}
    command = [*CLI, "import", "pos_sales", str(path), "--workspace", str(workspace.root)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    timer = threading.Timer(120, first.kill)
    timer.start()
    _kill_after(first, 60_000)
    timer.cancel()
    assert first.returncode == -signal.SIGKILL

    with DuckDBEngine(workspace.root / "warehouse.duckdb") as engine:
        ledger = engine.query("SELECT status, resume_row, rows_read FROM imports").to_pylist()[0]
    assert ledger["status"] == "running" and 60_000 <= ledger["resume_row"] < ROWS

    second = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "JINGZHUN_LANG": "en"})
    assert second.returncode == 0, second.stderr
    assert f"Resumed an interrupted import at row {ledger['resume_row']:,}" in second.stdout

    with DuckDBEngine(workspace.root / "warehouse.duckdb") as engine:
        final = engine.query("SELECT * FROM imports").to_pylist()[0]
        items = scalar(engine, "SELECT count(*) FROM order_items")
        distinct = scalar(engine, "SELECT count(DISTINCT (order_id, line_no)) FROM order_items")
        aside = scalar(engine, "SELECT count(*) FROM quarantine")
        aside_lines = scalar(engine, "SELECT count(DISTINCT line_no) FROM quarantine")
        orders = scalar(engine, "SELECT count(*) FROM orders")
        receipts = scalar(engine, "SELECT count(DISTINCT order_id) FROM order_items")
    assert final["status"] == "finished" and final["rows_read"] == ROWS == final["resume_row"]
    assert items == distinct == final["rows_loaded"]
    assert aside == aside_lines == final["rows_quarantined"]
    assert items + aside == ROWS and final["rows_duplicate"] == 0
    assert orders == receipts
