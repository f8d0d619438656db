"""Operator decisions: resolve, bind, unbind, unmerge — respected by every rebuild."""

from __future__ import annotations

import pytest

from jingzhun.identity import (
    IdentityError,
    bind_identifier,
    build_identity,
    find_person,
    resolve_person,
    unbind_identifier,
    unmerge_person,
)
from tests.identity import records as r


@pytest.fixture
def ready(engine, workspace):
    r.prepare(engine)
    return workspace, engine


def test_resolve_normalizes_the_raw_value(ready) -> None:
    workspace, engine = ready
    r.crm(engine, "c1", member_id="JZ1", phone="13812345678", email="wang@qq.com")
    build_identity(workspace, engine)
    person = r.person_of(engine, "member_id", "JZ1")
    for id_type, raw in [("phone", "138-1234-5678"), ("phone", "+86 138 1234 5678"),
                         ("email", " WANG@QQ.COM"), ("member_id", "JZ1"), ("mobile", "13812345678")]:
        assert resolve_person(engine, id_type, raw, workspace=workspace) == person, raw
    assert resolve_person(engine, "phone", "13900000000", workspace=workspace) is None
    assert find_person(engine, "138 1234 5678", workspace=workspace) == person
    assert find_person(engine, person, workspace=workspace) == person
    with pytest.raises(IdentityError) as unknown:
        resolve_person(engine, "qq_number", "12345")
    assert unknown.value.field == "id_type"


def test_bind_joins_and_unbind_parts(ready) -> None:
    workspace, engine = ready
    r.crm(engine, "c1", member_id="JZ1", phone="13812345678")
    r.order(engine, "o1", ref="t-buyer", ref_type="tmall_open_uid")
    build_identity(workspace, engine)
    bind_identifier(engine, "member_id", "JZ1", "tmall_open_uid", "t-buyer", "ops@brand", "same address",
                    workspace=workspace)
    build_identity(workspace, engine)
    member = r.person_of(engine, "member_id", "JZ1")
    assert r.person_of(engine, "tmall_open_uid", "t-buyer") == member
    merge = r.changes(engine, "merge")
    assert len(merge) == 1 and merge[0]["rule"] == "operator_bind"

    unbind_identifier(engine, "phone", "138 1234 5678", "ops@brand", "shared family phone", workspace=workspace)
    build_identity(workspace, engine)
    assert r.person_of(engine, "phone", "+8613812345678") != member
    assert r.person_of(engine, "member_id", "JZ1") == member
    split = r.changes(engine, "split")
    assert len(split) == 1 and split[0]["rule"] == "operator_unbind" and split[0]["actor"] == "ops@brand"


def test_bind_refuses_two_unionids(ready) -> None:
    workspace, engine = ready
    r.crm(engine, "c1", member_id="JZ1", wechat_unionid="uA")
    r.crm(engine, "c2", member_id="JZ2", wechat_unionid="uB")
    build_identity(workspace, engine)
    with pytest.raises(IdentityError) as refused:
        bind_identifier(engine, "member_id", "JZ1", "member_id", "JZ2", "ops", workspace=workspace)
    assert "wechat_unionid" in refused.value.message


def test_unmerge_shows_the_rule_and_splits_on_rebuild(ready) -> None:
    workspace, engine = ready
    r.crm(engine, "c1", member_id="JZ1", phone="13711112222", minutes=1)
    r.identify(engine, "JZ1", "cookie-1")
    r.crm(engine, "c2", member_id="JZ9", phone="13711112222", minutes=5)   # a neighbour typed the same phone
    r.identify(engine, "JZ9", "cookie-9")
    build_identity(workspace, engine)
    person = r.person_of(engine, "member_id", "JZ1")
    assert r.person_of(engine, "member_id", "JZ9") == person

    result = unmerge_person(engine, person, "member_id", "JZ9", "ops@brand", "different people",
                            workspace=workspace)
    assert result.rules == ["crm_record", "identify_traits"]
    assert result.kept_with.id_type == "member_id" and result.kept_with.id_value == "JZ1"
    assert "crm_record" in result.explain("en")
    build_identity(workspace, engine)
    assert r.person_of(engine, "member_id", "JZ1") == person           # the larger part keeps the id
    other = r.person_of(engine, "member_id", "JZ9")
    assert other != person
    assert r.person_of(engine, "anonymous_id", "cookie-9") == other   # its own cookie goes with it
    assert r.person_of(engine, "anonymous_id", "cookie-1") == person
    split = r.changes(engine, "split")
    assert len(split) == 1 and split[0]["rule"] == "operator_unmerge" and other in split[0]["other_person_ids"]
    build_identity(workspace, engine)                                 # the decision holds on rebuilds
    assert r.person_of(engine, "member_id", "JZ9") == other and len(r.changes(engine)) == 1


def test_unmerge_refuses_an_identifier_of_someone_else(ready) -> None:
    workspace, engine = ready
    r.crm(engine, "c1", member_id="JZ1")
    r.crm(engine, "c2", member_id="JZ2")
    build_identity(workspace, engine)
    with pytest.raises(IdentityError):
        unmerge_person(engine, r.person_of(engine, "member_id", "JZ1"), "member_id", "JZ2", "ops",
                       workspace=workspace)
