"""Running a campaign: plan the due run under the send policy, send, and resume after a crash.

Planning is one transaction behind the `send_locks` row: the policy query (activation.policy)
reads every campaign's deliveries for the frequency caps and the campaign's for its budget,
and its rows are inserted into `deliveries` (queued, held_out, suppressed with the reason,
or deferred to the end of quiet hours) with the holdout arms in `experiments` and an event
per outcome in `message_events`. The lock row is updated first: DuckDB refuses a second
transaction's update of the same row ("TransactionContext Error: Conflict on update!"),
and a transaction that has updated it sees every plan committed before, so two campaigns
planned at once never count each other's sends twice or miss them. The loser rolls back
and retries.

Sending then moves queued rows through `sending` to `sent` or `failed` in batches (the
delivery id, a hash of campaign, run, person and step, is the adapter's idempotency key),
so the state survives a crash: on the next run, `sending` rows of a channel whose adapter
resends safely (webhook: the receiver dedups on the key) are sent again, and those of an
at-most-once channel (SMTP) become `unknown` and are never sent again.

Campaigns run on the serving DuckDB (DESIGN.md: "Spark computes, DuckDB serves"): an
engine without transactions is refused, since the cap check and the insert must be atomic.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import pyarrow as pa
from sqlglot import exp

from jingzhun.activation.campaigns import (
    CampaignDefinition,
    CampaignError,
    StoredCampaign,
    due_occurrence,
    load_campaign,
)
from jingzhun.activation.content import MessageTemplate, load_template
from jingzhun.activation.delivery import DeliveryAdapter, build_adapters, load_delivery_config
from jingzhun.activation.policy import (
    COUNTED_STATUSES,
    SendPolicy,
    SendRequest,
    literal,
    load_send_policy,
    policy_sql,
    quiet_channels,
)
from jingzhun.activation.send_loop import SendContext, send_pending
from jingzhun.activation.send_time import defer_to_best_hours
from jingzhun.activation.tracking import link_tracker
from jingzhun.core.errors import EngineError
from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine, MaterializeHints, parse_sql
from jingzhun.schema.tables import CAMPAIGN_RUNS, DELIVERIES, MESSAGE_EVENTS, SEND_LOCKS

Clock = Callable[[], datetime]
PLAN = "activation_plan"  # scratch: the policy's rows for one plan, dropped in its transaction
LOCK_ID = "send"
LOCK_WAIT = 120.0  # seconds a plan waits for another to commit before giving up
OPEN_STATUSES = ("queued", "sending", "deferred")


@dataclass
class RunReport:
    """What one `run_campaign` call did, and the SQL that decided it."""

    campaign_id: str
    version: int
    runs: list[str] = field(default_factory=list)
    planned: dict[str, int] = field(default_factory=dict)  # new deliveries by status
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    deferred: int = 0
    notes: list[str] = field(default_factory=list)
    sql: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def run_campaign(workspace: Workspace, engine: Engine, campaign_id: str, *, now: datetime | None = None,
                 clock: Clock | None = None, adapters: dict[str, DeliveryAdapter] | None = None,
                 actor: str = "cli") -> RunReport:
    """Plan the campaign's due run (if not planned yet), replan deferred rows whose time came,
    and send everything queued; safe to call again at any time (nothing is sent twice).

    Args:
        now: the instant the run happens at (default: the clock); tests pass it.
        clock: what "now" is while sending (quiet hours are checked before each batch).
        adapters: channel → adapter; default built from definitions/delivery.yaml.
    """
    started = time.perf_counter()
    _require_transactions(engine)
    stored = load_campaign(engine, campaign_id)
    clock = clock or ((lambda: now) if now is not None else (lambda: datetime.now(UTC)))
    moment = now or clock()
    report = RunReport(campaign_id, stored.version)
    if stored.status == "paused":
        raise _paused(campaign_id)
    template = check_template(workspace, stored.definition)
    policy = load_send_policy(workspace)
    owned = adapters is None
    config = load_delivery_config(workspace)
    adapters = adapters if adapters is not None else build_adapters(workspace, config, stored.definition.channels)
    try:
        occurrence = due_occurrence(stored.definition.schedule, moment, workspace.config.timezone)
        if occurrence is None:
            report.notes.append("not_due")
        elif not run_exists(engine, campaign_id, occurrence.run_id):
            report.planned = plan_run(workspace, engine, stored, occurrence.run_id, occurrence.scheduled_for,
                                      moment, policy, actor, report)
        replan_deferred(workspace, engine, stored, moment, policy, report)
        context = SendContext(workspace, engine, stored.definition, template, adapters, clock, policy,
                              link_tracker(workspace, config, campaign_id) if stored.definition.track_links else None)
        send_pending(context, report)
        finish_runs(engine, campaign_id, clock())
    finally:
        if owned:
            for adapter in adapters.values():
                adapter.close()
    report.seconds = time.perf_counter() - started
    return report


def run_campaigns(workspace: Workspace, campaign_ids: list[str], open_storage: Callable[[], Engine],
                  **options: object) -> dict[str, RunReport | Exception]:
    """Run several campaigns at once, each in a thread on its own connection to the same
    database; their plans take turns behind the send lock, their sends overlap. Returns
    each campaign's report, or the error that stopped it (the others still run)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(campaign_id: str) -> RunReport | Exception:
        try:
            with open_storage() as engine:
                return run_campaign(workspace, engine, campaign_id, **options)  # type: ignore[arg-type]
        except Exception as failure:  # noqa: BLE001 — reported per campaign
            return failure

    with ThreadPoolExecutor(max_workers=max(len(campaign_ids), 1), thread_name_prefix="campaign") as pool:
        return dict(zip(campaign_ids, pool.map(one, campaign_ids), strict=True))


def _require_transactions(engine: Engine) -> None:
    if not engine.SUPPORTS_TRANSACTIONS:
        raise CampaignError(
            f"campaigns cannot send from the {engine.NAME} engine: the cap check and the delivery insert "
            "must be one transaction.", field="engine",
            fix="run campaigns on the serving DuckDB (the default engine; `--engine duckdb`)",
            message_zh=f"{engine.NAME} 引擎无法发送活动：频次检查与发送记录必须在同一事务中完成。",
            fix_zh="请在服务用的 DuckDB 上运行活动（默认引擎；`--engine duckdb`）")


def _paused(campaign_id: str) -> CampaignError:
    return CampaignError(f"campaign {campaign_id!r} is paused.", field="status",
                         fix=f"resume it with `jingzhun campaign resume {campaign_id}`",
                         message_zh=f"活动 {campaign_id!r} 已暂停。",
                         fix_zh=f"用 `jingzhun campaign resume {campaign_id}` 恢复")


def check_template(workspace: Workspace, definition: CampaignDefinition) -> MessageTemplate | None:
    """The campaign's template (None for an ads-only campaign), checked: it has every message
    channel and is not marketing copy sent as transactional (which would skip consent and caps)."""
    messaging = [channel for channel in definition.channels if channel != "ads"]
    if not messaging:
        return None
    template = load_template(workspace, definition.template_id)
    missing = [channel for channel in messaging if channel not in template.channels]
    if missing:
        raise CampaignError(
            f"template {template.id!r} has no copy for {', '.join(missing)}.", field="channels",
            fix=f"add channels.{missing[0]} to the template, or remove {missing[0]} from the campaign",
            message_zh=f"模板 {template.id!r} 没有 {'、'.join(missing)} 渠道的文案。",
            fix_zh=f"在模板中加入 channels.{missing[0]}，或从活动中去掉 {missing[0]}")
    if template.purpose == "marketing" and definition.purpose == "transactional":
        raise CampaignError(
            f"template {template.id!r} is marketing copy; a transactional campaign cannot send it.",
            field="purpose", fix="use purpose: marketing (consent and frequency caps then apply)",
            message_zh=f"模板 {template.id!r} 是营销文案，不能作为交易类消息发送。",
            fix_zh="请使用 purpose: marketing（将按营销同意和频次上限发送）")
    return template


def run_exists(engine: Engine, campaign_id: str, run_id: str) -> bool:
    query = (exp.select(exp.func("COUNT", exp.Star()).as_("n")).from_(CAMPAIGN_RUNS.name)
             .where(exp.column("campaign_id").eq(literal(campaign_id)), exp.column("run_id").eq(literal(run_id))))
    return int(engine.query(query).column("n")[0].as_py()) > 0


# ---- the lock -----------------------------------------------------------------------------------


def locked(engine: Engine, work: Callable[[], object], holder: str, wait: float = LOCK_WAIT,
           lock_id: str = LOCK_ID) -> object:
    """Run `work` in a transaction that first takes the send lock (or another row of `send_locks`,
    e.g. the lead assigner's); retry while another holds it."""
    _ensure_lock_row(engine, lock_id)
    deadline, pause = time.monotonic() + wait, 0.02
    while True:
        try:
            with engine.transaction():
                engine.execute(exp.update(SEND_LOCKS.name, {
                    "counter": exp.column("counter") + 1, "taken_at": literal(datetime.now(UTC)),
                    "holder": literal(holder)}, where=exp.column("lock_id").eq(literal(lock_id))))
                return work()
        except EngineError as failure:
            if "conflict" not in str(failure).lower() or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.5)


def _ensure_lock_row(engine: Engine, lock_id: str = LOCK_ID) -> None:
    query = (exp.select(exp.func("COUNT", exp.Star()).as_("n")).from_(SEND_LOCKS.name)
             .where(exp.column("lock_id").eq(literal(lock_id))))
    if not int(engine.query(query).column("n")[0].as_py()):
        engine.write_table(SEND_LOCKS.name, pa.table({
            "lock_id": [lock_id], "counter": pa.array([0], pa.int64()),
            "taken_at": pa.array([None], pa.timestamp("us", tz="UTC")), "holder": pa.array([None], pa.string())}))


# ---- planning ---------------------------------------------------------------------------------


def audience_sql(workspace: Workspace, engine: Engine, definition: CampaignDefinition) -> exp.Expression:
    """SELECT person_id of the campaign's audience: its latest snapshot, or its live members
    (a real-time audience's current members; any other audience's rule evaluated now)."""
    # Imported here: the collector's loader imports this stage for its hooks and should not
    # pay for the segment stage's imports.
    from jingzhun.segments.audiences import (
        audience_catalog,
        load_audiences,
        members_sql,
        unknown_audience,
    )
    from jingzhun.segments.audiences import audience_sql as rule_sql

    spec = definition.audience
    if spec.members == "snapshot":
        return members_sql(spec.segment_id)
    audiences = load_audiences(workspace, engine)
    if spec.segment_id not in audiences:
        raise unknown_audience(spec.segment_id, audiences)
    if audiences[spec.segment_id].realtime:
        from jingzhun.segments.realtime import current_sql

        return exp.select("person_id").from_(current_sql([spec.segment_id]).subquery("live"))
    from jingzhun.profiles.tags import data_as_of

    return rule_sql(audiences[spec.segment_id], as_of=data_as_of(engine), timezone=workspace.config.timezone,
                    catalog=audience_catalog(engine, audiences))


def plan_run(workspace: Workspace, engine: Engine, stored: StoredCampaign, run_id: str, scheduled_for: datetime,
             now: datetime, policy: SendPolicy, actor: str, report: RunReport) -> dict[str, int]:
    """Decide and record every audience member's delivery for one run (once: a run planned by
    another process meanwhile is left alone)."""
    definition = stored.definition
    audience = audience_sql(workspace, engine, definition)
    silent, until = quiet_channels(now, workspace.config.timezone, policy, definition.purpose, definition.channels)

    def plan() -> dict[str, int] | None:
        if run_exists(engine, definition.campaign_id, run_id):
            return None  # another process planned it meanwhile
        messages, cost = budget_left(engine, definition, run_id=None)
        request = SendRequest(definition.campaign_id, run_id, definition.purpose, definition.channels, audience,
                              now, holdout=definition.holdout, sensitive=definition.sensitive_data,
                              max_messages=messages, max_cost=cost, quiet=silent,
                              quiet_action=definition.quiet_hours, defer_until=until)
        query = policy_sql(request, policy)
        report.sql["policy"] = engine.render(query)
        engine.materialize(PLAN, query, MaterializeHints(scratch=True))
        if definition.send_time == "optimal":
            report.sql["send_time"] = defer_to_best_hours(workspace, engine, PLAN, policy, definition.purpose, now)
        counts = _record_plan(engine, now)
        if definition.holdout > 0:
            _record_arms(engine, definition.campaign_id, now)
        _record_run(engine, stored, run_id, scheduled_for, now, counts, actor)
        engine.drop_table(PLAN)
        return counts

    counts = locked(engine, plan, holder=f"{definition.campaign_id}:{run_id}")
    if counts is None:
        return {}
    report.runs.append(run_id)
    return counts  # type: ignore[return-value]


def budget_left(engine: Engine, definition: CampaignDefinition, run_id: str | None,
                now: datetime | None = None) -> tuple[int | None, Decimal | None]:
    """Messages and cost the campaign may still spend: its budget minus every delivery that
    holds a slot (sent, sending, queued, or deferred — except, when replanning `run_id`, the
    deferred rows of that run whose time has come)."""
    budget = definition.budget
    if budget is None or (budget.max_messages is None and budget.max_cost is None):
        return None, None
    holding = exp.column("status").isin(*[literal(s) for s in (*COUNTED_STATUSES, "deferred")])
    if run_id is not None and now is not None:
        replanned = exp.and_(exp.column("status").eq(literal("deferred")), exp.column("run_id").eq(literal(run_id)),
                             exp.LTE(this=exp.column("scheduled_at"), expression=literal(now)))
        holding = exp.and_(holding, exp.not_(exp.paren(replanned)))
    query = (exp.select(exp.func("COUNT", exp.Star()).as_("n"),
                        exp.func("COALESCE", exp.func("SUM", exp.column("cost")), exp.Literal.number(0)).as_("c"))
             .from_(DELIVERIES.name).where(exp.column("campaign_id").eq(literal(definition.campaign_id)), holding))
    used = engine.query(query).to_pylist()[0]
    messages = max(budget.max_messages - int(used["n"]), 0) if budget.max_messages is not None else None
    cost = max(budget.max_cost - Decimal(used["c"]), Decimal(0)) if budget.max_cost is not None else None
    return messages, cost


DELIVERY_ROWS_SQL = """
SELECT delivery_id, campaign_id, person_id, channel, step, variant, CAST(NULL AS VARCHAR) AS coupon_code,
  scheduled_at, CAST(NULL AS TIMESTAMPTZ) AS sent_at, status, CAST(NULL AS VARCHAR) AS content_hash, run_id,
  purpose, reason, 0 AS attempts, cost, :now AS updated_at
FROM activation_plan"""

PLAN_EVENTS_SQL = """
SELECT MD5(delivery_id || ':' || status || ':' || CAST(:now AS VARCHAR)) AS message_event_id, delivery_id,
  campaign_id, person_id, status AS event_type, :now AS occurred_at,
  CASE WHEN reason IS NULL THEN NULL ELSE '{"reason": "' || reason || '"}' END AS properties
FROM activation_plan WHERE status IN ('held_out', 'suppressed', 'deferred')"""


def _record_plan(engine: Engine, now: datetime) -> dict[str, int]:
    """Store the policy's rows (materialized as PLAN) as deliveries and their outcome events;
    return counts by status."""
    stamp = {"now": literal(now)}
    engine.execute(exp.insert(exp.replace_placeholders(parse_sql(DELIVERY_ROWS_SQL), **stamp),
                              DELIVERIES.name, columns=[c.name for c in _delivery_columns()]))
    engine.execute(exp.insert(exp.replace_placeholders(parse_sql(PLAN_EVENTS_SQL), **stamp),
                              MESSAGE_EVENTS.name, columns=MESSAGE_EVENTS.column_names))
    rows = engine.query(f"SELECT status, COUNT(*) AS n FROM {PLAN} GROUP BY status").to_pylist()
    return {row["status"]: int(row["n"]) for row in rows}


def _delivery_columns() -> list:
    from jingzhun.schema import canonical_tables

    return next(table for table in canonical_tables() if table.name == DELIVERIES.name).columns


ARMS_SQL = """
SELECT CAST(:experiment_id AS VARCHAR) AS experiment_id, p.campaign_id, p.person_id,
  CASE WHEN p.variant = 'control' THEN 'control' ELSE 'treatment' END AS arm, :now AS assigned_at
FROM activation_plan AS p
WHERE NOT EXISTS (SELECT 1 FROM experiments AS e WHERE e.experiment_id = :experiment_id AND e.person_id = p.person_id)"""


def holdout_experiment_id(campaign_id: str) -> str:
    return f"{campaign_id}:holdout"


def _record_arms(engine: Engine, campaign_id: str, now: datetime) -> None:
    """Each newly assigned person's arm (a person keeps their arm on every run)."""
    rows = exp.replace_placeholders(parse_sql(ARMS_SQL), experiment_id=literal(holdout_experiment_id(campaign_id)),
                                    now=literal(now))
    engine.execute(exp.insert(rows, "experiments",
                              columns=["experiment_id", "campaign_id", "person_id", "arm", "assigned_at"]))


def _record_run(engine: Engine, stored: StoredCampaign, run_id: str, scheduled_for: datetime, now: datetime,
                counts: dict[str, int], actor: str) -> None:
    stamp = pa.timestamp("us", tz="UTC")
    engine.write_table(CAMPAIGN_RUNS.name, pa.table({
        "campaign_id": [stored.definition.campaign_id], "run_id": [run_id],
        "version": pa.array([stored.version], pa.int32()), "scheduled_for": pa.array([scheduled_for], stamp),
        "status": ["planned"], "planned_at": pa.array([now], stamp), "finished_at": pa.array([None], stamp),
        "counts": [json.dumps(counts, sort_keys=True)], "actor": [actor]}))


# ---- deferred rows whose time has come ----------------------------------------------------------


def replan_deferred(workspace: Workspace, engine: Engine, stored: StoredCampaign, now: datetime,
                    policy: SendPolicy, report: RunReport, steps: tuple[str, ...] | None = None) -> None:
    """Decide again, under the policy as it is now, each deferred delivery whose time came:
    consent may have been withdrawn overnight and other campaigns may have used the caps.
    Each run and step is decided apart (the step is part of the delivery id); `steps`
    limits it to some (a journey's message step, whose copy is its own)."""
    definition = stored.definition
    due = (exp.select("run_id", "step").distinct().from_(DELIVERIES.name)
           .where(exp.column("campaign_id").eq(literal(definition.campaign_id)),
                  exp.column("status").eq(literal("deferred")),
                  exp.LTE(this=exp.column("scheduled_at"), expression=literal(now))))
    if steps is not None:
        if not steps:
            return
        due = due.where(exp.column("step").isin(*[literal(step) for step in steps]))
    for row in engine.query(due).to_pylist():
        run_id, step = row["run_id"], row["step"] or "main"
        counts = locked(engine, lambda run=run_id, step=step: _replan(workspace, engine, definition, run, now, policy,
                                                                      report, step),
                        holder=f"{definition.campaign_id}:{run_id}:{step}:deferred")
        for status, n in counts.items():  # type: ignore[union-attr]
            report.planned[status] = report.planned.get(status, 0) + n


def _replan(workspace: Workspace, engine: Engine, definition: CampaignDefinition, run_id: str, now: datetime,
            policy: SendPolicy, report: RunReport, step: str = "main") -> dict[str, int]:
    mine = [exp.column("campaign_id").eq(literal(definition.campaign_id)), exp.column("run_id").eq(literal(run_id)),
            exp.func("COALESCE", exp.column("step"), literal("main")).eq(literal(step)),
            exp.column("status").eq(literal("deferred")),
            exp.LTE(this=exp.column("scheduled_at"), expression=literal(now))]
    persons = exp.select("person_id").from_(DELIVERIES.name).where(*mine)
    silent, until = quiet_channels(now, workspace.config.timezone, policy, definition.purpose, definition.channels)
    messages, cost = budget_left(engine, definition, run_id, now)
    request = SendRequest(definition.campaign_id, run_id, definition.purpose, definition.channels, persons, now,
                          step=step, sensitive=definition.sensitive_data, max_messages=messages, max_cost=cost,
                          quiet=silent, quiet_action=definition.quiet_hours, defer_until=until)
    query = policy_sql(request, policy)
    report.sql["policy_deferred"] = engine.render(query)
    engine.materialize(PLAN, query, MaterializeHints(scratch=True))
    engine.execute(exp.delete(DELIVERIES.name, where=exp.and_(
        *mine, exp.column("delivery_id").isin(query=exp.select("delivery_id").from_(PLAN)))))
    counts = _record_plan(engine, now)
    engine.drop_table(PLAN)
    return counts


# ---- finishing ------------------------------------------------------------------------------------


def finish_runs(engine: Engine, campaign_id: str, now: datetime) -> None:
    """Mark done each run of the campaign with nothing left to send, with its final counts."""
    open_runs = (exp.select("run_id").from_(CAMPAIGN_RUNS.name)
                 .where(exp.column("campaign_id").eq(literal(campaign_id)), exp.column("status").neq(literal("done"))))
    for run_id in engine.query(open_runs).column("run_id").to_pylist():
        rows = engine.query(exp.select("status", exp.func("COUNT", exp.Star()).as_("n")).from_(DELIVERIES.name)
                            .where(exp.column("campaign_id").eq(literal(campaign_id)),
                                   exp.column("run_id").eq(literal(run_id))).group_by("status")).to_pylist()
        counts = {row["status"]: int(row["n"]) for row in rows}
        done = not any(counts.get(status) for status in OPEN_STATUSES)
        engine.execute(exp.update(CAMPAIGN_RUNS.name, {
            "status": literal("done" if done else "sending"), "counts": literal(json.dumps(counts, sort_keys=True)),
            "finished_at": literal(now) if done else exp.null()},
            where=exp.and_(exp.column("campaign_id").eq(literal(campaign_id)), exp.column("run_id").eq(literal(run_id)))))
