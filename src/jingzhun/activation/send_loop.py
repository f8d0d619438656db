"""The send loop: queued deliveries → `sending` → the adapter → `sent` | `failed`, batch by batch.

Every state change is committed before the next step, which is what makes a crash
harmless: a batch is marked `sending` before any adapter call and marked `sent` or
`failed` after, in one transaction with its `message_events` rows. Before each batch the
loop checks that the campaign is not paused and that the channel is not inside quiet hours
(a long send that runs into 21:00 stops there: what is left is deferred or dropped as the
campaign says). The content of a batch is rendered just before it is sent
(activation.content), with each link rewritten to a tracked one and, for e-mail, an open pixel;
the batch's short links are written to the link map before any of it is sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from sqlglot import exp

from jingzhun.activation.campaigns import CampaignDefinition
from jingzhun.activation.content import MessageTemplate, load_template, render_messages
from jingzhun.activation.coupons import issue_coupons
from jingzhun.activation.delivery import (
    DeliveryAdapter,
    FileExportAdapter,
    Outcome,
    Outgoing,
    addresses_for,
)
from jingzhun.activation.policy import SendPolicy, literal, parsed_sql, quiet_channels
from jingzhun.activation.tracking import LinkTracker
from jingzhun.core.errors import JingzhunError
from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine
from jingzhun.schema.tables import CAMPAIGNS, DELIVERIES, MESSAGE_EVENTS

if TYPE_CHECKING:
    from jingzhun.activation.sending import RunReport

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class SendContext:
    """What the loop needs: where, which campaign, how to send, what time it is, and the rules."""

    workspace: Workspace
    engine: Engine
    definition: CampaignDefinition
    template: MessageTemplate | None
    adapters: dict[str, DeliveryAdapter]
    clock: Clock
    policy: SendPolicy
    tracker: LinkTracker | None

    @property
    def campaign_id(self) -> str:
        return self.definition.campaign_id

    def where(self, *conditions: exp.Expression) -> exp.Expression:
        return exp.and_(exp.column("campaign_id").eq(literal(self.campaign_id)), *conditions)


def send_pending(context: SendContext, report: RunReport) -> None:
    """Send every queued delivery of the campaign, after settling those a crash interrupted."""
    settle_interrupted(context, report)
    for channel, adapter in context.adapters.items():
        for run_id in _runs_with(context, channel, ("queued", "sending") if adapter.BULK else ("queued",)):
            if isinstance(adapter, FileExportAdapter):
                _export_run(context, channel, adapter, run_id, report)
            else:
                _send_run(context, channel, adapter, run_id, report)


def settle_interrupted(context: SendContext, report: RunReport) -> None:
    """Rows left `sending` by a crash: queued again where the adapter resends safely (same
    idempotency key), else `unknown` — an e-mail that may have gone is never sent twice."""
    for channel, adapter in context.adapters.items():
        interrupted = context.where(exp.column("channel").eq(literal(channel)),
                                    exp.column("status").eq(literal("sending")))
        if adapter.RESENDS_SAFELY or adapter.BULK:
            context.engine.execute(exp.update(DELIVERIES.name, {"status": literal("queued")}, where=interrupted))
            continue
        moment = context.clock()
        with context.engine.transaction():
            _events_for(context.engine, interrupted, "unknown", moment, "interrupted")
            count = _count(context.engine, interrupted)
            context.engine.execute(exp.update(DELIVERIES.name, {
                "status": literal("unknown"), "reason": literal("interrupted"), "updated_at": literal(moment)},
                where=interrupted.copy()))
        report.unknown += count


def _runs_with(context: SendContext, channel: str, statuses: tuple[str, ...]) -> list[str]:
    query = (exp.select("run_id").distinct().from_(DELIVERIES.name)
             .where(context.where(exp.column("channel").eq(literal(channel)),
                                  exp.column("status").isin(*[literal(s) for s in statuses])))
             .order_by("run_id"))
    return context.engine.query(query).column("run_id").to_pylist()


def _send_run(context: SendContext, channel: str, adapter: DeliveryAdapter, run_id: str,
              report: RunReport) -> None:
    """Batches of queued rows: rendered together, then marked `sending` and sent — the whole
    batch at once where a resend is harmless, one message at a time where it is not (so a
    crash leaves at most one e-mail `unknown`)."""
    while True:
        if _campaign_paused(context):
            report.notes.append("paused")
            return
        moment = context.clock()
        silent, until = quiet_channels(moment, context.workspace.config.timezone, context.policy,
                                       context.definition.purpose, (channel,))
        if silent:
            report.deferred += hold_queued(context, channel, run_id, until, moment)
            report.notes.append("quiet_hours")
            return
        batch = next_batch(context, channel, run_id, adapter.batch_size())
        if not batch.num_rows:
            return
        prepared = _prepare(context, channel, batch)
        ids = list(prepared)
        window = len(ids) if adapter.RESENDS_SAFELY else 1
        for start in range(0, len(ids), window):
            chunk = ids[start:start + window]
            _mark_sending(context, chunk, context.clock())
            outcomes = {d: (adapter.send(prepared[d][0]), prepared[d][0]) if prepared[d][0] is not None
                        else (prepared[d][1], None) for d in chunk}
            record_outcomes(context, outcomes, context.clock())
            report.sent += sum(1 for outcome, _ in outcomes.values() if outcome.ok)
            report.failed += sum(1 for outcome, _ in outcomes.values() if not outcome.ok)


def next_batch(context: SendContext, channel: str, run_id: str, size: int) -> pa.Table:
    """The next queued deliveries of a run (in delivery-id order) with their address now."""
    queued = (exp.select("delivery_id", "person_id").from_(DELIVERIES.name)
              .where(context.where(exp.column("run_id").eq(literal(run_id)), exp.column("channel").eq(literal(channel)),
                                   exp.column("status").eq(literal("queued"))))
              .order_by("delivery_id").limit(size))
    with_address = addresses_for(queued.copy(), context.policy.address_types_of(channel))
    query = (exp.select("q.delivery_id", "q.person_id", "a.address").from_(queued.subquery("q"))
             .join(with_address.subquery("a"), on="a.delivery_id = q.delivery_id", join_type="left")
             .order_by("q.delivery_id"))
    return context.engine.query(query)


def _mark_sending(context: SendContext, delivery_ids: list[str], moment: datetime) -> None:
    context.engine.execute(exp.update(DELIVERIES.name, {
        "status": literal("sending"), "updated_at": literal(moment),
        "attempts": exp.func("COALESCE", exp.column("attempts"), exp.Literal.number(0)) + 1},
        where=exp.and_(exp.column("delivery_id").isin(*[literal(d) for d in delivery_ids]),
                       exp.column("status").eq(literal("queued")))))


def _prepare(context: SendContext, channel: str, batch: pa.Table) -> dict[str, tuple[Outgoing | None, Outcome]]:
    """Each delivery's message, or the failure that stops it: delivery_id → (message, failure)."""
    rows = batch.to_pylist()
    unreachable = Outcome(False, "unreachable", attempts=0)
    prepared: dict[str, tuple[Outgoing | None, Outcome]] = {
        row["delivery_id"]: (None, unreachable) for row in rows if not row["address"]}
    reachable = [row for row in rows if row["address"]]
    try:
        messages = compose(context, channel, reachable)
    except JingzhunError as problem:  # a template error fails the batch with the reason, not the run
        failure = Outcome(False, f"content: {problem.message}"[:500], attempts=0)
        return {**prepared, **{row["delivery_id"]: (None, failure) for row in reachable}}
    missing = Outcome(False, "no content for this person", attempts=0)
    for row in reachable:
        prepared[row["delivery_id"]] = (messages.get(row["delivery_id"]), missing)
    return prepared


def compose(context: SendContext, channel: str, rows: list[dict[str, Any]]) -> dict[str, Outgoing]:
    """The messages of a batch (delivery_id → message), personal coupons issued first."""
    if not rows:
        return {}
    definition, workspace = context.definition, context.workspace
    template = context.template or load_template(workspace, definition.template_id)
    persons = [row["person_id"] for row in rows]
    delivery_of = {row["person_id"]: row["delivery_id"] for row in rows}
    now = context.clock()
    if definition.coupon is not None:  # the campaign's own coupon; a template's is issued by the renderer
        issue_coupons(context.engine, definition.campaign_id, persons, definition.coupon, workspace=workspace,
                      issued_at=now)
    tracker = context.tracker
    links = (lambda person, url: tracker.link(delivery_of[person], url, channel)) if tracker else None
    rendered = render_messages(context.engine, workspace, template, persons, channel=channel,
                               language=definition.language, campaign_id=definition.campaign_id, links=links,
                               now=now)
    if tracker:
        tracker.commit()  # the batch's short links are on disk before any of it is sent
    address_of = {row["person_id"]: row["address"] for row in rows}
    marketing, email = definition.purpose == "marketing", channel == "email"
    messages = {}
    for item in rendered:
        delivery_id = delivery_of[item.person_id]
        messages[delivery_id] = Outgoing(
            delivery_id, definition.campaign_id, item.person_id, channel, address_of[item.person_id], item.title,
            (item.text or "") if email else item.body, dict(item.fields or {}), item.language, item.coupon_code,
            item.content_hash, tracker.pixel(delivery_id) if tracker and email else None,
            item.body if email else None, tracker.unsubscribe(delivery_id) if tracker and marketing else None)
    return messages


OUTCOME_COLUMNS = (("delivery_id", "VARCHAR"), ("status", "VARCHAR"), ("reason", "VARCHAR"),
                   ("sent_at", "TIMESTAMPTZ"), ("content_hash", "VARCHAR"), ("coupon_code", "VARCHAR"),
                   ("attempts", "INTEGER"), ("provider_id", "VARCHAR"))

RECORD_UPDATE_SQL = """
UPDATE deliveries SET status = o.status, reason = o.reason, sent_at = o.sent_at, content_hash = o.content_hash,
  coupon_code = o.coupon_code, updated_at = :now
FROM outcomes AS o WHERE deliveries.delivery_id = o.delivery_id"""

RECORD_EVENTS_SQL = """
SELECT MD5(o.delivery_id || ':' || o.status || ':' || CAST(d.attempts AS VARCHAR)) AS message_event_id,
  o.delivery_id, d.campaign_id, d.person_id, o.status AS event_type, :now AS occurred_at,
  CASE WHEN o.reason IS NULL AND o.provider_id IS NULL THEN NULL
       ELSE TO_JSON({'reason': o.reason, 'provider_id': o.provider_id, 'attempts': o.attempts}) END AS properties
FROM outcomes AS o JOIN deliveries AS d ON d.delivery_id = o.delivery_id"""


def record_outcomes(context: SendContext, outcomes: dict[str, tuple[Outcome, Any]], moment: datetime) -> None:
    """Mark a batch sent/failed and add its message events, in one transaction."""
    rows = []
    for delivery_id, (outcome, message) in outcomes.items():
        rows.append((delivery_id, "sent" if outcome.ok else "failed", outcome.error,
                     moment if outcome.ok else None, getattr(message, "content_hash", None),
                     getattr(message, "coupon_code", None), outcome.attempts, outcome.provider_id))
    table = _values("outcomes", OUTCOME_COLUMNS, rows)
    stamp = {"now": literal(moment)}
    with context.engine.transaction():
        events = _with_table(exp.replace_placeholders(parsed_sql(RECORD_EVENTS_SQL), **stamp), "outcomes", table)
        context.engine.execute(exp.insert(events, MESSAGE_EVENTS.name, columns=MESSAGE_EVENTS.column_names))
        context.engine.execute(_with_table(exp.replace_placeholders(parsed_sql(RECORD_UPDATE_SQL), **stamp),
                                           "outcomes", table))


def _values(alias: str, columns: tuple[tuple[str, str], ...], rows: list[tuple]) -> exp.Expression:
    """Rows as a typed inline table (NULLs cast, so every column has its type)."""
    typed = [tuple(exp.cast(literal(value) if value is not None else exp.null(), exp.DataType.build(kind))
                   for value, (_, kind) in zip(row, columns, strict=True)) for row in rows]
    return exp.values(typed, alias=alias, columns=[name for name, _ in columns])


def _with_table(statement: exp.Expression, name: str, table: exp.Expression) -> exp.Expression:
    """Put the inline `table` where the statement names `name`."""
    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table) and node.name == name and not node.args.get("db"):
            replacement = table.copy()
            replacement.set("alias", exp.TableAlias(this=exp.to_identifier(node.alias or name),
                                                    columns=table.args["alias"].args.get("columns")))
            return replacement
        return node

    return statement.transform(swap)


def hold_queued(context: SendContext, channel: str, run_id: str, until: datetime | None, moment: datetime) -> int:
    """Quiet hours began mid-send: defer (to `until`) or drop what is still queued."""
    defer = context.definition.quiet_hours == "defer"
    queued = context.where(exp.column("run_id").eq(literal(run_id)), exp.column("channel").eq(literal(channel)),
                           exp.column("status").eq(literal("queued")))
    status = "deferred" if defer else "suppressed"
    with context.engine.transaction():
        count = _count(context.engine, queued)
        _events_for(context.engine, queued, status, moment, "quiet_hours")
        changes = {"status": literal(status), "reason": literal("quiet_hours"), "updated_at": literal(moment)}
        if defer and until is not None:
            changes["scheduled_at"] = literal(until)
        context.engine.execute(exp.update(DELIVERIES.name, changes, where=queued.copy()))
    return count


def _events_for(engine: Engine, where: exp.Expression, event_type: str, moment: datetime, reason: str) -> None:
    """One message event per delivery matching `where`."""
    rows = (exp.select(
        exp.func("MD5", exp.DPipe(this=exp.DPipe(this=exp.column("delivery_id"), expression=literal(f":{event_type}:")),
                                  expression=literal(moment.isoformat()))).as_("message_event_id"),
        "delivery_id", "campaign_id", "person_id", literal(event_type).as_("event_type"),
        literal(moment).as_("occurred_at"), literal(f'{{"reason": "{reason}"}}').as_("properties"))
        .from_(DELIVERIES.name).where(where.copy()))
    engine.execute(exp.insert(rows, MESSAGE_EVENTS.name, columns=MESSAGE_EVENTS.column_names))


def _count(engine: Engine, where: exp.Expression) -> int:
    query = exp.select(exp.func("COUNT", exp.Star()).as_("n")).from_(DELIVERIES.name).where(where.copy())
    return int(engine.query(query).column("n")[0].as_py())


def _campaign_paused(context: SendContext) -> bool:
    query = (exp.select("status").from_(CAMPAIGNS.name).where(exp.column("campaign_id").eq(literal(context.campaign_id)))
             .order_by(exp.Ordered(this=exp.column("version"), desc=True)).limit(1))
    rows = context.engine.query(query).to_pylist()
    return bool(rows) and rows[0]["status"] == "paused"


def _export_run(context: SendContext, channel: str, adapter: FileExportAdapter, run_id: str,
                report: RunReport) -> None:
    """Write the run's audience file from SQL, then mark its rows sent (a rerun rewrites the file)."""
    run = context.where(exp.column("run_id").eq(literal(run_id)), exp.column("channel").eq(literal(channel)))
    included = (exp.select("delivery_id", "person_id").from_(DELIVERIES.name)
                .where(exp.and_(run.copy(), exp.column("status").isin(literal("queued"), literal("sending"),
                                                                       literal("sent")))))
    adapter.export(context.engine, addresses_for(included, context.policy.address_types_of(channel)),
                   context.campaign_id, run_id)
    moment = context.clock()
    pending = exp.and_(run, exp.column("status").isin(literal("queued"), literal("sending")))
    with context.engine.transaction():
        count = _count(context.engine, pending)
        _events_for(context.engine, pending, "sent", moment, "exported")
        context.engine.execute(exp.update(DELIVERIES.name, {
            "status": literal("sent"), "sent_at": literal(moment), "updated_at": literal(moment),
            "attempts": exp.func("COALESCE", exp.column("attempts"), exp.Literal.number(0)) + 1},
            where=pending.copy()))
    report.sent += count
