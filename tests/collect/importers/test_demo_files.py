"""The demo's real exports load with the right counts, and every planted defect is caught.

Expected counts are recovered from the raw files with simple per-row rules written
independently of the importer (as `docs/demo-data.md` describes them).
"""

import csv
import re
from datetime import datetime, timedelta
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
    """A real local time in the default plausible window (1990 to tomorrow)."""
    try:
        parsed = datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return False
    return parsed.year >= 1990 and parsed <= datetime.now() + timedelta(days=1)


def catalogue_names(demo: Path) -> set[str]:
    with open(demo / "catalog/products.csv", encoding="utf-8", newline="") as source:
        return {row["name"] for row in csv.DictReader(source)}


def pos_defects(files: list[Path], names: set[str]) -> dict[str, int]:
    """Planted defects per reason; a product name missing from the catalogue is the planted mojibake."""
    counts = {"bad_phone": 0, "below_min": 0, "bad_check_digit": 0, "bad_timestamp": 0, "mojibake": 0}
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
                elif row["商品名称"] not in names:
                    counts["mojibake"] += 1
    return {code: n for code, n in counts.items() if n}


def planted(demo: Path, kind: str) -> int:
    """Malformed rows the generator planted in `kind`'s files (demo-truth/patterns.json)."""
    return orjson.loads((demo.parent / "demo-truth/patterns.json").read_bytes())["malformed"]["counts"][kind]["malformed"]


def test_pos_sales_months(workspace: Workspace, engine: Engine, demo: Path) -> None:
    import_file(workspace, engine, "stores", demo / "catalog/stores.csv")
    import_file(workspace, engine, "products", demo / "catalog/products.csv")
    files = sorted((demo / "pos").glob("*.csv"))
    results = [import_file(workspace, engine, "pos_sales", path) for path in files]
    assert all(result.balanced and result.encoding == "gbk" for result in results)
    lines = sum(result.rows_read for result in results)
    found = reasons(engine, "pos_sales")
    siblings = found.pop("group_rejected", 0)
    assert found == pos_defects(files, catalogue_names(demo))
    assert found["mojibake"] > 0 and sum(found.values()) == planted(demo, "pos_sales")
    loaded = sum(result.rows_loaded for result in results)
    assert loaded == lines - sum(found.values()) - siblings
    assert scalar(engine, "SELECT count(*) FROM order_items") == loaded
    assert scalar(engine, "SELECT count(*) FROM orders WHERE channel = 'offline' AND store_id IS NULL") == 0
    assert scalar(engine, "SELECT count(*) FROM orders o WHERE net_amount <> "
                          "(SELECT sum(amount) FROM order_items i WHERE i.order_id = o.order_id)") == 0
    assert scalar(engine, "SELECT count(*) FROM order_items WHERE product_id IS NULL OR sku IS NULL") == 0
    assert scalar(engine, "SELECT count(*) FROM order_items i JOIN products p USING (barcode) "
                          "WHERE i.product_id <> p.product_id OR i.sku <> p.sku") == 0


def test_pos_mojibake_reason_names_the_field_and_the_likely_text(workspace: Workspace, engine: Engine,
                                                                  demo: Path) -> None:
    import_file(workspace, engine, "stores", demo / "catalog/stores.csv")
    import_file(workspace, engine, "products", demo / "catalog/products.csv")
    names = catalogue_names(demo)
    for path in sorted((demo / "pos").glob("*.csv")):
        import_file(workspace, engine, "pos_sales", path)
    rows = engine.query("SELECT field, reason, payload FROM quarantine WHERE reason_code = 'mojibake'").to_pylist()
    assert rows and {row["field"] for row in rows} == {"商品名称"}
    for row in rows:
        garbled = orjson.loads(row["payload"])["商品名称"]
        likely = re.search(r"“(.*)”", row["reason"]).group(1)
        assert garbled in row["reason"] and garbled not in names
        # the wrong decode dropped a byte or two at most: the repair is the catalogue name, up to its end
        assert any(name.startswith(likely.rstrip("\ufffd")[:4]) for name in names), likely


def crm_defects(path: Path) -> dict[str, int]:
    """Planted defects per reason; Latin letters in a Chinese name are the planted mojibake."""
    rows = CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0).to_python()[1:]
    phones = sum(1 for row in rows if not phone_ok(str(row[2])))
    dates = sum(1 for row in rows if phone_ok(str(row[2])) and isinstance(row[4], str) and row[4])
    latin = sum(1 for row in rows if phone_ok(str(row[2])) and not (isinstance(row[4], str) and row[4])
                and re.search(r"[\u00c0-\u00ff\u0152-\u02dc\u2013-\u2122]", str(row[1])))
    return {k: v for k, v in {"bad_phone": phones, "bad_date": dates, "mojibake": latin}.items() if v}


def test_crm_members_excel(workspace: Workspace, engine: Engine, demo: Path) -> None:
    path = demo / "crm/members.xlsx"
    result = import_file(workspace, engine, "crm_members", path)
    defects = crm_defects(path)
    assert result.balanced and result.rows_quarantined == sum(defects.values()) == planted(demo, "crm_members")
    assert reasons(engine, "crm_members") == defects  # a 600-person demo may plant no mojibake: see test_mojibake
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
    assert_buyer_identifiers(engine, demo)


PLATFORM_IDS = {"member_id": "member_id", "openid": "wechat_openid", "buyer_open_uid": "tmall_open_uid",
                "buyer_pin": "jd_pin", "douyin_user_id": "douyin_user_id"}


def assert_buyer_identifiers(engine: Engine, demo: Path) -> None:
    """Every identifier of every loaded order is kept under its id_type, phones normalized."""
    stored = {row["order_id"]: row for row in engine.query(
        "SELECT order_id, customer_ref, customer_ref_type, customer_identifiers FROM orders").to_pylist()}
    checked = 0
    for path in sorted((demo / "orders").glob("*.jsonl")):
        for line in path.read_bytes().splitlines():
            order = orjson.loads(line)
            if order["order_id"] not in stored:
                continue
            row = stored[order["order_id"]]
            ids = orjson.loads(row["customer_identifiers"] or "{}")
            expected = {id_type: order[key] for key, id_type in PLATFORM_IDS.items() if order.get(key)}
            phone = order.get("receiver_phone")
            if phone:
                expected["phone_masked" if "*" in phone else "phone"] = phone if "*" in phone else "+86" + re.sub(
                    r"\D", "", phone)[-11:]
            assert ids == expected, order
            assert row["customer_ref_type"] is None or ids[row["customer_ref_type"]] == row["customer_ref"]
            checked += 1
    assert checked == len(stored) > 0
    assert scalar(engine, "SELECT count(*) FROM orders WHERE abs(net_amount - (gross_amount - discount_amount)) > 0.05") == 0


def test_catalogue_inventory_and_ads(workspace: Workspace, engine: Engine, demo: Path) -> None:
    expected = {"stores": ("catalog/stores.csv", 0), "products": ("catalog/products.csv", 0),
                "stock_counts": ("inventory/stock_counts.csv", None), "ad_spend": ("ads/ad_spend.csv", None),
                "inventory_movements": ("inventory/inventory_movements.csv", None)}
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
    assert_stock_rows_name_their_product(engine, demo)


def assert_stock_rows_name_their_product(engine: Engine, demo: Path) -> None:
    """Every stored stock row whose SKU or barcode is in the catalogue carries that product's id."""
    with open(demo / "catalog/products.csv", encoding="utf-8", newline="") as source:
        catalogue = list(csv.DictReader(source))
    by_sku = {row["sku"]: row["product_id"] for row in catalogue}
    by_barcode = {row["barcode"]: row["product_id"] for row in catalogue}
    movements = engine.query("SELECT sku, barcode, product_id FROM inventory_movements").to_pylist()
    counts = engine.query("SELECT barcode, product_id FROM stock_counts").to_pylist()
    for row in movements:
        assert row["product_id"] == by_sku.get(row["sku"], by_barcode.get(row["barcode"])), row
    for row in counts:
        assert row["product_id"] is not None and row["product_id"] == by_barcode.get(row["barcode"], row["product_id"])
    assert sum(row["product_id"] is not None for row in movements) > 0.9 * len(movements) > 0


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
