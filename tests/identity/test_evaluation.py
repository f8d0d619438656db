"""The ID graph on the demo workspace, scored against the demo's ground truth."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from jingzhun.engine import open_engine
from jingzhun.identity import build_identity
from jingzhun.identity.evaluation import pairwise_scores
from tests.conftest import copy_workspace
from tests.identity import records as r

LIMITED = ("wechat_unionid", "tmall_open_uid", "jd_pin", "douyin_user_id", "weibo_user_id")


@pytest.fixture(scope="module")
def demo(loaded_demo, tmp_path_factory):
    """The demo with junk planted in it, identity built once."""
    workspace = copy_workspace(loaded_demo, tmp_path_factory.mktemp("identity-demo") / "ws")
    engine = open_engine(workspace)
    members = engine.query("SELECT DISTINCT identifiers->>'$.member_id' AS m FROM source_records "
                           "WHERE kind = 'member' ORDER BY m LIMIT 8").column("m").to_pylist()
    for n, member in enumerate(members[:4]):   # a test number typed at the till for four members
        r.order(engine, f"junk-test-{n}", identifiers={"member_id": member, "phone": "13800138000"})
    for n, member in enumerate(members[4:]):   # the store's own landline for four others
        r.order(engine, f"junk-store-{n}", identifiers={"member_id": member, "phone": "021-6234 5678"})
    result = build_identity(workspace, engine)
    yield workspace, engine, result, members
    engine.close()


def test_demo_pairwise_precision_and_recall(demo, capsys) -> None:
    workspace, engine, _, _ = demo
    truth = pq.read_table(workspace.root / "demo-truth" / "identifiers.parquet")
    overall = pairwise_scores(engine, truth)
    duplicates = pairwise_scores(engine, truth, ["member_id"])
    with capsys.disabled():
        print(f"\n[identity, deterministic] all identifiers: {overall.describe()}")  # noqa: T201
        print(f"[identity, deterministic] member ids (planted duplicates): {duplicates.describe()}")  # noqa: T201
    assert overall.precision >= 0.99
    assert duplicates.precision >= 0.99
    # Re-registrations that kept their phone merge deterministically (~70%); the
    # probabilistic matcher recovers the ones with a new phone and a mistyped name.
    assert duplicates.recall >= 0.6
    assert overall.coverage > 0.5


def test_demo_junk_never_merges(demo) -> None:
    _, engine, result, members = demo
    persons = {r.person_of(engine, "member_id", member) for member in members}
    assert len(persons) == len(members)
    junk = {(row["id_value"], row["reason"]) for row in engine.read_table("identity_junk").to_pylist()}
    assert ("+8613800138000", "blocklist") in junk and ("+862162345678", "shared") in junk
    assert ("note.identity_junk", {"reason": "shared", "count": 1}) in result.notes


def test_demo_limits_and_record_owners(demo) -> None:
    _, engine, _, _ = demo
    broken = engine.query(f"""
SELECT person_id, id_type, COUNT(*) AS n FROM identities
WHERE id_type IN {tuple(LIMITED)} GROUP BY person_id, id_type HAVING COUNT(*) > 1
UNION ALL
SELECT person_id, id_type, COUNT(*) FROM identities WHERE id_type = 'member_id'
GROUP BY person_id, id_type HAVING COUNT(*) > 2
""")
    assert broken.num_rows == 0, broken.to_pylist()[:5]
    owners = engine.query("SELECT record_kind, COUNT(*) AS n, COUNT(DISTINCT record_id) AS d "
                          "FROM record_persons GROUP BY record_kind").to_pylist()
    counts = {row["record_kind"]: row["n"] for row in owners}
    assert all(row["n"] == row["d"] for row in owners)           # one person per record
    assert counts["event"] == engine.row_count("events")          # every event has a cookie
    assert counts["source_record"] == engine.row_count("source_records")
    assert counts["survey_response"] == engine.row_count("survey_responses")
    attributable = engine.query(
        "SELECT COUNT(*) AS n FROM orders WHERE (customer_ref IS NOT NULL OR customer_identifiers IS NOT NULL) "
        "AND COALESCE(customer_ref_type, '') <> 'phone_masked'").column("n")[0].as_py()
    assert counts["order"] == attributable       # a masked phone alone names nobody
    active = engine.query("SELECT COUNT(*) AS n FROM persons WHERE status = 'active'").column("n")[0].as_py()
    assert active == engine.query("SELECT COUNT(DISTINCT person_id) AS n FROM identities").column("n")[0].as_py()


def test_demo_rebuild_is_stable(demo) -> None:
    workspace, engine, _, _ = demo
    before = engine.query("SELECT id_type, id_value, person_id FROM identities ORDER BY 1, 2").to_pylist()
    build_identity(workspace, engine)
    after = engine.query("SELECT id_type, id_value, person_id FROM identities ORDER BY 1, 2").to_pylist()
    assert before == after
    assert engine.row_count("identity_changes") == 0
    assert json.dumps(before[:1])
