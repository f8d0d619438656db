"""The stock ledger, reconciliation and stock data-quality checks.

Hand-made tables whose right answers are worked out below, on DuckDB and (with
`-m spark`) Spark; a run on the demo's inventory files against the planted truth;
and a DuckDB/Spark parity test of every function.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jingzhun.collect.inventory import (
    compute_daily_stock,
    compute_ledger_lines,
    compute_reconciliation,
    compute_stock_on_hand,
    compute_stockouts,
    daily_stock_sql,
    ledger_lines_sql,
    reconciliation_sql,
    stock_on_hand_sql,
    stockouts_sql,
)
from jingzhun.collect.inventory_checks import compute_inventory_findings, findings_sql
from jingzhun.engine import DuckDBEngine, Engine, render
from jingzhun.engine.parity import compare_tables
from jingzhun.schema import migrate, tables

UTC = dt.UTC


def ean13(first12: str) -> str:
    """A valid EAN-13 for twelve digits (test helper; the checks compute it in SQL)."""
    total = sum(int(d) * (1 if i % 2 == 0 else 3) for i, d in enumerate(first12))
    return first12 + str((10 - total % 10) % 10)


B1, B2, B3 = ean13("690000000001"), ean13("690000000002"), ean13("690000000003")
B_UNKNOWN = ean13("690000000099")
B1_TYPO = B1[:12] + str((int(B1[12]) + 1) % 10)


def at(day: int, hour: int = 2, minute: int = 0, month: int = 1, year: int = 2025) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC)


# (movement_id, occurred_at, location, barcode, sku, type, quantity, reference)
MOVEMENTS = [
    ("m1", at(1), "DC1", B1, "S1", "in", 10, "PO1"),
    ("m2", at(2), "DC1", B1, "S1", "transfer", -4, "TO1"),  # sending side
    ("m3", at(2, 7), "ST1", B1, "S1", "transfer", 4, "TO1"),  # receiving side
    ("m4", at(3, 14), "ST1", B1, "S1", "out", 4, "RS1"),  # outbound stored positive
    ("m5", at(6), "ST1", B1, "S1", "in", 5, "PO2"),
    ("m6", at(7, 14), "ST1", B1, "S1", "out", -2, "RS2"),  # outbound stored negative
    ("m7", at(8, 14, 45), "ST1", B1, "S1", "adjust", -1, "PD1"),
    ("m8", at(2), "DC1", B2, "S2", "out", 3, "WV1"),  # DC1/P2 goes to -3
    ("m9", at(4), "DC1", B2, "S2", "in", 5, "PO3"),
    ("m10", at(1, 2, 0, 6, 2024), "ST2", B3, "S3", "in", 7, "PO4"),
    ("m11", at(1, 2, 5, 6, 2024), "ST2", B3, "S3", "in", 7, "PO4"),  # repeats m10 5 min later
    ("m12", at(2, 2, 0, 6, 2024), "ST2", B3, "S3", "out", 1, "X"),
    ("m13", at(2, 4, 0, 6, 2024), "ST2", B3, "S3", "out", 1, "X"),  # 2 h later: not a duplicate
    ("m14", at(9), "ST2", B2, "S2", "in", 1, "PO9"),
    ("m14", at(9), "ST2", B2, "S2", "in", 1, "PO9"),  # same movement_id twice
    ("m15", at(9), "ST1", B1_TYPO, "S1", "in", 1, "PO5"),  # typo barcode, sku still right
    ("m16", at(9), "ST1", B_UNKNOWN, None, "in", 2, "PO6"),  # not in the catalogue
    ("m17", at(9), "ST2", B2, "S2", "return", 1, "R1"),  # not a movement type
]
# (location, barcode, counted_at, counted_qty, system_qty)
COUNTS = [
    ("ST1", B1, at(8, 14, 30), 2, 3),  # ledger 3: short 1
    ("DC1", B1, at(2), 6, 6),  # the movement at exactly counted_at is included: match
    ("DC1", B2, at(5), 3, 2),  # ledger 2: over 1
    ("ST2", "12345", at(9), 1, 0),  # not 13 digits; no ledger (0, as the sheet says): over 1
    ("ST9", B1, at(9), 1, 1),  # unknown location; ledger 0 disagrees with the sheet
    ("DC1", B2, at(9), None, 2),  # a blank on the sheet is not a shortage
]
AS_OF = at(10)
UNTIL = dt.date(2025, 1, 10)


@pytest.mark.parametrize("dialect", ["duckdb", "spark"])
def test_every_query_renders_for_both_engines(dialect: str) -> None:
    """The transpile gate for these builders (they are Python, not shipped .sql files)."""
    built = [
        ledger_lines_sql(), stock_on_hand_sql("inventory_ledger_lines", AS_OF),
        daily_stock_sql("inventory_ledger_lines", UNTIL), stockouts_sql("inventory_ledger_lines", UNTIL),
        reconciliation_sql("inventory_ledger_lines"), findings_sql("inventory_ledger_lines", AS_OF),
    ]
    for query in built:
        assert render(query, dialect).startswith(("SELECT", "WITH"))


def write_canonical(engine: Engine) -> None:
    # The four canonical tables as `migrate` declares them (all ~40 cost seconds on Spark).
    for definition in (tables.INVENTORY_MOVEMENTS, tables.STOCK_COUNTS, tables.PRODUCTS, tables.STORES):
        engine.create_table(definition.name, definition.columns)
    cols = list(zip(*MOVEMENTS, strict=True))
    engine.write_table("inventory_movements", pa.table({
        "movement_id": pa.array(cols[0]), "occurred_at": pa.array(cols[1], pa.timestamp("us", tz="UTC")),
        "location_id": pa.array(cols[2]), "barcode": pa.array(cols[3]), "sku": pa.array(cols[4], pa.string()),
        "movement_type": pa.array(cols[5]), "quantity": pa.array(cols[6], pa.int32()),
        "reference": pa.array(cols[7]),
    }))
    c = list(zip(*COUNTS, strict=True))
    engine.write_table("stock_counts", pa.table({
        "location_id": pa.array(c[0]), "barcode": pa.array(c[1]),
        "counted_at": pa.array(c[2], pa.timestamp("us", tz="UTC")),
        "counted_qty": pa.array(c[3], pa.int32()), "system_qty": pa.array(c[4], pa.int32()),
    }))
    engine.write_table("products", pa.table({
        "product_id": ["P1", "P2", "P3"], "sku": ["S1", "S2", "S3"], "barcode": [B1, B2, B3],
        "cost": pa.array([10.5, 2.0, 1.0]),
    }))
    engine.write_table("stores", pa.table({"store_id": ["ST1", "ST2"]}))


@pytest.fixture
def stocked(engine: Engine) -> Engine:
    write_canonical(engine)
    return engine


def rows(table: pa.Table, *columns: str) -> set[tuple]:
    return set(zip(*(table.column(c).to_pylist() for c in columns), strict=True))


def test_signed_quantities_and_local_days(stocked: Engine) -> None:
    lines = compute_ledger_lines(stocked).to_arrow().to_pylist()
    by_id = {r["movement_id"]: r for r in lines}
    signed = [by_id[m]["signed_qty"] for m in ("m4", "m6", "m2", "m3", "m7", "m17")]
    assert signed == [-4, -2, -4, 4, -1, 0]
    typo = by_id["m15"]
    assert (typo["item_key"], typo["product_id"], typo["barcode"], typo["raw_barcode"]) == ("S1", "P1", B1, B1_TYPO)
    assert by_id["m4"]["day"] == dt.date(2025, 1, 3)  # 14:00 UTC is 22:00 in Shanghai (default)
    new_york = compute_ledger_lines(stocked, timezone="America/New_York").to_arrow().to_pylist()
    assert {r["movement_id"]: r["day"] for r in new_york}["m1"] == dt.date(2024, 12, 31)


def test_stock_on_hand(stocked: Engine) -> None:
    handle = compute_stock_on_hand(stocked, AS_OF, timezone="UTC")
    assert "inventory_ledger_lines" in handle.sql and handle.logical_name == "inventory_stock_on_hand"
    assert rows(handle.to_arrow(), "location_id", "item_key", "on_hand") == {
        ("DC1", "S1", 6), ("ST1", "S1", 3), ("DC1", "S2", 2), ("ST2", "S3", 12),
        ("ST2", "S2", 2), ("ST1", B_UNKNOWN, 2),
    }
    earlier = compute_stock_on_hand(stocked, at(2), timezone="UTC").to_arrow()
    assert rows(earlier, "location_id", "item_key", "on_hand") == {
        ("DC1", "S1", 6), ("DC1", "S2", -3), ("ST2", "S3", 12),
    }


def test_daily_stock_and_stockouts(stocked: Engine) -> None:
    lines = compute_ledger_lines(stocked, timezone="UTC")
    daily = compute_daily_stock(stocked, UNTIL, lines=lines).to_arrow()
    st1 = sorted((r["day"], r["closing_stock"], r["stocked_out"]) for r in daily.to_pylist()
                 if (r["location_id"], r["item_key"]) == ("ST1", "S1"))
    assert [d for d, _, _ in st1] == [dt.date(2025, 1, d) for d in range(2, 11)]
    assert [s for _, s, _ in st1] == [4, 0, 0, 0, 5, 3, 2, 3, 3]
    assert [o for _, _, o in st1] == [False, True, True, True, False, False, False, False, False]
    spells = compute_stockouts(stocked, UNTIL, lines=lines).to_arrow()
    assert rows(spells, "location_id", "item_key", "first_day", "last_day", "days", "lowest_stock", "ongoing") == {
        ("ST1", "S1", dt.date(2025, 1, 3), dt.date(2025, 1, 5), 3, 0, False),
        ("DC1", "S2", dt.date(2025, 1, 2), dt.date(2025, 1, 3), 2, -3, False),
    }


def test_reconciliation(stocked: Engine) -> None:
    result = compute_reconciliation(stocked, timezone="UTC").to_arrow()
    assert rows(result, "location_id", "barcode", "ledger_qty", "difference", "status", "ledger_matches_system") == {
        ("ST1", B1, 3, -1, "short", True), ("DC1", B1, 6, 0, "match", True),
        ("DC1", B2, 2, 1, "over", True), ("ST2", "12345", 0, 1, "over", True),
        ("ST9", B1, 0, 1, "over", False), ("DC1", B2, 2, None, "uncounted", True),
    }
    short = [r for r in result.to_pylist() if r["status"] == "short"][0]
    assert (short["product_id"], short["sku"], float(short["value_at_cost"])) == ("P1", "S1", -10.5)
    assert short["system_difference"] == -1


def test_each_check_fires_exactly_where_expected(stocked: Engine) -> None:
    found = compute_inventory_findings(stocked, as_of=AS_OF, timezone="UTC").to_arrow()
    assert found.num_rows == 9
    assert rows(found, "check", "severity", "location_id", "product_id", "evidence_count") == {
        ("stale_stock", "warning", "ST2", "P3", 222),
        ("negative_stock", "error", "DC1", "P2", 1),
        ("invalid_barcode", "error", "ST1", "P1", 1),
        ("invalid_barcode", "error", "ST2", None, 1),
        ("unknown_barcode", "warning", "ST1", None, 1),
        ("duplicate_movement", "warning", "ST2", "P3", 2),
        ("duplicate_movement_id", "error", "ST2", "P2", 2),
        ("unknown_movement_type", "error", "ST2", None, 1),
        ("count_unknown_location", "error", "ST9", None, 1),
    }
    detail = {r["check"] + (r["barcode"] or ""): r["detail"] for r in found.to_pylist()}
    assert detail["invalid_barcode" + B1_TYPO] == f"EAN-13 check digit should be {B1[12]} (inventory_movements)"
    assert detail["invalid_barcode12345"] == "not 13 digits (stock_counts)"
    assert [r["detail"] for r in found.to_pylist() if r["check"] == "duplicate_movement"] == [
        "movement m11 repeats m10 300 s later"]


def test_check_parameters_move_the_thresholds(tmp_path: Path) -> None:
    """Parameter plumbing only, so DuckDB alone (Spark parity is covered below)."""
    with DuckDBEngine(tmp_path / "w.duckdb") as duck:
        write_canonical(duck)
        found = compute_inventory_findings(
            duck, as_of=AS_OF, stale_days=300, duplicate_window_seconds=3 * 3600, timezone="UTC"
        ).to_arrow()
    checks = found.column("check").to_pylist()
    assert "stale_stock" not in checks
    assert checks.count("duplicate_movement") == 2  # m13 now repeats m12


# ---- the demo's inventory files --------------------------------------------------

@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    jingzhun = Path(sys.executable).with_name("jingzhun")
    subprocess.run([str(jingzhun), "demo", "generate", str(folder), "--persons", "2000"],
                   check=True, capture_output=True)
    return folder


DEMO_READS = {
    "products": "SELECT product_id, sku, barcode, cost FROM read_csv('{d}/catalog/products.csv', all_varchar=true)",
    "stores": "SELECT store_id FROM read_csv('{d}/catalog/stores.csv', all_varchar=true)",
    "inventory_movements": """
        SELECT movement_id, CAST(occurred_at AS TIMESTAMPTZ) AS occurred_at, location AS location_id,
          barcode, sku, movement_type, CAST(quantity AS INTEGER) AS quantity, reason, reference
        FROM read_csv('{d}/inventory/inventory_movements.csv', all_varchar=true)""",
    # The importer resolves the sheet's sku to a product_id; canonical counts have no sku.
    "stock_counts": """
        SELECT c.location AS location_id, c.barcode, p.product_id,
          timezone('Asia/Shanghai', CAST(c.counted_at AS TIMESTAMP)) AS counted_at,
          CAST(c.counted_qty AS INTEGER) AS counted_qty, CAST(c.system_qty AS INTEGER) AS system_qty
        FROM read_csv('{d}/inventory/stock_counts.csv', all_varchar=true) AS c
        LEFT JOIN read_csv('{d}/catalog/products.csv', all_varchar=true) AS p ON c.sku = p.sku""",
}


def load_demo(engine: Engine, folder: Path) -> None:
    migrate(engine)
    reader = duckdb.connect()
    reader.execute("SET TimeZone = 'UTC'")
    for table, sql in DEMO_READS.items():
        engine.write_table(table, reader.sql(sql.format(d=folder / "data")).arrow())
    reader.close()


def test_demo_recovers_planted_stockouts_and_counts(demo_dir: Path, tmp_path: Path) -> None:
    patterns = json.loads((demo_dir / "demo-truth" / "patterns_marketing.json").read_text())
    truth = patterns["inventory"]
    with DuckDBEngine(tmp_path / "demo.duckdb") as engine:
        load_demo(engine, demo_dir)
        lines = compute_ledger_lines(engine)
        spells = compute_stockouts(engine, lines=lines).to_arrow().to_pylist()
        daily = compute_daily_stock(engine, lines=lines)
        out_days = engine.query(f"""SELECT location_id, sku, day FROM {daily.logical_name}
                                    WHERE stocked_out""").to_pylist()
        recon = compute_reconciliation(engine, lines=lines).to_arrow()
        found = compute_inventory_findings(engine, lines=lines).to_arrow()
    one_day = dt.timedelta(days=1)
    for planted in truth["stockouts"]:
        first, last = (dt.date.fromisoformat(planted[k]) for k in ("first_day", "last_day"))
        assert any(s["location_id"] == planted["location"] and s["sku"] == planted["sku"]
                   and abs(s["first_day"] - first) <= one_day and abs(s["last_day"] - last) <= one_day
                   for s in spells), planted
    zero_days = {(r["location_id"], r["sku"], r["day"]) for r in out_days}
    for planted in truth["stockouts"]:  # the daily series agrees day by day
        first = dt.date.fromisoformat(planted["first_day"])
        days = [first + dt.timedelta(days=i) for i in range(planted["days"])]
        assert all((planted["location"], planted["sku"], d) in zero_days for d in days), planted
    assert all(recon.column("ledger_matches_system").to_pylist())  # the ledger balances exactly
    discrepant = recon.filter(pa.compute.not_equal(recon.column("status"), "match")).to_pylist()
    shanghai = dt.timedelta(hours=8)
    found_diffs = sorted((r["location_id"], r["sku"], (r["counted_at"] + shanghai).strftime("%Y-%m-%d %H:%M:%S"),
                          r["difference"]) for r in discrepant)
    planted = pq.read_table(demo_dir / "demo-truth" / "stock_discrepancies.parquet").to_pylist()
    assert len(planted) == truth["discrepancies"]
    assert found_diffs == sorted((p["location"], p["sku"], p["counted_at"], p["counted_qty"] - p["system_qty"])
                                 for p in planted)
    checks = found.column("check").to_pylist()
    assert not {"negative_stock", "duplicate_movement", "duplicate_movement_id"} & set(checks)
    invalid = sum(r["evidence_count"] for r in found.to_pylist() if r["check"] == "invalid_barcode")
    assert invalid == sum(f["malformed_rows"] for name, f in patterns["files"].items() if "inventory/" in name)


# ---- parity -----------------------------------------------------------------------

@pytest.mark.spark
def test_every_function_gives_the_same_rows_on_duckdb_and_spark(both_engines: tuple[Engine, Engine]) -> None:
    results = []
    for engine in both_engines:
        write_canonical(engine)
        lines = compute_ledger_lines(engine)
        results.append({
            "lines": lines.to_arrow(),
            "on_hand": compute_stock_on_hand(engine, AS_OF, lines=lines).to_arrow(),
            "daily": compute_daily_stock(engine, UNTIL, lines=lines).to_arrow(),
            "stockouts": compute_stockouts(engine, UNTIL, lines=lines).to_arrow(),
            "reconciliation": compute_reconciliation(engine, lines=lines).to_arrow(),
            "findings": compute_inventory_findings(engine, as_of=AS_OF, lines=lines).to_arrow(),
        })
    duck, spark = results
    for name in duck:
        report = compare_tables(name, duck[name], spark[name])
        assert report.equal, report.differences
