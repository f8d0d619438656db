"""Marketplace buyers linked to members (jingzhun.identity.marketplace).

A hand-built store shows each rule: a unique fit links, two fitting members or two
buyers of one platform fitting one member go to review, a surname that differs is no
candidate, operators' decisions are kept and change what the next run concludes.
The demo (tests/conftest.py `portrayed_demo`) shows precision and recall against the
generator's truth and that the ID graph takes the links. tests/test_parity.py compares
match_candidates and identity_links after the pipeline on DuckDB and Spark; the hand-built
tests run on Spark too under `make test-spark-full`.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jingzhun.core import Workspace
from jingzhun.core.errors import ConfigError
from jingzhun.engine import Engine, open_engine
from jingzhun.identity.config import load_identity_config
from jingzhun.identity.marketplace import PREFIX
from jingzhun.identity.marketplace_quality import marketplace_quality
from jingzhun.identity.marketplace_sql import LEVELS
from jingzhun.identity.matching import decide_match, match_records, review_queue
from jingzhun.schema import migrate
from tests.conftest import copy_workspace

MEMBERS = [  # member id, phone, name, city
    ("JZ1", "+8613900001111", "王静怡", "杭州市"),
    ("JZ2", "+8613912341234", "李芳", "杭州市"), ("JZ3", "+8613955551234", "李娜", "杭州市"),
    ("JZ4", "+8613700002222", "张伟", "上海市"),
    ("JZ5", "+8613600003333", "陈晨", "北京市"), ("JZ6", "+8613600003333", "陈晨", "北京市"),
    ("JZ7", "+8613500004444", "刘洋", "杭州市"),
    ("JZ8", "+8613300005555", "周敏", "南京市"), ("JZ9", "+8613300006666", "吴倩", "苏州市"),
]
ORDERS = [  # order id, buyer type, buyer id, masked phone, receiver, city
    ("o1", "tmall_open_uid", "A", "139****1111", "王**", "杭州市"),
    ("o2", "tmall_open_uid", "A", "139****1111", "王**", "杭州市"),
    ("o3", "jd_pin", "A-jd", "139****1111", "王*怡", "杭州市"),          # her JD account: to both
    ("o4", "tmall_open_uid", "B", "139****1234", "李**", "杭州市"),        # 李芳 and 李娜 both fit
    ("o5", "tmall_open_uid", "C", "137****2222", "张**", "上海市"),        # two Tmall ids fit 张伟
    ("o6", "tmall_open_uid", "D", "137****2222", "张**", "上海市"),
    ("o7", "jd_pin", "F", "136****3333", "陈**", "北京市"),               # 陈晨 registered twice
    ("o8", "jd_pin", "E", "135****4444", "赵**", "杭州市"),               # surname differs: no fit
    ("o9", "douyin_user_id", "G", "133****5555", "周**", "南京市"),        # her orders point at two
    ("o10", "douyin_user_id", "G", "133****6666", "吴**", "苏州市"),       # different members
    ("o11", "douyin_user_id", "H", "139****1111", None, "杭州市"),         # no receiver name
    *[(f"n{i}", "tmall_open_uid", f"N{i}", f"150****{i:04d}", "孙**", "广州市") for i in range(4)],
]


def store(engine: Engine) -> None:
    """The members above as CRM rows and the orders as marketplace orders."""
    migrate(engine)
    members = [{"record_id": f"member:{m}", "source_id": "import:crm_members", "kind": "member",
                "identifiers": json.dumps({"member_id": m, "phone": phone}),
                "attributes": json.dumps({"name": name, "gender": "F", "city": city}, ensure_ascii=False)}
               for m, phone, name, city in MEMBERS]
    engine.write_table("source_records", pa.Table.from_pylist(members))
    placed = dt.datetime(2025, 11, 11, 12, tzinfo=dt.UTC)
    orders = [{"order_id": order_id, "source_id": "import:online_orders", "channel": "online",
               "platform": kind.split("_")[0], "customer_ref": buyer, "customer_ref_type": kind,
               "customer_identifiers": json.dumps({kind: buyer, "phone_masked": masked}),
               "receiver_name": receiver, "ship_city": city, "placed_at": placed, "currency": "CNY"}
              for order_id, kind, buyer, masked, receiver, city in ORDERS]
    engine.write_table("orders", pa.Table.from_pylist(orders))


def candidates(engine: Engine) -> dict[tuple[str, str], dict]:
    rows = engine.query(f"SELECT * FROM match_candidates WHERE candidate_id LIKE '{PREFIX}%'").to_pylist()
    return {(row["left_value"], row["right_value"]): row for row in rows}


def test_each_rule_on_a_hand_built_store(engine: Engine, workspace: Workspace) -> None:
    store(engine)
    result = match_records(workspace, engine)
    found = candidates(engine)
    status = {pair: row["status"] for pair, row in found.items()}
    assert status == {
        ("A", "JZ1"): "auto_merged", ("A-jd", "JZ1"): "auto_merged", ("F", "JZ5"): "auto_merged",
        ("A-jd", "A"): "auto_merged",  # one person's JD and Tmall accounts, by the same receiver
        ("B", "JZ2"): "pending", ("B", "JZ3"): "pending", ("C", "JZ4"): "pending", ("D", "JZ4"): "pending",
        ("G", "JZ8"): "pending", ("G", "JZ9"): "pending",
    }
    assert (result.marketplace.auto_merged, result.marketplace.pending) == (4, 6)
    evidence = {pair: json.loads(row["evidence"]) for pair, row in found.items()}
    assert evidence["A", "JZ1"]["conflict"] == "none" and evidence["A", "JZ1"]["orders_fitting"] == 2
    assert evidence["A", "JZ1"]["level"] == LEVELS[0] and evidence["A", "JZ1"]["sharing_key"] == 1
    assert evidence["A", "JZ1"]["compared_with"] == "member_id"
    assert evidence["A-jd", "A"]["compared_with"] == "tmall_open_uid"
    assert evidence["B", "JZ2"]["conflict"] == "buyer_fits_several"
    assert evidence["B", "JZ2"]["fitting"] == 2 and found["B", "JZ2"]["match_probability"] < 0.5
    assert evidence["C", "JZ4"]["conflict"] == "target_fits_several_buyers"
    assert evidence["G", "JZ8"]["conflict"] == "buyer_fits_several"
    assert evidence["F", "JZ5"]["sharing_key"] == 1  # two members, one phone: one candidate
    # Tmall receivers: 5 fits in their city for 8 with a surname; chance fits are negligible.
    assert evidence["A", "JZ1"]["true_fit_rate"] == pytest.approx(5 / 8, abs=1e-3)
    assert 0 <= evidence["A", "JZ1"]["false_link_chance"] <= 1e-3


def test_the_review_queue_shows_the_receiver_beside_the_member(engine: Engine, workspace: Workspace) -> None:
    store(engine)
    match_records(workspace, engine)
    queue = {(row["left_value"], row["right_value"]): row for row in review_queue(engine).to_pylist()}
    assert len(queue) == 6
    row = queue["B", "JZ2"]
    assert (row["l_name"], row["l_phone"], row["l_city"]) == ("李**", "139****1234", "杭州")
    assert (row["r_name"], row["r_phone"], row["r_city"]) == ("李芳", "+8613912341234", "杭州市")


def test_decisions_are_kept_and_change_the_next_run(engine: Engine, workspace: Workspace) -> None:
    store(engine)
    match_records(workspace, engine)
    found = candidates(engine)
    decide_match(engine, found["B", "JZ2"]["candidate_id"], accept=False, reviewer="运营小王")
    decide_match(engine, found["C", "JZ4"]["candidate_id"], accept=True, reviewer="运营小王")

    match_records(workspace, engine)
    again = candidates(engine)
    assert again["B", "JZ2"]["status"] == "rejected" and again["C", "JZ4"]["status"] == "accepted"
    assert again["B", "JZ3"]["status"] == "auto_merged"  # 李芳 ruled out: 李娜 is the only fit
    assert again["D", "JZ4"]["status"] == "pending"       # 张伟 is C's: D still conflicts
    assert json.loads(again["B", "JZ3"]["evidence"])["conflict"] == "none"

    (workspace.definitions_dir / "identity.yaml").write_text("marketplace: {enabled: false}\n", encoding="utf-8")
    result = match_records(workspace, engine)
    assert {pair: row["status"] for pair, row in candidates(engine).items()} == {
        ("B", "JZ2"): "rejected", ("C", "JZ4"): "accepted"}
    assert result.notes[-1][0] == "note.marketplace_disabled"


@pytest.mark.parametrize(("text", "key"), [
    ("marketplace: {review_threshold: 0.99, auto_link_threshold: 0.9}", "marketplace"),
    ("marketplace: {buyer_types: [tmall_uid]}", "marketplace.buyer_types[0]"),
    ("marketplace: {auto_link_treshold: 0.9}", "marketplace.auto_link_treshold"),
])
def test_settings_errors_name_the_key(workspace: Workspace, text: str, key: str) -> None:
    path = workspace.definitions_dir / "identity.yaml"
    path.write_text(text + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as invalid:
        load_identity_config(workspace)
    assert invalid.value.field == key and invalid.value.location == str(path)


def test_demo_buyers_link_to_their_members(portrayed_demo: Path, tmp_path: Path, record_property) -> None:
    """On the demo every buyer whose member record has the phone she ships to is linked,
    and nothing else, and one person's accounts on two platforms are linked to each other;
    the ID graph took every link (none dropped by a limit) and joined both ends."""
    workspace = copy_workspace(portrayed_demo, tmp_path / "ws")
    with open_engine(workspace) as engine:
        quality = marketplace_quality(engine, pq.read_table(portrayed_demo / "demo-truth" / "identifiers.parquet"))
        print(f"\nmarketplace links: {json.dumps(quality.as_dict())}")  # noqa: T201
        record_property("marketplace_quality", json.dumps(quality.as_dict()))
        assert quality.linked > 0.5 * quality.buyers
        assert quality.precision >= 0.99 and quality.recall_with_evidence >= 0.99
        assert quality.linked_across > 0 and quality.precision_across >= 0.99
        links = engine.query(
            "SELECT COUNT(*) AS n, COUNT(revoked_at) AS revoked FROM identity_links WHERE rule = 'marketplace_match'"
        ).to_pylist()[0]
        assert links == {"n": quality.linked + quality.linked_across, "revoked": 0}
        one_person = engine.query(f"""
            SELECT COUNT(*) AS n FROM match_candidates AS c
            JOIN identities AS b ON b.id_type = c.left_type AND b.id_value = c.left_value
            JOIN identities AS m ON m.id_type = c.right_type AND m.id_value = c.right_value
            WHERE c.candidate_id LIKE '{PREFIX}%' AND c.status = 'auto_merged' AND b.person_id = m.person_id
        """).column("n")[0].as_py()
        assert one_person == quality.linked + quality.linked_across
