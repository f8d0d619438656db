"""Observations: every identifier every collected record carries, normalized, in SQL.

One row per (record, identifier): `record_kind, record_id, id_type, id_value,
plain_value, junk_token, first_at, last_at, records, source_id, rule`. Identifiers
that share a record are the deterministic evidence of the ID graph; the record's
kind names the rule:

| records                              | identifiers                                     | rule            |
|--------------------------------------|-------------------------------------------------|-----------------|
| events: identify                     | userId, anonymousId, context.device.id, traits  | identify_traits |
| events: alias                        | previousId, userId                              | alias           |
| events: track / page / screen        | userId, anonymousId, context.device.id          | same_event      |
| orders                               | customer_identifiers (or customer_ref/_type)    | same_order      |
| source_records, kind member          | identifiers                                     | crm_record      |
| source_records, kind lead            | identifiers                                     | lead_record     |
| source_records, other kinds          | identifiers                                     | social_binding  |
| survey_responses                     | respondent_ref/_type                            | survey_response |

Events are many and repetitive, so they are first grouped into *identity tuples*
(the distinct combinations of ids an event carries); the tuple is the record, and
`event_record_key_sql` recomputes its key per event when record owners are written.
"""

from __future__ import annotations

from dataclasses import dataclass

from jingzhun.identity.config import IdentityConfig
from jingzhun.identity.identifiers import (
    NormalizeSettings,
    in_list,
    junk_token_sql,
    lit,
    normalized_type_sql,
    plain_value_sql,
    stored_value_sql,
)
from jingzhun.identity.registry import Registry

EVENT_TUPLES = "identity_work_event_tuples"
OBSERVATIONS = "identity_work_observations"


@dataclass(frozen=True)
class ObservationPlan:
    """What the observation queries need: registry, settings, and how sources name ids."""

    registry: Registry
    settings: NormalizeSettings
    config: IdentityConfig
    source_user_types: dict[str, str]  # source_id -> id type of its Segment userId
    source_anonymous_types: dict[str, str]

    @property
    def trait_types(self) -> list[str]:
        return list(self.config.trait_identifiers)


def _source_case(column: str, mapping: dict[str, str], default: str) -> str:
    if not mapping:
        return lit(default)
    branches = " ".join(f"WHEN {lit(source)} THEN {lit(kind)}" for source, kind in sorted(mapping.items()))
    return f"(CASE {column} {branches} ELSE {lit(default)} END)"


def _trait_column(kind: str) -> str:
    return f"t_{kind}"


def event_tuple_columns(plan: ObservationPlan, prefix: str = "") -> list[tuple[str, str]]:
    """The columns that define an event's identity tuple, as (alias, expression)."""
    p = prefix
    rule = (f"(CASE {p}type WHEN 'identify' THEN 'identify_traits' WHEN 'alias' THEN 'alias' "
            f"ELSE 'same_event' END)")
    columns = [
        ("source_id", f"{p}source_id"),
        ("rule", rule),
        ("user_id", f"{p}user_id"),
        ("anonymous_id", f"{p}anonymous_id"),
        ("device_id", f"{p}context->>'$.device.id'"),
        ("previous_id", f"(CASE WHEN {p}type = 'alias' THEN {p}previous_id END)"),
    ]
    columns += [(_trait_column(kind), f"{p}traits->>{lit('$.' + kind)}") for kind in plan.trait_types]
    return columns


def event_record_key_sql(plan: ObservationPlan, prefix: str = "") -> str:
    """The tuple key of one event: the MD5 of its id columns as a JSON array (injective)."""
    parts = ", ".join(expression for _, expression in event_tuple_columns(plan, prefix))
    return f"MD5(TO_JSON([{parts}]))"


def event_tuples_sql(plan: ObservationPlan, events: str = "events") -> str:
    """Distinct identity tuples of `events` (a table with the columns of `events`), with
    first/last time and event count."""
    columns = event_tuple_columns(plan)
    inner = ", ".join(f"{expression} AS {alias}" for alias, expression in columns)
    names = ", ".join(alias for alias, _ in columns)
    return f"""
SELECT MD5(TO_JSON([{names}])) AS record_id, {names}, first_at, last_at, records, example_id
FROM (
  SELECT {names}, MIN(timestamp) AS first_at, MAX(timestamp) AS last_at, COUNT(*) AS records,
    MIN(message_id) AS example_id
  FROM (SELECT {inner}, timestamp, message_id FROM {events}) AS e
  GROUP BY {names}
) AS g
"""


def _event_observations(plan: ObservationPlan, tuples: str = EVENT_TUPLES) -> list[str]:
    user_type = _source_case("source_id", plan.source_user_types, plan.config.default_user_id_type)
    anon_type = _source_case("source_id", plan.source_anonymous_types, "anonymous_id")
    common = "'event' AS record_kind, record_id, example_id, first_at, last_at, records, source_id, rule"
    parts = [
        f"SELECT {common}, {user_type} AS id_type, user_id AS raw_value FROM {tuples} WHERE user_id IS NOT NULL",
        f"SELECT {common}, {anon_type}, anonymous_id FROM {tuples} WHERE anonymous_id IS NOT NULL",
        f"SELECT {common}, 'device_id', device_id FROM {tuples} WHERE device_id IS NOT NULL",
    ]
    parts += [
        f"SELECT {common}, {lit(kind)}, {_trait_column(kind)} FROM {tuples} "
        f"WHERE {_trait_column(kind)} IS NOT NULL"
        for kind in plan.trait_types
    ]
    # alias(previousId → userId): previousId is an earlier userId when one is known, else a cookie.
    prev_user = user_type.replace("source_id", "t.source_id")
    prev_anon = anon_type.replace("source_id", "t.source_id")
    parts.append(
        f"SELECT 'event', t.record_id, t.example_id, t.first_at, t.last_at, t.records, t.source_id, t.rule, "
        f"CASE WHEN u.user_id IS NOT NULL THEN {prev_user} ELSE {prev_anon} END, t.previous_id "
        f"FROM {tuples} AS t LEFT JOIN (SELECT DISTINCT user_id FROM {tuples} "
        f"WHERE user_id IS NOT NULL) AS u ON u.user_id = t.previous_id WHERE t.previous_id IS NOT NULL"
    )
    return parts


def _keys_values(registry: Registry) -> str:
    """VALUES of (JSON key, id type): every registry type and every alias."""
    pairs = [(name, name) for name in registry.names()] + sorted(registry.aliases.items())
    rows = ", ".join(f"({lit(key)}, {lit(kind)})" for key, kind in pairs)
    return f"(VALUES {rows}) AS k(json_key, id_type)"


def _alias_case(column: str, registry: Registry) -> str:
    if not registry.aliases:
        return column
    branches = " ".join(f"WHEN {lit(key)} THEN {lit(kind)}" for key, kind in sorted(registry.aliases.items()))
    return f"(CASE {column} {branches} ELSE {column} END)"


def _json_observations(kind: str, table: str, id_column: str, json_column: str, at: str,
                       rule: str, registry: Registry) -> str:
    value = f"r.{json_column}->>('$.' || k.json_key)"
    return (
        f"SELECT {lit(kind)} AS record_kind, r.{id_column} AS record_id, r.{id_column} AS example_id, "
        f"{at} AS first_at, {at} AS last_at, "
        f"1 AS records, r.source_id, {rule} AS rule, k.id_type, {value} AS raw_value "
        f"FROM {table} AS r CROSS JOIN {_keys_values(registry)} "
        f"WHERE r.{json_column} IS NOT NULL AND {value} IS NOT NULL"
    )


def _record_observations(registry: Registry) -> list[str]:
    source_rule = ("(CASE r.kind WHEN 'member' THEN 'crm_record' WHEN 'lead' THEN 'lead_record' "
                   "ELSE 'social_binding' END)")
    return [
        _json_observations("order", "orders", "order_id", "customer_identifiers", "r.placed_at",
                           "'same_order'", registry),
        f"SELECT 'order', order_id, order_id, placed_at, placed_at, 1, source_id, 'same_order', "
        f"{_alias_case('customer_ref_type', registry)}, customer_ref FROM orders "
        f"WHERE customer_ref IS NOT NULL AND customer_ref_type IS NOT NULL",
        _json_observations("source_record", "source_records", "record_id", "identifiers",
                           "COALESCE(r.occurred_at, r.imported_at)", source_rule, registry),
        f"SELECT 'survey_response', response_id, response_id, COALESCE(submitted_at, imported_at), "
        f"COALESCE(submitted_at, imported_at), 1, source_id, 'survey_response', "
        f"{_alias_case('respondent_ref_type', registry)}, respondent_ref FROM survey_responses "
        f"WHERE respondent_ref IS NOT NULL AND respondent_ref_type IS NOT NULL",
    ]


def raw_observations_sql(plan: ObservationPlan) -> str:
    """Every (record, id type, raw value) before normalization (needs EVENT_TUPLES)."""
    return "\nUNION ALL\n".join(_event_observations(plan) + _record_observations(plan.registry))


def event_observations_sql(plan: ObservationPlan, tuples: str) -> str:
    """Every (event tuple, id type, raw value) of the tuples in table `tuples` (made by
    `event_tuples_sql`): the real-time path observes a batch of new events with it."""
    return "\nUNION ALL\n".join(_event_observations(plan, tuples))


def observations_sql(plan: ObservationPlan, raw: str | None = None) -> str:
    """Normalized observations, one row per (record, identifier), of `raw` (by default
    every collected record: `raw_observations_sql`, which needs EVENT_TUPLES)."""
    registry, settings = plan.registry, plan.settings
    kind = normalized_type_sql("id_type", "raw_value")
    plain = plain_value_sql("nt", "raw_value", registry, settings)
    stored = stored_value_sql("nt", "plain_value", registry, settings)
    tokens = plan.config.blocklist.tokens()
    return f"""
SELECT record_kind, record_id, MIN(example_id) AS example_id, nt AS id_type, {stored} AS id_value,
  MIN(plain_value) AS plain_value,
  MAX(junk_token) AS junk_token, MIN(first_at) AS first_at, MAX(last_at) AS last_at,
  MAX(records) AS records, MIN(source_id) AS source_id, MIN(rule) AS rule
FROM (
  SELECT record_kind, record_id, example_id, nt, {plain} AS plain_value,
    CASE WHEN {junk_token_sql('raw_value', tokens)} THEN 1 ELSE 0 END AS junk_token,
    first_at, last_at, records, source_id, rule
  FROM (SELECT *, {kind} AS nt FROM ({raw or raw_observations_sql(plan)}) AS raw) AS typed
  WHERE nt IN {in_list(registry.names())}
) AS normalized
WHERE plain_value IS NOT NULL
GROUP BY record_kind, record_id, nt, {stored}
"""


def unknown_types_sql(registry: Registry) -> str:
    """Id types named by sources (column-typed refs) that the registry does not know."""
    known = in_list(registry.names() + sorted(registry.aliases))
    return f"""
SELECT id_type, SUM(n) AS records FROM (
  SELECT customer_ref_type AS id_type, COUNT(*) AS n FROM orders
  WHERE customer_ref_type IS NOT NULL GROUP BY customer_ref_type
  UNION ALL
  SELECT respondent_ref_type, COUNT(*) FROM survey_responses
  WHERE respondent_ref_type IS NOT NULL GROUP BY respondent_ref_type
) AS named WHERE id_type NOT IN {known} GROUP BY id_type
"""
