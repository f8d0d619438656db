"""The SQL that moves persons through a journey: one query per step for everyone at it.

Each step kind is a query over `journey_states` that returns the *moves* of the persons at
that step — `person_id, entry, from_step, to_step, status, wake_at, at, outcome` — and
`apply_moves_sql` writes any set of moves the same way: a row per move in
`journey_transitions` (the person's path) and the new state in `journey_states`. A move
to NULL is the end of the journey (`done`, or `exited` on the goal).

Time is **journey time**: a person who waited two days moves on at the instant the wait
ended (`at`), not when the run happened to look, so a late run gives the same path as an
on-time one, and a simulated clock (`now`) walks a journey in tests. Nothing here touches
a connection (activation.journeys_run runs it).
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from sqlglot import exp

from jingzhun.activation.policy import hash_fraction_sql, literal, parsed_sql
from jingzhun.engine import to_local_time

STATES, TRANSITIONS = "journey_states", "journey_transitions"
MOVES = "journey_moves"  # scratch: the moves of one step, applied in one transaction
ENTRIES = "journey_entries"  # scratch: the persons entering in one run
AT_MESSAGE = "journey_at_message"  # scratch: persons at a message step, with how often they came there
POPULATION = "journey_split_population"  # scratch: person_traits of the persons at a split
GOALS = "journey_goals"  # scratch: each open person's first goal event in this run

HERE_SQL = """
SELECT person_id, entry, status, step_entered_at, wake_at, entered_at FROM journey_states
WHERE journey_id = :journey_id AND version = :version AND step = :step AND status IN ({statuses})"""

TIMED_SQL = """
WITH here AS ({here}),
timed AS (SELECT here.*, COALESCE(wake_at, {deadline}) AS deadline FROM here)
SELECT person_id, entry, CAST(:step AS VARCHAR) AS from_step,
  CASE WHEN deadline <= :now THEN :next ELSE :step END AS to_step,
  CASE WHEN deadline <= :now THEN 'active' ELSE 'waiting' END AS status,
  CASE WHEN deadline > :now THEN deadline END AS wake_at,
  CASE WHEN deadline <= :now THEN deadline ELSE step_entered_at END AS at,
  CASE WHEN deadline <= :now THEN :outcome ELSE 'wait' END AS outcome
FROM timed WHERE deadline <= :now OR status = 'active'"""

WAIT_FOR_SQL = """
WITH here AS ({here}),
timed AS (SELECT here.*, COALESCE(wake_at, step_entered_at + INTERVAL '{seconds}' SECOND) AS deadline FROM here),
seen AS (
  SELECT t.person_id, t.entry, MIN(e.timestamp) AS at FROM timed AS t
  JOIN record_persons AS rp ON rp.person_id = t.person_id AND rp.record_kind = 'event'
  JOIN events AS e ON e.message_id = rp.record_id
  WHERE e.type = 'track' AND e.event = :event AND e.timestamp > t.step_entered_at
    AND e.timestamp <= t.deadline AND e.timestamp <= :now
  GROUP BY t.person_id, t.entry
)
SELECT t.person_id, t.entry, CAST(:step AS VARCHAR) AS from_step,
  CASE WHEN s.at IS NOT NULL THEN :on_event WHEN t.deadline <= :now THEN :on_timeout ELSE :step END AS to_step,
  CASE WHEN s.at IS NOT NULL OR t.deadline <= :now THEN 'active' ELSE 'waiting' END AS status,
  CASE WHEN s.at IS NULL AND t.deadline > :now THEN t.deadline END AS wake_at,
  CASE WHEN s.at IS NOT NULL THEN s.at WHEN t.deadline <= :now THEN t.deadline ELSE t.step_entered_at END AS at,
  CASE WHEN s.at IS NOT NULL THEN 'event' WHEN t.deadline <= :now THEN 'timeout' ELSE 'wait' END AS outcome
FROM timed AS t LEFT JOIN seen AS s ON s.person_id = t.person_id AND s.entry = t.entry
WHERE s.at IS NOT NULL OR t.deadline <= :now OR t.status = 'active'"""

INSTANT_SQL = """
SELECT h.person_id, h.entry, CAST(:step AS VARCHAR) AS from_step, CAST({target} AS VARCHAR) AS to_step,
  'active' AS status, CAST(NULL AS TIMESTAMPTZ) AS wake_at, h.step_entered_at AS at, :outcome AS outcome
FROM ({here}) AS h"""

GOALS_SQL = """
SELECT s.person_id, s.entry, MIN(e.timestamp) AS goal_at
FROM journey_states AS s
JOIN record_persons AS rp ON rp.person_id = s.person_id AND rp.record_kind = 'event'
JOIN events AS e ON e.message_id = rp.record_id
WHERE s.journey_id = :journey_id AND s.version = :version AND s.status IN ('active', 'waiting')
  AND e.type = 'track' AND e.event = :event AND e.timestamp > s.entered_at AND e.timestamp <= :now
GROUP BY s.person_id, s.entry"""

NO_GOALS_SQL = """
SELECT CAST(NULL AS VARCHAR) AS person_id, CAST(NULL AS INTEGER) AS entry, CAST(NULL AS TIMESTAMPTZ) AS goal_at
WHERE FALSE"""

GOAL_EXITS_SQL = """
SELECT s.person_id, s.entry, s.step AS from_step, CAST(NULL AS VARCHAR) AS to_step, 'exited' AS status,
  CAST(NULL AS TIMESTAMPTZ) AS wake_at, g.goal_at AS at, 'goal' AS outcome, 'goal' AS reason
FROM journey_states AS s JOIN journey_goals AS g ON g.person_id = s.person_id AND g.entry = s.entry
WHERE s.journey_id = :journey_id AND s.status IN ('active', 'waiting')"""

NORMALIZED_SQL = """
SELECT m.person_id, m.entry, m.from_step, m.to_step,
  CASE WHEN m.to_step IS NULL AND m.status = 'active' THEN 'done' ELSE m.status END AS status,
  m.wake_at, m.at, m.outcome,
  CASE WHEN m.to_step IS NULL THEN CASE WHEN m.outcome = 'exit' THEN 'exit' ELSE 'end' END END AS reason
FROM (SELECT 1 AS moves) AS m
LEFT JOIN journey_goals AS g ON g.person_id = m.person_id AND g.entry = m.entry
WHERE g.goal_at IS NULL OR g.goal_at > m.at"""

APPLY_TRANSITIONS_SQL = """
INSERT INTO journey_transitions (journey_id, version, person_id, entry, from_step, to_step, outcome, at, recorded_at)
SELECT :journey_id, s.version, m.person_id, m.entry, m.from_step, COALESCE(m.to_step, 'end'), m.outcome, m.at,
  :recorded
FROM journey_moves AS m
JOIN journey_states AS s ON s.journey_id = :journey_id AND s.person_id = m.person_id AND s.entry = m.entry
WHERE m.outcome <> 'wait'"""

APPLY_STATES_SQL = """
UPDATE journey_states SET step = COALESCE(m.to_step, journey_states.step), status = m.status, wake_at = m.wake_at,
  step_entered_at = m.at, reason = m.reason, updated_at = :recorded
FROM journey_moves AS m
WHERE journey_states.journey_id = :journey_id AND journey_states.person_id = m.person_id
  AND journey_states.entry = m.entry"""

ENTRY_SQL = """
WITH previous AS (
  SELECT person_id, MAX(entry) AS entry, MAX(CASE WHEN status IN ('done', 'exited') THEN 0 ELSE 1 END) AS open,
    MAX(step_entered_at) AS last_at
  FROM journey_states WHERE journey_id = :journey_id GROUP BY person_id
),
arrivals AS ({arrivals}),
firsts AS (
  SELECT a.person_id, MIN(a.at) AS at, COALESCE(MAX(p.entry), 0) + 1 AS entry
  FROM arrivals AS a
  JOIN persons AS pe ON pe.person_id = a.person_id AND pe.status = 'active'
  LEFT JOIN previous AS p ON p.person_id = a.person_id
  WHERE a.at > :since AND a.at <= :now
    AND (p.person_id IS NULL OR (:reentry AND p.open = 0 AND a.at > p.last_at))
  GROUP BY a.person_id
)
SELECT CAST(:journey_id AS VARCHAR) AS journey_id, CAST(:version AS INTEGER) AS version, person_id,
  CAST(entry AS INTEGER) AS entry, CAST(:first_step AS VARCHAR) AS step, at AS entered_at, at AS step_entered_at,
  CAST(NULL AS TIMESTAMPTZ) AS wake_at,
  CASE WHEN {draw} < :holdout THEN 'held_out' ELSE 'active' END AS status,
  CAST(NULL AS VARCHAR) AS reason, :recorded AS updated_at
FROM firsts"""

EVENT_ARRIVALS_SQL = """
SELECT rp.person_id, e.timestamp AS at FROM events AS e
JOIN record_persons AS rp ON rp.record_kind = 'event' AND rp.record_id = e.message_id
WHERE e.type = 'track' AND e.event = :entry_event AND e.timestamp > :since AND e.timestamp <= :now"""

LIVE_ARRIVALS_SQL = """
SELECT person_id, COALESCE(event_at, changed_at) AS at FROM segment_live_members
WHERE segment_id = :segment_id AND change = 'entered'"""

ENTRY_TRANSITIONS_SQL = """
INSERT INTO journey_transitions (journey_id, version, person_id, entry, from_step, to_step, outcome, at, recorded_at)
SELECT journey_id, version, person_id, entry, CAST(NULL AS VARCHAR), step,
  CASE WHEN status = 'held_out' THEN 'held_out' ELSE 'entered' END, entered_at, updated_at
FROM journey_entries"""

ENTRY_ARMS_SQL = """
INSERT INTO experiments (experiment_id, campaign_id, person_id, arm, assigned_at)
SELECT :experiment_id, journey_id, person_id, CASE WHEN status = 'held_out' THEN 'control' ELSE 'treatment' END,
  updated_at
FROM journey_entries AS n
WHERE NOT EXISTS (SELECT 1 FROM experiments AS x WHERE x.experiment_id = :experiment_id AND x.person_id = n.person_id)"""

VISITS_SQL = """
SELECT h.person_id, h.entry, CAST(GREATEST(COUNT(t.to_step), 1) AS INTEGER) AS visit FROM ({here}) AS h
LEFT JOIN journey_goals AS g ON g.person_id = h.person_id AND g.entry = h.entry
LEFT JOIN journey_transitions AS t ON t.journey_id = :journey_id AND t.person_id = h.person_id
  AND t.entry = h.entry AND t.to_step = :step
WHERE g.goal_at IS NULL OR g.goal_at > h.step_entered_at
GROUP BY h.person_id, h.entry"""

PENDING_SQL = """
SELECT DISTINCT version, step FROM journey_states
WHERE journey_id = :journey_id AND (status = 'active' OR (status = 'waiting' AND (wake_at <= :now OR step IN ({waits}))))"""


def bind(text: str, **values: Any) -> exp.Expression:
    """Parse `text` (once per text) and put the values in as typed literals."""
    return exp.replace_placeholders(parsed_sql(text), **{key: literal(value) for key, value in values.items()})


def here_sql(statuses: tuple[str, ...] = ("active", "waiting")) -> str:
    return HERE_SQL.format(statuses=", ".join(f"'{status}'" for status in statuses))


def timed_moves_sql(deadline: str, **values: Any) -> exp.Expression:
    """Moves of a waiting step (delay, delay_until) whose deadline is `deadline` (SQL over the
    step's rows): on to `next` at the deadline, or waiting until it."""
    return normalized(bind(TIMED_SQL.format(here=here_sql(), deadline=deadline), **values))


def delay_deadline(seconds: int) -> str:
    return f"step_entered_at + INTERVAL '{int(seconds)}' SECOND"


def delay_until_deadline(local: time, timezone: str) -> str:
    """The first instant at or after the step's entry whose local wall clock reads `local`."""
    wall = to_local_time(exp.column("step_entered_at"), timezone).sql("duckdb")
    of_day = f"(HOUR({wall}) * 3600 + MINUTE({wall}) * 60 + SECOND({wall}))"
    target = local.hour * 3600 + local.minute * 60 + local.second
    return f"step_entered_at + INTERVAL (({target} - {of_day} + 86400) % 86400) SECOND"


def wait_for_moves_sql(timeout_seconds: int, **values: Any) -> exp.Expression:
    """Moves of a wait_for step: on the event (at its time), on the timeout, or waiting."""
    return normalized(bind(WAIT_FOR_SQL.format(here=here_sql(), seconds=int(timeout_seconds)), **values))


def instant_moves_sql(target: exp.Expression, joins: list[tuple[exp.Expression, str]] | None = None,
                      **values: Any) -> exp.Expression:
    """Moves of an instant step (split, random, message, exit): every active person at it
    goes to `target` (an expression over `h` and the `joins`' aliases) at once."""
    query = bind(INSTANT_SQL.format(here=here_sql(("active",)), target=target.sql("duckdb")), **values)
    select = query if isinstance(query, exp.Select) else query.find(exp.Select)
    for members, alias in joins or ():
        select = select.join(members.subquery(alias), on=f"{alias}.person_id = h.person_id", join_type="left")
    return normalized(select)


def random_target(journey_id: str, step_id: str, branches: list[tuple[float, str]]) -> exp.Expression:
    """The branch of each person: cumulative percent buckets of a hash of journey, step and person."""
    draw = hash_fraction_sql(f"'{journey_id}:{step_id}:' || h.person_id")
    case, total = exp.case(), 0.0
    for percent, goto in branches[:-1]:
        total += percent / 100
        case = case.when(parsed_sql(f"{draw} < {total!r}"), literal(goto))
    return case.else_(literal(branches[-1][1]))


def split_target(branches: list[tuple[str, str | None]], otherwise: str | None) -> exp.Expression:
    """The first branch whose members (joined as alias) include the person, else `otherwise`."""
    case = exp.case()
    for alias, goto in branches:
        case = case.when(exp.not_(exp.column("person_id", table=alias).is_(exp.null())), literal(goto))
    return case.else_(literal(otherwise))


def goals_sql(goals: list[tuple[int, str]], **values: Any) -> exp.Expression:
    """Each open person's first goal event since they entered, up to now (per version's
    `exit_on`): no move at or after it happens (the goal came first), and they exit at it."""
    parts = [bind(GOALS_SQL, version=version, event=event, **values) for version, event in goals]
    if not parts:
        return bind(NO_GOALS_SQL)
    union = parts[0]
    for part in parts[1:]:
        union = exp.union(union, part, distinct=False)
    return union


def goal_exits_sql(**values: Any) -> exp.Expression:
    return bind(GOAL_EXITS_SQL, **values)


def normalized(moves: exp.Expression) -> exp.Expression:
    """Moves with the journey's end spelled out (status `done`, the reason), and without the
    moves of persons whose goal came first (journey time): they exit at the goal instead."""
    outer = parsed_sql(NORMALIZED_SQL)
    return outer.transform(lambda node: moves.copy().subquery("m") if isinstance(node, exp.Subquery)
                           and node.alias == "m" else node)


def entry_sql(arrivals: exp.Expression, holdout: float, **values: Any) -> exp.Expression:
    """New journey_states rows: each person's first arrival since `since` (not in the journey
    yet, or — with re-entry — finished before it), held out by a hash of journey and person."""
    text = ENTRY_SQL.format(arrivals=arrivals.sql("duckdb"), draw=hash_fraction_sql(":journey_id || ':' || person_id"))
    return bind(text, holdout=float(holdout), **values)


def event_arrivals_sql(event: str, since: datetime, now: datetime) -> exp.Expression:
    return bind(EVENT_ARRIVALS_SQL, entry_event=event, since=since, now=now)


def live_arrivals_sql(segment_id: str) -> exp.Expression:
    return bind(LIVE_ARRIVALS_SQL, segment_id=segment_id)


def snapshot_arrivals_sql(members: exp.Expression, now: datetime) -> exp.Expression:
    return exp.select("m.person_id", literal(now).as_("at")).from_(members.subquery("m"))


def visits_sql(**values: Any) -> exp.Expression:
    return bind(VISITS_SQL.format(here=here_sql(("active",))), **values)


def pending_sql(wait_steps: list[str], **values: Any) -> exp.Expression:
    waits = ", ".join(f"'{step}'" for step in wait_steps) or "NULL"
    return bind(PENDING_SQL.format(waits=waits), **values)
