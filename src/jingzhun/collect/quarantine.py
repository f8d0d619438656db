"""Quarantine: where rejected records wait, with the reason, until fixed or discarded.

Nothing accepted is ever silently dropped: a record that fails validation (a bad
phone, a negative quantity, an event violating its tracking plan, a line that is
not JSON) is written here with the source, the file and line it came from, the
field at fault and a reason a person can act on. The collector and the importers
both write through `quarantine_rows`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from jingzhun.engine import Engine

QUARANTINE = "quarantine"
REQUIRED = ("reason_code", "reason")
OPTIONAL = ("source_id", "kind", "field", "payload", "import_id", "source_file", "line_no")


def quarantine_rows(engine: Engine, rows: pa.Table) -> int:
    """Append rejected records; each needs `reason_code` and `reason`.

    Optional columns: source_id, kind, field, payload (the raw record as text),
    import_id, source_file, line_no. Ids, received_at and status are filled in.
    Returns the number of records written.
    """
    missing = [name for name in REQUIRED if name not in rows.column_names]
    if missing:
        raise ValueError(f"quarantine rows need columns {missing}")
    count = rows.num_rows
    if count == 0:
        return 0
    now = pa.array([datetime.now(UTC)] * count, pa.timestamp("us", tz="UTC"))
    columns = {
        "quarantine_id": pa.array([uuid.uuid4().hex for _ in range(count)], pa.string()),
        "received_at": now,
        "status": pa.array(["open"] * count, pa.string()),
    }
    for name in (*REQUIRED, *OPTIONAL):
        if name in rows.column_names:
            columns[name] = rows.column(name)
    engine.write_table(QUARANTINE, pa.table(columns), mode="append")
    return count


def list_quarantine(
    engine: Engine, *, status: str | None = "open", source_id: str | None = None, limit: int = 100
) -> pa.Table:
    """Quarantined records, newest first, optionally for one source and status."""
    query = exp.select("*").from_(QUARANTINE).order_by(exp.column("received_at").desc()).limit(limit)
    if status is not None:
        query = query.where(exp.column("status").eq(exp.convert(status)))
    if source_id is not None:
        query = query.where(exp.column("source_id").eq(exp.convert(source_id)))
    return engine.query(query)


def reasons_summary(engine: Engine, import_id: str | None = None) -> dict[str, int]:
    """How many records were quarantined for each reason code (optionally one import)."""
    query = (
        exp.select("reason_code", exp.func("count", exp.Star()).as_("n"))
        .from_(QUARANTINE)
        .group_by("reason_code")
    )
    if import_id is not None:
        query = query.where(exp.column("import_id").eq(exp.convert(import_id)))
    counted = engine.query(query)
    return dict(zip(counted.column("reason_code").to_pylist(), pc.cast(counted.column("n"), pa.int64()).to_pylist(), strict=True))


def mark_retried(engine: Engine, quarantine_ids: list[str]) -> int:
    """Mark quarantined records as `retried` (their data has now been loaded).

    Engines without UPDATE (Spark over Parquet) rewrite the table: quarantine is
    small next to the data it guards.
    """
    if not quarantine_ids:
        return 0
    ids = exp.column("quarantine_id").isin(*[exp.convert(value) for value in quarantine_ids])
    now = exp.cast(exp.convert(datetime.now(UTC).isoformat()), "TIMESTAMPTZ")
    if engine.SUPPORTS_UPDATE_DELETE:
        engine.execute(exp.update(QUARANTINE, {"status": exp.convert("retried"), "retried_at": now}, where=ids))
        return len(quarantine_ids)
    rows = engine.read_table(QUARANTINE)
    hit = pc.is_in(rows.column("quarantine_id"), pa.array(quarantine_ids, pa.string()))
    status = pc.if_else(hit, pa.scalar("retried"), rows.column("status"))
    stamp = pc.if_else(hit, pa.scalar(datetime.now(UTC), pa.timestamp("us", tz="UTC")),
                       rows.column("retried_at").cast(pa.timestamp("us", tz="UTC")))
    rows = rows.set_column(rows.schema.get_field_index("status"), "status", status)
    rows = rows.set_column(rows.schema.get_field_index("retried_at"), "retried_at", stamp)
    engine.write_table(QUARANTINE, rows, mode="replace")
    return len(quarantine_ids)


def update_reasons(engine: Engine, updates: pa.Table) -> int:
    """Replace reason_code, reason and field of still-open records after a retry.

    `updates` has quarantine_id, reason_code, reason, field. A row retried after
    its first problem was fixed (a missing store added) shows its next problem.
    """
    if updates.num_rows == 0:
        return 0
    if engine.SUPPORTS_UPDATE_DELETE:
        scratch = "quarantine_reason_updates"
        engine.write_table(scratch, updates, mode="replace")
        source = exp.to_table(scratch).as_("u")
        statement = exp.update(
            QUARANTINE, {name: exp.column(name, "u") for name in ("reason_code", "reason", "field")},
            where=exp.column("quarantine_id", QUARANTINE).eq(exp.column("quarantine_id", "u")))
        statement.set("from_", exp.From(this=source))
        engine.execute(statement)
        engine.drop_table(scratch)
        return updates.num_rows
    rows = engine.read_table(QUARANTINE)
    position = pc.index_in(rows.column("quarantine_id"), value_set=updates.column("quarantine_id"))
    for name in ("reason_code", "reason", "field"):
        fresh = pc.take(updates.column(name), position)
        merged = pc.if_else(pc.is_valid(position), fresh, rows.column(name))
        rows = rows.set_column(rows.schema.get_field_index(name), name, merged)
    engine.write_table(QUARANTINE, rows, mode="replace")
    return updates.num_rows
