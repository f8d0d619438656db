"""Real-time attribution: each newly loaded event to its known person, within the batch.

The pipeline rebuilds `record_persons` from the whole ID graph; between two rebuilds the
collector's loader calls `attribute_new_events` after every batch it commits (an
after-load hook, see docs/collector.md), so an event counts as its person's at once:

    new events ──► identity tuples ──► normalized identifiers (the batch graph's SQL)
        ──► known persons (`identities`, then `identity_live_bindings`)
        ──► record_persons rows (record_kind 'event') + bindings of new identifiers

An event belongs to the person of its strongest *known* identifier (highest priority,
then the smallest `type:value`), as the batch graph names a record's person after its
strongest identifier. Identifiers are normalized and typed by the same SQL as the batch
graph (`observations`: a source's userId type, trait identifiers, junk tokens and the
blocklist), and values the last build listed in `identity_junk` are ignored.

An event's other identifiers that nobody holds yet — an identify call's new anonymous
id beside a known member id — are bound to that person in `identity_live_bindings`, so
their later events are attributed too, and so are their earlier events (received within
`LOOKBACK`, found by userId, anonymousId or device id) that had waited. Only types
without a per-person limit are bound (cookies, devices, phones, e-mails, openids): a
second member id or platform id on a person is the graph's call. Events whose
identifiers are all unknown wait for the next pipeline run, which rebuilds
`record_persons` from scratch: it reads neither these rows nor the bindings, so it
gives the same result as if nothing had been done here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine, MaterializeHints, parse_sql
from jingzhun.identity import links as L
from jingzhun.identity.config import load_identity_config
from jingzhun.identity.graph import normalize_settings, observation_plan
from jingzhun.identity.identifiers import lit, node_sql
from jingzhun.identity.observations import (
    ObservationPlan,
    event_observations_sql,
    event_record_key_sql,
    event_tuples_sql,
    observations_sql,
)
from jingzhun.identity.registry import Registry
from jingzhun.identity.tables import append_rows, materialize, require_tables, utc_now
from jingzhun.schema import tables as canonical

LOOKBACK = timedelta(days=7)  # how far back waiting events are looked for when an identifier is bound
BATCH = "identity_live_batch"  # the events to attribute (a staging table)
WORK = "identity_work_live_"  # scratch tables, dropped before returning
TUPLES, OBSERVED, JUNK = WORK + "tuples", WORK + "observed", WORK + "junk"
USABLE, KNOWN, OWNERS, BOUND = WORK + "usable", WORK + "known", WORK + "owners", WORK + "bound"
ROWS, WAITING = WORK + "rows", WORK + "waiting"
EVENT_COLUMNS = ("message_id", "type", "user_id", "anonymous_id", "previous_id", "source_id", "context",
                 "traits", "timestamp", "received_at")
BINDINGS = canonical.IDENTITY_LIVE_BINDINGS


@dataclass
class Attribution:
    """What one call did: events attributed now, earlier events attributed through a new
    binding, identifiers bound, and the SQL of each step."""

    events: int = 0
    attributed: int = 0
    backfilled: int = 0
    bound: int = 0
    sql: dict[str, str] = field(default_factory=dict)


def attribute_new_events(workspace: Workspace, engine: Engine, events: pa.Table) -> Attribution:
    """Attribute freshly loaded events to known persons (the collector's after-load hook).

    Args:
        workspace: supplies definitions/identity.yaml and the PII policy.
        engine: the workspace's engine, with `events` already holding these rows.
        events: the new rows of `events` (at least the columns of EVENT_COLUMNS).

    Returns:
        Counts and the SQL run. Replaying the same events adds nothing.
    """
    result = Attribution(events=events.num_rows)
    if not events.num_rows:
        return result
    require_tables(engine, ("events", "identities", "persons", "record_persons", BINDINGS.name))
    if not engine.query("SELECT 1 AS known FROM identities LIMIT 1").num_rows:
        return result  # no ID graph built yet: nobody to attribute to until the first pipeline run
    plan = observation_plan(engine, load_identity_config(workspace), normalize_settings(workspace))
    since = pc.min(events.column("received_at")).as_py() - LOOKBACK
    with engine.transaction():  # the staging table never outlives the batch
        engine.write_table(BATCH, events.select(list(EVENT_COLUMNS)), mode="replace")
        try:
            result.attributed = _attribute(engine, plan, result)
            if result.bound:
                result.backfilled = _backfill(engine, plan, since.isoformat(), result)
        finally:
            _drop(engine)
    return result


def _attribute(engine: Engine, plan: ObservationPlan, result: Attribution) -> int:
    """Attribute the events in BATCH; bind their new identifiers; return rows written."""
    steps = attribution_steps(plan, engine.table_exists(L.JUNK), utc_now().isoformat())
    for name, sql in steps.items():
        engine.materialize(name, parsed(sql), MaterializeHints(scratch=True))
        result.sql.setdefault(name.removeprefix(WORK), sql)
    append_rows(engine, canonical.RECORD_PERSONS, f"SELECT * FROM {ROWS}")
    bound = engine.row_count(BOUND)
    if bound:
        append_rows(engine, BINDINGS, f"SELECT * FROM {BOUND}")
        result.bound += bound
    return engine.row_count(ROWS)


def attribution_steps(plan: ObservationPlan, junk_table: bool, now: str) -> dict[str, str]:
    """The scratch tables that attribute the events in BATCH, in order, with their SELECTs:
    ROWS are the new record_persons rows, BOUND the new bindings."""
    return {
        TUPLES: event_tuples_sql(plan, BATCH),
        OBSERVED: observations_sql(plan, event_observations_sql(plan, TUPLES)),
        JUNK: L.declared_junk_sql(plan.config, plan.registry, plan.settings, observations=OBSERVED),
        USABLE: usable_sql(plan.registry, junk_table),
        KNOWN: known_sql(),
        OWNERS: owners_sql(),
        BOUND: bound_sql(now),
        ROWS: event_rows_sql(plan),
    }


@lru_cache(maxsize=64)
def parsed(sql: str) -> exp.Expression:
    """`sql` parsed once per process: the batch graph's normalization SQL is long (a CASE
    per id type and regular expressions), and parsing it was half the time of a batch."""
    return parse_sql(sql)


def _backfill(engine: Engine, plan: ObservationPlan, since: str, result: Attribution) -> int:
    """Attribute the waiting events that carry an identifier this batch bound."""
    if not materialize(engine, WAITING, waiting_sql(since)).row_count():
        return 0
    materialize(engine, BATCH, f"SELECT * FROM {WAITING}")
    return _attribute(engine, plan, result)


def _drop(engine: Engine) -> None:
    for name in engine.list_tables():
        if name == BATCH or name.startswith(WORK):
            engine.drop_table(name)


# ---- the queries ------------------------------------------------------------------------


def types_values(registry: Registry) -> str:
    """The registry as an inline table: id_type, priority, max_per_person (NULL: no limit)."""
    rows = ", ".join(
        f"({lit(kind.name)}, {kind.priority}, "
        f"{kind.max_per_person if kind.max_per_person is not None else 'CAST(NULL AS INTEGER)'})"
        for kind in registry.linkable)
    return f"(VALUES {rows}) AS t(id_type, priority, max_per_person)"


def usable_sql(registry: Registry, junk_table: bool) -> str:
    """The batch's identifiers that may link: linkable types, not declared junk, and not
    what the last build found shared (`identity_junk`)."""
    shared = (f"LEFT JOIN {L.JUNK} AS s ON s.id_type = o.id_type AND s.id_value = o.id_value"
              if junk_table else "")
    return f"""
SELECT o.record_id, o.example_id, o.first_at, o.source_id, o.id_type, o.id_value, t.priority,
  t.max_per_person, {node_sql('o.id_type', 'o.id_value')} AS node
FROM {OBSERVED} AS o JOIN {types_values(registry)} ON t.id_type = o.id_type
LEFT JOIN {JUNK} AS j ON j.id_type = o.id_type AND j.id_value = o.id_value
{shared}
WHERE j.id_type IS NULL{' AND s.id_type IS NULL' if junk_table else ''}
"""


def known_sql() -> str:
    """The batch's identifiers that have a person: from the last build (`identities`),
    else bound since (`identity_live_bindings`, to a person still active)."""
    wanted = f"(SELECT DISTINCT id_type, id_value FROM {USABLE})"
    return f"""
SELECT i.id_type, i.id_value, i.person_id FROM identities AS i
SEMI JOIN {wanted} AS w ON w.id_type = i.id_type AND w.id_value = i.id_value
WHERE i.person_id IS NOT NULL
UNION ALL
SELECT b.id_type, b.id_value, MIN(b.person_id) FROM {BINDINGS.name} AS b
SEMI JOIN {wanted} AS w ON w.id_type = b.id_type AND w.id_value = b.id_value
SEMI JOIN persons AS p ON p.person_id = b.person_id AND p.status = 'active'
ANTI JOIN identities AS i ON i.id_type = b.id_type AND i.id_value = b.id_value
GROUP BY b.id_type, b.id_value
"""


def owners_sql() -> str:
    """Each identity tuple's person: the person of its strongest known identifier."""
    return f"""
SELECT record_id, person_id FROM (
  SELECT u.record_id, k.person_id,
    ROW_NUMBER() OVER (PARTITION BY u.record_id ORDER BY u.priority DESC, u.node) AS rk
  FROM {USABLE} AS u JOIN {KNOWN} AS k ON k.id_type = u.id_type AND k.id_value = u.id_value
) AS ranked WHERE rk = 1
"""


def bound_sql(now: str) -> str:
    """New bindings: unknown identifiers of attributed tuples, of types without a
    per-person limit; an identifier seen on several tuples goes with the earliest."""
    return f"""
SELECT id_type, id_value, person_id, CAST({lit(now)} AS TIMESTAMPTZ) AS bound_at, message_id, source_id
FROM (
  SELECT u.id_type, u.id_value, o.person_id, u.example_id AS message_id, u.source_id,
    ROW_NUMBER() OVER (PARTITION BY u.id_type, u.id_value ORDER BY u.first_at, u.record_id) AS rk
  FROM {USABLE} AS u JOIN {OWNERS} AS o ON o.record_id = u.record_id
  ANTI JOIN {KNOWN} AS k ON k.id_type = u.id_type AND k.id_value = u.id_value
  WHERE u.max_per_person IS NULL
) AS firsts WHERE rk = 1
"""


def event_rows_sql(plan: ObservationPlan) -> str:
    """record_persons rows of the batch's attributed events, less any already there
    (a replayed batch writes nothing twice)."""
    mine = f"SELECT message_id FROM {BATCH}"
    return f"""
SELECT 'event' AS record_kind, b.message_id AS record_id, o.person_id
FROM {BATCH} AS b JOIN {OWNERS} AS o ON o.record_id = {event_record_key_sql(plan, 'b.')}
ANTI JOIN (SELECT record_id FROM record_persons WHERE record_kind = 'event' AND record_id IN ({mine}))
  AS done ON done.record_id = b.message_id
"""


def waiting_sql(since: str) -> str:
    """Earlier events (received since `since`) that carry an identifier just bound in their
    userId, anonymousId or device id, and have no person yet."""
    values = f"(SELECT id_value FROM {BOUND})"
    columns = ", ".join(f"e.{name}" for name in EVENT_COLUMNS)
    return f"""
SELECT {columns} FROM events AS e
WHERE e.received_at >= CAST({lit(since)} AS TIMESTAMPTZ)
  AND (TRIM(e.anonymous_id) IN {values} OR TRIM(e.user_id) IN {values}
       OR TRIM(e.context->>'$.device.id') IN {values})
  AND e.message_id NOT IN (SELECT record_id FROM record_persons WHERE record_kind = 'event')
"""
