"""Audiences (人群): groups of persons a marketer defines by rule, sizes, snapshots, compares and exports.

An audience is a rule of the tag rule language (profiles/rules.py: traits, tags,
scores, identifiers, consent, events and orders in windows, nested all/any/not, and
membership of other audiences) with a name in Chinese and English. Definitions live
in the workspace's `definitions/segments/*.yaml` (so they can be reviewed and kept
in git); every changed definition becomes a new version in `segments`.

`snapshot_audiences` evaluates each audience at the data's as-of time, in dependency
order (an audience may use another), and stores the members as a dated snapshot in
`segment_members`, keeping each member's `entered_at` from the snapshot before, so
who entered and who left between any two snapshots is a query (`audience_changes`).
Sizes while editing (`preview_audience`) run the same compiled query without storing.
Every function returns the SQL it ran beside the numbers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pandas as pd
import pyarrow as pa
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlglot import exp

from jingzhun.core.errors import JingzhunError
from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine, MaterializeHints, parse_sql
from jingzhun.profiles.rules import (
    Catalog,
    Condition,
    RuleError,
    SegmentCondition,
    check_rule,
    parse_rule,
    problems_from,
    walk,
)
from jingzhun.profiles.rules_compiler import build_rule_sql, instant, literal
from jingzhun.profiles.tags import Text, data_as_of, live_catalog, read_yaml
from jingzhun.schema.tables import AUDIT_LOG, SEGMENT_MEMBERS, SEGMENTS

Progress = Callable[[str, int, int], None]
WORK_MEMBERS = "segment_work_members"  # scratch: one audience's members at the as-of time


class AudienceError(JingzhunError):
    """An audience, its definition file or a request about audiences is invalid."""


class AudienceDefinition(BaseModel):
    """One audience as written in YAML (see docs/segments.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    segment_id: str = Field(pattern=r"^[a-z][a-z0-9_]{1,62}$")
    name_zh: str = Field(min_length=1)
    name_en: str = Field(min_length=1)
    description: Text | None = None
    rule: Condition
    realtime: bool = False  # membership updated as events arrive (segments/realtime.py)

    @model_validator(mode="after")
    def _realtime_rule(self) -> AudienceDefinition:
        if self.realtime:  # imported here: the real-time module builds on this one
            from jingzhun.segments.realtime import require_realtime_rule

            require_realtime_rule(self.rule, "segment.rule")
        return self

    def canonical_json(self) -> str:
        """The definition as stored in `segments`; any change makes a new version."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
        return json.dumps(data, sort_keys=True, ensure_ascii=False)

    def uses(self) -> set[str]:
        """Other audiences this one's rule reads."""
        return {c.segment for _, c in walk(self.rule) if isinstance(c, SegmentCondition)}


# ---- definitions ---------------------------------------------------------------------------


def parse_audience(data: object, location: str | None = None) -> AudienceDefinition:
    """An audience from YAML/JSON data; every problem is reported with its path."""
    try:
        return AudienceDefinition.model_validate(data)
    except ValidationError as invalid:
        raise RuleError(problems_from(invalid, root="segment"), location) from None
    except RuleError as refused:  # `realtime: true` on a rule that cannot be real-time
        raise RuleError(refused.problems, location) from None


def audience_folder(workspace: Workspace) -> Path:
    return workspace.definitions_dir / "segments"


def load_audiences(workspace: Workspace, engine: Engine | None = None) -> dict[str, AudienceDefinition]:
    """Every audience in the workspace by id, checked against the names the data has
    (traits, tags, other audiences) and for cycles."""
    found = _read_audiences(workspace)
    audiences = {key: definition for key, (definition, _) in found.items()}
    catalog = audience_catalog(engine, audiences)
    for definition, location in found.values():
        problems = check_rule(definition.rule, catalog, "segment.rule")
        if problems:
            raise RuleError(problems, location)
    dependency_order(audiences, list(audiences))
    return audiences


def _read_audiences(workspace: Workspace) -> dict[str, tuple[AudienceDefinition, str]]:
    """segment_id → (definition, the file it is in), refusing an id defined twice."""
    found: dict[str, tuple[AudienceDefinition, str]] = {}
    folder = audience_folder(workspace)
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        document = read_yaml(path, AudienceError)
        for index, item in enumerate(document if isinstance(document, list) else [document]):
            definition = parse_audience(item, f"{path} [{index}]")
            if definition.segment_id in found:
                raise AudienceError(
                    f"audience {definition.segment_id!r} is defined twice ({found[definition.segment_id][1]}).",
                    field="segment_id", location=path, fix="give each audience its own segment_id",
                    message_zh=f"人群 {definition.segment_id!r} 定义了两次（{found[definition.segment_id][1]}）。",
                    fix_zh="每个人群使用不同的 segment_id")
            found[definition.segment_id] = (definition, str(path))
    return found


def audience_catalog(engine: Engine | None, audiences: Mapping[str, AudienceDefinition]) -> Catalog:
    """What an audience rule may name: traits of the stored portrait, defined tags, the
    workspace's audiences, and every condition kind (audiences may use audiences)."""
    traits = live_catalog(engine).traits if engine is not None else Catalog().traits
    tags = None
    if engine is not None and engine.table_exists("tag_definitions"):
        tags = frozenset(engine.query("SELECT DISTINCT tag_id FROM tag_definitions").column(0).to_pylist())
    return Catalog(traits=traits, tags=tags, segments=frozenset(audiences))


def dependency_order(audiences: Mapping[str, AudienceDefinition], wanted: Iterable[str]) -> list[str]:
    """`wanted` and every audience they use, each after the ones it reads."""
    graph: dict[str, set[str]] = {}
    pending = list(wanted)
    while pending:
        key = pending.pop()
        if key in graph:
            continue
        if key not in audiences:
            raise unknown_audience(key, audiences)
        graph[key] = audiences[key].uses()
        pending += graph[key]
    try:
        return list(TopologicalSorter(graph).static_order())
    except CycleError as cycle:
        loop = " → ".join(cycle.args[1])
        raise AudienceError(f"audiences use each other in a cycle: {loop}.", field="rule",
                            fix="remove one of the `segment:` conditions in that cycle",
                            message_zh=f"人群之间存在循环引用：{loop}。",
                            fix_zh="删除该循环中的某个 segment: 条件") from None


def unknown_audience(key: str, audiences: Iterable[str]) -> AudienceError:
    known = ", ".join(sorted(audiences)) or "—"
    return AudienceError(f"unknown audience {key!r} (known: {known}).", field="segment_id",
                         fix="run `jingzhun segment list`, or create it with `jingzhun segment create`",
                         message_zh=f"未知人群 {key!r}（已有：{known}）。",
                         fix_zh="运行 `jingzhun segment list` 查看，或用 `jingzhun segment create` 创建")


def save_audience(workspace: Workspace, engine: Engine, definition: AudienceDefinition,
                  actor: str = "cli") -> int:
    """Check `definition` against the workspace, write its YAML file and record a new
    version if it changed; returns the current version."""
    folder = audience_folder(workspace)
    target = folder / f"{definition.segment_id}.yaml"
    existing = _read_audiences(workspace).get(definition.segment_id)
    if existing is not None and Path(existing[1]) != target:
        raise AudienceError(
            f"audience {definition.segment_id!r} is defined in {existing[1]}; saving it again would define it twice.",
            field="segment_id", fix=f"edit {existing[1]}, or give the new audience another segment_id",
            message_zh=f"人群 {definition.segment_id!r} 已在 {existing[1]} 中定义，再次保存会重复定义。",
            fix_zh=f"请直接修改 {existing[1]}，或为新人群换一个 segment_id")
    audiences = {**load_audiences(workspace, engine), definition.segment_id: definition}
    problems = check_rule(definition.rule, audience_catalog(engine, audiences), "segment.rule")
    if problems:
        raise RuleError(problems)
    dependency_order(audiences, [definition.segment_id])
    folder.mkdir(parents=True, exist_ok=True)
    data = definition.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
    target.write_text(
        yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return sync_audience_versions(engine, [definition], actor)[definition.segment_id]


def stored_versions(engine: Engine) -> dict[str, tuple[int, str]]:
    """segment_id → (latest version, its definition JSON)."""
    latest: dict[str, tuple[int, str]] = {}
    for row in engine.query("SELECT segment_id, version, definition FROM segments").to_pylist():
        if row["segment_id"] not in latest or row["version"] > latest[row["segment_id"]][0]:
            latest[row["segment_id"]] = (row["version"], row["definition"])
    return latest


def sync_audience_versions(engine: Engine, definitions: Iterable[AudienceDefinition],
                           actor: str = "pipeline") -> dict[str, int]:
    """Record a new version of each changed definition (and an audit entry); return the
    current version of each."""
    latest = stored_versions(engine)
    versions, rows, audit = {}, [], []
    now = datetime.now(UTC).replace(microsecond=0)
    for definition in definitions:
        text = definition.canonical_json()
        version, stored = latest.get(definition.segment_id, (0, None))
        if stored != text:
            version += 1
            rows.append({"segment_id": definition.segment_id, "version": version,
                         "name": definition.name_zh, "definition": text, "created_at": now, "created_by": actor})
            audit.append({"audit_id": f"segment:{definition.segment_id}:{version}", "occurred_at": now,
                          "actor": actor, "action": "segment.version", "object_type": "segment",
                          "object_id": definition.segment_id,
                          "details": json.dumps({"version": version, "name_en": definition.name_en},
                                                ensure_ascii=False)})
        versions[definition.segment_id] = version
    if rows:
        engine.write_table(SEGMENTS.name, pa.Table.from_pylist(rows, schema=_schema(SEGMENTS)))
        engine.write_table(AUDIT_LOG.name, pa.Table.from_pylist(audit, schema=_schema(AUDIT_LOG)))
    return versions


def _schema(table) -> pa.Schema:  # type: ignore[no-untyped-def]
    kinds = {"VARCHAR": pa.string(), "INTEGER": pa.int32(), "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
             "DATE": pa.date32()}
    return pa.schema([(c.name, kinds[c.type.split("(")[0]]) for c in table.columns])


# ---- evaluating ----------------------------------------------------------------------------


def audience_sql(rule: object, *, as_of: datetime, timezone: str, catalog: Catalog | None = None) -> exp.Select:
    """SELECT person_id of everyone the rule (a definition's, or rule data) matches at `as_of`."""
    condition = rule.rule if isinstance(rule, AudienceDefinition) else rule
    if not isinstance(condition, BaseModel):
        condition = parse_rule(condition, root="segment.rule")
    if catalog is not None:
        problems = check_rule(condition, catalog, "segment.rule")
        if problems:
            raise RuleError(problems)
    return build_rule_sql(condition, as_of=as_of, timezone=timezone, **({"catalog": catalog} if catalog else {}))


@dataclass(frozen=True)
class AudiencePreview:
    """The size of a rule's audience now, out of how many persons, and who (a sample)."""

    size: int
    population: int
    sample: pd.DataFrame
    sql: str
    as_of: datetime
    seconds: float
    live_members: int | None = None  # a real-time audience's members now (segment_live_members)

    @property
    def share(self) -> float:
        return self.size / self.population if self.population else 0.0


def preview_audience(workspace: Workspace, engine: Engine, rule: object, as_of: datetime | None = None,
                     sample: int = 10) -> AudiencePreview:
    """Evaluate a rule (rule data, a parsed rule or a definition) without storing it:
    the live size shown while a marketer edits."""
    started = time.perf_counter()
    moment = as_of or data_as_of(engine)
    audiences = load_audiences(workspace, engine)
    query = audience_sql(rule, as_of=moment, timezone=workspace.config.timezone,
                         catalog=audience_catalog(engine, audiences))
    members = query.subquery("m")
    counted = engine.query(exp.select(exp.func("COUNT", exp.Star()).as_("n")).from_(members))
    population = engine.query(parse_sql("SELECT COUNT(*) AS n FROM person_traits AS pt JOIN persons AS p "
                                        "ON p.person_id = pt.person_id AND p.status = 'active'"))
    shown = engine.query(exp.select("pt.person_id", "pt.name", "pt.gender", "pt.age_band", "pt.city",
                                    "pt.member_level")
                         .from_(members).join("person_traits AS pt", on="pt.person_id = m.person_id")
                         .order_by("pt.person_id").limit(int(sample))).to_pandas()
    live = None
    if isinstance(rule, AudienceDefinition) and rule.realtime:
        from jingzhun.segments.realtime import live_member_counts  # builds on this module

        live = live_member_counts(engine).get(rule.segment_id, 0)
    return AudiencePreview(int(counted.column("n")[0].as_py()), int(population.column("n")[0].as_py()),
                           shown, engine.render(query), moment, time.perf_counter() - started, live)


@dataclass(frozen=True)
class AudienceSnapshot:
    """One audience's snapshot: how many members, who entered and who left since the last."""

    segment_id: str
    version: int
    snapshot_date: date
    members: int
    entered: int
    exited: int
    sql: str


@dataclass(frozen=True)
class SnapshotResult:
    """What `snapshot_audiences` wrote: per audience, and the pipeline's table counts and notes."""

    snapshots: list[AudienceSnapshot]
    tables: dict[str, int] = field(default_factory=dict)
    notes: list[tuple[str, dict]] = field(default_factory=list)


def snapshot_date_of(as_of: datetime, timezone: str) -> date:
    """The workspace-local calendar day of `as_of`: the snapshot's date."""
    from zoneinfo import ZoneInfo

    return as_of.astimezone(ZoneInfo(timezone)).date()


def snapshot_audiences(workspace: Workspace, engine: Engine, segment_ids: Iterable[str] | None = None,
                       as_of: datetime | None = None, actor: str = "pipeline",
                       progress: Progress | None = None) -> SnapshotResult:
    """Store today's members of each audience (and of every audience they use), in
    dependency order, as the snapshot dated the workspace-local day of `as_of`.

    Rerunning on the same day replaces that day's snapshot, so the pipeline can run
    any number of times; `entered_at` carries over from the previous snapshot for
    persons who stayed.
    """
    audiences = load_audiences(workspace, engine)
    order = dependency_order(audiences, list(segment_ids) if segment_ids is not None else list(audiences))
    moment = as_of or data_as_of(engine)
    day = snapshot_date_of(moment, workspace.config.timezone)
    versions = sync_audience_versions(engine, [audiences[key] for key in order], actor)
    catalog = audience_catalog(engine, audiences)
    snapshots = []
    for index, key in enumerate(order):
        if progress is not None:
            progress(key, index, len(order))
        query = audience_sql(audiences[key], as_of=moment, timezone=workspace.config.timezone, catalog=catalog)
        snapshots.append(_write_snapshot(engine, key, versions[key], query, day, moment))
    notes = [("note.segment_snapshot", {"segment": s.segment_id, "members": s.members, "entered": s.entered,
                                        "exited": s.exited}) for s in snapshots]
    return SnapshotResult(snapshots, {SEGMENT_MEMBERS.name: sum(s.members for s in snapshots)}, notes)


SNAPSHOT_ROWS_SQL = """
SELECT CAST(:segment_id AS VARCHAR) AS segment_id, w.person_id, :day AS snapshot_date,
  COALESCE(prev.entered_at, :as_of) AS entered_at
FROM (SELECT DISTINCT person_id FROM segment_work_members) AS w
LEFT JOIN (SELECT person_id, MIN(entered_at) AS entered_at FROM segment_members
           WHERE segment_id = :segment_id AND snapshot_date = (
             SELECT MAX(snapshot_date) FROM segment_members WHERE segment_id = :segment_id AND snapshot_date < :day)
           GROUP BY person_id) AS prev ON prev.person_id = w.person_id"""

KEEP_OTHERS_SQL = "SELECT * FROM segment_members WHERE NOT (segment_id = :segment_id AND snapshot_date = :day)"


def _write_snapshot(engine: Engine, segment_id: str, version: int, query: exp.Select, day: date,
                    moment: datetime) -> AudienceSnapshot:
    engine.materialize(WORK_MEMBERS, query, MaterializeHints(scratch=True))
    values = {"segment_id": literal(segment_id), "day": literal(day),
              "as_of": instant(moment)}
    rows = exp.replace_placeholders(parse_sql(SNAPSHOT_ROWS_SQL), **values)
    if engine.SUPPORTS_UPDATE_DELETE:
        with engine.transaction():
            engine.execute(exp.replace_placeholders(parse_sql(
                "DELETE FROM segment_members WHERE segment_id = :segment_id AND snapshot_date = :day"), **values))
            engine.execute(exp.insert(rows, SEGMENT_MEMBERS.name, columns=SEGMENT_MEMBERS.column_names))
    else:
        engine.materialize(WORK_MEMBERS + "_rows", rows, MaterializeHints(scratch=True))
        kept = exp.replace_placeholders(parse_sql(KEEP_OTHERS_SQL), **values)
        engine.materialize(SEGMENT_MEMBERS.name, exp.union(
            kept, parse_sql(f"SELECT * FROM {WORK_MEMBERS}_rows"), distinct=False))
        engine.drop_table(WORK_MEMBERS + "_rows")
    engine.drop_table(WORK_MEMBERS)
    change = audience_change_counts(engine, segment_id, day)
    return AudienceSnapshot(segment_id, version, day, change["members"], change["entered"], change["exited"],
                            engine.render(query))


# ---- reading snapshots ---------------------------------------------------------------------


def snapshot_dates(engine: Engine, segment_id: str) -> list[date]:
    """The dates an audience was snapshotted, oldest first."""
    rows = engine.query(exp.replace_placeholders(parse_sql(
        "SELECT DISTINCT snapshot_date FROM segment_members WHERE segment_id = :s ORDER BY snapshot_date"),
        s=literal(segment_id)))
    return rows.column(0).to_pylist()


CHANGES_SQL = """
WITH now_members AS (SELECT person_id, entered_at FROM segment_members
                     WHERE segment_id = :segment_id AND snapshot_date = :until),
     before_members AS (SELECT person_id FROM segment_members
                        WHERE segment_id = :segment_id AND snapshot_date = :since)
SELECT 'entered' AS change, n.person_id, n.entered_at FROM now_members AS n
LEFT JOIN before_members AS b ON b.person_id = n.person_id WHERE b.person_id IS NULL
UNION ALL
SELECT 'exited' AS change, b.person_id, CAST(NULL AS TIMESTAMPTZ) AS entered_at FROM before_members AS b
LEFT JOIN now_members AS n ON n.person_id = b.person_id WHERE n.person_id IS NULL"""


@dataclass(frozen=True)
class AudienceChanges:
    """Who entered and who left an audience between two snapshots."""

    segment_id: str
    since: date | None
    until: date
    changes: pd.DataFrame  # change ('entered' | 'exited'), person_id, entered_at
    sql: str


def changes_sql(segment_id: str, since: date | None, until: date) -> exp.Expression:
    # No earlier snapshot: everyone in `until` entered (a date with no rows stands in).
    before = since or date(1900, 1, 1)
    return exp.replace_placeholders(parse_sql(CHANGES_SQL), segment_id=literal(segment_id),
                                    since=literal(before),
                                    until=literal(until))


def audience_changes(engine: Engine, segment_id: str, since: date | None = None,
                     until: date | None = None) -> AudienceChanges:
    """Entered/exited persons between the snapshot `since` and `until` (default: the
    latest snapshot and the one before it)."""
    dates = snapshot_dates(engine, segment_id)
    if not dates:
        raise AudienceError(f"audience {segment_id!r} has no snapshot yet.", field="segment_id",
                            fix="run `jingzhun pipeline` or `jingzhun segment snapshot`",
                            message_zh=f"人群 {segment_id!r} 还没有快照。",
                            fix_zh="先运行 `jingzhun pipeline` 或 `jingzhun segment snapshot`")
    until = until or dates[-1]
    if since is None:
        earlier = [d for d in dates if d < until]
        since = earlier[-1] if earlier else None
    query = changes_sql(segment_id, since, until)
    frame = engine.query(query).to_pandas().sort_values(["change", "person_id"], ignore_index=True)
    return AudienceChanges(segment_id, since, until, frame, engine.render(query))


def audience_change_counts(engine: Engine, segment_id: str, day: date) -> dict[str, int]:
    """Members on `day`, and how many entered and left since the snapshot before."""
    earlier = [d for d in snapshot_dates(engine, segment_id) if d < day]
    query = exp.select(
        exp.func("SUM", exp.case().when(exp.column("change").eq(literal("entered")), exp.Literal.number(1))
                 .else_(exp.Literal.number(0))).as_("entered"),
        exp.func("SUM", exp.case().when(exp.column("change").eq(literal("exited")), exp.Literal.number(1))
                 .else_(exp.Literal.number(0))).as_("exited"),
    ).from_(changes_sql(segment_id, earlier[-1] if earlier else None, day).subquery("c"))
    counted = engine.query(query).to_pylist()[0]
    members = engine.query(exp.replace_placeholders(parse_sql(
        "SELECT COUNT(*) AS n FROM segment_members WHERE segment_id = :s AND snapshot_date = :d"),
        s=literal(segment_id), d=literal(day))).column(0)[0].as_py()
    return {"members": int(members), "entered": int(counted["entered"] or 0), "exited": int(counted["exited"] or 0)}


LATEST_MEMBERS_SQL = """SELECT sm.segment_id, sm.person_id FROM segment_members AS sm
JOIN (SELECT segment_id, MAX(snapshot_date) AS snapshot_date FROM segment_members
      WHERE segment_id IN (:ids) GROUP BY segment_id) AS latest
  ON latest.segment_id = sm.segment_id AND latest.snapshot_date = sm.snapshot_date"""


def members_sql(segment_id: str, snapshot_date: date | None = None) -> exp.Expression:
    """SELECT person_id of an audience's latest (or dated) snapshot: the population
    handed to clustering, lookalike and insight."""
    if snapshot_date is not None:
        return exp.replace_placeholders(parse_sql(
            "SELECT person_id FROM segment_members WHERE segment_id = :s AND snapshot_date = :d"),
            s=literal(segment_id), d=literal(snapshot_date))
    return exp.select("person_id").from_(_latest_members([segment_id]).subquery("l"))


def _latest_members(segment_ids: list[str]) -> exp.Expression:
    """segment_id, person_id of the latest snapshot of each audience."""
    names = ", ".join(f":id_{i}" for i in range(len(segment_ids)))
    return exp.replace_placeholders(parse_sql(LATEST_MEMBERS_SQL.replace(":ids", names)),
                                    **{f"id_{i}": literal(s) for i, s in enumerate(segment_ids)})


@dataclass(frozen=True)
class AudienceOverlap:
    """How much audiences share: counts of common members, and shares of the row audience."""

    counts: pd.DataFrame  # rows and columns: segment_id; diagonal: sizes
    share_of_row: pd.DataFrame  # counts / size of the row audience
    jaccard: pd.DataFrame
    sql: str


def audience_overlap(engine: Engine, segment_ids: list[str]) -> AudienceOverlap:
    """The overlap matrix of the latest snapshots of `segment_ids`, counted by the engine."""
    if len(segment_ids) < 2:
        raise AudienceError("an overlap needs at least two audiences.", field="segment_ids",
                            fix="name two or more audiences", message_zh="重叠分析至少需要两个人群。",
                            fix_zh="请指定两个或更多人群")
    missing = [s for s in segment_ids if not snapshot_dates(engine, s)]
    if missing:
        raise AudienceError(f"no snapshot of {', '.join(missing)}.", field="segment_ids",
                            fix="run `jingzhun pipeline` or `jingzhun segment snapshot` first",
                            message_zh=f"以下人群还没有快照：{', '.join(missing)}。",
                            fix_zh="先运行 `jingzhun pipeline` 或 `jingzhun segment snapshot`")
    latest = _latest_members(segment_ids)
    query = (exp.select(exp.column("segment_id", "a").as_("left_id"), exp.column("segment_id", "b").as_("right_id"),
                        exp.func("COUNT", exp.Star()).as_("both"))
             .from_(latest.subquery("a")).join(latest.copy().subquery("b"), on="a.person_id = b.person_id")
             .group_by("left_id", "right_id"))
    pairs = engine.query(query).to_pandas()
    counts = (pairs.pivot(index="left_id", columns="right_id", values="both")
              .reindex(index=segment_ids, columns=segment_ids).fillna(0).astype("int64"))
    counts.index.name, counts.columns.name = "segment_id", None
    sizes = pd.Series([counts.loc[s, s] for s in segment_ids], index=segment_ids)
    share = counts.div(sizes.replace(0, pd.NA), axis=0).astype("float64")
    union = sizes.to_numpy()[:, None] + sizes.to_numpy()[None, :] - counts.to_numpy()
    jaccard = pd.DataFrame(counts.to_numpy() / pd.DataFrame(union).replace(0, pd.NA).to_numpy(dtype="float64"),
                           index=counts.index, columns=counts.columns)
    return AudienceOverlap(counts, share, jaccard, engine.render(query))


# ---- export --------------------------------------------------------------------------------

EXPORT_COLUMNS = ("person_id", "name", "phone", "member_id", "gender", "age_band", "city", "member_level",
                  "entered_at")
EXCEL_ROWS = 1_048_575  # one sheet's rows below the header

EXPORT_SQL = """
SELECT m.person_id, pt.name, ph.phone, pt.member_id, pt.gender, pt.age_band, pt.city, pt.member_level,
  m.entered_at
FROM segment_members AS m
LEFT JOIN person_traits AS pt ON pt.person_id = m.person_id
LEFT JOIN (SELECT person_id, MIN(id_value) AS phone FROM identities WHERE id_type = 'phone'
           GROUP BY person_id) AS ph ON ph.person_id = m.person_id
WHERE m.segment_id = :segment_id AND m.snapshot_date = :day
ORDER BY m.person_id"""


@dataclass(frozen=True)
class AudienceExport:
    """Where an audience's members were written, how many, from which snapshot, by which query."""

    path: Path
    rows: int
    snapshot_date: date
    sql: str


def mask_phone(phone: object) -> object:
    """+8618712348991 → 187****8991: enough to recognise, not to call."""
    if not isinstance(phone, str):
        return phone
    digits = phone[3:] if phone.startswith("+86") else phone
    return digits[:3] + "****" + digits[-4:] if len(digits) >= 8 else "****"


def export_audience(engine: Engine, segment_id: str, path: Path, snapshot_date: date | None = None,
                    mask: bool = False) -> AudienceExport:
    """Write an audience's members (latest snapshot, or `snapshot_date`) with name,
    phone, member id and base attributes to CSV (UTF-8 with BOM, so Excel shows the
    Chinese) or Excel (.xlsx), by the file's suffix; `mask` hides the phone's middle."""
    dates = snapshot_dates(engine, segment_id)
    day = snapshot_date or (dates[-1] if dates else None)
    if day is None or day not in dates:
        raise AudienceError(f"audience {segment_id!r} has no snapshot{f' on {day}' if day else ''}.",
                            field="snapshot_date", fix="run `jingzhun segment snapshot`, or pick a date it has",
                            message_zh=f"人群 {segment_id!r} 没有{f' {day} 的' if day else ''}快照。",
                            fix_zh="先运行 `jingzhun segment snapshot`，或选择已有快照的日期")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".xlsx"):
        raise AudienceError(f"cannot export to {path.name}: use a .csv or .xlsx file.", field="path",
                            fix="name the file …/members.csv or …/members.xlsx",
                            message_zh=f"无法导出为 {path.name}：请使用 .csv 或 .xlsx 文件。",
                            fix_zh="文件名请以 .csv 或 .xlsx 结尾")
    query = exp.replace_placeholders(parse_sql(EXPORT_SQL), segment_id=literal(segment_id), day=literal(day))
    frame = engine.query(query).to_pandas()
    if mask:
        frame["phone"] = frame["phone"].map(mask_phone)
    if "entered_at" in frame and len(frame):
        frame["entered_at"] = frame["entered_at"].dt.tz_localize(None) if frame["entered_at"].dt.tz is None \
            else frame["entered_at"].dt.tz_convert("UTC").dt.tz_localize(None)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        frame.to_csv(path, index=False, encoding="utf-8-sig")
    else:
        _write_xlsx(frame, path)
    return AudienceExport(path, len(frame), day, engine.render(query))


def _write_xlsx(frame: pd.DataFrame, path: Path) -> None:
    """One sheet per million rows (Excel's limit), the header on each."""
    with pd.ExcelWriter(path, engine="xlsxwriter") as writer:
        for start in range(0, max(len(frame), 1), EXCEL_ROWS):
            frame.iloc[start:start + EXCEL_ROWS].to_excel(writer, sheet_name=f"members_{start // EXCEL_ROWS + 1}",
                                                          index=False)


# ---- the pipeline stage --------------------------------------------------------------------


def run_segments(workspace: Workspace, engine: Engine, progress: Progress | None = None) -> SnapshotResult:
    """The pipeline stage: snapshot every audience the workspace defines, as of the data."""
    if not list(audience_folder(workspace).glob("*.y*ml")):
        return SnapshotResult([], {SEGMENT_MEMBERS.name: 0}, [("note.segment_none", {})])
    return snapshot_audiences(workspace, engine, progress=progress)


def list_audiences(workspace: Workspace, engine: Engine) -> pd.DataFrame:
    """Each audience: id, names, version, latest snapshot date and size, whether it is
    real-time and, if so, its members now."""
    from jingzhun.segments.realtime import live_member_counts  # builds on this module

    audiences = load_audiences(workspace, engine)
    live = live_member_counts(engine)
    versions = stored_versions(engine)
    latest = engine.query(parse_sql(
        "SELECT segment_id, snapshot_date, COUNT(*) AS members FROM segment_members AS sm "
        "WHERE snapshot_date = (SELECT MAX(snapshot_date) FROM segment_members AS x WHERE x.segment_id = sm.segment_id) "
        "GROUP BY segment_id, snapshot_date")).to_pandas().set_index("segment_id")
    rows = [{"segment_id": key, "name_zh": d.name_zh, "name_en": d.name_en,
             "version": versions.get(key, (0, ""))[0],
             "snapshot_date": latest["snapshot_date"].get(key), "members": latest["members"].get(key),
             "realtime": d.realtime, "live_members": live.get(key, 0) if d.realtime else None}
            for key, d in sorted(audiences.items())]
    return pd.DataFrame(rows, columns=["segment_id", "name_zh", "name_en", "version", "snapshot_date", "members",
                                       "realtime", "live_members"])
