"""Real-time audiences: membership updated seconds after an event reaches the collector.

An audience qualifies when its rule depends only on the person's own events — event
conditions with relative windows (`last: 7d`) or none, combined with all / any / not —
because then one new event of a person can change that person's membership and no one
else's. Its definition says `realtime: true`; a rule that also reads traits, tags,
scores, identifiers, consent, orders, other audiences or calendar windows is refused
with the rule path of each offending condition (`realtime_problems`): those change
without an event, so only the pipeline's snapshots can follow them.

After each batch the collector loads (and after `identity.realtime` has attributed its
events), `update_live_audiences` evaluates every real-time audience for the persons the
batch touched — the compiled rule (profiles/rules_compiler.py) over just those persons,
its per-person aggregates restricted to their records, one engine query per audience —
and appends who entered and who left to `segment_live_members`. A person's latest row
per audience says whether they are in it now; the rows are the history. Windows also
close without any event ("viewed twice in the last 7 days" ends a week later), so every
`RECHECK_EVERY` the current live members are evaluated again and those whose window
passed leave (trigger NULL). The dated snapshots (`segment_members`) are unchanged: the
pipeline snapshots real-time audiences like any other.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
from sqlglot import exp

from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine, MaterializeHints, parse_sql
from jingzhun.profiles.rules import (
    AbsoluteWindow,
    AllCondition,
    AnyCondition,
    EventCondition,
    NotCondition,
    Problem,
    RuleError,
    Threshold,
    walk,
)
from jingzhun.profiles.rules_compiler import RuleCompiler, literal
from jingzhun.schema.tables import SEGMENT_LIVE_MEMBERS
from jingzhun.segments.audiences import (
    AudienceDefinition,
    AudienceError,
    audience_folder,
    load_audiences,
    stored_versions,
)

RECHECK_EVERY = 300.0  # seconds between re-checks of current live members (windows that closed)
BATCH = "segment_live_batch"  # the batch's events (staging; dropped in the same transaction)
TOUCHED = "segment_work_live_touched"  # persons to evaluate, with the event that touched them
LIVE = SEGMENT_LIVE_MEMBERS.name
_rechecked: dict[str, float] = {}  # workspace root → monotonic time of the last re-check (per process)
_definitions: dict[str, tuple[tuple, dict[str, AudienceDefinition]]] = {}  # root → (files' stat, audiences)

# ---- which rules can be real-time -------------------------------------------------------------

_NESTING = (AllCondition, AnyCondition, NotCondition)
_WHY = {
    "trait": ("traits are computed by the pipeline, not from each new event",
              "画像字段由流水线计算，不随每个新事件更新"),
    "tag": ("tags are computed by the pipeline", "标签由流水线计算"),
    "score": ("scores are computed by the pipeline", "评分由流水线计算"),
    "has_identifier": ("identifiers change with the ID graph, not with one person's events",
                       "标识随身份图谱变化，而非个人事件"),
    "consent": ("consent is recorded outside the event stream", "授权记录不在事件流中"),
    "segment": ("another audience's membership is not one person's events", "其他人群的成员不取决于本人事件"),
    "order": ("orders arrive by import, not through the collector; count an event such as "
              "'Order Completed' instead", "订单通过导入到达而非采集服务；请改用 'Order Completed' 等事件条件"),
}


def realtime_problems(condition: object, root: str = "segment.rule") -> list[Problem]:
    """Why a parsed rule cannot be real-time: one problem per offending condition, with its path."""
    problems = []
    for path, node in walk(condition, root):
        if isinstance(node, _NESTING):
            continue
        if isinstance(node, EventCondition):
            if isinstance(node.event.window, AbsoluteWindow):
                problems.append(Problem(
                    f"{path}.event.window", "a real-time audience needs a relative window: calendar dates "
                    "would make members enter or leave at midnight, with no event to notice it.",
                    "实时人群需要相对时间窗：日历日期会让成员在零点进出，而没有事件触发。",
                    "write {last: 7d}, or remove `realtime: true`", "写成 {last: 7d}，或删除 realtime: true"))
            continue
        kind = getattr(node, "KIND", "")
        en, zh = _WHY.get(kind, ("it is not one of the person's own events", "它不是本人的事件"))
        problems.append(Problem(
            f"{path}.{kind}", f"a real-time audience may use only event conditions (with all/any/not): "
            f"`{kind}` cannot be updated as events arrive ({en}).",
            f"实时人群只能使用事件条件（可用 all/any/not 组合）：`{kind}` 条件无法随事件实时更新（{zh}）。",
            "remove `realtime: true` (the pipeline's snapshots keep it up to date), or use only event conditions",
            "删除 realtime: true（由流水线快照更新），或只使用事件条件"))
    return problems


def require_realtime_rule(condition: object, root: str = "segment.rule") -> None:
    """Raise `RuleError` naming every condition that keeps the rule from being real-time."""
    problems = realtime_problems(condition, root)
    if problems:
        raise RuleError(problems)


# ---- evaluating for the touched persons only ---------------------------------------------------


@dataclass
class LiveCompiler(RuleCompiler):
    """The rule compiler with every per-person aggregate restricted to the persons in
    `population` (the touched ones), so a batch reads only their records."""

    def _measured(self, query: exp.Select, measure: exp.Expression, threshold: Threshold) -> exp.Expression:
        touched = exp.select("person_id").from_(self.population)
        return super()._measured(query.where(exp.column("person_id", table="rp").isin(query=touched)),
                                 measure, threshold)


@dataclass
class LiveUpdate:
    """What one batch changed: persons evaluated, entries and exits per audience, the SQL."""

    touched: int = 0
    rechecked: bool = False
    entered: dict[str, int] = field(default_factory=dict)
    exited: dict[str, int] = field(default_factory=dict)
    sql: dict[str, str] = field(default_factory=dict)


def realtime_audiences(workspace: Workspace, engine: Engine) -> dict[str, AudienceDefinition]:
    """The workspace's audiences marked `realtime: true`, read again only when a definition
    file changed (parsing the YAML was a third of a batch's audience work)."""
    files = sorted(audience_folder(workspace).glob("*.y*ml"))
    signature = tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    cached = _definitions.get(str(workspace.root))
    if cached is None or cached[0] != signature:
        found = {key: d for key, d in load_audiences(workspace, engine).items() if d.realtime}
        cached = _definitions[str(workspace.root)] = (signature, found)
    return cached[1]


def update_live_audiences(workspace: Workspace, engine: Engine, events: pa.Table,
                          as_of: datetime | None = None) -> LiveUpdate:
    """Evaluate the real-time audiences for the persons whose events just arrived (the
    collector's after-load hook; run it after `identity.realtime.attribute_new_events`).

    Args:
        workspace: supplies the audience definitions and the time zone.
        engine: the workspace's engine, `events` and `record_persons` already holding the batch.
        events: the new rows of `events` (message_id, timestamp, received_at are read).
        as_of: the instant windows end at; now by default.

    Returns:
        Entries and exits per audience (also appended to `segment_live_members`) and the SQL.
    """
    audiences = realtime_audiences(workspace, engine)
    result = LiveUpdate()
    if not audiences or (not events.num_rows and not _recheck_due(workspace)):
        return result
    moment = as_of or datetime.now(UTC)
    versions = {key: version for key, (version, _) in stored_versions(engine).items()}
    with engine.transaction():
        engine.write_table(BATCH, events.select(["message_id", "timestamp", "received_at"]), mode="replace")
        try:
            result.rechecked = _recheck_due(workspace, consume=True)
            touched = touched_sql(list(audiences), result.rechecked)
            result.touched = engine.materialize(TOUCHED, touched, MaterializeHints(scratch=True)).row_count()
            result.sql["touched"] = engine.render(touched)
            changes = [_changes(engine, key, audiences[key], versions.get(key), moment, workspace, result)
                       for key in sorted(audiences)] if result.touched else []
            rows = pa.concat_tables(changes) if changes else None
            if rows is not None and rows.num_rows:
                engine.write_table(LIVE, rows.append_column(
                    "changed_at", pa.array([datetime.now(UTC)] * rows.num_rows, pa.timestamp("us", tz="UTC"))
                ).select(SEGMENT_LIVE_MEMBERS.column_names))
        finally:
            engine.drop_table(BATCH)
            engine.drop_table(TOUCHED)
    return result


def _recheck_due(workspace: Workspace, consume: bool = False) -> bool:
    """Whether current members should be evaluated again (once per RECHECK_EVERY per process)."""
    key, now = str(workspace.root), time.monotonic()
    due = now - _rechecked.get(key, float("-inf")) >= RECHECK_EVERY
    if due and consume:
        _rechecked[key] = now
    return due


def _changes(engine: Engine, key: str, definition: AudienceDefinition, version: int | None, moment: datetime,
             workspace: Workspace, result: LiveUpdate) -> pa.Table:
    """One audience's entries and exits among the touched persons: one engine query."""
    compiler = LiveCompiler(as_of=moment, timezone=workspace.config.timezone, population=TOUCHED)
    members = compiler.select(compiler.predicate(definition.rule, "segment.rule"))
    query = changes_sql(key, members)
    result.sql[key] = engine.render(query)
    found = engine.query(query)
    changed = found.column("change").to_pylist()
    result.entered[key] = changed.count("entered")
    result.exited[key] = changed.count("exited")
    count = found.num_rows
    return found.append_column("segment_id", pa.array([key] * count, pa.string())).append_column(
        "segment_version", pa.array([version] * count, pa.int32()))


# ---- the queries ----------------------------------------------------------------------------

CURRENT_SQL = """
SELECT segment_id, person_id, changed_at AS entered_at, trigger_message_id FROM (
  SELECT segment_id, person_id, change, changed_at, trigger_message_id,
    ROW_NUMBER() OVER (PARTITION BY segment_id, person_id ORDER BY changed_at DESC, change DESC) AS latest
  FROM segment_live_members WHERE segment_id IN (:ids)
) AS ranked WHERE latest = 1 AND change = 'entered'"""

TOUCHED_SQL = """
SELECT person_id, message_id AS trigger_message_id, timestamp AS event_at, received_at FROM (
  SELECT rp.person_id, b.message_id, b.timestamp, b.received_at,
    ROW_NUMBER() OVER (PARTITION BY rp.person_id ORDER BY b.timestamp DESC, b.message_id DESC) AS latest
  FROM segment_live_batch AS b
  JOIN record_persons AS rp ON rp.record_kind = 'event' AND rp.record_id = b.message_id
) AS ranked WHERE latest = 1"""


def current_sql(segment_ids: list[str]) -> exp.Expression:
    """segment_id, person_id, entered_at, trigger_message_id of everyone in the audiences now."""
    names = ", ".join(f":id_{i}" for i in range(len(segment_ids)))
    return exp.replace_placeholders(parse_sql(CURRENT_SQL.replace(":ids", names)),
                                    **{f"id_{i}": literal(s) for i, s in enumerate(segment_ids)})


def touched_sql(segment_ids: list[str], recheck: bool) -> exp.Expression:
    """The persons to evaluate: owners of the batch's events (with their latest event), and
    on a re-check every current member of the audiences too (without an event)."""
    by_events = parse_sql(TOUCHED_SQL)
    if not recheck:
        return by_events
    members = (exp.select(exp.column("person_id", table="c"),
                          *[exp.cast(exp.null(), exp.DataType.build(kind)).as_(name) for name, kind in (
                              ("trigger_message_id", "VARCHAR"), ("event_at", "TIMESTAMPTZ"),
                              ("received_at", "TIMESTAMPTZ"))])
               .distinct().from_(current_sql(segment_ids).subquery("c"))
               .join(by_events.copy().subquery("t"), on="t.person_id = c.person_id", join_type="anti"))
    return exp.union(by_events, members, distinct=False)


def changes_sql(segment_id: str, members: exp.Select) -> exp.Select:
    """Touched persons whose membership differs from their latest live row: 'entered' when
    the rule now matches them, 'exited' when it no longer does."""
    matched = exp.column("person_id", table="m")
    return (exp.select("t.person_id", "t.trigger_message_id", "t.event_at", "t.received_at",
                       exp.case().when(matched.is_(exp.null()), literal("exited"))
                       .else_(literal("entered")).as_("change"))
            .from_(exp.to_table(TOUCHED).as_("t"))
            .join(members.subquery("m"), on="m.person_id = t.person_id", join_type="left")
            .join(current_sql([segment_id]).subquery("c"), on="c.person_id = t.person_id", join_type="left")
            .where(exp.NEQ(this=exp.paren(matched.copy().is_(exp.null())),
                           expression=exp.paren(exp.column("person_id", table="c").is_(exp.null())))))


# ---- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveMembers:
    """An audience's members now (real-time), with when each entered and the event that did it."""

    segment_id: str
    members: pd.DataFrame  # person_id, entered_at, trigger_message_id
    sql: str

    @property
    def size(self) -> int:
        return len(self.members)


def live_members(engine: Engine, segment_id: str) -> LiveMembers:
    """The real-time members of an audience now (empty before any event touched it)."""
    _require_live_table(engine)
    query = (exp.select("person_id", "entered_at", "trigger_message_id")
             .from_(current_sql([segment_id]).subquery("c")).order_by("entered_at", "person_id"))
    return LiveMembers(segment_id, engine.query(query).to_pandas(), engine.render(query))


def live_member_counts(engine: Engine) -> dict[str, int]:
    """How many members each real-time audience has now."""
    if not engine.table_exists(LIVE):
        return {}
    ids = engine.query(exp.select("segment_id").distinct().from_(LIVE)).column(0).to_pylist()
    if not ids:
        return {}
    counted = engine.query(exp.select("segment_id", exp.func("COUNT", exp.Star()).as_("n"))
                           .from_(current_sql(ids).subquery("c")).group_by("segment_id")).to_pylist()
    return {**dict.fromkeys(ids, 0), **{row["segment_id"]: int(row["n"]) for row in counted}}


@dataclass(frozen=True)
class LiveChanges:
    """Entries and exits of a real-time audience since an instant, oldest first."""

    segment_id: str
    changes: pd.DataFrame  # changed_at, change, person_id, trigger_message_id, event_at, received_at
    sql: str


def live_changes(engine: Engine, segment_id: str, since: datetime | None = None) -> LiveChanges:
    """The history of a real-time audience (everything, or since `since`)."""
    _require_live_table(engine)
    query = (exp.select("changed_at", "change", "person_id", "trigger_message_id", "event_at", "received_at")
             .from_(LIVE).where(exp.column("segment_id").eq(literal(segment_id)))
             .order_by("changed_at", "person_id"))
    if since is not None:
        query = query.where(exp.GTE(this=exp.column("changed_at"), expression=literal(since)))
    return LiveChanges(segment_id, engine.query(query).to_pandas(), engine.render(query))


def _require_live_table(engine: Engine) -> None:
    if not engine.table_exists(LIVE):
        raise AudienceError(f"this workspace has no {LIVE} table yet.", field="segment_id",
                            fix="run `jingzhun migrate`", message_zh=f"此工作区还没有 {LIVE} 表。",
                            fix_zh="先运行 `jingzhun migrate`")
