"""One batch through the import: map and check, set aside, skip what is loaded, load.

Shared by `import_file` and `retry_quarantine`, so a retried row passes exactly
the checks a fresh row does. Kind SQL runs in a private in-process DuckDB over
the batch (Arrow in, Arrow out); results are written with `engine.write_table`,
so the same code stores into DuckDB or Spark.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from jingzhun.collect.importers.kinds import Kind
from jingzhun.collect.importers.mapping import Mapping
from jingzhun.collect.importers.validate import (
    Context,
    Mapped,
    map_batch,
    reason_text,
    reject_groups,
)
from jingzhun.collect.quarantine import quarantine_rows
from jingzhun.engine import Engine


@dataclass
class Plan:
    """Everything fixed for one import run."""

    engine: Engine
    kind: Kind
    mapping: Mapping
    context: Context
    import_id: str
    source_id: str
    source_file: str
    currency: str
    imported_at: datetime
    local: duckdb.DuckDBPyConnection = field(default_factory=lambda: duckdb.connect(config={"threads": 2}))

    def sql(self, query: str, **tables: pa.Table) -> pa.Table:
        """Run kind SQL over Arrow tables registered under the given names."""
        for name, table in tables.items():
            self.local.register(name, table)
        try:
            return self.local.sql(query).to_arrow_table()
        finally:
            for name in tables:
                self.local.unregister(name)


@dataclass
class Outcome:
    """What became of one batch's rows."""

    loaded: int = 0
    quarantined: int = 0
    duplicate: int = 0
    written: dict[str, int] = field(default_factory=dict)
    quarantine: pa.Table | None = None
    loaded_rows: pa.Array | None = None  # batch row indexes that were loaded (for retry)
    duplicate_rows: pa.Array | None = None


def _constant(value: str, count: int) -> pa.Array:
    """The same text `count` times, as a dictionary array (no per-row strings)."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(count, np.int32)), pa.array([value], pa.string()))


def _rows(plan: Plan, mapped: Mapped, lines: pa.Array) -> pa.Table:
    """The mapped batch plus the bookkeeping columns kind SQL may use."""
    count = mapped.table.num_rows
    table = mapped.table
    for name, values in {**mapped.extra, "_line_no": lines, "_row": pa.array(np.arange(count, dtype=np.int64)),
                         "_source_id": _constant(plan.source_id, count),
                         "_currency": _constant(plan.currency, count),
                         "_imported_at": pc.cast(pa.array(np.full(count, np.datetime64(
                             plan.imported_at.replace(tzinfo=None), "us"))), pa.timestamp("us", tz="UTC"))}.items():
        table = table.append_column(name, values)
    return table


def _kind_checks(plan: Plan, mapped: Mapped, rows: pa.Table) -> None:
    """Merge the kind's own row checks (e.g. nested item quantities) into `mapped`."""
    if not plan.kind.check_sql:
        return
    found = plan.sql(plan.kind.check_sql, rows=rows.filter(mapped.ok))
    if found.num_rows == 0:
        return
    position = pc.index_in(rows.column("_row"), value_set=found.column("_row"))
    for name in ("code", "field", "reason"):
        taken = pc.take(found.column(name).combine_chunks(), position)
        setattr(mapped, name, pc.coalesce(getattr(mapped, name), taken))


def existing_keys(plan: Plan, keys: pa.Table) -> pa.Table:
    """Which of these keys the primary table already holds (null-safe, typed comparison)."""
    engine, kind = plan.engine, plan.kind
    if keys.num_rows == 0 or not engine.table_exists(kind.primary) or engine.row_count(kind.primary) == 0:
        return keys.slice(0, 0)
    scratch = f"import_keys_{plan.import_id[:12]}"
    engine.write_table(scratch, keys, mode="replace")
    match = exp.and_(*[exp.NullSafeEQ(this=exp.column(c, "t"), expression=exp.column(c, "k"))
                       for c in kind.key_columns])
    inner = exp.select("1").from_(exp.to_table(kind.primary).as_("t")).where(match)
    query = exp.select(*[exp.column(c, "k") for c in kind.key_columns]).from_(exp.to_table(scratch).as_("k")) \
        .where(exp.Exists(this=inner))
    return engine.query(query)


def duplicates(plan: Plan, rows: pa.Table) -> pa.Array:
    """Per row: already loaded (by natural key), or repeated earlier in this batch."""
    names = ", ".join(plan.kind.key_columns)
    # Within a batch a group's rows share its key legitimately; other kinds keep the first.
    nth = "1" if plan.mapping.group_by else f"row_number() OVER (PARTITION BY {names} ORDER BY _row)"
    keyed = plan.sql(f"SELECT _row, {plan.kind.key_sql}, {nth} AS _nth FROM rows ORDER BY _row", rows=rows)
    present = existing_keys(plan, keyed.select(list(plan.kind.key_columns)).group_by(
        list(plan.kind.key_columns)).aggregate([]))
    marked = plan.sql(f"SELECT k._row, p.{plan.kind.key_columns[0]} IS NOT NULL AS hit FROM keyed k "
                      f"LEFT JOIN (SELECT DISTINCT * FROM present) p ON "
                      + " AND ".join(f"k.{c} IS NOT DISTINCT FROM p.{c}" for c in plan.kind.key_columns)
                      + " ORDER BY k._row", keyed=keyed, present=present)
    hit = marked.column("hit").combine_chunks()
    if plan.mapping.group_by is None:
        hit = pc.or_(hit, pc.greater(keyed.column("_nth").combine_chunks(), 1))
    return hit


def payloads(plan: Plan, raw: pa.Table) -> pa.Array:
    """Each raw source row as a JSON object, as it was read (for show and retry)."""
    return plan.sql("SELECT to_json(raw) AS payload FROM raw", raw=raw).column("payload").combine_chunks()


def quarantine_table(plan: Plan, mapped: Mapped, raw: pa.Table, lines: pa.Array) -> pa.Table:
    bad = pc.invert(mapped.ok)
    return pa.table({
        "reason_code": pc.filter(mapped.code, bad), "reason": pc.filter(mapped.reason, bad),
        "field": pc.filter(mapped.field, bad), "payload": payloads(plan, raw.filter(bad)),
        "line_no": pc.filter(lines, bad),
    })


def unreadable(plan: Plan, bad_lines: list[tuple[int, str, str]]) -> pa.Table:
    """Lines the reader could not turn into a row at all (wrong cell count, not JSON)."""
    prefix = reason_text("unreadable_row", "row", plan.mapping.fields[next(iter(plan.mapping.fields))],
                         plan.context.language)
    return pa.table({
        "reason_code": pa.array(["unreadable_row"] * len(bad_lines), pa.string()),
        "reason": pa.array([f"{prefix}{problem}" for _, _, problem in bad_lines], pa.string()),
        "field": pa.nulls(len(bad_lines), pa.string()),
        "payload": pa.array([text for _, text, _ in bad_lines], pa.string()),
        "line_no": pa.array([line for line, _, _ in bad_lines], pa.int64()),
    })


def process(plan: Plan, raw: pa.Table, lines: pa.Array, bad_lines: list | None = None) -> Outcome:
    """Check, set aside, de-duplicate and load one batch; return what happened to its rows."""
    if raw.num_rows == 0:
        aside = unreadable(plan, bad_lines or [])
        empty = pa.array([], pa.int64())
        return Outcome(quarantined=aside.num_rows, quarantine=aside, loaded_rows=empty, duplicate_rows=empty)
    mapped = map_batch(raw, plan.mapping, plan.context)
    rows = _rows(plan, mapped, lines)
    _kind_checks(plan, mapped, rows)
    if plan.mapping.group_by:
        label = plan.mapping.source_of(plan.mapping.group_by)
        mapped = reject_groups(mapped, plan.mapping.group_by, label, plan.context.language)
    good = rows.filter(mapped.ok)
    dup = duplicates(plan, good)
    load = good.filter(pc.invert(dup))
    outcome = Outcome(loaded=load.num_rows, duplicate=int(pc.sum(dup).as_py() or 0))
    for table, query in plan.kind.targets if load.num_rows else ():
        result = plan.sql(query, rows=load)
        plan.engine.write_table(table, result)
        outcome.written[table] = result.num_rows
    aside = pa.concat_tables([quarantine_table(plan, mapped, raw, lines), unreadable(plan, bad_lines or [])])
    outcome.quarantined = aside.num_rows
    outcome.quarantine = aside
    outcome.loaded_rows = load.column("_row").combine_chunks()
    outcome.duplicate_rows = pc.filter(good.column("_row"), dup).combine_chunks()
    return outcome


def set_aside(plan: Plan, aside: pa.Table) -> None:
    """Write quarantined rows with the run's origin."""
    count = aside.num_rows
    extra = {"import_id": plan.import_id, "source_file": plan.source_file, "source_id": plan.source_id,
             "kind": plan.kind.name}
    for name, value in extra.items():
        aside = aside.append_column(name, pa.array([value] * count, pa.string()))
    quarantine_rows(plan.engine, aside)
