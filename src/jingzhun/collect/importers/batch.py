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
from jingzhun.collect.importers.stages import Handoff
from jingzhun.collect.importers.validate import (
    Context,
    Mapped,
    map_batch,
    reason_text,
    reject_groups,
)
from jingzhun.collect.quarantine import quarantine_rows
from jingzhun.engine import Engine


def private_connection() -> duckdb.DuckDBPyConnection:
    """The in-process DuckDB that runs an import's checks and kind SQL (times in UTC)."""
    connection = duckdb.connect(config={"threads": 2})
    connection.execute("SET TimeZone = 'UTC'")
    return connection


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
    lookups: dict[str, pa.Table] = field(default_factory=dict)  # the kind's reference data, by name
    loaded_before: bool = True  # the primary table held rows when the run started
    on_engine: Handoff = field(default_factory=Handoff)  # runs engine work on the engine's thread
    seen: list[pa.Table] = field(default_factory=list)  # natural keys this run has loaded
    local: duckdb.DuckDBPyConnection = field(default_factory=private_connection)

    def sql_where(self, query: str, rows: pa.Table, keep: pa.Array) -> pa.Table:
        """Run kind SQL over the `rows` where `keep` is true (DuckDB filters as it scans:
        cheaper than copying the batch with Arrow)."""
        self.local.register("batch_rows", rows.append_column("_keep", keep))
        try:
            self.local.execute("CREATE OR REPLACE TEMP VIEW rows AS SELECT * EXCLUDE (_keep) FROM batch_rows "
                               "WHERE _keep")
            return self.sql(query)
        finally:
            self.local.execute("DROP VIEW IF EXISTS rows")
            self.local.unregister("batch_rows")

    def sql(self, query: str, **tables: pa.Table) -> pa.Table:
        """Run kind SQL over Arrow tables registered under the given names (and the lookups)."""
        tables = {**self.lookups, **tables}
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
    targets: list[tuple[str, pa.Table]] = field(default_factory=list)  # prepared, not yet stored


def _constant(value: str, count: int) -> pa.Array:
    """The same text `count` times, as a dictionary array (no per-row strings)."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(count, np.int32)), pa.array([value], pa.string()))


def _rows(plan: Plan, mapped: Mapped, lines: pa.Array) -> pa.Table:
    """The mapped batch plus the bookkeeping columns kind SQL may use."""
    count = mapped.table.num_rows
    table = mapped.table
    extra = {**mapped.extra, "_line_no": lines, "_row": pa.array(np.arange(count, dtype=np.int64)),
             "_source_id": _constant(plan.source_id, count), "_currency": _constant(plan.currency, count),
             "_imported_at": pc.cast(pa.array(np.full(count, np.datetime64(
                 plan.imported_at.replace(tzinfo=None), "us"))), pa.timestamp("us", tz="UTC"))}
    if plan.mapping.group_by:
        extra["_group_line"] = group_positions(mapped.table.column(plan.mapping.group_by))
    for name, values in extra.items():
        table = table.append_column(name, values)
    return table


def group_positions(keys: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Each row's 1-based position among the rows sharing its key, in batch order.

    A stable sort of the keys' codes, instead of SQL's row_number() over a
    partition: the window sort was the most expensive step of a POS batch.
    """
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    codes = pc.fill_null(pc.dictionary_encode(keys).indices, -1).to_numpy(zero_copy_only=False)
    order = np.argsort(codes, kind="stable")
    ordered = codes[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(ordered)]))
    positions = np.empty(len(codes), np.int64)
    positions[order] = np.arange(len(codes)) - run_start + 1
    return pa.array(positions)


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
    if keys.num_rows == 0:
        return keys
    scratch = f"import_keys_{plan.import_id[:12]}"
    match = exp.and_(*[exp.NullSafeEQ(this=exp.column(c, "t"), expression=exp.column(c, "k"))
                       for c in kind.key_columns])
    inner = exp.select("1").from_(exp.to_table(kind.primary).as_("t")).where(match)
    query = exp.select(*[exp.column(c, "k") for c in kind.key_columns]).from_(exp.to_table(scratch).as_("k")) \
        .where(exp.Exists(this=inner))

    def look_up() -> pa.Table:
        engine.write_table(scratch, keys, mode="replace")
        return engine.query(query)

    return plan.on_engine(look_up)


def claim_keys(plan: Plan, rows: pa.Table, ok: pa.Array) -> pa.Array:
    """Per row (of those `ok`): already loaded (by natural key), or repeated earlier in this
    batch; the keys of the other ok rows, which are loaded next, are remembered for the
    run's later batches. Rows not ok are never duplicates.

    The workspace is asked only when the primary table held rows before this run
    (an earlier import, or this run before an interruption); keys this run loaded
    itself are checked in memory, which spares a scratch table and a join per batch.
    """
    names = list(plan.kind.key_columns)
    keyed = _keys(plan, rows, ok)
    keys = keyed.select(names)
    distinct = _distinct_keys(keys) if plan.loaded_before else keys.slice(0, 0)
    present = existing_keys(plan, distinct) if plan.loaded_before else distinct
    hit = _member(plan, keys, [table for table in (present, *plan.seen) if table.num_rows])
    if "_nth" in keyed.column_names:
        hit = pc.or_(hit, pc.greater(keyed.column("_nth").combine_chunks(), 1))
    claimed = _distinct_keys(keys.filter(pc.invert(hit)))
    if claimed.num_rows:
        plan.seen.append(claimed)
    spread = np.zeros(rows.num_rows, bool)
    spread[np.flatnonzero(ok.to_numpy(zero_copy_only=False))] = hit.to_numpy(zero_copy_only=False)
    return pa.array(spread)


def _distinct_keys(keys: pa.Table) -> pa.Table:
    if keys.num_columns == 1:
        return pa.table({keys.column_names[0]: pc.unique(keys.column(0))})
    return keys.group_by(keys.column_names).aggregate([]).cast(keys.schema)


def _keys(plan: Plan, rows: pa.Table, ok: pa.Array) -> pa.Table:
    """The natural key of each ok row, and for kinds without groups `_nth`: its repeat number
    within the batch (a group's rows share their key legitimately; other kinds keep the first)."""
    names = list(plan.kind.key_columns)
    if plan.mapping.group_by and plan.kind.key_sql == ", ".join(names):  # plain columns: no query needed
        return rows.select(names).filter(ok)
    nth = "" if plan.mapping.group_by else f", row_number() OVER (PARTITION BY {', '.join(names)} ORDER BY _row) AS _nth"
    return plan.sql_where(f"SELECT _row, {plan.kind.key_sql}{nth} FROM rows ORDER BY _row", rows, ok)


def _member(plan: Plan, keys: pa.Table, known: list[pa.Table]) -> pa.Array:
    """Whether each key is among `known` (NULL equals NULL, as in the anti-join)."""
    if not known:
        return pa.array([False] * keys.num_rows, pa.bool_())
    if keys.num_columns == 1:
        # Hash this batch's keys and probe the (much larger) known ones: building a
        # hash set of everything loaded so far, every batch, would cost far more.
        column = keys.column(0).combine_chunks()
        distinct = pc.unique(column)
        found = [pc.filter(values, pc.is_in(values, value_set=distinct, skip_nulls=False))
                 for values in (table.column(0).combine_chunks().cast(column.type) for table in known)]
        return pc.fill_null(pc.is_in(column, value_set=pa.concat_arrays(found), skip_nulls=False), False)
    numbered = keys.append_column("_k", pa.array(range(keys.num_rows), pa.int64()))
    match = " AND ".join(f"k.{c} IS NOT DISTINCT FROM p.{c}" for c in keys.column_names)
    marked = plan.sql(f"SELECT k._k, EXISTS (SELECT 1 FROM present p WHERE {match}) AS hit FROM keyed k ORDER BY k._k",
                      keyed=numbered, present=pa.concat_tables([t.cast(keys.schema) for t in known]))
    return marked.column("hit").combine_chunks()


def payloads(plan: Plan, raw: pa.Table) -> pa.Array:
    """Each raw source row as a JSON object, as it was read (for show and retry)."""
    return plan.sql("SELECT to_json(raw) AS payload FROM raw", raw=raw).column("payload").combine_chunks()


def quarantine_table(plan: Plan, mapped: Mapped, raw: pa.Table, lines: pa.Array) -> pa.Table:
    """The rows set aside, with code, reason, field, line and the raw row (few: taken, not filtered)."""
    bad = pc.indices_nonzero(pc.invert(mapped.ok))
    return pa.table({
        "reason_code": pc.take(mapped.code, bad), "reason": pc.take(mapped.reason, bad),
        "field": pc.take(mapped.field, bad), "payload": payloads(plan, raw.take(bad)),
        "line_no": pc.take(lines, bad),
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


def prepare(plan: Plan, raw: pa.Table, lines: pa.Array, bad_lines: list | None = None) -> Outcome:
    """Check, set aside and de-duplicate one batch, and compute its target rows; nothing is stored.

    Runs ahead of `store` in its own thread during an import: it uses the workspace
    engine only to look up keys loaded before the run, through `plan.on_engine`.
    """
    if raw.num_rows == 0:
        aside = unreadable(plan, bad_lines or [])
        empty = pa.array([], pa.int64())
        return Outcome(quarantined=aside.num_rows, quarantine=aside, loaded_rows=empty, duplicate_rows=empty)
    mapped = map_batch(raw, plan.mapping, plan.context, plan.local)
    rows = _rows(plan, mapped, lines)
    _kind_checks(plan, mapped, rows)
    if plan.mapping.group_by:
        label = plan.mapping.source_of(plan.mapping.group_by)
        mapped = reject_groups(mapped, plan.mapping.group_by, label, plan.context.language)
    ok = mapped.ok
    dup = claim_keys(plan, rows, ok)
    load = pc.and_(ok, pc.invert(dup))
    loaded = pc.indices_nonzero(load)
    aside = pa.concat_tables([quarantine_table(plan, mapped, raw, lines), unreadable(plan, bad_lines or [])])
    return Outcome(loaded=len(loaded), duplicate=int(pc.sum(dup).as_py() or 0), quarantined=aside.num_rows,
                   quarantine=aside, loaded_rows=loaded.cast(pa.int64()),
                   duplicate_rows=pc.indices_nonzero(dup).cast(pa.int64()),
                   targets=[(table, plan.sql_where(query, rows, load)) for table, query in plan.kind.targets
                            if len(loaded)])


def store(plan: Plan, outcome: Outcome) -> Outcome:
    """Write a prepared batch's target rows (inside the caller's transaction)."""
    for table, result in outcome.targets:
        plan.engine.write_table(table, result)
        outcome.written[table] = result.num_rows
    outcome.targets = []
    return outcome


def process(plan: Plan, raw: pa.Table, lines: pa.Array, bad_lines: list | None = None) -> Outcome:
    """Check, set aside, de-duplicate and load one batch; return what happened to its rows."""
    return store(plan, prepare(plan, raw, lines, bad_lines))


def set_aside(plan: Plan, aside: pa.Table) -> None:
    """Write quarantined rows with the run's origin."""
    count = aside.num_rows
    extra = {"import_id": plan.import_id, "source_file": plan.source_file, "source_id": plan.source_id,
             "kind": plan.kind.name}
    for name, value in extra.items():
        aside = aside.append_column(name, pa.array([value] * count, pa.string()))
    quarantine_rows(plan.engine, aside)
