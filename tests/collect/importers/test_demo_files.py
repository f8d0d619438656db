"""The demo's real exports load with the right counts, and every planted defect is caught.

Expected counts are recovered from the raw files with simple per-row rules written
independently of the importer (as `docs/demo-data.md` describes them).
"""

import csv
import re
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from python_calamine import CalamineWorkbook

from jingzhun.collect.importers import import_file
from jingzhun.core import Workspace
from jingzhun.engine import Engine

from .conftest import reasons, scalar

PHONE = re.compile(r"^(1\d{10}|1\d{2}\*{4}\d{4})$")


def phone_ok(text: str) -> bool:
    compact = re.sub(r"[\s-]", "", text)
    compact = re.sub(r"^(\+86|86)(?=1\d{10}$)", "", compact)
    return not text or bool(PHONE.match(compact))


def ean_ok(code: str) -> bool:
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(code[:12]))
    return len(code) == 13 and code.isdigit() and (10 - total % 10) % 10 == int(code[12])


def time_ok(text: str) -> bool:
    try:
        datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return False
    return True


def pos_defects(files: list[Path]) -> dict[str, int]:
    counts = {"bad_phone": 0, "below_min": 0, "bad_check_digit": 0, "bad_timestamp": 0}
    for path in files:
        with open(path, encoding="gbk", newline="") as source:
            for row in csv.DictReader(source):
                if not phone_ok(row["会员手机号"]):
                    counts["bad_phone"] += 1
                elif not ean_ok(row["商品条码"]):
                    counts["bad_check_digit"] += 1
                elif int(row["数量"]) < 0:
                    counts["below_min"] += 1
                elif not time_ok(row["交易时间"]):
                    counts["bad_timestamp"] += 1
    return {code: n for code, n in counts.items() if n}


def test_pos_sales_months(workspace: Workspace, engine: Engine, demo: Path) -> None:
    import_file(workspace, engine, "stores", demo / "catalog/stores.csv")
    import_file(workspace, engine, "products", demo / "catalog/products.csv")
    files = sorted((demo / "pos").glob("*.csv"))
    results = [import_file(workspace, engine, "pos_sales", path) for path in files]
    assert all(result.balanced and result.encoding == "gbk" for result in results)
    lines = sum(result.rows_read for result in results)
    found = reasons(engine, "pos_sales")
    siblings = found.pop("group_rejected", 0)
    assert found == pos_defects(files)
    loaded = sum(result.rows_loaded for result in results)
    assert loaded == lines - sum(found.values()) - siblings
    assert scalar(engine, "SELECT count(*) FROM order_items") == loaded
    assert scalar(engine, "SELECT count(*) FROM orders WHERE channel = 'offline' AND store_id IS NULL") == 0
    assert scalar(engine, "SELECT count(*) FROM orders o WHERE net_amount <> "
                          "(SELECT sum(amount) FROM order_items i WHERE i.order_id = o.order_id)") == 0


def crm_defects(path: Path) -> tuple[int, int]:
    rows = CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0).to_python()[1:]
    phones = sum(1 for row in rows if not phone_ok(str(row[2])))
    dates = sum(1 for row in rows if phone_ok(str(row[2])) and isinstance(row[4], str) and row[4])
    return phones, dates


def test_crm_members_excel(workspace: Workspace, engine: Engine, demo: Path) -> None:
    path = demo / "crm/members.xlsx"
    result = import_file(workspace, engine, "crm_members", path)
    bad_phones, bad_dates = crm_defects(path)
    assert result.balanced and result.rows_quarantined == bad_phones + bad_dates
    assert reasons(engine, "crm_members") == {k: v for k, v in
                                              {"bad_phone": bad_phones, "bad_date": bad_dates}.items() if v}
    record = engine.query("SELECT identifiers, attributes FROM source_records WHERE kind = 'member' "
                          "AND identifiers LIKE '%phone%' LIMIT 1").to_pylist()[0]
    identifiers, attributes = orjson.loads(record["identifiers"]), orjson.loads(record["attributes"])
    assert re.match(r"^\+861[3-9]\d{9}$", identifiers["phone"])
    assert identifiers["member_id"].startswith("JZ") and attributes["gender"] in ("M", "F")
    assert scalar(engine, "SELECT count(*) FROM source_records") == result.rows_loaded


def test_online_orders_jsonl(workspace: Workspace, engine: Engine, demo: Path) -> None:
    expected_bad = 0
    items = 0
    results = []
    for path in sorted((demo / "orders").glob("*.jsonl")):
        for line in path.read_bytes().splitlines():
            order = orjson.loads(line)
            broken = any(item["quantity"] < 0 for item in order["items"]) or not time_ok(
                str(order.get("placed_at", "")).replace("T", " ")[:19]) or not order.get("placed_at")
            expected_bad += broken
            items += 0 if broken else len(order["items"])
        results.append(import_file(workspace, engine, "online_orders", path))
    assert all(result.balanced for result in results)
    assert sum(result.rows_quarantined for result in results) == expected_bad
    assert scalar(engine, "SELECT count(*) FROM order_items") == items
    masked = scalar(engine, "SELECT count(*) FROM orders WHERE customer_ref_type = 'tmall_open_uid'")
    assert masked > 0
    assert scalar(engine, "SELECT count(*) FROM orders WHERE abs(net_amount - (gross_amount - discount_amount)) > 0.05") == 0


def test_catalogue_inventory_and_ads(workspace: Workspace, engine: Engine, demo: Path) -> None:
    expected = {"stores": ("catalog/stores.csv", 0), "products": ("catalog/products.csv", 0),
                "stock_counts": ("inventory/stock_counts.csv", None), "ad_spend": ("ads/ad_spend.csv", None)}
    for kind, (name, bad) in expected.items():
        path = demo / name
        result = import_file(workspace, engine, kind, path)
        assert result.balanced, kind
        if bad is not None:
            assert result.rows_quarantined == bad, kind
        assert scalar(engine, f"SELECT count(*) FROM {kind}") == result.rows_loaded
    assert reasons(engine, "ad_spend") == {"not_a_number": scalar(engine, "SELECT rows_quarantined FROM imports "
                                                                         "WHERE kind = 'ad_spend'")}
    assert set(reasons(engine, "stock_counts")) == {"bad_check_digit"}


MARKETING = [
    ("industry_benchmark", "benchmarks/industry_benchmark.csv"),
    ("competitor_search", "benchmarks/competitor_search.csv"),
    ("survey_responses", "surveys/survey_responses.csv"),
    ("wechat_follows", "social/wechat_follows.csv"),
    ("douyin_interactions", "social/douyin_interactions.csv"),
    ("weibo_interactions", "social/weibo_interactions.csv"),
    ("livestream_views", "social/livestream_views.csv"),
    ("ad_spend", "ads/ad_spend.csv"),
    ("inventory_movements", "inventory/inventory_movements.csv"),
    ("stock_counts", "inventory/stock_counts.csv"),
]


@pytest.mark.parametrize(("kind", "name"), MARKETING)
def test_marketing_files_quarantine_exactly_the_planted_rows(workspace: Workspace, engine: Engine, demo: Path,
                                                            kind: str, name: str) -> None:
    truth = orjson.loads((demo.parent / "demo-truth/patterns.json").read_bytes())["malformed"]["counts"][kind]
    result = import_file(workspace, engine, kind, demo / name)
    assert result.balanced
    assert (result.rows_read, result.rows_quarantined) == (truth["rows"], truth["malformed"])
    assert sum(reasons(engine, kind).values()) == truth["malformed"]
