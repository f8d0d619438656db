"""The operator API: look a person up, bind, unbind and unmerge identifiers.

Operators' decisions are rows in `identity_overrides`; the ID graph respects them on
every rebuild (so a decision survives new data), and the change they cause — a merge
or a split — is recorded by the next `build_identity` run with the operator as actor.

Raw values are normalized with the same SQL the graph uses (a phone typed as
`138-1234-5678` finds `+8613812345678`; under salted PII storage the salted hash).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import pyarrow as pa

from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine
from jingzhun.identity.config import load_identity_config
from jingzhun.identity.erasure import IdentityError
from jingzhun.identity.graph import normalize_settings
from jingzhun.identity.identifiers import (
    lit,
    normalized_type_sql,
    plain_value_sql,
    stored_value_sql,
)
from jingzhun.identity.tables import utc_now

PERSON_ID = re.compile(r"^P[0-9a-f]{16}$")


@dataclass(frozen=True)
class Identifier:
    """A normalized identifier, as stored in `identities`."""

    id_type: str
    id_value: str


@dataclass
class UnmergeResult:
    """What an unmerge recorded and why the identifier had been merged."""

    override_id: str
    person_id: str
    identifier: Identifier
    kept_with: Identifier
    rules: list[str] = field(default_factory=list)
    links: list[dict[str, object]] = field(default_factory=list)
    merge_change_id: str | None = None
    pending: bool = True  # takes effect on the next build_identity / pipeline run

    def explain(self, language: str = "zh") -> str:
        """One line for the operator: which rule joined the identifier to the person."""
        rules = ", ".join(self.rules) or "-"
        if language.startswith("zh"):
            return (f"{self.identifier.id_type} 因规则 {rules} 并入顾客 {self.person_id}；"
                    f"已记录拆分，下次运行流水线时生效。")
        return (f"{self.identifier.id_type} was merged into {self.person_id} by rule {rules}; "
                f"the split is recorded and takes effect on the next pipeline run.")


def normalize_identifier(engine: Engine, id_type: str, raw_value: str,
                         workspace: Workspace | None = None) -> Identifier | None:
    """The identifier as stored for `raw_value` of `id_type`; None if it is not valid."""
    registry = load_identity_config(workspace).registry()
    kind = registry.aliases.get(id_type, id_type)
    if registry.get(kind) is None:
        raise IdentityError(
            f"unknown id type {id_type!r}.", field="id_type",
            fix=f"use one of: {', '.join(registry.names())}",
            message_zh=f"未知的标识类型 {id_type!r}。", fix_zh=f"可用类型：{'、'.join(registry.names())}",
        )
    settings = normalize_settings(workspace)
    typed = normalized_type_sql("t", "v")
    plain = plain_value_sql("nt", "v", registry, settings)
    stored = stored_value_sql("nt", "p", registry, settings)
    sql = (f"SELECT nt, {stored} AS value FROM (SELECT nt, {plain} AS p FROM (SELECT t, v, {typed} AS nt "
           f"FROM (SELECT {lit(kind)} AS t, {lit(raw_value)} AS v) AS i) AS x) AS y WHERE p IS NOT NULL")
    rows = engine.query(sql).to_pylist()
    return Identifier(rows[0]["nt"], rows[0]["value"]) if rows else None


def resolve_person(engine: Engine, id_type: str, raw_value: str, *,
                   workspace: Workspace | None = None) -> str | None:
    """The active person an identifier belongs to (normalizing `raw_value` first)."""
    identifier = normalize_identifier(engine, id_type, raw_value, workspace)
    if identifier is None:
        return None
    rows = engine.query(f"SELECT person_id FROM identities WHERE id_type = {lit(identifier.id_type)} "
                        f"AND id_value = {lit(identifier.id_value)}").to_pylist()
    return rows[0]["person_id"] if rows else None


def find_person(engine: Engine, text: str, *, workspace: Workspace | None = None) -> str | None:
    """Any identifier a person might type — person id, phone, e-mail, member id … — to the person.

    Used by `jingzhun profile ID`: tries a person id (following merges), then every
    linkable id type from the strongest down.
    """
    text = text.strip()
    if PERSON_ID.match(text):
        rows = engine.query(f"SELECT status, merged_into FROM persons WHERE person_id = {lit(text)}").to_pylist()
        if rows and rows[0]["status"] == "merged" and rows[0]["merged_into"]:
            return find_person(engine, rows[0]["merged_into"], workspace=workspace)
        if rows and rows[0]["status"] == "active":
            return text
    registry = load_identity_config(workspace).registry()
    settings = normalize_settings(workspace)
    kinds = ", ".join(f"({lit(k.name)}, {k.priority})" for k in registry.linkable)
    typed = normalized_type_sql("t", "v")
    plain = plain_value_sql("nt", "v", registry, settings)
    stored = stored_value_sql("nt", "p", registry, settings)
    rows = engine.query(f"""
SELECT i.person_id FROM (
  SELECT nt, priority, {stored} AS value FROM (
    SELECT nt, priority, {plain} AS p FROM (
      SELECT t, v, priority, {typed} AS nt FROM (VALUES {kinds}) AS k(t, priority)
      CROSS JOIN (SELECT {lit(text)} AS v) AS raw) AS typed) AS normalized
  WHERE p IS NOT NULL) AS c
JOIN identities AS i ON i.id_type = c.nt AND i.id_value = c.value
ORDER BY c.priority DESC, i.id_type LIMIT 1
""").to_pylist()
    return rows[0]["person_id"] if rows else None


def _required(engine: Engine, id_type: str, raw_value: str, workspace: Workspace | None) -> Identifier:
    identifier = normalize_identifier(engine, id_type, raw_value, workspace)
    if identifier is None:
        raise IdentityError(
            f"{raw_value!r} is not a valid {id_type}.", field="id_value",
            fix="check the value (a phone has 11 digits, an e-mail an @)",
            message_zh=f"{raw_value!r} 不是有效的 {id_type}。", fix_zh="请检查取值（手机号 11 位，邮箱含 @）",
        )
    return identifier


def _write_override(engine: Engine, kind: str, identifier: Identifier, other: Identifier | None,
                    actor: str, reason: str) -> str:
    now = utc_now()
    seed = f"{kind}|{identifier}|{other}|{actor}|{now.isoformat()}"
    override_id = "O" + hashlib.md5(seed.encode()).hexdigest()[:16]
    row = pa.table({
        "override_id": [override_id], "kind": [kind], "id_type": [identifier.id_type],
        "id_value": [identifier.id_value], "other_type": pa.array([other.id_type if other else None], pa.string()),
        "other_value": pa.array([other.id_value if other else None], pa.string()),
        "reason": [reason], "created_at": pa.array([now], pa.timestamp("us", tz="UTC")),
        "created_by": [actor], "revoked_at": pa.array([None], pa.timestamp("us", tz="UTC")),
    })
    engine.write_table("identity_overrides", row, mode="append")
    return override_id


def bind_identifier(engine: Engine, id_type: str, id_value: str, other_type: str, other_value: str,
                    actor: str, reason: str = "", *, workspace: Workspace | None = None) -> str:
    """Bind two identifiers to one person (on the next build); return the override id.

    Refused when the two persons they belong to hold different values of a
    one-per-person id type (for example two unionids): unbind one of them first.
    """
    one = _required(engine, id_type, id_value, workspace)
    other = _required(engine, other_type, other_value, workspace)
    _check_bind_limits(engine, one, other, workspace)
    return _write_override(engine, "bind", one, other, actor, reason)


def _check_bind_limits(engine: Engine, one: Identifier, other: Identifier, workspace: Workspace | None) -> None:
    registry = load_identity_config(workspace).registry()
    limits = {kind.name: kind.max_per_person for kind in registry.limited}
    persons = [p for p in (resolve_person(engine, i.id_type, i.id_value, workspace=workspace) for i in (one, other)) if p]
    held = [Identifier(i.id_type, i.id_value) for i in (one, other)]
    if persons:
        rows = engine.query("SELECT id_type, id_value FROM identities WHERE person_id IN "
                            f"({', '.join(lit(p) for p in set(persons))})").to_pylist()
        held += [Identifier(r["id_type"], r["id_value"]) for r in rows]
    for kind, limit in limits.items():
        values = {i.id_value for i in held if i.id_type == kind}
        if limit is not None and len(values) > limit:
            raise IdentityError(
                f"binding would give one person {len(values)} values of {kind} (at most {limit}).",
                field="id_type", fix=f"unbind one of the {kind} values first",
                message_zh=f"绑定后同一顾客将有 {len(values)} 个 {kind}（最多 {limit} 个）。",
                fix_zh=f"请先解绑其中一个 {kind}",
            )


def unbind_identifier(engine: Engine, id_type: str, id_value: str, actor: str, reason: str = "", *,
                      other_type: str | None = None, other_value: str | None = None,
                      workspace: Workspace | None = None) -> str:
    """Part an identifier from its person (from `other` only, when given); return the override id.

    Without `other`, every link of the identifier is ignored from the next build on
    and it becomes a person of its own. With `other`, the two are kept apart.
    """
    one = _required(engine, id_type, id_value, workspace)
    other = _required(engine, other_type, other_value, workspace) if other_type and other_value else None
    return _write_override(engine, "unbind", one, other, actor, reason)


def unmerge_person(engine: Engine, person_id: str, id_type: str, id_value: str, actor: str,
                   reason: str = "", *, workspace: Workspace | None = None) -> UnmergeResult:
    """Split the identifier (and what hangs only on it) out of `person_id`.

    Returns the rule(s) and links that had merged it, and the identifier the rest of
    the person keeps; the split happens on the next build.
    """
    identifier = _required(engine, id_type, id_value, workspace)
    owner = resolve_person(engine, identifier.id_type, identifier.id_value, workspace=workspace)
    if owner != person_id:
        raise IdentityError(
            f"{identifier.id_type} {id_value!r} does not belong to person {person_id!r}.", field="id_value",
            fix="pick an identifier shown by `jingzhun profile` for this person",
            message_zh=f"{identifier.id_type} {id_value!r} 不属于顾客 {person_id!r}。",
            fix_zh="请选择 `jingzhun profile` 中显示的该顾客的标识",
        )
    kept = _primary_other(engine, person_id, identifier, workspace)
    links = _links_of(engine, identifier)
    override_id = _write_override(engine, "unmerge", identifier, kept, actor, reason)
    return UnmergeResult(override_id, person_id, identifier, kept,
                         sorted({str(link["rule"]) for link in links}), links,
                         _merge_change(engine, person_id, identifier))


def _primary_other(engine: Engine, person_id: str, identifier: Identifier,
                   workspace: Workspace | None) -> Identifier:
    """The identifier the rest of the person keeps: the strongest, then the oldest."""
    registry = load_identity_config(workspace).registry()
    priority = " ".join(f"WHEN {lit(k.name)} THEN {k.priority}" for k in registry.types)
    rows = engine.query(f"""
SELECT id_type, id_value FROM identities WHERE person_id = {lit(person_id)}
  AND NOT (id_type = {lit(identifier.id_type)} AND id_value = {lit(identifier.id_value)})
ORDER BY CASE id_type {priority} ELSE 0 END DESC, first_seen NULLS LAST, id_type, id_value LIMIT 1
""").to_pylist()
    if not rows:
        raise IdentityError(
            f"person {person_id!r} has no other identifier to split from.", field="id_value",
            fix="nothing to split: the person is this identifier alone",
            message_zh=f"顾客 {person_id!r} 没有其他标识可拆分。", fix_zh="无需拆分：该顾客只有这一个标识",
        )
    return Identifier(rows[0]["id_type"], rows[0]["id_value"])


def _links_of(engine: Engine, identifier: Identifier) -> list[dict[str, object]]:
    """The active links that tie the identifier to others, with their rules."""
    t, v = lit(identifier.id_type), lit(identifier.id_value)
    return engine.query(f"""
SELECT link_id, rule, left_type, left_value, right_type, right_value, evidence, observed_at
FROM identity_links WHERE revoked_at IS NULL
  AND ((left_type = {t} AND left_value = {v}) OR (right_type = {t} AND right_value = {v}))
ORDER BY observed_at, link_id
""").to_pylist()


def _merge_change(engine: Engine, person_id: str, identifier: Identifier) -> str | None:
    """The latest merge into this person whose evidence names the identifier, if any."""
    rows = engine.query(f"""
SELECT change_id FROM identity_changes WHERE kind = 'merge' AND person_id = {lit(person_id)}
  AND evidence LIKE {lit('%' + identifier.id_value + '%')} ORDER BY occurred_at DESC LIMIT 1
""").to_pylist()
    return rows[0]["change_id"] if rows else None
