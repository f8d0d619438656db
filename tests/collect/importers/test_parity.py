"""The same files imported on DuckDB and on Spark give the same tables."""

from pathlib import Path

import pytest

from jingzhun.collect.importers import import_file
from jingzhun.core import Workspace
from jingzhun.engine.parity import compare_tables

from .test_encodings import write_pos

IGNORED = {"imported_at", "updated_at", "quarantine_id", "received_at", "import_id", "source_file"}


@pytest.mark.spark
def test_imports_match_on_duckdb_and_spark(workspace: Workspace, both_engines, tmp_path: Path, demo: Path) -> None:
    duck, spark = both_engines
    files = [("stores", demo / "catalog/stores.csv"), ("products", demo / "catalog/products.csv"),
             ("pos_sales", write_pos(tmp_path, "gbk")), ("crm_members", demo / "crm/members.xlsx"),
             ("online_orders", sorted((demo / "orders").glob("*.jsonl"))[0])]
    for engine in (duck, spark):
        for kind, path in files:
            result = import_file(workspace, engine, kind, path)
            assert result.balanced
        again = import_file(workspace, engine, "pos_sales", files[2][1])
        assert again.status == "already_imported"
    for table in ("stores", "products", "orders", "order_items", "source_records", "quarantine"):
        left, right = duck.read_table(table), spark.read_table(table)
        keep = [name for name in left.column_names if name not in IGNORED]
        report = compare_tables(table, left.select(keep), right.select(keep))
        assert report.equal, report
