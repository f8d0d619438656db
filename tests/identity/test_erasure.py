"""Erasure on request: gone from every table, and a re-import cannot bring it back."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from jingzhun.identity import IdentityError, build_identity, erase_person
from tests.identity import records as r


@pytest.fixture
def ready(engine, workspace):
    r.prepare(engine)
    return workspace, engine


def _load_person(engine) -> None:
    r.identify(engine, "JZ1", "cookie-1", phone="13812345678")
    r.event(engine, anonymous_id="cookie-1", user_id="JZ1")
    r.order(engine, "o1", identifiers={"member_id": "JZ1"})
    r.crm(engine, "c1", member_id="JZ1", phone="13812345678", email="wang@qq.com")
    r.survey(engine, "s1", "JZ1", "member_id")


def test_erase_removes_the_person_everywhere(ready) -> None:
    workspace, engine = ready
    _load_person(engine)
    r.crm(engine, "c2", member_id="JZ2", phone="13900001111")          # someone else, untouched
    build_identity(workspace, engine)
    person = r.person_of(engine, "member_id", "JZ1")
    other = r.person_of(engine, "member_id", "JZ2")
    engine.write_table("traits", pa.table({"person_id": [person, other], "trait": ["city", "city"],
                                           "value": ["上海", "北京"],
                                           "valid_from": pa.array([r.T0, r.T0], pa.timestamp("us", tz="UTC"))}))

    result = erase_person(workspace, engine, person, "dpo@brand")
    assert result.identifiers == 4  # member id, cookie, phone, e-mail
    for table, where in [("events", "TRUE"), ("orders", "TRUE"), ("order_items", "TRUE"),
                         ("survey_responses", "TRUE"), ("source_records", "record_id = 'c1'"),
                         ("identities", f"person_id = '{person}'"), ("record_persons", f"person_id = '{person}'"),
                         ("traits", f"person_id = '{person}'"),
                         ("identity_links", "left_value = 'JZ1' OR right_value = 'JZ1'")]:
        assert engine.query(f"SELECT COUNT(*) AS n FROM {table} WHERE {where}").column("n")[0].as_py() == 0, table
    assert r.person_of(engine, "member_id", "JZ2") == other
    assert engine.row_count("traits") == 1
    status = [p for p in r.persons_table(engine) if p["person_id"] == person]
    assert status == [{"person_id": person, "status": "deleted", "merged_into": None}]
    delete = r.changes(engine, "delete")
    assert len(delete) == 1 and delete[0]["rule"] == "erasure_request" and delete[0]["actor"] == "dpo@brand"
    text = json.dumps(delete[0], default=str)
    assert "13812345678" not in text and "JZ1" not in text and "wang@qq.com" not in text
    hashes = engine.query("SELECT id_type, id_hash FROM erased_identifiers").to_pylist()
    assert len(hashes) == 4 and all(len(row["id_hash"]) == 64 for row in hashes)
    with pytest.raises(IdentityError):
        erase_person(workspace, engine, person, "dpo@brand")


def test_reimport_cannot_bring_an_erased_person_back(ready) -> None:
    workspace, engine = ready
    _load_person(engine)
    build_identity(workspace, engine)
    person = r.person_of(engine, "member_id", "JZ1")
    erase_person(workspace, engine, person, "dpo@brand")
    _load_person(engine)                                     # the same files imported again
    r.identify(engine, "JZ1", "cookie-new")                  # and a new visit on a new browser
    r.crm(engine, "c3", member_id="JZ3")
    result = build_identity(workspace, engine)
    assert r.person_of(engine, "member_id", "JZ1") is None
    assert r.person_of(engine, "anonymous_id", "cookie-new") is None
    assert r.person_of(engine, "phone", "+8613812345678") is None
    assert engine.row_count("events") == 0 and engine.row_count("orders") == 0
    assert engine.query("SELECT record_id FROM source_records").column("record_id").to_pylist() == ["c3"]
    assert r.person_of(engine, "member_id", "JZ3") is not None
    assert ("note.identity_erased_purged", {"count": 7}) in result.notes
