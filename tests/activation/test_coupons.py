"""Personal coupons: unique and unguessable codes, validity windows in the workspace's time
zone, idempotent issuing, and redemptions matched from orders on a constructed workspace."""

from __future__ import annotations

import math
import shutil
from collections import Counter
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from jingzhun.activation.coupons import (
    ALPHABET,
    CouponDefinition,
    CouponError,
    coupon_code,
    coupon_for,
    coupon_key,
    discount_label,
    issue_coupons,
    match_redemptions,
    parse_coupon_definition,
)
from jingzhun.core import Workspace, WorkspaceConfig, init_workspace, open_workspace
from jingzhun.engine import DuckDBEngine, Engine
from jingzhun.schema import migrate
from jingzhun.schema.tables import COUPONS, ORDERS, PERSONS, RECORD_PERSONS

ISSUED = datetime(2026, 10, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
WEEK = {"discount": "amount", "value": 30, "min_spend": 199, "valid_days": 7}


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace at the latest schema, made once; each test works on its own copy."""
    made = init_workspace(tmp_path_factory.mktemp("coupons") / "ws", WorkspaceConfig(name="券"))
    with DuckDBEngine(made.root / "warehouse.duckdb") as engine:
        migrate(engine)
    return made.root


@pytest.fixture
def workspace(migrated: Path, tmp_path: Path) -> Workspace:
    shutil.copytree(migrated, tmp_path / "ws")
    return open_workspace(tmp_path / "ws")


@pytest.fixture
def store(workspace: Workspace) -> Engine:
    engine = DuckDBEngine(workspace.root / "warehouse.duckdb")
    yield engine
    engine.close()


def test_codes_are_unique_over_100k_issues_and_equal_to_the_reference_hmac(workspace: Workspace, store: Engine) -> None:
    persons = [f"P{i:06d}" for i in range(100_000)]
    codes = issue_coupons(store, "spring", persons, WEEK, workspace=workspace, issued_at=ISSUED)
    values = codes.column("code").to_pylist()
    assert codes.num_rows == 100_000 and len(set(values)) == 100_000
    assert set("".join(values)) <= set(ALPHABET) and not set("01OI") & set("".join(values))
    key = coupon_key(workspace)
    for row in codes.slice(0, 200).to_pylist():
        assert row["code"] == coupon_code(key, "spring", row["person_id"], row["attempt"])


def test_codes_are_not_guessable_from_person_ids(workspace: Workspace, store: Engine, tmp_path: Path) -> None:
    persons = [f"P{i:06d}" for i in range(20_000)]
    codes = dict(zip(persons, issue_coupons(store, "c", persons, WEEK, workspace=workspace)
                     .column("code").to_pylist(), strict=True))
    # Neighbouring ids share no more symbols in place than random strings would (1 in 32).
    pairs = zip(persons, persons[1:], strict=False)
    same = sum(a == b for left, right in pairs for a, b in zip(codes[left], codes[right], strict=True))
    assert same / ((len(persons) - 1) * 10) < 1.5 / 32
    # Every symbol equally likely in every position: chi-square with 31 degrees of freedom.
    expected = len(persons) / 32
    for position in range(10):
        counted = Counter(code[position] for code in codes.values())
        chi2 = sum((counted.get(symbol, 0) - expected) ** 2 / expected for symbol in ALPHABET)
        assert chi2 < 31 + 6 * math.sqrt(62), (position, chi2)
    # Another workspace (another secret salt) gives the same persons other codes.
    other = init_workspace(tmp_path / "other", WorkspaceConfig(name="other"))
    with DuckDBEngine(other.root / "warehouse.duckdb") as engine:
        migrate(engine)
        elsewhere = issue_coupons(engine, "c", persons[:1000], WEEK, workspace=other).column("code").to_pylist()
    assert not set(elsewhere) & set(codes.values())


def test_issuing_again_keeps_codes_and_adds_only_new_persons(workspace: Workspace, store: Engine) -> None:
    first = issue_coupons(store, "c", ["P1", "P2"], WEEK, workspace=workspace, issued_at=ISSUED)
    later = datetime(2026, 10, 5, tzinfo=UTC)
    again = issue_coupons(store, "c", ["P2", "P3", "P3", ""], {"value": 5}, workspace=workspace, issued_at=later)
    assert store.row_count("coupons") == 3 and again.num_rows == 2
    by_person = {row["person_id"]: row for row in again.to_pylist()}
    assert by_person["P2"]["code"] == first.to_pylist()[1]["code"]
    assert by_person["P2"]["name_zh"] == "满199减30" and by_person["P3"]["name_zh"] == "立减5元"
    held = coupon_for(store, "c", "P2")
    assert held is not None and held.code == by_person["P2"]["code"] and held.name("en") == "¥30 off orders over ¥199"
    assert coupon_for(store, "c", "P9") is None and coupon_for(store, "other", "P1") is None


def test_clashes_are_rehashed_until_every_code_is_unique(workspace: Workspace, store: Engine) -> None:
    """Three-symbol codes (32,768 values) clash often; the re-hash keeps them unique across campaigns."""
    persons = [f"P{i:05d}" for i in range(1500)]
    first = issue_coupons(store, "a", persons, WEEK, workspace=workspace, length=3)
    second = issue_coupons(store, "b", persons, WEEK, workspace=workspace, length=3)
    rows = first.to_pylist() + second.to_pylist()
    assert len({row["code"] for row in rows}) == 3000
    rehashed = [row for row in rows if row["attempt"] > 0]
    assert rehashed, "with 3,000 three-symbol codes some must have clashed"
    key = coupon_key(workspace)
    assert all(row["code"] == coupon_code(key, row["campaign_id"], row["person_id"], row["attempt"], 3)
               for row in rehashed)


@pytest.mark.parametrize(("definition", "valid_from", "valid_to"), [
    ({"value": 5, "valid_days": 1}, "2026-10-01T02:00:00+00:00", "2026-10-01T16:00:00+00:00"),
    ({"value": 5, "valid_days": 7}, "2026-10-01T02:00:00+00:00", "2026-10-07T16:00:00+00:00"),
    ({"value": 5, "valid_from": "2026-10-03", "valid_to": "2026-10-05"},
     "2026-10-02T16:00:00+00:00", "2026-10-05T16:00:00+00:00"),
    ({"value": 5, "valid_from": "2026-10-03T20:00:00", "valid_days": 1},
     "2026-10-03T12:00:00+00:00", "2026-10-03T16:00:00+00:00"),
    ({"value": 5, "valid_to": "2026-10-02T12:00:00+08:00"}, "2026-10-01T02:00:00+00:00", "2026-10-02T04:00:00+00:00"),
])
def test_windows_are_calendar_days_in_the_workspace_time_zone(definition: dict, valid_from: str, valid_to: str) -> None:
    window = parse_coupon_definition(definition).window(ISSUED, "Asia/Shanghai")
    assert window == (datetime.fromisoformat(valid_from), datetime.fromisoformat(valid_to))


@pytest.mark.parametrize(("kind", "value", "min_spend", "zh", "en"), [
    ("amount", 30, 199, "满199减30", "¥30 off orders over ¥199"),
    ("amount", 20, 0, "立减20元", "¥20 off"),
    ("amount", Decimal("9.9"), 0, "立减9.9元", "¥9.9 off"),
    ("percent", 15, 0, "8.5折", "15% off"),
    ("percent", 10, 0, "9折", "10% off"),
    ("percent", 20, 300, "满300享8折", "20% off orders over ¥300"),
])
def test_discounts_read_as_marketers_write_them(kind: str, value, min_spend, zh: str, en: str) -> None:
    assert discount_label(kind, Decimal(value), Decimal(min_spend), "zh") == zh
    assert discount_label(kind, Decimal(value), Decimal(min_spend), "en") == en


@pytest.mark.parametrize(("definition", "field"), [
    ({"discount": "percent", "value": 100}, "value"),
    ({"value": 0}, "value"),
    ({"value": 5, "valid_day": 3}, "valid_day"),
    ({"discount": "free", "value": 5}, "discount"),
])
def test_bad_definitions_name_the_key(definition: dict, field: str) -> None:
    with pytest.raises(CouponError) as refused:
        parse_coupon_definition(definition)
    assert field in str(refused.value) and refused.value.message_zh != refused.value.message


def test_a_window_that_ends_before_it_starts_is_refused(workspace: Workspace, store: Engine) -> None:
    backwards = CouponDefinition(value=Decimal(5), valid_from=date(2026, 10, 5), valid_to=date(2026, 10, 3))
    with pytest.raises(CouponError, match="before it starts"):
        issue_coupons(store, "c", ["P1"], backwards, workspace=workspace)
    with pytest.raises(CouponError, match="campaign"):
        issue_coupons(store, " ", ["P1"], WEEK, workspace=workspace)


# ---- redemptions ------------------------------------------------------------------------------

ORDER_CASES = [  # order_id, person, local day and hour, code as typed, status, net amount
    ("O1", "P1", "2026-10-03 12:00", "{P1}", "completed", "250.00"),   # redeemed
    ("O2", "P1", "2026-10-05 12:00", "{P1}", "completed", "300.00"),   # reused
    ("O3", "P2", "2026-10-09 12:00", "{P2}", "completed", "220.00"),   # after the window
    ("O4", "P2", "2026-09-30 23:00", "{P2}", "completed", "220.00"),   # before it
    ("O5", "P9", "2026-10-03 12:00", "{P3}", "completed", "210.00"),   # someone else's code
    ("O6", "P4", "2026-10-03 12:00", "{P4}", "cancelled", "210.00"),   # cancelled
    ("O7", "P6", "2026-10-07 23:59", "{P5}", "paid", "199.00"),        # P5 merged into P6: redeemed
    ("O8", "P1", "2026-10-03 12:00", "NEW20", "completed", "150.00"),  # a shared promo code, not personal
    ("O9", "P7", "2026-10-08 00:00", "{P7}", "completed", "199.00"),   # first minute after the last day
]


def _orders(codes: dict[str, str]) -> tuple[pa.Table, pa.Table, pa.Table]:
    def typed(code: str) -> str:  # as a cashier might type it: lower case, a dash in the middle
        return code[:5].lower() + "-" + code[5:]

    rows, owners = [], []
    for order_id, person, local, code, status, amount in ORDER_CASES:
        placed = datetime.fromisoformat(local + ":00+08:00").astimezone(UTC)
        real = typed(codes[code[1:-1]]) if code.startswith("{") else code
        rows.append({"order_id": order_id, "placed_at": placed, "status": status, "currency": "CNY",
                     "net_amount": Decimal(amount), "discount_amount": Decimal("30.00"), "coupon_code": real})
        owners.append({"record_kind": "order", "record_id": order_id, "person_id": person})
    persons = [{"person_id": p, "status": "merged" if p == "P5" else "active", "merged_into": "P6" if p == "P5" else None,
                "created_at": ISSUED} for p in ("P1", "P2", "P3", "P4", "P5", "P6", "P7", "P9")]
    return pa.Table.from_pylist(rows), pa.Table.from_pylist(owners), pa.Table.from_pylist(persons)


def test_redemptions_are_matched_within_the_window_by_the_holder(workspace: Workspace, store: Engine) -> None:
    issued = issue_coupons(store, "oct", ["P1", "P2", "P3", "P4", "P5", "P7"],
                           {"value": 30, "min_spend": 199, "valid_from": "2026-10-01", "valid_to": "2026-10-07"},
                           workspace=workspace)
    orders, owners, persons = _orders({row["person_id"]: row["code"] for row in issued.to_pylist()})
    for name, rows in (("orders", orders), ("record_persons", owners), ("persons", persons)):
        store.write_table(name, rows)
    result = match_redemptions(store)
    outcome = dict(zip(result.matches["order_id"], result.matches["outcome"], strict=True))
    assert outcome == {"O1": "redeemed", "O2": "reused", "O3": "outside_window", "O4": "outside_window",
                       "O5": "other_person", "O6": "cancelled", "O7": "redeemed", "O9": "outside_window"}
    summary = result.summary.set_index("campaign_id").loc["oct"]
    assert (summary["issued"], summary["redeemed"]) == (6, 2)
    assert summary["redemption_rate"] == pytest.approx(2 / 6)
    assert Decimal(str(summary["redeemed_net_amount"])) == Decimal("449.00")
    assert (summary["reused_orders"], summary["outside_window_orders"], summary["other_person_orders"],
            summary["cancelled_orders"]) == (1, 3, 1, 1)
    rerun = store.query(result.sql["summary"]).to_pandas()
    assert rerun.equals(result.summary)
    assert match_redemptions(store, campaign_id="other").matches.empty


@pytest.mark.spark
def test_codes_and_redemptions_are_the_same_on_spark(workspace: Workspace, both_engines) -> None:
    duck, spark = both_engines
    results = {}
    for engine in (duck, spark):
        for table in (COUPONS, ORDERS, RECORD_PERSONS, PERSONS):  # not all of migrate: Spark writes each table
            engine.create_table(table.name, table.columns)
        issued = issue_coupons(engine, "oct", ["P1", "P2", "P3", "P4", "P5", "P7"],
                               {"value": 30, "valid_from": "2026-10-01", "valid_to": "2026-10-07"}, workspace=workspace)
        orders, owners, persons = _orders({row["person_id"]: row["code"] for row in issued.to_pylist()})
        for name, rows in (("orders", orders), ("record_persons", owners), ("persons", persons)):
            engine.write_table(name, rows)
        matched = match_redemptions(engine)
        results[engine.NAME] = (sorted(zip(issued.column("person_id").to_pylist(), issued.column("code").to_pylist(),
                                           strict=True)),
                                sorted(zip(matched.matches["order_id"], matched.matches["outcome"], strict=True)),
                                matched.summary[["campaign_id", "issued", "redeemed"]].to_dict("records"))
    assert results["duckdb"] == results["spark"]
