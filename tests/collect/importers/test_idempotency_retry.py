"""Re-imports add nothing; quarantined rows load once their problem is fixed."""

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from jingzhun.cli import app
from jingzhun.collect.importers import import_file, readers, retry_quarantine
from jingzhun.core import Workspace
from jingzhun.engine import Engine

from .conftest import reasons, scalar
from .test_encodings import EXPECTED_REASONS, write_pos


def test_same_file_twice_adds_nothing(workspace: Workspace, engine: Engine, tmp_path: Path) -> None:
    path = write_pos(tmp_path, "gbk")
    first = import_file(workspace, engine, "pos_sales", path)
    again = import_file(workspace, engine, "pos_sales", path)
    assert again.status == "already_imported" and again.import_id == first.import_id
    assert scalar(engine, "SELECT count(*) FROM order_items") == 3
    assert scalar(engine, "SELECT count(*) FROM quarantine") == 6
    assert scalar(engine, "SELECT count(*) FROM imports") == 1


def test_overlapping_export_skips_rows_already_loaded(workspace: Workspace, engine: Engine, tmp_path: Path) -> None:
    import_file(workspace, engine, "products", _products(tmp_path / "a.csv", ["SKU-1", "SKU-2"]))
    result = import_file(workspace, engine, "products", _products(tmp_path / "b.csv", ["SKU-2", "SKU-3", "SKU-3"]))
    assert (result.rows_read, result.rows_loaded, result.rows_duplicate) == (3, 1, 2)
    assert scalar(engine, "SELECT count(*) FROM products") == 3


def test_repeats_across_blocks_count_once(workspace: Workspace, engine: Engine, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny blocks push many batches through the pipeline; a key loaded by an earlier batch of
    the same run is a duplicate, for one-column keys and for composite ones."""
    monkeypatch.setattr(readers, "BLOCK_BYTES", 64)
    products = import_file(workspace, engine, "products",
                           _products(tmp_path / "p.csv", ["SKU-1", "SKU-2", "SKU-1", "SKU-3", "SKU-2", "SKU-4"]))
    assert (products.rows_read, products.rows_loaded, products.rows_duplicate) == (6, 4, 2)
    again = import_file(workspace, engine, "products",  # keys loaded before this run: asked of the workspace
                        _products(tmp_path / "q.csv", ["SKU-5", "SKU-4", "SKU-1", "SKU-5", "SKU-6", "SKU-2"]))
    assert (again.rows_read, again.rows_loaded, again.rows_duplicate) == (6, 2, 4)
    counts = tmp_path / "counts.csv"
    sheet = ["location,barcode,counted_at,counted_qty"] + [
        f"{where},6975432100007,2025-03-0{day} 22:30:00,4" for where, day in
        [("SH001", 1), ("SH001", 2), ("BJ001", 1), ("SH001", 1), ("BJ001", 1), ("BJ001", 2)]]
    counts.write_text("\n".join(sheet) + "\n", encoding="utf-8")
    result = import_file(workspace, engine, "stock_counts", counts)
    assert (result.rows_read, result.rows_loaded, result.rows_duplicate) == (6, 4, 2) and result.balanced
    assert scalar(engine, "SELECT count(*) FROM stock_counts") == 4


def _products(path: Path, skus: list[str]) -> Path:
    lines = ["product_id,sku,barcode,name,price,launch_date,is_consumable"]
    lines += [f"P1,{sku},6975432100007,粉底液,459,2025-01-01,是" for sku in skus]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _stores(path: Path, ids: list[str]) -> Path:
    path.write_text("store_id,name,province,city,opened_on\n" + "".join(
        f"{store},门店{store},上海市,上海市,2023-01-01\n" for store in ids), encoding="utf-8")
    return path


def test_retry_loads_rows_after_the_missing_store_is_added(workspace: Workspace, engine: Engine,
                                                           tmp_path: Path) -> None:
    import_file(workspace, engine, "stores", _stores(tmp_path / "s1.csv", ["BJ001"]))
    result = import_file(workspace, engine, "pos_sales", write_pos(tmp_path, "gbk"))
    assert result.rows_loaded == 0 and reasons(engine, "pos_sales")["unknown_reference"] == 4
    assert retry_quarantine(workspace, engine).loaded == 0
    import_file(workspace, engine, "stores", _stores(tmp_path / "s2.csv", ["SH001"]))
    retried = retry_quarantine(workspace, engine, kind="pos_sales")
    assert (retried.loaded, retried.still_open) == (3, 6)
    assert scalar(engine, "SELECT count(*) FROM order_items") == 3
    assert scalar(engine, "SELECT count(*) FROM quarantine WHERE status = 'retried'") == 3
    still = engine.query("SELECT reason_code, count(*) AS n FROM quarantine WHERE status = 'open' GROUP BY 1")
    assert dict(zip(still.column(0).to_pylist(), still.column(1).to_pylist(), strict=True)) == {
        code: n for code, n in EXPECTED_REASONS.items() if code != "unreadable_row"} | {"unreadable_row": 1}
    assert scalar(engine, "SELECT reason_code FROM quarantine WHERE line_no = 6") == "bad_phone"
    ledger = engine.query("SELECT * FROM imports WHERE kind = 'pos_sales'").to_pylist()[0]
    assert (ledger["rows_loaded"], ledger["rows_quarantined"]) == (3, 6)
    assert retry_quarantine(workspace, engine).loaded == 0  # nothing loads twice


def test_parquet_source(workspace: Workspace, engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "stores.parquet"
    pq.write_table(pa.table({"store_id": ["SH001", None, "BJ001"], "name": ["上海店", "无编号", "北京店"],
                             "opened_on": pa.array([None, None, None], pa.date32())}), path)
    result = import_file(workspace, engine, "stores", path)
    assert (result.rows_loaded, result.rows_quarantined) == (2, 1)
    assert reasons(engine, "stores") == {"missing_required": 1}


def test_cli_import_and_quarantine_commands(workspace: Workspace, tmp_path: Path) -> None:
    runner = CliRunner()
    path = write_pos(tmp_path, "gbk")
    done = runner.invoke(app, ["import", "pos_sales", str(path), "--workspace", str(workspace.root)])
    assert done.exit_code == 0, done.output
    assert "9" in done.output and "3" in done.output and "6" in done.output
    listed = runner.invoke(app, ["quarantine", "list", "--kind", "pos_sales", "--workspace", str(workspace.root)])
    assert listed.exit_code == 0 and "会员手机号" in listed.output
    first_id = re.search(r"\b[0-9a-f]{12}\b", listed.output).group(0)
    shown = runner.invoke(app, ["quarantine", "show", first_id, "--workspace", str(workspace.root)])
    assert shown.exit_code == 0, shown.output
    assert "reason_code" in shown.output and "门店编号" in shown.output and "line_no" in shown.output
    retried = runner.invoke(app, ["quarantine", "retry", "--workspace", str(workspace.root)])
    assert retried.exit_code == 0, retried.output


def test_salted_hash_workspace_stores_no_plain_phones(tmp_path: Path, demo: Path) -> None:
    import hashlib

    import orjson
    from python_calamine import CalamineWorkbook

    from jingzhun.collect.importers.convert import to_phone
    from jingzhun.core import WorkspaceConfig, init_workspace
    from jingzhun.core.config import PiiPolicy
    from jingzhun.engine import DuckDBEngine

    hashed = init_workspace(tmp_path / "hashed", WorkspaceConfig(name="h", pii=PiiPolicy(mode="salted_hash")))
    first = CalamineWorkbook.from_path(str(demo / "crm/members.xlsx")).get_sheet_by_index(0).to_python()[1]
    e164 = to_phone(pa.array([str(first[2])])).values[0].as_py()
    with DuckDBEngine(hashed.root / "warehouse.duckdb") as engine:
        import_file(hashed, engine, "crm_members", demo / "crm/members.xlsx")
        stored = engine.query(f"SELECT identifiers FROM source_records WHERE record_id = 'member:{first[0]}'")
    identifiers = orjson.loads(stored.column(0)[0].as_py())
    assert identifiers["phone"] == hashlib.sha256(hashed.pii_salt() + e164.encode()).hexdigest()
    assert identifiers["member_id"] == first[0]


def test_missing_required_column_is_refused_and_nothing_is_loaded(workspace: Workspace, engine: Engine,
                                                                 tmp_path: Path) -> None:
    """The error is raised by the checking thread and reaches the caller unchanged."""
    from jingzhun.core.errors import ConfigError

    path = tmp_path / "stores.csv"
    path.write_text("shop,name\nSH001,上海店\n", encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        import_file(workspace, engine, "stores", path)
    assert refused.value.field == "fields.store_id.source" and "shop" in refused.value.fix
    assert scalar(engine, "SELECT count(*) FROM stores") == 0
