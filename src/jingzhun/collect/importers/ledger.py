"""The `imports` ledger: one row per import run, rewritten after every committed batch.

The row is written in the same transaction as the batch's data (DuckDB), so after
a crash `resume_row` says exactly how many records of the file are in the tables.
On engines without UPDATE (Spark over Parquet) the small ledger is rewritten whole.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import pyarrow as pa
from sqlglot import exp

from jingzhun.engine import Engine
from jingzhun.schema.tables import IMPORTS

LEDGER = "imports"


@dataclass
class Run:
    """The ledger row of one import run (mutable while the run goes on)."""

    import_id: str
    kind: str
    source_id: str
    file_path: str
    file_sha256: str
    mapping: str
    encoding: str | None
    started_at: datetime
    status: str = "running"
    finished_at: datetime | None = None
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    resume_row: int = 0


_TYPES = {"started_at": pa.timestamp("us", tz="UTC"), "finished_at": pa.timestamp("us", tz="UTC"),
          **{name: pa.int64() for name in ("rows_read", "rows_loaded", "rows_quarantined", "rows_duplicate",
                                             "resume_row")}}


def _as_table(run: Run) -> pa.Table:
    row = asdict(run)
    return pa.table({name: pa.array([row[name]], _TYPES.get(name, pa.string())) for name in IMPORTS.column_names})


def save_run(engine: Engine, run: Run) -> None:
    """Write the run's current state (call inside the batch's transaction)."""
    if not engine.table_exists(LEDGER):
        engine.write_table(LEDGER, _as_table(run))
        return
    if engine.SUPPORTS_UPDATE_DELETE:
        engine.execute(exp.delete(LEDGER, where=exp.column("import_id").eq(exp.convert(run.import_id))))
        engine.write_table(LEDGER, _as_table(run))
        return
    others = engine.query(exp.select("*").from_(LEDGER).where(
        exp.column("import_id").neq(exp.convert(run.import_id))))
    engine.write_table(LEDGER, pa.concat_tables([others.select(IMPORTS.column_names).cast(_as_table(run).schema),
                                                 _as_table(run)]), mode="replace")


def find_run(engine: Engine, kind: str, sha256: str) -> Run | None:
    """The latest run of this kind over a file with these exact bytes, if any."""
    if not engine.table_exists(LEDGER):
        return None
    found = engine.query(
        exp.select("*").from_(LEDGER)
        .where(exp.column("kind").eq(exp.convert(kind)).and_(exp.column("file_sha256").eq(exp.convert(sha256))))
        .order_by(exp.column("started_at").desc()).limit(1)
    ).to_pylist()
    if not found:
        return None
    row = found[0]
    row = {name: row[name] for name in Run.__dataclass_fields__}
    return Run(**{**row, **{key: int(row[key] or 0) for key in _TYPES if key.startswith(("rows", "resume"))}})


def get_run(engine: Engine, import_id: str) -> Run | None:
    """One run by id."""
    if not engine.table_exists(LEDGER):
        return None
    rows = engine.query(exp.select("*").from_(LEDGER).where(exp.column("import_id").eq(exp.convert(import_id))))
    if rows.num_rows == 0:
        return None
    row = rows.to_pylist()[0]
    return Run(**{name: row[name] for name in Run.__dataclass_fields__})


def now() -> datetime:
    return datetime.now(UTC)
