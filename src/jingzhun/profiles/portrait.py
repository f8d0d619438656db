"""One customer's whole portrait (客户 360 视图): identities, traits, tags, scores, timeline.

`jingzhun profile ID`, the REST API and the console's person page all show this. Each
part is a query a user can rerun, so every number on the page can be traced; the
identifier the user typed is normalized and resolved by the identity stage first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pyarrow as pa
from sqlglot import exp

from jingzhun import identity
from jingzhun.core.errors import JingzhunError
from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine
from jingzhun.identity import resolve_person

TIMELINE_LIMIT = 50

class PersonNotFound(JingzhunError):
    """No person holds the identifier the user asked for."""


@dataclass(frozen=True)
class Portrait:
    """Everything known about one person; `queries` holds the SQL behind each part."""

    person_id: str
    identities: pa.Table
    traits: pa.Table
    tags: pa.Table
    scores: pa.Table
    timeline: pa.Table
    queries: dict[str, str] = field(default_factory=dict)


def find_person(engine: Engine, text: str, workspace: Workspace | None = None) -> str:
    """The person behind what the user typed: `TYPE:VALUE` (normalized first), or a bare
    person id, phone, e-mail, member id … tried from the strongest identifier type down."""
    kind, sep, value = text.partition(":")
    if sep and re.fullmatch(r"[a-z][a-z_0-9]*", kind):
        person = resolve_person(engine, kind, value.strip(), workspace=workspace)
    else:
        person = identity.find_person(engine, text, workspace=workspace)
    if person is None:
        raise PersonNotFound(
            f"no customer has the identifier {text!r}.", field="ID",
            fix="check the value or write it as TYPE:VALUE (phone:138…, member_id:JZ…); "
                "run `jingzhun pipeline` so newly collected data is resolved",
            message_zh=f"没有客户持有标识 {text!r}。",
            fix_zh="请检查取值，或写成 类型:值（phone:138…、member_id:JZ…）；运行 `jingzhun pipeline` 解析新采集的数据")
    return person


def portrait_queries(person_id: str, timeline_limit: int = TIMELINE_LIMIT) -> dict[str, exp.Select]:
    """The queries behind each part of the portrait (pure: no connection)."""
    person = exp.column("person_id").eq(exp.convert(person_id))
    return {
        "identities": exp.select("id_type", "id_value", "strength", "first_seen", "last_seen", "source_id")
        .from_("identities").where(person).order_by("id_type", "id_value"),
        "traits": exp.select("trait", "value", "value_type", "source", "valid_from")
        .from_("traits").where(person).where("valid_to IS NULL").order_by("trait"),
        "tags": exp.select("t.tag_id", "d.name_zh", "d.name_en", "d.category", "t.value", "t.valid_from")
        .from_("tags AS t")
        .join("tag_definitions AS d", on="d.tag_id = t.tag_id AND d.version = t.tag_version", join_type="left")
        .where(exp.column("person_id", table="t").eq(exp.convert(person_id)))
        .where("t.valid_to IS NULL").order_by("d.category", "t.tag_id"),
        "scores": exp.select("s.model", "s.model_version", "s.score", "s.computed_at")
        .from_("scores AS s").where(exp.column("person_id", table="s").eq(exp.convert(person_id)))
        .order_by("s.model"),
        "timeline": _timeline_sql(person_id, timeline_limit),
    }


def _timeline_sql(person_id: str, limit: int) -> exp.Select:
    """Events, orders and CRM/social records of the person, newest first."""
    owned = exp.column("person_id", table="rp").eq(exp.convert(person_id))
    events = (exp.select(exp.column("timestamp", table="e").as_("at"), exp.Literal.string("event").as_("kind"),
                         exp.func("coalesce", exp.column("event", table="e"), exp.column("name", table="e"),
                                  exp.column("type", table="e")).as_("what"),
                         exp.column("channel", table="e").as_("channel"),
                         exp.column("message_id", table="e").as_("record_id"))
              .from_("record_persons AS rp")
              .join("events AS e", on="rp.record_kind = 'event' AND rp.record_id = e.message_id")
              .where(owned))
    orders = (exp.select(exp.column("placed_at", table="o").as_("at"), exp.Literal.string("order").as_("kind"),
                         exp.func("concat", exp.column("platform", table="o"), exp.Literal.string(" "),
                                  exp.cast(exp.column("net_amount", table="o"), "VARCHAR"),
                                  exp.Literal.string(" "), exp.column("currency", table="o")).as_("what"),
                         exp.column("channel", table="o").as_("channel"),
                         exp.column("order_id", table="o").as_("record_id"))
              .from_("record_persons AS rp")
              .join("orders AS o", on="rp.record_kind = 'order' AND rp.record_id = o.order_id")
              .where(owned))
    records = (exp.select(exp.column("occurred_at", table="r").as_("at"), exp.Literal.string("record").as_("kind"),
                          exp.column("kind", table="r").as_("what"), exp.column("source_id", table="r").as_("channel"),
                          exp.column("record_id", table="r").as_("record_id"))
               .from_("record_persons AS rp")
               .join("source_records AS r", on="rp.record_kind = 'source_record' AND rp.record_id = r.record_id")
               .where(owned))
    union = exp.union(exp.union(events, orders, distinct=False), records, distinct=False)
    return (exp.select("*").from_(union.subquery("timeline"))
            .order_by(exp.Ordered(this=exp.column("at"), desc=True), "record_id").limit(limit))


def person_portrait(engine: Engine, person_id: str, timeline_limit: int = TIMELINE_LIMIT) -> Portrait:
    """Run each part's query for an active person; tables a later stage has not built yet are empty."""
    queries = portrait_queries(person_id, timeline_limit)
    parts = {name: engine.query(query) for name, query in queries.items()}
    return Portrait(person_id, parts["identities"], parts["traits"], parts["tags"], parts["scores"],
                    parts["timeline"], {name: engine.render(query) for name, query in queries.items()})
