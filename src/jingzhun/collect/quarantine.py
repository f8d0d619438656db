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
