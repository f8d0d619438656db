"""The same POS export in every encoding a Chinese retailer sends us loads the same rows."""

from pathlib import Path

import orjson
import pytest

from jingzhun.collect.importers import detect_encoding, import_file, retry_quarantine
from jingzhun.core import Workspace
from jingzhun.engine import Engine

from .conftest import reasons, scalar

HEADER = "门店编号,门店名称,小票号,交易时间,会员卡号,会员手机号,商品条码,商品名称,数量,单价,折扣,实收金额,支付方式,收银员"
ROWS = [
    "SH001,精准上海店,SH0012503080001,2025-03-08 14:23:05,JZ100000001,138-1234-5678,6975432100007,{name},1,459.00,0.95,436.05,支付宝,王雨(1040)",
    "SH001,精准上海店,SH0012503080001,2025-03-08 14:23:05,JZ100000001,138-1234-5678,6975432100076,面膜 5片装,2,79.00,0.95,150.10,支付宝,王雨(1040)",
    "SH001,精准上海店,SH0012503080002,2025-03-08 15:00:00,,138****5678,6975432100007,{name},1,459.00,1,459.00,现金,王雨(1040)",
    "SH001,精准上海店,SH0012503080003,不详,,,6975432100007,{name},1,459.00,1,459.00,现金,王雨(1040)",
    "SH001,精准上海店,SH0012503080004,2025-03-08 16:00:00,,1381234567,6975432100007,{name},1,459.00,1,459.00,现金,王雨(1040)",
    "SH001,精准上海店,SH0012503080005,2025-03-08 16:10:00,,,6975432100008,{name},1,459.00,1,459.00,现金,王雨(1040)",
    "SH001,精准上海店,SH0012503080006,2025-03-08 16:20:00,,,6975432100007,{name},-1,459.00,1,-459.00,现金,王雨(1040)",
    "SH001,精准上海店,SH0012503080006,2025-03-08 16:20:00,,,6975432100076,面膜 5片装,1,79.00,1,79.00,现金,王雨(1040)",
    "SH001,精准上海店,SH0012503080007,2025-03-08 16:30:00,,,6975432100007,{name},1,459.00",
]
EXPECTED_REASONS = {"bad_timestamp": 1, "bad_phone": 1, "bad_check_digit": 1, "below_min": 1,
                    "group_rejected": 1, "unreadable_row": 1}


def write_pos(folder: Path, encoding: str, name: str = "玉肌水光润泽粉底液 #01象牙白") -> Path:
    path = folder / f"pos-{encoding}.csv"
    text = "\r\n".join([HEADER, *(row.format(name=name) for row in ROWS)]) + "\r\n"
    path.write_bytes(text.encode(encoding))
    return path


@pytest.mark.parametrize(("encoding", "detected", "name"), [
    ("utf-8", "utf-8", "玉肌水光润泽粉底液 #01象牙白"),
    ("utf-8-sig", "utf-8-sig", "玉肌水光润泽粉底液 #01象牙白"),
    ("gbk", "gbk", "玉肌水光润泽粉底液 #01象牙白"),
    ("gb18030", "gb18030", "𠮷野家联名粉底液 #01"),  # 𠮷 exists only in GB18030, not GBK
])
def test_each_encoding_loads_the_same_rows(workspace: Workspace, engine: Engine, tmp_path: Path,
                                           encoding: str, detected: str, name: str) -> None:
    path = write_pos(tmp_path, encoding, name)
    assert detect_encoding(path) == detected
    result = import_file(workspace, engine, "pos_sales", path)
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined, result.rows_duplicate) == (9, 3, 6, 0)
    assert result.balanced
    assert reasons(engine, "pos_sales") == EXPECTED_REASONS
    assert scalar(engine, "SELECT count(*) FROM orders") == 2
    assert scalar(engine, "SELECT customer_ref_type FROM orders WHERE order_id = 'SH0012503080002'") == "phone_masked"
    buyers = {row["order_id"]: row["customer_identifiers"]
              for row in engine.query("SELECT order_id, customer_identifiers FROM orders").to_pylist()}
    assert orjson.loads(buyers["SH0012503080001"]) == {"member_id": "JZ100000001", "phone": "+8613812345678"}
    assert orjson.loads(buyers["SH0012503080002"]) == {"phone_masked": "138****5678"}
    assert scalar(engine, "SELECT CAST(net_amount AS VARCHAR) FROM orders WHERE order_id = 'SH0012503080001'") == "586.15"
    assert scalar(engine, "SELECT strftime(placed_at, '%Y-%m-%d %H:%M') FROM orders "
                          "WHERE order_id = 'SH0012503080001'") == "2025-03-08 06:23"  # stored in UTC
    stored = engine.query("SELECT rows_read, rows_loaded, rows_quarantined, rows_duplicate, resume_row, status "
                          "FROM imports").to_pylist()
    assert stored == [{"rows_read": 9, "rows_loaded": 3, "rows_quarantined": 6, "rows_duplicate": 0,
                       "resume_row": 9, "status": "finished"}]


def test_quarantine_keeps_line_field_reason_and_raw_row(workspace: Workspace, engine: Engine, tmp_path: Path) -> None:
    import_file(workspace, engine, "pos_sales", write_pos(tmp_path, "gbk"))
    row = engine.query("SELECT * FROM quarantine WHERE reason_code = 'bad_phone'").to_pylist()[0]
    assert (row["line_no"], row["field"]) == (6, "会员手机号")
    assert "1381234567" in row["reason"] and row["source_file"].endswith("pos-gbk.csv")
    assert '"小票号":"SH0012503080004"' in row["payload"]
    sibling = engine.query("SELECT line_no, reason FROM quarantine WHERE reason_code = 'group_rejected'").to_pylist()
    assert sibling[0]["line_no"] == 9 and "SH0012503080006" in sibling[0]["reason"]


def test_encoding_override_wins(workspace: Workspace, engine: Engine, tmp_path: Path) -> None:
    path = write_pos(tmp_path, "gbk")
    result = import_file(workspace, engine, "pos_sales", path, encoding="GB18030")
    assert result.encoding == "gb18030" and result.rows_loaded == 3


def test_bytes_the_encoding_does_not_know_are_refused_naming_the_column(workspace: Workspace, engine: Engine,
                                                                        tmp_path: Path) -> None:
    """One cell that is not GBK sets aside its row (and its receipt), with the column named."""
    path = write_pos(tmp_path, "gbk")
    lines = path.read_bytes().split(b"\r\n")
    lines[1] = lines[1].replace("精准上海店".encode("gbk"), b"\xff\xfe\x80")
    path.write_bytes(b"\r\n".join(lines))
    result = import_file(workspace, engine, "pos_sales", path, encoding="gbk")  # as if past the sniffed 1 MB
    assert result.balanced and result.rows_read == 9
    row = engine.query("SELECT field, line_no, reason FROM quarantine WHERE reason_code = 'bad_encoding'").to_pylist()
    assert [(r["field"], r["line_no"]) for r in row] == [("门店名称", 2)] and "\ufffd" in row[0]["reason"]
    assert reasons(engine, "pos_sales")["group_rejected"] == 2  # its receipt's other line waits with it
    assert retry_quarantine(workspace, engine).loaded == 0  # still garbled until fixed: never loads
