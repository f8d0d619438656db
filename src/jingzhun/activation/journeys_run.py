"""Running journeys: entries, then every step for everyone at it, then the messages.

`run_journey` is what a scheduler (or the collector's loader, while `jingzhun serve` runs)
calls every few minutes. One run:

1. **enters** everyone who arrived since the last run (their entry event, their entry into
   a real-time audience, or the audience's snapshot), holding out a random share at entry
   (hash of journey and person; arms in `experiments`, `<journey>:holdout`);
2. takes out everyone who reached the **goal** (`exit_on`);
3. **advances** in passes: each step's query moves everyone at that step at once
   (activation.journeys_sql) until nobody moves; persons who are waiting stay put until
   their deadline or event;
4. **sends** the messages the message steps planned, through the campaign send path.

Crash-safe by construction. Every step's moves are one transaction with their
`journey_transitions` rows. A message step plans its deliveries and moves its persons
on in the *same* transaction (behind the send lock, so frequency caps hold across every
campaign and journey), and a delivery's id is MD5(journey:entry:person:step[#visit]):
after a crash the next run finds the person past the step and the message queued (or
`sending`, resent with the same idempotency key, or `unknown` for e-mail), never planned
twice. Journey deliveries carry the journey id as `campaign_id`, the entry number as
`run_id` and the step as `step`, so caps, reports and the measure stage read them like
any campaign's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
from sqlglot import exp

from jingzhun.activation import journeys_sql as q
from jingzhun.activation.campaigns import (
    CampaignDefinition,
    CampaignError,
    StoredCampaign,
    _audit,
    find_campaign,
)
from jingzhun.activation.delivery import DeliveryAdapter, build_adapters, load_delivery_config
from jingzhun.activation.journeys import (
    JourneyDefinition,
    JourneyError,
    Step,
    check_journey,
    edges,
    parse_journey,
)
from jingzhun.activation.policy import (
    SendPolicy,
    SendRequest,
    literal,
    load_send_policy,
    policy_sql,
    quiet_channels,
)
from jingzhun.activation.send_loop import SendContext, send_pending
from jingzhun.activation.send_time import defer_to_best_hours
from jingzhun.activation.sending import (
    PLAN,
    RunReport,
    _record_plan,
    _require_transactions,
    check_template,
    locked,
    replan_deferred,
)
from jingzhun.activation.tracking import link_tracker
from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine, MaterializeHints
from jingzhun.profiles.rules import Problem
from jingzhun.schema.tables import DELIVERIES, JOURNEY_STATES, JOURNEYS

MAX_PASSES = 200  # rounds of moves per run; a loop with a wait advances journey time each round
STATUSES = ("active", "paused")
SCRATCH = MaterializeHints(scratch=True)


# ---- storage ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredJourney:
    """A journey's latest version, its status and when it was first saved."""

    definition: JourneyDefinition
    version: int
    status: str
    first_saved_at: datetime

    @property
    def journey_id(self) -> str:
        return self.definition.journey_id


def save_journey(workspace: Workspace, engine: Engine, definition: JourneyDefinition, actor: str = "cli",
                 now: datetime | None = None) -> int:
    """Check a journey against the workspace (templates, rules, audiences) and store it as a
    new version if it changed; returns the current version. Persons already in it finish
    the version they entered."""
    from jingzhun.segments.audiences import audience_catalog, load_audiences

    audiences = load_audiences(workspace, engine)
    check_journey(workspace, definition, audience_catalog(engine, audiences), audiences)
    if find_campaign(engine, definition.journey_id) is not None:
        raise JourneyError([Problem("journey_id", f"a campaign is called {definition.journey_id!r}; journeys and "
                                    "campaigns share one namespace (their deliveries are counted together).",
                                    f"已有名为 {definition.journey_id!r} 的活动；旅程与活动共用名称。",
                                    "choose another journey_id", "请换一个 journey_id")])
    stored = find_journey(engine, definition.journey_id)
    if stored is not None and stored.definition.canonical_json() == definition.canonical_json():
        return stored.version
    version = stored.version + 1 if stored else 1
    moment = now or datetime.now(UTC)
    engine.write_table(JOURNEYS.name, pa.Table.from_pylist([{
        "journey_id": definition.journey_id, "version": version, "name": definition.name_zh,
        "entry_kind": definition.entry.kind, "definition": definition.canonical_json(),
        "status": stored.status if stored else "active", "created_at": moment, "created_by": actor,
        "updated_at": moment}], schema=_schema(JOURNEYS)))
    _audit(engine, definition.journey_id, "journey.version", actor, moment,
           {"version": version, "name_en": definition.name_en}, object_type="journey")
    return version


def _schema(table) -> pa.Schema:  # type: ignore[no-untyped-def]
    kinds = {"TIMESTAMPTZ": pa.timestamp("us", tz="UTC"), "INTEGER": pa.int32()}
    return pa.schema([(c.name, kinds.get(c.type, pa.string())) for c in table.columns])


def _versions_query(journey_id: str) -> exp.Select:
    return (exp.select("version", "definition", "status", "created_at").from_(JOURNEYS.name)
            .where(exp.column("journey_id").eq(literal(journey_id))).order_by("version"))


def find_journey(engine: Engine, journey_id: str) -> StoredJourney | None:
    """The latest version of a journey, or None."""
    rows = engine.query(_versions_query(journey_id)).to_pylist()
    if not rows:
        return None
    latest = rows[-1]
    definition = parse_journey(json.loads(latest["definition"]), f"journeys[{journey_id}]")
    return StoredJourney(definition, int(latest["version"]), latest["status"] or "active", rows[0]["created_at"])


def journey_versions(engine: Engine, journey_id: str) -> dict[int, JourneyDefinition]:
    """Every stored version of a journey."""
    return {int(row["version"]): parse_journey(json.loads(row["definition"]), f"journeys[{journey_id}]")
            for row in engine.query(_versions_query(journey_id)).to_pylist()}


def load_journey(engine: Engine, journey_id: str) -> StoredJourney:
    """The latest version of a journey, or an error naming the known ones."""
    stored = find_journey(engine, journey_id)
    if stored is None:
        known = ", ".join(list_journeys(engine)["journey_id"]) or "—"
        raise JourneyError([Problem("journey_id", f"unknown journey {journey_id!r} (known: {known}).",
                                    f"未知旅程 {journey_id!r}（已有：{known}）。",
                                    "create it with `jingzhun journey create FILE`",
                                    "用 `jingzhun journey create FILE` 创建")])
    return stored


def list_journeys(engine: Engine) -> pd.DataFrame:
    """Each journey's latest version: id, name, entry kind, status, when it was saved."""
    query = exp.select("journey_id", "version", "name", "entry_kind", "status", "created_at").from_(JOURNEYS.name)
    frame = engine.query(query).to_pandas()
    if frame.empty:
        return frame
    latest = frame.sort_values("version").groupby("journey_id", as_index=False).tail(1)
    return latest.sort_values("journey_id", ignore_index=True)


def set_journey_status(engine: Engine, journey_id: str, status: str, actor: str = "cli") -> None:
    """Pause or resume a journey: a paused journey enters, moves and sends nobody."""
    if status not in STATUSES:
        raise CampaignError(f"unknown status {status!r}.", field="status", fix=f"use {' or '.join(STATUSES)}",
                            message_zh=f"未知状态 {status!r}。", fix_zh=f"请使用 {' 或 '.join(STATUSES)}")
    stored = load_journey(engine, journey_id)
    moment = datetime.now(UTC)
    engine.execute(exp.update(JOURNEYS.name, {"status": literal(status), "updated_at": literal(moment)},
                              where=exp.and_(exp.column("journey_id").eq(literal(journey_id)),
                                             exp.column("version").eq(literal(stored.version)))))
    _audit(engine, journey_id, f"journey.{'pause' if status == 'paused' else 'resume'}", actor, moment,
           {"version": stored.version, "status": status}, object_type="journey")


# ---- running ------------------------------------------------------------------------------------


@dataclass
class JourneyRun:
    """What one run of a journey did, and the SQL that did it."""

    journey_id: str
    version: int
    entered: int = 0
    held_out: int = 0
    moves: dict[str, int] = field(default_factory=dict)  # outcome → persons (event, timeout, message …)
    planned: dict[str, int] = field(default_factory=dict)  # new deliveries by status
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    deferred: int = 0
    passes: int = 0
    notes: list[str] = field(default_factory=list)
    sql: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class Runner:
    """One run's fixed context."""

    workspace: Workspace
    engine: Engine
    journey_id: str
    now: datetime
    policy: SendPolicy
    report: JourneyRun

    def values(self, version: int, step: Step) -> dict[str, object]:
        return {"journey_id": self.journey_id, "version": version, "step": step.id, "now": self.now}


def run_journey(workspace: Workspace, engine: Engine, journey_id: str, *, now: datetime | None = None,
                adapters: dict[str, DeliveryAdapter] | None = None, send: bool = True) -> JourneyRun:
    """Enter, advance and send one journey as of `now` (default: the clock); safe to rerun.

    Args:
        now: the instant the run happens at; tests and backfills pass it (journey time
            never runs past it).
        adapters: channel → adapter; default built from definitions/delivery.yaml.
        send: False plans messages without sending them (a later run sends).
    """
    started = time.perf_counter()
    _require_transactions(engine)
    stored = load_journey(engine, journey_id)
    report = JourneyRun(journey_id, stored.version)
    if stored.status == "paused":
        report.notes.append("paused")
        return report
    moment = now or datetime.now(UTC)
    runner = Runner(workspace, engine, journey_id, moment, load_send_policy(workspace), report)
    versions = _live_versions(engine, stored)
    _enter(runner, stored)
    _advance(runner, versions)
    if send:
        _send(runner, versions, adapters)
    report.seconds = time.perf_counter() - started
    return report


def run_journeys(workspace: Workspace, engine: Engine, journey_ids: list[str] | None = None,
                 **options: object) -> dict[str, JourneyRun | Exception]:
    """Run several journeys (default: every active one) one after another; returns each
    one's report, or the error that stopped it (the others still run)."""
    ids = journey_ids if journey_ids is not None else [
        row["journey_id"] for row in list_journeys(engine).to_dict("records") if row["status"] == "active"]
    outcomes: dict[str, JourneyRun | Exception] = {}
    for journey_id in ids:
        try:
            outcomes[journey_id] = run_journey(workspace, engine, journey_id, **options)  # type: ignore[arg-type]
        except Exception as failure:  # noqa: BLE001 — reported per journey
            outcomes[journey_id] = failure
    return outcomes


def _live_versions(engine: Engine, stored: StoredJourney) -> dict[int, JourneyDefinition]:
    """The latest version, and every older one someone is still walking."""
    open_versions = engine.query(
        exp.select("version").distinct().from_(JOURNEY_STATES.name)
        .where(exp.column("journey_id").eq(literal(stored.journey_id)),
               exp.column("status").isin(literal("active"), literal("waiting")))).column("version").to_pylist()
    wanted = set(open_versions) | {stored.version}
    if wanted == {stored.version}:
        return {stored.version: stored.definition}
    return {v: d for v, d in journey_versions(engine, stored.journey_id).items() if v in wanted}


def _enter(runner: Runner, stored: StoredJourney) -> None:
    definition, engine = stored.definition, runner.engine
    entry = definition.entry
    since = entry.since or stored.first_saved_at
    if since.tzinfo is None:
        from zoneinfo import ZoneInfo

        since = since.replace(tzinfo=ZoneInfo(runner.workspace.config.timezone))
    if entry.event is not None:
        arrivals = q.event_arrivals_sql(entry.event, since, runner.now)
    elif entry.segment_entered is not None:
        arrivals = q.live_arrivals_sql(entry.segment_entered)
    else:
        from jingzhun.segments.audiences import members_sql

        arrivals = q.snapshot_arrivals_sql(members_sql(entry.segment), runner.now)  # type: ignore[arg-type]
    recorded = datetime.now(UTC)
    query = q.entry_sql(arrivals, definition.holdout, journey_id=stored.journey_id, version=stored.version,
                        first_step=definition.steps[0].id, since=since, now=runner.now, reentry=entry.reentry,
                        recorded=recorded)
    runner.report.sql["entry"] = engine.render(query)
    with engine.transaction():
        engine.materialize(q.ENTRIES, query, SCRATCH)
        counts = {row["status"]: int(row["n"]) for row in engine.query(
            f"SELECT status, COUNT(*) AS n FROM {q.ENTRIES} GROUP BY status").to_pylist()}
        if counts:
            engine.execute(exp.insert(exp.select(*JOURNEY_STATES.column_names).from_(q.ENTRIES),
                                      JOURNEY_STATES.name, columns=JOURNEY_STATES.column_names))
            engine.execute(q.bind(q.ENTRY_TRANSITIONS_SQL))
            if definition.holdout > 0:
                engine.execute(q.bind(q.ENTRY_ARMS_SQL, experiment_id=f"{stored.journey_id}:holdout"))
        engine.drop_table(q.ENTRIES)
    runner.report.entered += sum(counts.values())
    runner.report.held_out += counts.get("held_out", 0)


def _advance(runner: Runner, versions: dict[int, JourneyDefinition]) -> None:
    """Passes over the steps until nobody moves, then the goal's exits. Journey time decides
    between a move and the goal: whichever comes first happens (a person who waited until
    Tuesday and ordered on Wednesday got Tuesday's message, however late the run)."""
    engine = runner.engine
    goals = [(v, d.exit_on.event) for v, d in versions.items() if d.exit_on is not None]
    query = q.goals_sql(goals, journey_id=runner.journey_id, now=runner.now)
    runner.report.sql["goals"] = engine.render(query)
    engine.materialize(q.GOALS, query, SCRATCH)
    try:
        _passes(runner, versions)
        with engine.transaction():
            _apply(runner, q.goal_exits_sql(journey_id=runner.journey_id))
    finally:
        engine.drop_table(q.GOALS)


def _passes(runner: Runner, versions: dict[int, JourneyDefinition]) -> None:
    waits = sorted({s.id for d in versions.values() for s in d.steps if s.wait_for is not None})
    for _ in range(MAX_PASSES):
        pending = {(int(row["version"]), row["step"]) for row in runner.engine.query(
            q.pending_sql(waits, journey_id=runner.journey_id, now=runner.now)).to_pylist()}
        moved = 0
        for version, definition in versions.items():
            for index, step in enumerate(definition.steps):
                if (version, step.id) in pending:
                    moved += _step(runner, version, definition, index)
        runner.report.passes += 1
        if not moved:
            return
    runner.report.notes.append("max_passes")


def _step(runner: Runner, version: int, definition: JourneyDefinition, index: int) -> int:
    """Move everyone at steps[index] who can move now; returns how many moved."""
    step = definition.steps[index]
    targets = {edge.label: edge.target for edge in edges(definition, index)}
    values = runner.values(version, step)
    if step.message is not None:
        return _message_step(runner, version, definition, step, targets["next"])
    if step.wait_for is not None:
        moves = q.wait_for_moves_sql(int(step.wait_for.timeout.total_seconds()), event=step.wait_for.event,
                                     on_event=targets["event"], on_timeout=targets["timeout"], **values)
    elif step.delay is not None:
        moves = q.timed_moves_sql(q.delay_deadline(int(step.delay.total_seconds())), next=targets["next"],
                                  outcome="delay", **values)
    elif step.delay_until is not None:
        moves = q.timed_moves_sql(q.delay_until_deadline(step.delay_until, runner.workspace.config.timezone),
                                  next=targets["next"], outcome="delay", **values)
    elif step.random is not None:
        branches = [(b.percent, b.goto) for b in step.random]
        moves = q.instant_moves_sql(q.random_target(runner.journey_id, step.id, branches), outcome="branch", **values)
    elif step.split is not None:
        return _split_step(runner, version, step, targets["else"], values)
    else:
        moves = q.instant_moves_sql(exp.null(), outcome="exit", **values)
    runner.report.sql[f"v{version}.{step.id}"] = runner.engine.render(moves)
    with runner.engine.transaction():
        return _apply(runner, moves)


def _apply(runner: Runner, moves: exp.Expression) -> int:
    """Write a step's moves (inside the caller's transaction): the path rows, then the states."""
    engine = runner.engine
    engine.materialize(q.MOVES, moves, SCRATCH)
    counted = engine.query(f"SELECT outcome, COUNT(*) AS n FROM {q.MOVES} GROUP BY outcome").to_pylist()
    if counted:
        recorded = datetime.now(UTC)
        engine.execute(q.bind(q.APPLY_TRANSITIONS_SQL, journey_id=runner.journey_id, recorded=recorded))
        engine.execute(q.bind(q.APPLY_STATES_SQL, journey_id=runner.journey_id, recorded=recorded))
    engine.drop_table(q.MOVES)
    for row in counted:
        if row["outcome"] != "wait":
            runner.report.moves[row["outcome"]] = runner.report.moves.get(row["outcome"], 0) + int(row["n"])
    return sum(int(row["n"]) for row in counted)


def _split_step(runner: Runner, version: int, step: Step, otherwise: str | None, values: dict[str, object]) -> int:
    """Each branch's rule evaluated for the persons at the step only (their traits copied to a
    scratch population, every per-person aggregate restricted to them)."""
    from jingzhun.profiles.rules import parse_rule
    from jingzhun.segments.audiences import audience_catalog, load_audiences
    from jingzhun.segments.realtime import LiveCompiler

    engine = runner.engine
    here = q.bind(q.here_sql(("active",)), **values)
    population = (exp.select("pt.*").from_(exp.to_table("person_traits").as_("pt"))
                  .where(exp.column("person_id", "pt").isin(query=exp.select("person_id").from_(here.subquery("h")))))
    catalog = audience_catalog(engine, load_audiences(runner.workspace, engine))
    joins, branches = [], []
    for number, branch in enumerate(step.split or ()):
        compiler = LiveCompiler(as_of=runner.now, timezone=runner.workspace.config.timezone, catalog=catalog,
                                population=q.POPULATION)
        rule = parse_rule(branch.when, root=f"{step.id}.split[{number}].when")
        joins.append((compiler.select(compiler.predicate(rule, f"{step.id}.split[{number}].when")), f"b{number}"))
        branches.append((f"b{number}", branch.goto))
    moves = q.instant_moves_sql(q.split_target(branches, otherwise), joins, outcome="branch", **values)
    runner.report.sql[f"v{version}.{step.id}"] = engine.render(moves)
    with engine.transaction():
        engine.materialize(q.POPULATION, population, SCRATCH)
        moved = _apply(runner, moves)
        engine.drop_table(q.POPULATION)
    return moved


def delivery_step(step_id: str, visit: int) -> str:
    """The delivery's `step`: the step id, with the visit number from the second time round a loop."""
    return step_id if visit <= 1 else f"{step_id}#{visit}"


def message_campaign(definition: JourneyDefinition, step: Step) -> CampaignDefinition:
    """A message step as the campaign the send path knows: its template, channels and rules
    (no audience and no schedule: the journey decides who and when)."""
    assert step.message is not None
    return CampaignDefinition.model_construct(
        campaign_id=definition.journey_id, name_zh=definition.name_zh, name_en=definition.name_en,
        purpose=definition.purpose, audience=None, template_id=step.message.template,
        channels=definition.channels_of(step), language=step.message.language or definition.language,
        schedule=None, holdout=0.0, budget=None, quiet_hours=definition.quiet_hours, coupon=step.message.coupon,
        sensitive_data=definition.sensitive_data, track_links=definition.track_links,
        send_time=step.message.send_time)


def _message_step(runner: Runner, version: int, definition: JourneyDefinition, step: Step,
                  onward: str | None) -> int:
    """Plan the step's message for everyone at it and move them on, in one transaction
    behind the send lock."""
    engine, campaign = runner.engine, message_campaign(definition, step)
    values = runner.values(version, step)
    silent, until = quiet_channels(runner.now, runner.workspace.config.timezone, runner.policy, campaign.purpose,
                                   campaign.channels)

    def work() -> int:
        engine.materialize(q.AT_MESSAGE, q.visits_sql(**values), SCRATCH)
        groups = engine.query(f"SELECT DISTINCT entry, visit FROM {q.AT_MESSAGE} ORDER BY entry, visit").to_pylist()
        for group in groups:
            _plan_message(runner, campaign, str(group["entry"]), delivery_step(step.id, int(group["visit"])),
                          group, silent, until)
        moves = q.instant_moves_sql(literal(onward), outcome="message", **values)
        moved = _apply(runner, moves)
        engine.drop_table(q.AT_MESSAGE)
        return moved

    return int(locked(engine, work, holder=f"{runner.journey_id}:{step.id}"))  # type: ignore[arg-type]


def _plan_message(runner: Runner, campaign: CampaignDefinition, run_id: str, step_key: str, group: dict,
                  silent: tuple[str, ...], until: datetime | None) -> None:
    engine = runner.engine
    audience = (exp.select("person_id").from_(q.AT_MESSAGE)
                .where(exp.column("entry").eq(literal(group["entry"])), exp.column("visit").eq(literal(group["visit"]))))
    planned = (exp.select("person_id").from_(DELIVERIES.name)
               .where(exp.column("campaign_id").eq(literal(campaign.campaign_id)),
                      exp.column("run_id").eq(literal(run_id)), exp.column("step").eq(literal(step_key))))
    request = SendRequest(campaign.campaign_id, run_id, campaign.purpose, campaign.channels, audience, runner.now,
                          step=step_key, sensitive=campaign.sensitive_data, quiet=silent,
                          quiet_action=campaign.quiet_hours, defer_until=until, exclude=planned)
    query = policy_sql(request, runner.policy)
    runner.report.sql[f"policy.{step_key}"] = engine.render(query)
    engine.materialize(PLAN, query, SCRATCH)
    if campaign.send_time == "optimal":
        runner.report.sql[f"send_time.{step_key}"] = defer_to_best_hours(
            runner.workspace, engine, PLAN, runner.policy, campaign.purpose, runner.now)
    for status, n in _record_plan(engine, runner.now).items():
        runner.report.planned[status] = runner.report.planned.get(status, 0) + n
    engine.drop_table(PLAN)


# ---- sending ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepContext(SendContext):
    """The send loop's context for one message step: its deliveries only (they share the
    journey's campaign_id with the other steps' and differ by `step`)."""

    steps: tuple[str, ...] = ()

    def where(self, *conditions: exp.Expression) -> exp.Expression:
        return super().where(exp.column("step").isin(*[literal(s) for s in self.steps]), *conditions)


def _send(runner: Runner, versions: dict[int, JourneyDefinition], adapters: dict[str, DeliveryAdapter] | None) -> None:
    """Replan deferred messages whose time came and send what is queued, step by step."""
    steps: dict[str, tuple[int, JourneyDefinition, Step]] = {}
    for version, definition in sorted(versions.items()):  # the newest version's copy wins
        steps.update({s.id: (version, definition, s) for s in definition.steps if s.message is not None})
    keys = _open_step_keys(runner)
    work = {step_id: tuple(k for k in keys if k.split("#")[0] == step_id) for step_id in steps}
    work = {step_id: found for step_id, found in work.items() if found}
    if not work:
        return
    channels = tuple(sorted({c for s in work for c in steps[s][1].channels_of(steps[s][2])}))
    config = load_delivery_config(runner.workspace)
    owned = adapters is None
    adapters = adapters if adapters is not None else build_adapters(runner.workspace, config, channels)
    try:
        for step_id, found in work.items():
            version, definition, step = steps[step_id]
            _send_step(runner, config, message_campaign(definition, step), version, found, adapters,
                       lambda: runner.now)
    finally:
        if owned:
            for adapter in adapters.values():
                adapter.close()


def _send_step(runner: Runner, config, campaign: CampaignDefinition, version: int,  # type: ignore[no-untyped-def]
               keys: tuple[str, ...], adapters: dict[str, DeliveryAdapter], clock: Callable[[], datetime]) -> None:
    workspace, engine = runner.workspace, runner.engine
    report = RunReport(campaign.campaign_id, version)
    template = check_template(workspace, campaign)
    replan_deferred(workspace, engine, StoredCampaign(campaign, version, "active"), runner.now, runner.policy, report,
                    steps=keys)
    tracker = link_tracker(workspace, config, campaign.campaign_id) if campaign.track_links else None
    mine = {c: adapters[c] for c in campaign.channels if c in adapters}
    send_pending(StepContext(workspace, engine, campaign, template, mine, clock, runner.policy, tracker, steps=keys),
                 report)
    for status, n in report.planned.items():
        runner.report.planned[status] = runner.report.planned.get(status, 0) + n
    runner.report.sent += report.sent
    runner.report.failed += report.failed
    runner.report.unknown += report.unknown
    runner.report.deferred += report.deferred
    runner.report.notes.extend(report.notes)


def _open_step_keys(runner: Runner) -> list[str]:
    """Delivery steps of the journey with something to send or to decide again now."""
    query = (exp.select("step").distinct().from_(DELIVERIES.name)
             .where(exp.column("campaign_id").eq(literal(runner.journey_id)),
                    exp.or_(exp.column("status").isin(literal("queued"), literal("sending")),
                            exp.and_(exp.column("status").eq(literal("deferred")),
                                     exp.LTE(this=exp.column("scheduled_at"), expression=literal(runner.now))))))
    return sorted(runner.engine.query(query).column("step").to_pylist())


# ---- reading -----------------------------------------------------------------------------------

STEPS_SQL = """
SELECT version, step, CAST(SUM(CASE WHEN status = 'active' THEN 1 ELSE 0 END) AS BIGINT) AS active,
  CAST(SUM(CASE WHEN status = 'waiting' THEN 1 ELSE 0 END) AS BIGINT) AS waiting,
  CAST(SUM(CASE WHEN status = 'done' THEN 1 ELSE 0 END) AS BIGINT) AS done,
  CAST(SUM(CASE WHEN status = 'exited' THEN 1 ELSE 0 END) AS BIGINT) AS exited,
  CAST(SUM(CASE WHEN status = 'held_out' THEN 1 ELSE 0 END) AS BIGINT) AS held_out
FROM journey_states WHERE journey_id = :journey_id GROUP BY version, step ORDER BY version, step"""

MESSAGES_SQL = """
WITH responses AS (
  SELECT delivery_id, MAX(CASE WHEN event_type = 'opened' THEN 1 ELSE 0 END) AS opened,
    MAX(CASE WHEN event_type = 'clicked' THEN 1 ELSE 0 END) AS clicked
  FROM message_events WHERE campaign_id = :journey_id AND event_type IN ('opened', 'clicked') GROUP BY delivery_id
)
SELECT REGEXP_REPLACE(d.step, '#.*$', '') AS step, d.channel, CAST(COUNT(*) AS BIGINT) AS planned,
  CAST(SUM(CASE WHEN d.status = 'suppressed' THEN 1 ELSE 0 END) AS BIGINT) AS suppressed,
  CAST(SUM(CASE WHEN d.status = 'deferred' THEN 1 ELSE 0 END) AS BIGINT) AS deferred,
  CAST(SUM(CASE WHEN d.status IN ('queued', 'sending') THEN 1 ELSE 0 END) AS BIGINT) AS pending,
  CAST(SUM(CASE WHEN d.status = 'sent' THEN 1 ELSE 0 END) AS BIGINT) AS sent,
  CAST(SUM(CASE WHEN d.status IN ('failed', 'unknown') THEN 1 ELSE 0 END) AS BIGINT) AS failed,
  CAST(SUM(CASE WHEN d.status = 'sent' THEN COALESCE(r.opened, 0) ELSE 0 END) AS BIGINT) AS opened,
  CAST(SUM(CASE WHEN d.status = 'sent' THEN COALESCE(r.clicked, 0) ELSE 0 END) AS BIGINT) AS clicked
FROM deliveries AS d LEFT JOIN responses AS r ON r.delivery_id = d.delivery_id
WHERE d.campaign_id = :journey_id
GROUP BY REGEXP_REPLACE(d.step, '#.*$', ''), d.channel ORDER BY step, d.channel"""

PATHS_SQL = """
SELECT person_id, entry, version, from_step, to_step, outcome, at FROM journey_transitions
WHERE journey_id = :journey_id ORDER BY person_id, entry, at, recorded_at"""


@dataclass(frozen=True)
class JourneyStatus:
    """Where everyone is, per step, and what each message step sent."""

    journey_id: str
    version: int
    status: str
    steps: pd.DataFrame  # version, step, active, waiting, done, exited, held_out
    messages: pd.DataFrame  # step, channel, planned, suppressed, deferred, pending, sent, failed, opened, clicked
    sql: dict[str, str]


def journey_status(engine: Engine, journey_id: str) -> JourneyStatus:
    """Persons per step and status, and each message step's deliveries and responses."""
    stored = load_journey(engine, journey_id)
    queries = {name: q.bind(text, journey_id=journey_id) for name, text in (("steps", STEPS_SQL),
                                                                          ("messages", MESSAGES_SQL))}
    frames = {name: engine.query(query).to_pandas() for name, query in queries.items()}
    return JourneyStatus(journey_id, stored.version, stored.status, frames["steps"], frames["messages"],
                         {name: engine.render(query) for name, query in queries.items()})


def journey_paths(engine: Engine, journey_id: str, person_id: str | None = None) -> pd.DataFrame:
    """Every move of every person (or one), in journey time: person_id, entry, version,
    from_step, to_step ('end' when they left), outcome, at."""
    query = q.bind(PATHS_SQL, journey_id=journey_id)
    if person_id is not None:
        query = query.where(exp.column("person_id").eq(literal(person_id)))
    return engine.query(query).to_pandas()
