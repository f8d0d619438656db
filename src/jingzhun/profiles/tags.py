"""Tags: marketer-facing labels defined in YAML, versioned, computed in SQL, kept with history.

A tag is a rule (see `rules.py`) or, for analysts, a read-only SELECT returning
`person_id` (and optionally `value`). Definitions come from the starter library
(`tag_library/*.yaml`) and the workspace's `definitions/tags/*.yaml` (same tag_id
overrides; `enabled: false` switches a library tag off). Each changed definition
becomes a new row of `tag_definitions`, so every holder row names the version
that put it there.

`apply_tags` computes the holders of each tag at `as_of`, in dependency order
(a tag may use other tags), and writes only the differences to `tags`: a person
entering opens a row (valid_from = as_of), a person leaving (or whose value
changed) has the open row closed (valid_to = as_of), everyone else is untouched.
Holders per day, and so a tag's trend, are read back from those rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow as pa
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlglot import exp

from jingzhun.core.errors import JingzhunError
from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine, MaterializeHints, parse_sql, to_local_time
from jingzhun.engine.dialects import parse_read_only
from jingzhun.profiles.rules import (
    CONDITION_KINDS,
    DEFAULT_CATALOG,
    PT,
    Catalog,
    Condition,
    Problem,
    RuleError,
    _invalid,
    check_rule,
    problems_from,
    referenced_tags,
    trait_kind,
)
from jingzhun.profiles.rules_compiler import RuleCompiler, instant
from jingzhun.schema.tables import TAG_DEFINITIONS, TAGS

TAG_CATEGORIES = ("base", "marketing", "intent", "scenario", "predictive")
LIBRARY_DIR = Path(__file__).parent / "tag_library"
HOLDERS = "tag_holders"  # staging: the holders of one batch of tags
# Tags are computed before audiences exist, so a tag cannot depend on audience membership.
TAG_KINDS = tuple(kind for kind in CONDITION_KINDS if kind != "segment")
Progress = Callable[[str, int, int], None]


class TagError(JingzhunError):
    """A tag definition, its dependencies or its history is invalid."""


# ---- definitions ---------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Text(_Model):
    zh: str
    en: str


class ValueCase(_Model):
    """`when` the condition holds, the tag's value is `value` (first match wins)."""

    when: Condition
    value: str


class TagValue(_Model):
    """A value tag: the person's trait as text, or the first matching case."""

    trait: str | None = None
    cases: list[ValueCase] | None = Field(None, min_length=1)
    default: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> TagValue:
        if (self.trait is None) == (self.cases is None):
            raise _invalid("a value needs either `trait` or `cases`.", "value 需要 trait 或 cases 之一。",
                           "e.g. value: {trait: age_band}", "例如 value: {trait: age_band}")
        return self


class TagDefinition(_Model):
    """One tag as written in YAML (see docs/tags.md)."""

    tag_id: str = Field(pattern=r"^[a-z][a-z0-9_]{1,62}$")
    name_zh: str = Field(min_length=1)
    name_en: str = Field(min_length=1)
    description: Text | None = None
    category: Literal["base", "marketing", "intent", "scenario", "predictive"]
    rule: Condition | None = None
    sql: str | None = None
    value: TagValue | None = None
    depends_on: list[str] = Field(default_factory=list)
    enabled: bool = True

    @field_validator("sql")
    @classmethod
    def _read_only_select(cls, sql: str | None) -> str | None:
        if sql is not None:
            sql_tag_query(sql)
        return sql

    @model_validator(mode="after")
    def _rule_or_sql(self) -> TagDefinition:
        if (self.rule is None) == (self.sql is None):
            raise _invalid("a tag needs either `rule` or `sql`.", "标签需要 rule 或 sql 之一。",
                           "write a rule, or a SELECT returning person_id", "写一条规则，或返回 person_id 的 SELECT")
        if self.sql is not None and self.value is not None:
            raise _invalid("an SQL tag takes its value from the query's `value` column.",
                           "SQL 标签的值取自查询的 value 列。", "remove `value`", "删除 value")
        return self

    @property
    def kind(self) -> str:
        return "rule" if self.rule is not None else "sql"

    def dependencies(self) -> set[str]:
        """Other tags this one reads (rule `tag:` conditions, value cases, `depends_on`)."""
        found = set(self.depends_on)
        if self.rule is not None:
            found |= referenced_tags(self.rule)
        for case in (self.value.cases or []) if self.value else []:
            found |= referenced_tags(case.when)
        return found

    def canonical_json(self) -> str:
        """The definition as stored in `tag_definitions`; any change makes a new version."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
        return json.dumps(data, sort_keys=True, ensure_ascii=False)


def sql_tag_query(sql: str) -> exp.Query:
    """An analyst's tag query: read-only, one SELECT naming a `person_id` column."""
    try:
        statement = parse_read_only(sql)
    except JingzhunError as refused:
        raise _invalid(refused.message, refused.message_zh, refused.fix, refused.fix_zh) from None
    if not isinstance(statement, exp.Query) or "person_id" not in statement.named_selects:
        raise _invalid("an SQL tag must be a SELECT returning a person_id column.",
                       "SQL 标签必须是返回 person_id 列的 SELECT。",
                       "e.g. SELECT person_id, value FROM …", "例如 SELECT person_id, value FROM …")
    return statement


_DEFINITIONS = TypeAdapter(list[TagDefinition])


def parse_definitions(data: object, location: str | None = None) -> list[TagDefinition]:
    """Tag definitions from one YAML document: `tags: [...]`, a list, or a single tag."""
    items = data.get("tags", data) if isinstance(data, dict) and "tag_id" not in data else data
    items = [items] if isinstance(items, dict) else items
    try:
        return _DEFINITIONS.validate_python(items)
    except ValidationError as failure:
        raise RuleError(problems_from(failure, root="tags"), location) from None


def definition_files(workspace: Workspace | None) -> list[Path]:
    """The starter library first, then the workspace's own tags (which override it)."""
    files = sorted(LIBRARY_DIR.glob("*.yaml"))
    if workspace is not None:
        folder = workspace.definitions_dir / "tags"
        files += sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    return files


def read_yaml(path: Path, error: type[JingzhunError] = TagError) -> object:
    """A definitions file's YAML (an empty file is an empty list); a syntax error is
    raised as `error` with the line, the column and the usual fix."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or []
    except yaml.YAMLError as broken:
        mark = getattr(broken, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise error(f"cannot read YAML{where}: {getattr(broken, 'problem', broken)}.", location=path,
                    fix="check the indentation, and quote text containing ': '",
                    message_zh=f"无法读取 YAML{where}：{getattr(broken, 'problem', broken)}。",
                    fix_zh="检查缩进；含有“: ”的文字请加引号") from None


def load_tag_definitions(workspace: Workspace | None = None, catalog: Catalog | None = None) -> dict[str, TagDefinition]:
    """Every enabled tag by id, checked: rule names, references to other tags, no cycles."""
    catalog = catalog or default_catalog()
    definitions: dict[str, TagDefinition] = {}
    origins: dict[str, tuple[str, int]] = {}
    for path in definition_files(workspace):
        document = read_yaml(path)
        for index, definition in enumerate(parse_definitions(document, str(path))):
            definitions[definition.tag_id] = definition
            origins[definition.tag_id] = (str(path), index)
    enabled = {tag_id: d for tag_id, d in definitions.items() if d.enabled}
    known = Catalog(traits=catalog.traits, score_models=catalog.score_models,
                    identifier_types=catalog.identifier_types, tags=frozenset(enabled), kinds=TAG_KINDS)
    for tag_id, definition in enabled.items():
        location, index = origins[tag_id]
        problems = _definition_problems(definition, known, f"tags[{index}]")
        if problems:
            raise RuleError(problems, location)
    dependency_levels(enabled, list(enabled))
    return enabled


def _definition_problems(definition: TagDefinition, catalog: Catalog, root: str) -> list[Problem]:
    problems = check_rule(definition.rule, catalog, f"{root}.rule") if definition.rule is not None else []
    for index, case in enumerate((definition.value.cases or []) if definition.value else []):
        problems += check_rule(case.when, catalog, f"{root}.value.cases[{index}].when")
    if definition.value and definition.value.trait and definition.value.trait not in catalog.traits:
        problems.append(Problem(f"{root}.value.trait", f"unknown trait {definition.value.trait!r}.",
                                f"未知的画像字段 {definition.value.trait!r}。", "use a person_traits column",
                                "请使用 person_traits 的列"))
    problems += [Problem(f"{root}.depends_on", f"unknown tag {name!r}.", f"未知标签 {name!r}。",
                         "depend on a defined, enabled tag", "只能依赖已定义且启用的标签")
                 for name in definition.depends_on if catalog.tags is not None and name not in catalog.tags]
    return problems


def dependency_levels(definitions: Mapping[str, TagDefinition], tag_ids: Iterable[str]) -> list[list[str]]:
    """`tag_ids` and everything they use, as batches: each only reads tags of earlier batches."""
    wanted, pending = set(), list(tag_ids)
    while pending:
        tag_id = pending.pop()
        if tag_id in wanted:
            continue
        if tag_id not in definitions:
            raise TagError(f"unknown tag {tag_id!r}.", field="tag_id", fix="run `jingzhun tag list` to see the tags",
                           message_zh=f"未知标签 {tag_id!r}。", fix_zh="运行 `jingzhun tag list` 查看已有标签")
        wanted.add(tag_id)
        pending += definitions[tag_id].dependencies()
    sorter = TopologicalSorter({t: definitions[t].dependencies() for t in wanted})
    try:
        sorter.prepare()
    except CycleError as cycle:
        loop = " → ".join(cycle.args[1])
        raise TagError(f"tags depend on each other in a cycle: {loop}.", field="rule",
                       fix="remove one of the `tag:` conditions in that cycle",
                       message_zh=f"标签之间存在循环依赖：{loop}。", fix_zh="删除该循环中的某个 tag: 条件") from None
    levels = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        levels.append(ready)
        sorter.done(*ready)
    return levels


# ---- versions ------------------------------------------------------------------------------


def ensure_tag_tables(engine: Engine) -> None:
    """`tags` and `tag_definitions` exist from schema migration 6; create them if a store predates it."""
    for table in (TAG_DEFINITIONS, TAGS):
        engine.create_table(table.name, table.columns)


def stored_versions(engine: Engine) -> dict[str, tuple[int, str]]:
    """tag_id → (latest version, its definition JSON)."""
    rows = engine.query("SELECT tag_id, version, definition FROM tag_definitions").to_pylist()
    latest: dict[str, tuple[int, str]] = {}
    for row in rows:
        if row["tag_id"] not in latest or row["version"] > latest[row["tag_id"]][0]:
            latest[row["tag_id"]] = (row["version"], row["definition"])
    return latest


def sync_definitions(engine: Engine, definitions: Iterable[TagDefinition], actor: str = "pipeline") -> dict[str, int]:
    """Record a new version of each changed definition; return tag_id → current version."""
    latest = stored_versions(engine)
    versions, new_rows = {}, []
    now = datetime.now(UTC)
    for definition in definitions:
        text = definition.canonical_json()
        version, stored = latest.get(definition.tag_id, (0, None))
        if stored != text:
            version += 1
            new_rows.append({"tag_id": definition.tag_id, "version": version, "name_zh": definition.name_zh,
                             "name_en": definition.name_en, "category": definition.category,
                             "definition": text, "created_at": now, "created_by": actor})
        versions[definition.tag_id] = version
    if new_rows:
        schema = pa.schema([("tag_id", pa.string()), ("version", pa.int32()), ("name_zh", pa.string()),
                            ("name_en", pa.string()), ("category", pa.string()), ("definition", pa.string()),
                            ("created_at", pa.timestamp("us", tz="UTC")), ("created_by", pa.string())])
        engine.write_table(TAG_DEFINITIONS.name, pa.Table.from_pylist(new_rows, schema=schema))
    return versions


# ---- holders ---------------------------------------------------------------------------------


def holders_sql(
    definition: TagDefinition,
    *,
    as_of: datetime,
    timezone: str = "Asia/Shanghai",
    catalog: Catalog | None = None,
) -> exp.Select:
    """SELECT person_id, value of everyone holding the tag at `as_of` (value NULL for yes/no tags)."""
    if definition.sql is not None:
        return _sql_tag_holders(definition.sql, as_of)
    compiler = RuleCompiler(as_of=as_of, timezone=timezone, catalog=catalog or default_catalog())
    where = compiler.predicate(definition.rule, root=f"{definition.tag_id}.rule")
    value: exp.Expression = exp.cast(exp.null(), exp.DataType.build("VARCHAR"))
    if definition.value is not None and definition.value.trait:
        value = compiler.trait_value(definition.value.trait)
    elif definition.value is not None:
        case = exp.Case()
        for index, item in enumerate(definition.value.cases or []):
            case = case.when(compiler.predicate(item.when, f"{definition.tag_id}.value.cases[{index}].when"),
                             exp.Literal.string(item.value))
        if definition.value.default is not None:
            case = case.else_(exp.Literal.string(definition.value.default))
        value = case
    if definition.value is not None:
        where = exp.and_(where, exp.not_(value.copy().is_(exp.null())))
    return compiler.select(where, {"value": value})


def _sql_tag_holders(sql: str, as_of: datetime) -> exp.Select:
    """Wrap an analyst's query: one row per active person, value as text, `:as_of` bound."""
    query = bind(sql_tag_query(sql), as_of=instant(as_of))
    has_value = "value" in query.named_selects
    value = exp.func("MAX", exp.column("value", table="q")) if has_value else exp.null()
    person = exp.column("person_id", table="q")
    population = exp.select("person_id").from_("person_traits")
    return (exp.select(exp.cast(person, exp.DataType.build("VARCHAR")).as_("person_id"),
                       exp.cast(value, exp.DataType.build("VARCHAR")).as_("value"))
            .from_(query.subquery("q")).where(person.copy().isin(query=population))
            .group_by(person.copy()))


def _batch_sql(queries: Mapping[str, exp.Select], versions: Mapping[str, int]) -> exp.Query:
    parts = [
        exp.select(exp.column("person_id", table="h"), exp.Literal.string(tag_id).as_("tag_id"),
                   exp.cast(exp.Literal.number(versions[tag_id]), exp.DataType.build("INTEGER")).as_("tag_version"),
                   exp.cast(exp.column("value", table="h"), exp.DataType.build("VARCHAR")).as_("value"))
        .from_(query.subquery("h"))
        for tag_id, query in queries.items()
    ]
    union: exp.Query = parts[0]
    for part in parts[1:]:
        union = exp.union(union, part, distinct=False)
    return union


# Fixed statements over the staging table; the batch's tag ids and as_of are bound as literals.
_SAME_HOLDING = "h.tag_id = t.tag_id AND h.person_id = t.person_id AND h.value IS NOT DISTINCT FROM t.value"
CHANGES_SQL = f"""
SELECT COALESCE(h.tag_id, t.tag_id) AS tag_id,
  SUM(CASE WHEN t.person_id IS NULL THEN 1 ELSE 0 END) AS entered,
  SUM(CASE WHEN h.person_id IS NULL THEN 1 ELSE 0 END) AS exited,
  SUM(CASE WHEN h.person_id IS NULL THEN 0 ELSE 1 END) AS holders
FROM {HOLDERS} AS h
FULL OUTER JOIN (SELECT * FROM tags AS t WHERE t.valid_to IS NULL AND :in_batch) AS t ON {_SAME_HOLDING}
GROUP BY COALESCE(h.tag_id, t.tag_id)
"""
CLOSE_SQL = f"""
UPDATE tags SET valid_to = :as_of
WHERE valid_to IS NULL AND :in_batch AND NOT EXISTS (
  SELECT 1 FROM {HOLDERS} AS h WHERE h.tag_id = tags.tag_id AND h.person_id = tags.person_id
    AND h.value IS NOT DISTINCT FROM tags.value)
"""
OPENING_SQL = f"""
SELECT h.person_id, h.tag_id, h.tag_version, h.value, :as_of AS valid_from,
  CAST(NULL AS TIMESTAMPTZ) AS valid_to
FROM {HOLDERS} AS h LEFT JOIN tags AS t ON t.valid_to IS NULL AND {_SAME_HOLDING}
WHERE t.person_id IS NULL
"""
# Engines without UPDATE (Spark over Parquet) publish a new version of the whole table.
REWRITE_SQL = f"""
SELECT t.person_id, t.tag_id, t.tag_version, t.value, t.valid_from,
  CASE WHEN t.valid_to IS NULL AND :in_batch AND h.person_id IS NULL THEN :as_of ELSE t.valid_to END AS valid_to
FROM tags AS t LEFT JOIN {HOLDERS} AS h ON t.valid_to IS NULL AND {_SAME_HOLDING}
UNION ALL
{OPENING_SQL}
"""


def bind(statement: exp.Expression, **values: exp.Expression) -> exp.Expression:
    """Replace `:name` placeholders with expressions (a fresh copy at each use)."""
    def replace(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Placeholder) and node.name in values:
            return values[node.name].copy()
        return node
    return statement.transform(replace)


def _bound(sql: str, tag_ids: list[str], as_of: datetime, table: str = "t") -> exp.Expression:
    in_batch = exp.column("tag_id", table=table).isin(*[exp.Literal.string(t) for t in tag_ids])
    return bind(parse_sql(sql), as_of=instant(as_of), in_batch=in_batch)


@dataclass(frozen=True)
class TagChange:
    """What applying one tag did."""

    tag_id: str
    version: int
    holders: int
    entered: int
    exited: int


def apply_batch(
    engine: Engine, queries: Mapping[str, exp.Select], versions: Mapping[str, int], as_of: datetime
) -> dict[str, TagChange]:
    """Compute the holders of these (mutually independent) tags and write the differences."""
    tag_ids = list(queries)
    engine.materialize(HOLDERS, _batch_sql(queries, versions), MaterializeHints(scratch=True))
    counted = {row["tag_id"]: row for row in engine.query(_bound(CHANGES_SQL, tag_ids, as_of)).to_pylist()}
    if engine.SUPPORTS_UPDATE_DELETE:
        with engine.transaction():
            engine.execute(_bound(CLOSE_SQL, tag_ids, as_of, table="tags"))
            engine.execute(exp.insert(_bound(OPENING_SQL, tag_ids, as_of), "tags", columns=TAGS.column_names))
    else:
        engine.materialize(TAGS.name, _bound(REWRITE_SQL, tag_ids, as_of))
    engine.drop_table(HOLDERS)
    empty = {"holders": 0, "entered": 0, "exited": 0}
    return {
        tag_id: TagChange(tag_id, versions[tag_id], **{k: int(counted.get(tag_id, empty)[k] or 0) for k in empty})
        for tag_id in tag_ids
    }


# ---- applying --------------------------------------------------------------------------------


@dataclass
class TagRunResult:
    """What `apply_tags` did; `tables` and `notes` follow the pipeline's stage contract."""

    as_of: datetime
    changes: dict[str, TagChange] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    tables: dict[str, int] = field(default_factory=dict)
    notes: list[tuple[str, dict[str, object]]] = field(default_factory=list)


def data_as_of(engine: Engine) -> datetime:
    """The latest event or order time: tags of a fixed data set stay the same whenever computed."""
    parts = [f"SELECT MAX({column}) AS latest FROM {table}"
             for table, column in (("events", "timestamp"), ("orders", "placed_at")) if engine.table_exists(table)]
    latest = engine.query(f"SELECT MAX(latest) AS latest FROM ({' UNION ALL '.join(parts)}) AS m").column(0)[0].as_py() if parts else None
    if latest is None:
        return datetime.now(UTC).replace(microsecond=0)
    return latest.replace(tzinfo=UTC) if latest.tzinfo is None else latest.astimezone(UTC)


def default_catalog() -> Catalog:
    """The contract's trait columns plus those the traits stage declares for person_traits."""
    columns = dict(DEFAULT_CATALOG.traits)
    try:
        from jingzhun.profiles.traits import PERSON_TRAITS
    except ImportError:  # the traits stage is optional for reading definitions
        return Catalog(traits=columns, kinds=TAG_KINDS)
    columns.update({column.name: trait_kind(column.type) for column in PERSON_TRAITS.columns})
    return Catalog(traits=columns, kinds=TAG_KINDS)


def live_catalog(engine: Engine) -> Catalog:
    """The declared trait columns plus any the stored person_traits has (typed from the table)."""
    columns = dict(default_catalog().traits)
    if engine.table_exists("person_traits"):
        schema = engine.query(exp.select("*").from_("person_traits").limit(0)).schema
        columns.update({f.name: _arrow_kind(f.type) for f in schema})
    return Catalog(traits=columns, kinds=TAG_KINDS)


def _arrow_kind(kind: pa.DataType) -> str:
    if pa.types.is_timestamp(kind):
        return "timestamp"
    if pa.types.is_date(kind):
        return "date"
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_integer(kind):
        return "integer"
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "number"
    return trait_kind(str(kind)) if not pa.types.is_string(kind) else "text"


def missing_inputs(engine: Engine, query: exp.Expression, trait_columns: set[str] | None) -> list[str]:
    """Tables (and person_traits columns) the query reads that this store does not have yet."""
    ctes = {cte.alias for cte in query.find_all(exp.CTE)}
    tables = sorted({t.name for t in query.find_all(exp.Table)} - ctes)
    missing = [name for name in tables if not engine.table_exists(name)]
    if trait_columns is not None and "person_traits" not in missing:
        used = {c.name for c in query.find_all(exp.Column) if c.table == PT}
        missing += [f"person_traits.{name}" for name in sorted(used - trait_columns)]
    return missing


def _check_history_order(engine: Engine, tag_ids: list[str], as_of: datetime) -> None:
    """History is appended in time order: refuse an as_of before the tags' last change."""
    in_batch = exp.column("tag_id").isin(*[exp.Literal.string(t) for t in tag_ids])
    last = engine.query(exp.select(exp.func("MAX", exp.column("valid_from")).as_("opened"),
                                   exp.func("MAX", exp.column("valid_to")).as_("closed"))
                        .from_("tags").where(in_batch)).to_pylist()[0]
    latest = max((moment for moment in last.values() if moment is not None), default=None)
    if latest is not None and latest > as_of:
        raise TagError(
            f"these tags were already applied as of {latest.isoformat()}; history only moves forward.",
            field="as_of", fix=f"apply as of {latest.isoformat()} or later",
            message_zh=f"这些标签已按 {latest.isoformat()} 计算过，历史只能向后追加。",
            fix_zh=f"请使用 {latest.isoformat()} 或更晚的时间点",
        )


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def apply_tags(
    workspace: Workspace,
    engine: Engine,
    tag_ids: Iterable[str] | None = None,
    as_of: datetime | None = None,
    progress: Progress | None = None,
) -> TagRunResult:
    """Compute tags at `as_of` (default: the latest data time) and record who entered and left.

    `tag_ids` limits the run to those tags and the tags they use. A tag whose inputs
    are not there yet (e.g. no `scores` before the scores stage) is skipped with a note.
    """
    ensure_tag_tables(engine)
    catalog = live_catalog(engine)
    definitions = load_tag_definitions(workspace, catalog)
    levels = dependency_levels(definitions, tag_ids if tag_ids is not None else list(definitions))
    chosen = [tag_id for level in levels for tag_id in level]
    versions = sync_definitions(engine, [definitions[t] for t in chosen])
    result = TagRunResult(as_of=_utc(as_of) if as_of else data_as_of(engine))
    _check_history_order(engine, chosen, result.as_of)
    columns = set(catalog.traits) if engine.table_exists("person_traits") else None
    done = 0
    for level in levels:
        queries = {}
        for tag_id in level:
            query, blocked, missing = _holders_or_reason(engine, definitions[tag_id], result, catalog, columns,
                                                         workspace.config.timezone)
            if query is not None:
                queries[tag_id] = query
            elif blocked:
                result.skipped[tag_id] = f"uses skipped tag {blocked}"
                result.notes.append(("note.tag_skipped_dependency", {"tag": tag_id, "tags": blocked}))
            else:
                result.skipped[tag_id] = missing
                result.notes.append(("note.tag_skipped_input", {"tag": tag_id, "missing": missing}))
        if queries:
            result.changes.update(apply_batch(engine, queries, versions, result.as_of))
        done += len(level)
        if progress is not None:
            progress("tags", done, len(chosen))
    result.tables = {name: engine.row_count(name) for name in (TAGS.name, TAG_DEFINITIONS.name)}
    result.notes.insert(0, ("note.tags_applied", {"count": len(result.changes), "as_of": result.as_of.isoformat()}))
    return result


def _holders_or_reason(
    engine: Engine, definition: TagDefinition, result: TagRunResult, catalog: Catalog,
    columns: set[str] | None, timezone: str,
) -> tuple[exp.Select | None, str, str]:
    """The tag's holders query, or why it cannot run yet: skipped tags it uses, missing inputs."""
    blocked = ", ".join(sorted(definition.dependencies() & set(result.skipped)))
    if blocked:
        return None, blocked, ""
    if columns is None:
        return None, "", "person_traits"
    query = holders_sql(definition, as_of=result.as_of, timezone=timezone, catalog=catalog)
    missing = ", ".join(missing_inputs(engine, query, columns))
    return (None, "", missing) if missing else (query, "", "")


def run_tags(workspace: Workspace, engine: Engine, progress: Progress | None = None) -> TagRunResult:
    """The pipeline's tags stage: every enabled tag, as of the latest data."""
    return apply_tags(workspace, engine, progress=progress)


# ---- reading -------------------------------------------------------------------------------------


def tag_counts(engine: Engine, by_value: bool = False) -> pd.DataFrame:
    """Current holders per tag (and per value when `by_value`)."""
    keys = ["tag_id", "value"] if by_value else ["tag_id"]
    query = (exp.select(*keys, exp.func("COUNT", exp.Star()).as_("holders")).from_("tags")
             .where(exp.column("valid_to").is_(exp.null())).group_by(*keys).order_by(*keys))
    return engine.query(query).to_pandas()


def list_tags(workspace: Workspace | None = None, engine: Engine | None = None) -> pd.DataFrame:
    """Every enabled tag: names, category, kind, description; with its version and holders when stored."""
    rows = [{"tag_id": d.tag_id, "category": d.category, "name_zh": d.name_zh, "name_en": d.name_en,
             "kind": d.kind, "description_zh": d.description.zh if d.description else "",
             "description_en": d.description.en if d.description else ""}
            for d in load_tag_definitions(workspace).values()]
    frame = pd.DataFrame(rows).sort_values(["category", "tag_id"], ignore_index=True)
    if engine is not None and engine.table_exists(TAGS.name):
        versions = {tag_id: v for tag_id, (v, _) in stored_versions(engine).items()}
        counts = dict(tag_counts(engine).itertuples(index=False, name=None))
        frame["version"] = frame["tag_id"].map(versions).astype("Int64")
        frame["holders"] = frame["tag_id"].map(counts).fillna(0).astype("int64")
    return frame


def tag_trend(
    engine: Engine,
    tag_id: str,
    *,
    timezone: str = "Asia/Shanghai",
    start: date | None = None,
    end: date | None = None,
) -> pd.DataFrame:
    """Holders at the end of each local day, from the history rows (one row per day)."""
    tagged = exp.column("tag_id").eq(exp.Literal.string(tag_id))

    def day(column: str) -> exp.Expression:
        return exp.cast(to_local_time(exp.column(column), timezone), exp.DataType.build("DATE")).as_("day")
    entered = exp.select(day("valid_from"), exp.Literal.number(1).as_("delta")).from_("tags").where(tagged)
    exited = (exp.select(day("valid_to"), exp.Literal.number(-1).as_("delta")).from_("tags")
              .where(tagged.copy()).where(exp.not_(exp.column("valid_to").is_(exp.null()))))
    running = exp.Window(this=exp.func("SUM", exp.func("SUM", exp.column("delta"))),
                         order=exp.Order(expressions=[exp.Ordered(this=exp.column("day"))]))
    query = (exp.select("day", running.as_("holders")).from_(exp.union(entered, exited, distinct=False).subquery("c"))
             .group_by("day").order_by("day"))
    changes = engine.query(query).to_pandas()
    if changes.empty:
        return pd.DataFrame({"day": pd.Series(dtype="object"), "holders": pd.Series(dtype="int64")})
    series = changes.set_index(pd.to_datetime(changes["day"]))["holders"].astype("int64")
    first = pd.Timestamp(start) if start else series.index.min()
    last = pd.Timestamp(end) if end else series.index.max()
    days = pd.date_range(min(first, series.index.min()), last, freq="D")
    filled = series.reindex(days).ffill().fillna(0).astype("int64")
    filled = filled[filled.index >= first]
    return pd.DataFrame({"day": [d.date() for d in filled.index], "holders": filled.to_numpy()})
