import pyarrow as pa
import pytest

from jingzhun.collect import list_quarantine, quarantine_rows, reasons_summary
from jingzhun.engine import Engine
from jingzhun.schema import migrate


def test_rejected_rows_are_kept_with_reason_and_origin(engine: Engine) -> None:
    migrate(engine)
    written = quarantine_rows(engine, pa.table({
        "reason_code": ["bad_phone", "negative_quantity", "bad_phone"],
        "reason": ["手机号 1381234567 只有 10 位", "数量 -2 不能为负", "phone has letters"],
        "field": ["会员手机号", "数量", "会员手机号"],
        "source_file": ["pos/store_sales-2025-03.csv"] * 3,
        "line_no": pa.array([17, 40, 41], pa.int64()),
        "payload": ["row 17", "row 40", "row 41"],
    }))
    assert written == 3
    rows = list_quarantine(engine)
    assert rows.num_rows == 3
    assert set(rows.column("status").to_pylist()) == {"open"}
    assert sorted(rows.column("line_no").to_pylist()) == [17, 40, 41]
    assert reasons_summary(engine) == {"bad_phone": 2, "negative_quantity": 1}


def test_reason_is_required(engine: Engine) -> None:
    migrate(engine)
    with pytest.raises(ValueError, match="reason"):
        quarantine_rows(engine, pa.table({"reason_code": ["x"]}))
    assert quarantine_rows(engine, pa.table({"reason_code": pa.array([], pa.string()),
                                             "reason": pa.array([], pa.string())})) == 0
