"""`jingzhun demo load`: events through a real collector over HTTP, files through the importers."""

import json
from pathlib import Path

from jingzhun.cli.demo_load import DEMO_FILES
from jingzhun.core import open_workspace
from jingzhun.engine import open_engine
from tests.cli.test_foundation import run


def _json_lines(root: Path) -> tuple[int, int]:
    good = bad = 0
    for path in (root / "data" / "events").rglob("*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                json.loads(line)
                good += 1
            except json.JSONDecodeError:
                bad += 1
    return good, bad


def test_demo_loads_through_collector_and_importers(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    assert run("demo", "generate", str(root), "--persons", "400", "--seed", "5").returncode == 0
    done = run("demo", "load", str(root))
    assert done.returncode == 0, done.stderr[-3000:]
    good, bad = _json_lines(root)
    with open_engine(open_workspace(root)) as engine:
        events = engine.query("SELECT COUNT(*) AS n, COUNT(DISTINCT message_id) AS ids, "
                              "MIN(timestamp) < TIMESTAMPTZ '2025-01-01 00:00:00+00' AS backfilled FROM events"
                              ).to_pylist()[0]
        quarantined = engine.query("SELECT COUNT(*) AS n FROM quarantine WHERE reason_code = 'not_json'"
                                   ).column("n")[0].as_py()
        rejected_by_collector = engine.query(
            "SELECT COUNT(*) AS n FROM quarantine WHERE import_id IS NULL AND reason_code <> 'not_json'"
        ).column("n")[0].as_py()
        imports = engine.query("SELECT SUM(rows_read) AS r, SUM(rows_loaded + rows_quarantined + rows_duplicate) AS b, "
                               "COUNT(DISTINCT kind) AS kinds FROM imports").to_pylist()[0]
        orders = engine.row_count("orders")
    assert events["n"] == events["ids"] and events["backfilled"]
    assert events["n"] + rejected_by_collector == good  # every message stored once or set aside with a reason
    assert quarantined == bad
    assert imports["r"] == imports["b"] and imports["kinds"] == len(DEMO_FILES)  # every kind of file the demo ships
    assert orders > 0
