"""Erasure on request (PIPL art. 47, GDPR art. 17): a person removed from every table.

`erase_person` deletes the person's identifiers, links, match candidates and
overrides, their records (events, orders and order lines, CRM and social rows, survey
responses) and every row of any table with a `person_id` column (traits, tags, scores,
deliveries, message events, consents, segment members, …). The persons row stays with
status `deleted` and no personal data, and the deletion is recorded in
`identity_changes` with counts only.

So that a re-import cannot bring the person back, each identifier is kept in
`erased_identifiers` as SHA-256(workspace salt + stored value) — not reversible without
the salt. Every later `build_identity` hashes the identifiers it observes the same way,
deletes records carrying an erased identifier from the source tables again, and never
lets an erased identifier link.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from jingzhun.core.errors import JingzhunError
from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine
from jingzhun.identity.identifiers import lit, node_sql, salted_sql
from jingzhun.identity.observations import OBSERVATIONS, ObservationPlan, event_record_key_sql
from jingzhun.identity.tables import (
    append_rows,
    delete_keys,
    materialize,
    replace_rows,
    require_tables,
    utc_now,
)
from jingzhun.schema import tables as canonical

log = logging.getLogger(__name__)

ERASED_NODES = "identity_work_erased_nodes"
ERASED_RECORDS = "identity_work_erased_records"
ERASE_PERSONS = "identity_work_erase_persons"
ERASE_IDS = "identity_work_erase_ids"
ERASE_RECORDS = "identity_work_erase_records"
# Tables whose person_id column is the person's identity, not data about them.
KEEP_PERSON_TABLES = ("persons", "identity_changes")


class IdentityError(JingzhunError):
    """An identity operation cannot be done as asked (unknown person, bad identifier …)."""


@dataclass
class ErasureResult:
    """What an erasure removed: rows per table, and the change that records it."""

    person_id: str
    change_id: str
    erased_person_ids: list[str] = field(default_factory=list)
    identifiers: int = 0
    removed: dict[str, int] = field(default_factory=dict)


def erased_nodes_sql(engine: Engine, salt_hex: str | None) -> str:
    """Observed identifiers (and matcher/operator endpoints) whose salted hash was erased."""
    empty = "SELECT CAST(NULL AS VARCHAR) AS node, CAST(NULL AS VARCHAR) AS id_type, CAST(NULL AS VARCHAR) AS id_value WHERE FALSE"
    if salt_hex is None or engine.row_count("erased_identifiers") == 0:
        return empty
    seen = f"""
SELECT id_type, id_value FROM {OBSERVATIONS}
UNION SELECT left_type, left_value FROM match_candidates UNION SELECT right_type, right_value FROM match_candidates
UNION SELECT id_type, id_value FROM identity_overrides
UNION SELECT other_type, other_value FROM identity_overrides WHERE other_type IS NOT NULL
"""
    return f"""
SELECT DISTINCT {node_sql('s.id_type', 's.id_value')} AS node, s.id_type, s.id_value FROM ({seen}) AS s
JOIN erased_identifiers AS x ON x.id_type = s.id_type AND x.id_hash = {salted_sql('s.id_value', salt_hex)}
"""


def purge_erased_records(engine: Engine, plan: ObservationPlan) -> dict[str, int]:
    """Delete re-imported records that carry an erased identifier from the source tables."""
    materialize(engine, ERASED_RECORDS, f"""
SELECT DISTINCT o.record_kind, o.record_id FROM {OBSERVATIONS} AS o
JOIN {ERASED_NODES} AS e ON e.id_type = o.id_type AND e.id_value = o.id_value
""")
    return _delete_records(engine, ERASED_RECORDS, plan)


def _delete_records(engine: Engine, records: str, plan: ObservationPlan | None) -> dict[str, int]:
    """Delete the records listed in `records(record_kind, record_id)` from their tables.

    Events are listed by identity tuple when `plan` is given, else by message_id.
    """
    def keys(kind: str) -> str:
        return f"SELECT record_id AS key FROM {records} WHERE record_kind = {lit(kind)}"

    event_key = event_record_key_sql(plan, "t.") if plan is not None else "t.message_id"
    return {
        "events": delete_keys(engine, "events", event_key, keys("event")),
        "order_items": delete_keys(engine, "order_items", "t.order_id", keys("order")),
        "orders": delete_keys(engine, "orders", "t.order_id", keys("order")),
        "source_records": delete_keys(engine, "source_records", "t.record_id", keys("source_record")),
        "survey_responses": delete_keys(engine, "survey_responses", "t.response_id", keys("survey_response")),
    }


def _active_person(engine: Engine, person_id: str) -> str:
    """The active person an id stands for (following a merge), or an error."""
    rows = engine.query(f"SELECT status, merged_into FROM persons WHERE person_id = {lit(person_id)}").to_pylist()
    if not rows:
        raise IdentityError(
            f"no person {person_id!r}.", field="person_id", fix="look the person up with `jingzhun profile ID`",
            message_zh=f"不存在顾客 {person_id!r}。", fix_zh="用 `jingzhun profile ID` 查找该顾客",
        )
    status, merged_into = rows[0]["status"], rows[0]["merged_into"]
    if status == "deleted":
        raise IdentityError(
            f"person {person_id!r} was already erased.", field="person_id", fix="nothing to do",
            message_zh=f"顾客 {person_id!r} 已被删除。", fix_zh="无需再次操作",
        )
    return _active_person(engine, merged_into) if status == "merged" and merged_into else person_id


def _person_columns(engine: Engine) -> list[str]:
    """Every table holding data about persons by a `person_id` column."""
    found = []
    for name in engine.list_tables():
        if name in KEEP_PERSON_TABLES or name.startswith("identity_work_"):
            continue
        if "person_id" in engine.query(f"SELECT * FROM {name} LIMIT 0").column_names:
            found.append(name)
    return found


def erase_person(workspace: Workspace, engine: Engine, person_id: str, actor: str) -> ErasureResult:
    """Erase a person (and every person merged into them) from every table.

    Args:
        workspace: supplies the salt used for the erased-identifier hashes.
        engine: where the tables are.
        person_id: the person to erase (a merged id erases the person it was merged into).
        actor: who asked (recorded in identity_changes and audit_log).
    """
    require_tables(engine)
    salt_file = workspace.resolve(workspace.config.pii.salt_file)
    if not salt_file.is_file():
        raise IdentityError(
            f"the workspace has no PII salt at {salt_file}.", field="pii.salt_file",
            fix="restore the salt file (erased identifiers are hashed with it) or set pii.salt_file",
            message_zh=f"工作区缺少 PII 盐值文件 {salt_file}。", fix_zh="恢复盐值文件（删除记录用它做哈希），或设置 pii.salt_file",
        )
    salt = salt_file.read_bytes().hex()
    target = _active_person(engine, person_id)
    now = utc_now()
    change_id = "C" + _digest(f"delete|{target}|{now.isoformat()}")[:16]
    try:
        with engine.transaction():   # an erasure is all or nothing where the engine allows
            result = _erase(engine, target, change_id, salt, now, actor)
    finally:
        for name in (ERASE_PERSONS, ERASE_IDS, ERASE_RECORDS, "identity_work_changes_scrubbed",
                     "identity_work_persons_erased"):
            engine.drop_table(name)
    log.info("erased person %s: %s", target, result.removed)
    return result


def _digest(text: str) -> str:
    import hashlib

    return hashlib.md5(text.encode()).hexdigest()


def _erase(engine: Engine, target: str, change_id: str, salt: str, now, actor: str) -> ErasureResult:
    materialize(engine, ERASE_PERSONS, f"SELECT person_id FROM persons WHERE person_id = {lit(target)} "
                                      f"OR (status = 'merged' AND merged_into = {lit(target)})")
    aliases = sorted(engine.read_table(ERASE_PERSONS).column("person_id").to_pylist())
    materialize(engine, ERASE_IDS, f"""
SELECT i.id_type, i.id_value, {node_sql('i.id_type', 'i.id_value')} AS node FROM identities AS i
JOIN {ERASE_PERSONS} AS p ON p.person_id = i.person_id
""")
    materialize(engine, ERASE_RECORDS, f"""
SELECT r.record_kind, r.record_id FROM record_persons AS r JOIN {ERASE_PERSONS} AS p ON p.person_id = r.person_id
""")
    at = f"CAST({lit(now.isoformat())} AS TIMESTAMPTZ)"
    append_rows(engine, canonical.ERASED_IDENTIFIERS, f"""
SELECT DISTINCT id_type, {salted_sql('id_value', salt)} AS id_hash, {lit(change_id)} AS change_id, {at} AS erased_at
FROM {ERASE_IDS}
""")
    result = ErasureResult(target, change_id, aliases, engine.row_count(ERASE_IDS))
    result.removed.update(_delete_records(engine, ERASE_RECORDS, None))
    result.removed.update(_delete_identifier_rows(engine))
    ids = f"SELECT person_id AS key FROM {ERASE_PERSONS}"
    for table in _person_columns(engine):
        result.removed[table] = delete_keys(engine, table, "t.person_id", ids)
    _scrub_changes_and_persons(engine, now)
    _record_deletion(engine, result, now, actor)
    return result


def _delete_identifier_rows(engine: Engine) -> dict[str, int]:
    """Links, candidates, overrides and suppressions that name an erased identifier."""
    nodes = f"SELECT node AS key FROM {ERASE_IDS}"
    removed = {}
    for table, left, right in (
        ("identity_links", ("left_type", "left_value"), ("right_type", "right_value")),
        ("match_candidates", ("left_type", "left_value"), ("right_type", "right_value")),
        ("identity_overrides", ("id_type", "id_value"), ("other_type", "other_value")),
    ):
        first = delete_keys(engine, table, node_sql(f"t.{left[0]}", f"t.{left[1]}"), nodes)
        second = delete_keys(engine, table, node_sql(f"t.{right[0]}", f"t.{right[1]}"), nodes)
        removed[table] = first + second
    if engine.table_exists("suppressions"):
        removed["suppressions"] = delete_keys(engine, "suppressions", node_sql("t.id_type", "t.id_value"), nodes)
    return removed


def _scrub_changes_and_persons(engine: Engine, now) -> None:
    """Erased persons keep a `deleted` row; their change records lose the evidence."""
    at = f"CAST({lit(now.isoformat())} AS TIMESTAMPTZ)"
    mine = f"c.person_id IN (SELECT person_id FROM {ERASE_PERSONS})"
    materialize(engine, "identity_work_changes_scrubbed", f"""
SELECT c.change_id, c.occurred_at, c.kind, c.person_id, c.other_person_ids, c.rule,
  CASE WHEN {mine} THEN '{{"erased":true}}' ELSE c.evidence END AS evidence, c.actor
FROM identity_changes AS c
""")
    replace_rows(engine, canonical.IDENTITY_CHANGES, "SELECT * FROM identity_work_changes_scrubbed")
    materialize(engine, "identity_work_persons_erased", f"""
SELECT p.person_id, CASE WHEN e.person_id IS NULL THEN p.status ELSE 'deleted' END AS status,
  CASE WHEN e.person_id IS NULL THEN p.merged_into END AS merged_into, p.created_at,
  CASE WHEN e.person_id IS NULL THEN p.updated_at ELSE {at} END AS updated_at
FROM persons AS p LEFT JOIN {ERASE_PERSONS} AS e ON e.person_id = p.person_id
""")
    replace_rows(engine, canonical.PERSONS, "SELECT * FROM identity_work_persons_erased")


def _record_deletion(engine: Engine, result: ErasureResult, now, actor: str) -> None:
    """The deletion in identity_changes and audit_log: ids and counts, no personal data."""
    import json

    at = f"CAST({lit(now.isoformat())} AS TIMESTAMPTZ)"
    evidence = json.dumps({"identifiers": result.identifiers, "removed": result.removed}, sort_keys=True)
    append_rows(engine, canonical.IDENTITY_CHANGES, f"""
SELECT {lit(result.change_id)} AS change_id, {at} AS occurred_at, 'delete' AS kind,
  {lit(result.person_id)} AS person_id, {lit(json.dumps(result.erased_person_ids))} AS other_person_ids,
  'erasure_request' AS rule, {lit(evidence)} AS evidence, {lit(actor)} AS actor
""")
    if engine.table_exists("audit_log"):
        append_rows(engine, canonical.AUDIT_LOG, f"""
SELECT {lit(result.change_id)} AS audit_id, {at} AS occurred_at, {lit(actor)} AS actor,
  'identity.erase' AS action, 'person' AS object_type, {lit(result.person_id)} AS object_id,
  {lit(evidence)} AS details
""")
