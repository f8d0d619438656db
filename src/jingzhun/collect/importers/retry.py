"""Retry quarantined rows: re-check them (after the user fixed a store, a product or
the mapping) and load those that now pass, marking them `retried`.

Rows are retried together per import run, so a receipt whose lines were held back
as a group can load whole. Rows that still fail stay `open` with their reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from jingzhun.collect.importers.batch import Plan, process
from jingzhun.collect.importers.ledger import get_run, save_run
from jingzhun.collect.importers.mapping import Mapping, load_mapping, parse_mapping
from jingzhun.collect.importers.run import build_plan
from jingzhun.collect.quarantine import QUARANTINE, mark_retried, update_reasons
from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine


@dataclass
class RetryResult:
    """How many open rows were tried, loaded, found already loaded, and still failing."""

    tried: int = 0
    loaded: int = 0
    duplicate: int = 0
    still_open: int = 0


def _open_rows(engine: Engine, import_id: str | None, kind: str | None) -> pa.Table:
    query = exp.select("quarantine_id", "import_id", "payload", "line_no", "reason_code").from_(QUARANTINE).where(
        exp.column("status").eq(exp.convert("open")).and_(exp.column("import_id").is_(exp.null()).not_()))
    if import_id:
        query = query.where(exp.column("import_id").eq(exp.convert(import_id)))
    if kind:
        query = query.where(exp.column("kind").eq(exp.convert(kind)))
    return engine.query(query.order_by("line_no"))


def _raw_rows(rows: pa.Table) -> pa.Table:
    """Rebuild the source rows from their JSON payloads (all values as text)."""
    parsed = [orjson.loads(text) for text in rows.column("payload").to_pylist()]
    names = list(dict.fromkeys(name for row in parsed for name in row))
    return pa.table({name: pa.array([None if row.get(name) is None else str(row[name]) for row in parsed],
                                    pa.string()) for name in names})


def _restate(engine: Engine, tried: pa.Table, aside: pa.Table | None) -> None:
    """Store the current problem of rows that still fail (set aside in file order)."""
    if aside is None or aside.num_rows == 0:
        return
    position = pc.index_in(aside.column("line_no"), value_set=tried.column("line_no"))
    ids = pc.take(tried.column("quarantine_id"), position)
    update_reasons(engine, pa.table({"quarantine_id": ids, "reason_code": aside.column("reason_code"),
                                     "reason": aside.column("reason"), "field": aside.column("field")}))


def _retry_run(workspace: Workspace, engine: Engine, import_id: str, rows: pa.Table,
               mapping: Mapping | None) -> RetryResult:
    run = get_run(engine, import_id)
    if run is None:
        return RetryResult(tried=rows.num_rows, still_open=rows.num_rows)
    readable = rows.filter(pc.not_equal(rows.column("reason_code"), "unreadable_row"))
    chosen = mapping or parse_mapping(orjson.loads(run.mapping), f"imports/{import_id}")
    plan: Plan = build_plan(workspace, engine, chosen, run)
    result = RetryResult(tried=rows.num_rows)
    if readable.num_rows:
        with engine.transaction():
            outcome = process(plan, _raw_rows(readable), readable.column("line_no").combine_chunks())
            done = pc.take(readable.column("quarantine_id"), pa.concat_arrays(
                [outcome.loaded_rows, outcome.duplicate_rows])).to_pylist()
            mark_retried(engine, done)
            _restate(engine, readable, outcome.quarantine)
            run.rows_loaded += outcome.loaded
            run.rows_duplicate += outcome.duplicate
            run.rows_quarantined -= outcome.loaded + outcome.duplicate
            save_run(engine, run)
        result.loaded, result.duplicate = outcome.loaded, outcome.duplicate
    plan.local.close()
    result.still_open = result.tried - result.loaded - result.duplicate
    return result


def retry_quarantine(workspace: Workspace, engine: Engine, *, import_id: str | None = None,
                     kind: str | None = None, mapping: str | None = None) -> RetryResult:
    """Re-check open quarantined import rows and load the ones that now pass.

    Args:
        import_id: only this import run's rows; kind: only this kind's rows.
        mapping: a corrected mapping file to use instead of the one the run used.
    """
    if not engine.table_exists(QUARANTINE):
        return RetryResult()
    rows = _open_rows(engine, import_id, kind)
    fixed = load_mapping(mapping) if mapping else None
    total = RetryResult()
    for run_id in pc.unique(rows.column("import_id")).to_pylist():
        one = _retry_run(workspace, engine, run_id, rows.filter(pc.equal(rows.column("import_id"), run_id)), fixed)
        for name in ("tried", "loaded", "duplicate", "still_open"):
            setattr(total, name, getattr(total, name) + getattr(one, name))
    return total
