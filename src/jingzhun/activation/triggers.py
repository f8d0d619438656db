"""Event-triggered campaigns: a message seconds after a person's event reaches the collector.

A campaign with `schedule: {trigger: {event: Cart Abandoned, delay: 30m}}` (or
`segment_entered: <real-time audience>`) has no occurrences. The collector's loader calls
`on_events_loaded` after every batch it commits (an after-load hook, after identity has
attributed the events and real-time audiences have been updated), and for each active
triggered campaign:

1. finds the persons whose trigger is in the batch — the event, attributed to its person
   through `record_persons`, or their entry into the real-time audience
   (`segment_live_members`) — and, if the campaign names an audience, only its members;
   an event older than `within` when it arrives fires nothing (an SDK's offline backlog);
2. plans their deliveries with the campaign send policy (activation.policy): holdout,
   consent, suppressions, reachability, frequency caps across every campaign, budget,
   quiet hours — one query for all of them, in one transaction behind the send lock,
   exactly as a scheduled run;
3. with a `delay`, stores the treatment arm's rows as `deferred` (reason `delay`) until
   `event time + delay`: the policy decides them again when they are due (consent may
   be withdrawn meanwhile, other campaigns may use the caps);
4. wakes the **sender**, a thread of the loader process with its own connection, which
   sends what is queued and what came due. Network calls never run on the loader's
   thread: a slow SMS gateway delays messages, not the loading of events.

Each (campaign, person) gets at most one message per run, and a run is the local day of
the event (`once_per: day`, the default) or the whole campaign (`once_per: campaign`):
the delivery id MD5(campaign:run:person:main) is the same for a replayed batch, and rows
already planned are left out, so a replay, a retried hook or a second event the same day
sends nothing twice.

The sender also advances active journeys every `JOURNEY_EVERY` seconds, so journeys move
while `jingzhun serve` owns the database. Without a server, `jingzhun campaign run --due`
(cron) does the same: `run_due` plans every due campaign, replans deferred and delayed
messages whose time came, sends, and runs every active journey.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
from sqlglot import exp

from jingzhun.activation.campaigns import (
    CampaignDefinition,
    CampaignError,
    StoredCampaign,
    TriggerSchedule,
    TriggerSpec,
    due_occurrence,
    find_campaign,
    list_campaigns,
)
from jingzhun.activation.policy import (
    SendPolicy,
    SendRequest,
    literal,
    load_send_policy,
    parsed_sql,
    policy_sql,
)
from jingzhun.activation.policy import quiet_channels as quiet_now
from jingzhun.activation.send_time import defer_to_best_hours
from jingzhun.activation.sending import (
    PLAN,
    RunReport,
    _record_arms,
    _record_plan,
    _record_run,
    audience_sql,
    budget_left,
    locked,
    run_campaign,
    run_exists,
)
from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine, MaterializeHints, to_local_time
from jingzhun.schema.tables import CAMPAIGN_RUNS, DELIVERIES

log = logging.getLogger(__name__)
BATCH = "activation_trigger_batch"  # the loaded batch's events (staging, dropped before returning)
HITS = "activation_trigger_hits"  # scratch: the persons one campaign's trigger fired for
TICK = 2.0  # seconds the sender sleeps when nothing wakes it (delayed messages come due)
JOURNEY_EVERY = 10.0  # seconds between journey runs in the sender
SCRATCH = MaterializeHints(scratch=True)

EVENT_HITS_SQL = """
SELECT person_id, message_id, event_at, run_id, event_at + INTERVAL '{delay}' SECOND AS due_at FROM (
  SELECT rp.person_id, b.message_id, b.timestamp AS event_at, {run} AS run_id,
    ROW_NUMBER() OVER (PARTITION BY rp.person_id, {run} ORDER BY b.timestamp, b.message_id) AS nth
  FROM activation_trigger_batch AS b
  JOIN record_persons AS rp ON rp.record_kind = 'event' AND rp.record_id = b.message_id
  WHERE b.type = 'track' AND b.event = :event AND b.timestamp >= :fresh_since
) AS fired WHERE nth = 1"""

ENTERED_HITS_SQL = """
SELECT person_id, message_id, event_at, run_id, event_at + INTERVAL '{delay}' SECOND AS due_at FROM (
  SELECT l.person_id, l.trigger_message_id AS message_id, COALESCE(l.event_at, l.changed_at) AS event_at,
    {run} AS run_id, ROW_NUMBER() OVER (PARTITION BY l.person_id, {run}
                                        ORDER BY COALESCE(l.event_at, l.changed_at), l.trigger_message_id) AS nth
  FROM segment_live_members AS l JOIN activation_trigger_batch AS b ON b.message_id = l.trigger_message_id
  WHERE l.segment_id = :segment_id AND l.change = 'entered' AND COALESCE(l.event_at, l.changed_at) >= :fresh_since
) AS fired WHERE nth = 1"""

DELAY_SQL = """
UPDATE activation_plan SET status = 'deferred', reason = 'delay', scheduled_at = h.due_at
FROM activation_trigger_hits AS h
WHERE activation_plan.person_id = h.person_id AND h.run_id = :run_id AND activation_plan.variant = 'treatment'
  AND h.due_at > :now"""


@dataclass
class TriggerReport:
    """What one batch fired: persons per campaign, their deliveries by status, the SQL."""

    fired: dict[str, int] = field(default_factory=dict)
    planned: dict[str, dict[str, int]] = field(default_factory=dict)
    sql: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def queued(self) -> int:
        return sum(counts.get("queued", 0) for counts in self.planned.values())


# ---- which campaigns ---------------------------------------------------------------------------


def triggered_campaigns(engine: Engine) -> list[StoredCampaign]:
    """The active triggered campaigns, latest versions."""
    listed = list_campaigns(engine)
    if listed.empty:
        return []
    chosen = listed[(listed["kind"] == "triggered") & (listed["status"].fillna("active") == "active")]
    found = [find_campaign(engine, campaign_id) for campaign_id in chosen["campaign_id"]]
    return [stored for stored in found if stored is not None]


def check_trigger(workspace: Workspace, engine: Engine, definition: CampaignDefinition) -> None:
    """A `segment_entered` trigger names a real-time audience (anything else never fires)."""
    schedule = definition.schedule
    if not isinstance(schedule, TriggerSchedule) or schedule.trigger.segment_entered is None:
        return
    from jingzhun.segments.audiences import load_audiences

    wanted = schedule.trigger.segment_entered
    audiences = load_audiences(workspace, engine)
    if wanted not in audiences or not audiences[wanted].realtime:
        live = ", ".join(sorted(k for k, a in audiences.items() if a.realtime)) or "—"
        raise CampaignError(
            f"trigger.segment_entered: {wanted!r} is not a real-time audience (real-time ones: {live}).",
            field="schedule.trigger.segment_entered",
            fix="name a real-time audience, or mark the audience `realtime: true` (docs/segments.md)",
            message_zh=f"trigger.segment_entered：{wanted!r} 不是实时人群（实时人群：{live}）。",
            fix_zh="请填写实时人群，或将该人群设为 realtime: true（见 docs/segments.md）")


# ---- firing ---------------------------------------------------------------------------------------


def fire_triggers(workspace: Workspace, engine: Engine, events: pa.Table, now: datetime | None = None) -> TriggerReport:
    """Plan the triggered campaigns' deliveries for the persons whose trigger is in `events`
    (rows just added to `events`); the sender (or `send_due`) sends them.

    Args:
        workspace: definitions, policy and time zone.
        engine: the serving DuckDB, `events`, `record_persons` and `segment_live_members`
            already holding the batch.
        events: the new rows of `events` (message_id, type, event, timestamp are read).
        now: the instant of the decision (default: the clock).
    """
    started = time.perf_counter()
    report = TriggerReport()
    campaigns = triggered_campaigns(engine) if events.num_rows else []
    if not campaigns:
        return report
    if not engine.SUPPORTS_TRANSACTIONS:  # the cap check and the insert must be one transaction
        log.warning("triggered campaigns send from the serving DuckDB; the %s engine fires none", engine.NAME)
        return report
    moment = now or datetime.now(UTC)
    policy = load_send_policy(workspace)
    engine.write_table(BATCH, events.select(["message_id", "type", "event", "timestamp"]), mode="replace")
    try:
        for stored in campaigns:
            _fire(workspace, engine, stored, moment, policy, report)
    finally:
        engine.drop_table(BATCH)
    report.seconds = time.perf_counter() - started
    return report


def hits_sql(workspace: Workspace, engine: Engine, definition: CampaignDefinition, now: datetime) -> exp.Expression:
    """person_id, message_id, event_at, run_id, due_at of everyone the batch's events fire the
    campaign for (one per person and run: their first trigger)."""
    trigger = _trigger(definition)
    local_day = exp.cast(exp.cast(to_local_time(exp.column("timestamp", "b"), workspace.config.timezone),
                                  exp.DataType.build("DATE")), exp.DataType.build("VARCHAR"))
    if trigger.segment_entered is not None:
        local_day = exp.cast(exp.cast(to_local_time(exp.func("COALESCE", exp.column("event_at", "l"),
                                                             exp.column("changed_at", "l")),
                                                    workspace.config.timezone), exp.DataType.build("DATE")),
                             exp.DataType.build("VARCHAR"))
    run = literal("trigger") if trigger.once_per == "campaign" else local_day
    template = ENTERED_HITS_SQL if trigger.segment_entered is not None else EVENT_HITS_SQL
    text = template.format(delay=int(trigger.delay.total_seconds()), run=run.sql("duckdb"))
    values = {"event": trigger.event, "segment_id": trigger.segment_entered, "fresh_since": now - trigger.within}
    query = exp.replace_placeholders(parsed_sql(text), **{k: literal(v) for k, v in values.items() if v is not None})
    if definition.audience is None:
        return query
    members = audience_sql(workspace, engine, definition)
    return exp.select("*").from_(query.subquery("h")).where(exp.column("person_id", "h").isin(query=members))


def _trigger(definition: CampaignDefinition) -> TriggerSpec:
    assert isinstance(definition.schedule, TriggerSchedule)
    return definition.schedule.trigger


def _fire(workspace: Workspace, engine: Engine, stored: StoredCampaign, now: datetime, policy: SendPolicy,
          report: TriggerReport) -> None:
    definition = stored.definition
    query = hits_sql(workspace, engine, definition, now)
    report.sql[f"{definition.campaign_id}.hits"] = engine.render(query)
    engine.materialize(HITS, query, SCRATCH)
    try:
        runs = engine.query(f"SELECT run_id, COUNT(*) AS n FROM {HITS} GROUP BY run_id ORDER BY run_id").to_pylist()
        for run in runs:
            counts = locked(engine, lambda r=run["run_id"]: _plan(workspace, engine, stored, r, now, policy, report),
                            holder=f"{definition.campaign_id}:{run['run_id']}:trigger")
            if not counts:
                continue  # everyone in this run was planned before (a replay, a second event)
            mine = report.planned.setdefault(definition.campaign_id, {})
            for status, n in counts.items():  # type: ignore[union-attr]
                mine[status] = mine.get(status, 0) + n
            report.fired[definition.campaign_id] = sum(mine.values())
    finally:
        engine.drop_table(HITS)


def _plan(workspace: Workspace, engine: Engine, stored: StoredCampaign, run_id: str, now: datetime,
          policy: SendPolicy, report: TriggerReport) -> dict[str, int]:
    """The run's new deliveries under the send policy (inside the send lock's transaction)."""
    definition = stored.definition
    trigger = _trigger(definition)
    audience = exp.select("person_id").from_(HITS).where(exp.column("run_id").eq(literal(run_id)))
    planned = (exp.select("person_id").from_(DELIVERIES.name)
               .where(exp.column("campaign_id").eq(literal(definition.campaign_id)),
                      exp.column("run_id").eq(literal(run_id)), exp.column("step").eq(literal("main"))))
    silent, until = quiet_now(now, workspace.config.timezone, policy, definition.purpose, definition.channels)
    messages, cost = budget_left(engine, definition, run_id=None)
    request = SendRequest(definition.campaign_id, run_id, definition.purpose, definition.channels, audience, now,
                          holdout=definition.holdout, sensitive=definition.sensitive_data, max_messages=messages,
                          max_cost=cost, quiet=silent, quiet_action=definition.quiet_hours, defer_until=until,
                          exclude=planned)
    query = policy_sql(request, policy)
    report.sql[f"{definition.campaign_id}.policy"] = engine.render(query)
    engine.materialize(PLAN, query, SCRATCH)
    if trigger.delay.total_seconds() > 0:
        engine.execute(exp.replace_placeholders(parsed_sql(DELAY_SQL), run_id=literal(run_id), now=literal(now)))
    if definition.send_time == "optimal":
        report.sql[f"{definition.campaign_id}.send_time"] = defer_to_best_hours(
            workspace, engine, PLAN, policy, definition.purpose, now, after=now + trigger.delay)
    counts = _record_plan(engine, now)
    if counts and definition.holdout > 0:
        _record_arms(engine, definition.campaign_id, now)
    if counts:
        _note_run(engine, stored, run_id, now, counts)
    engine.drop_table(PLAN)
    return counts


def _note_run(engine: Engine, stored: StoredCampaign, run_id: str, now: datetime, counts: dict[str, int]) -> None:
    """A triggered run is the day's (or the campaign's) stream of triggers: created with its
    first plan, reopened by each later one so its final counts are taken again."""
    if not run_exists(engine, stored.definition.campaign_id, run_id):
        _record_run(engine, stored, run_id, now, now, counts, "trigger")
        return
    engine.execute(exp.update(CAMPAIGN_RUNS.name, {"status": literal("sending"), "finished_at": exp.null()},
                              where=exp.and_(exp.column("campaign_id").eq(literal(stored.definition.campaign_id)),
                                             exp.column("run_id").eq(literal(run_id)))))


# ---- sending what is due ----------------------------------------------------------------------------


def campaigns_with_work(engine: Engine, campaign_ids: list[str], now: datetime) -> list[str]:
    """Those of the campaigns with queued or interrupted messages, or deferred ones now due."""
    if not campaign_ids:
        return []
    query = (exp.select("campaign_id").distinct().from_(DELIVERIES.name)
             .where(exp.column("campaign_id").isin(*[literal(c) for c in campaign_ids]),
                    exp.or_(exp.column("status").isin(literal("queued"), literal("sending")),
                            exp.and_(exp.column("status").eq(literal("deferred")),
                                     exp.LTE(this=exp.column("scheduled_at"), expression=literal(now)))))
             .order_by("campaign_id"))
    return engine.query(query).column("campaign_id").to_pylist()


def send_due(workspace: Workspace, engine: Engine, *, now: datetime | None = None,
             adapters: dict | None = None) -> dict[str, RunReport]:
    """Send what the triggered campaigns have waiting: queued messages, and delayed or
    deferred ones whose time came (decided again by the policy first)."""
    moment = now or datetime.now(UTC)
    ids = [stored.definition.campaign_id for stored in triggered_campaigns(engine)]
    return {campaign_id: run_campaign(workspace, engine, campaign_id, now=now, adapters=adapters, actor="trigger")
            for campaign_id in campaigns_with_work(engine, ids, moment)}


@dataclass
class DueRun:
    """What `run_due` did: each campaign's and journey's report, or the error that stopped it."""

    campaigns: dict[str, object] = field(default_factory=dict)
    journeys: dict[str, object] = field(default_factory=dict)


def run_due(workspace: Workspace, engine: Engine, open_storage: Callable[[], Engine] | None = None, *,
            now: datetime | None = None, adapters: dict | None = None) -> DueRun:
    """Everything due now (what `jingzhun campaign run --due` runs from cron): each active
    campaign with an occurrence not yet planned or messages waiting, then every active journey."""
    from jingzhun.activation.journeys_run import run_journeys
    from jingzhun.activation.sending import run_campaigns

    moment = now or datetime.now(UTC)
    listed = list_campaigns(engine)
    active = [] if listed.empty else list(listed[listed["status"].fillna("active") == "active"]["campaign_id"])
    due = [c for c in active if _occurrence_due(workspace, engine, c, moment)]
    due = sorted(set(due) | set(campaigns_with_work(engine, active, moment)))
    result = DueRun()
    if due:
        options = {"now": now, "adapters": adapters, "actor": "due"}
        if open_storage is None:
            result.campaigns = {c: _guarded(lambda c=c: run_campaign(workspace, engine, c, **options)) for c in due}
        else:
            result.campaigns = dict(run_campaigns(workspace, due, open_storage, **options))
    result.journeys = dict(run_journeys(workspace, engine, now=now, adapters=adapters))
    return result


def _occurrence_due(workspace: Workspace, engine: Engine, campaign_id: str, now: datetime) -> bool:
    stored = find_campaign(engine, campaign_id)
    if stored is None:
        return False
    occurrence = due_occurrence(stored.definition.schedule, now, workspace.config.timezone)
    return occurrence is not None and not run_exists(engine, campaign_id, occurrence.run_id)


def _guarded(work: Callable[[], object]) -> object:
    try:
        return work()
    except Exception as failure:  # noqa: BLE001 — reported per campaign, the others still run
        return failure


# ---- the collector's hook and its sender thread ---------------------------------------------------


class Sender:
    """A thread of the loader process that sends triggered messages and runs journeys, on its
    own connection to the database (DuckDB serves several connections of one process), so
    the loader never waits on a gateway."""

    def __init__(self, workspace: Workspace, engine_kind: str) -> None:
        self.workspace, self.engine_kind = workspace, engine_kind
        self.wake = threading.Event()
        self.journeys_at = 0.0
        self.thread = threading.Thread(target=self._loop, name="jingzhun-trigger-sender", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        from jingzhun.engine import open_engine

        with open_engine(self.workspace, self.engine_kind) as engine:
            while True:
                self.wake.wait(TICK)
                self.wake.clear()
                self._tick(engine)

    def _tick(self, engine: Engine) -> None:
        try:
            for campaign_id, report in send_due(self.workspace, engine).items():
                log.debug("triggered campaign %s: sent %d, failed %d", campaign_id, report.sent, report.failed)
            if time.monotonic() - self.journeys_at >= JOURNEY_EVERY:
                self.journeys_at = time.monotonic()
                from jingzhun.activation.journeys_run import run_journeys

                for journey_id, outcome in run_journeys(self.workspace, engine).items():
                    if isinstance(outcome, Exception):
                        log.error("journey %s failed: %s", journey_id, outcome)
        except Exception:  # keep sending: the next tick retries (nothing is sent twice)
            log.exception("trigger sender failed; retrying in %s s", TICK)


_senders: dict[str, Sender] = {}
_senders_lock = threading.Lock()


def sender_for(workspace: Workspace, engine: Engine) -> Sender:
    """The workspace's sender thread in this process, started on first use."""
    with _senders_lock:
        key = str(workspace.root)
        if key not in _senders or not _senders[key].thread.is_alive():
            _senders[key] = Sender(workspace, engine.NAME)
        return _senders[key]


def on_events_loaded(workspace: Workspace, engine: Engine, events: pa.Table) -> TriggerReport:
    """The collector's after-load hook (run it after real-time audiences): plan the triggered
    campaigns' deliveries for this batch and wake the sender thread to send them."""
    report = fire_triggers(workspace, engine, events)
    if engine.SUPPORTS_TRANSACTIONS:
        sender = sender_for(workspace, engine)
        if report.planned:
            sender.wake.set()
    return report
