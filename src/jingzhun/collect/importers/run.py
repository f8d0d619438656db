"""`import_file`: stream a file into canonical tables, losing nothing, loading nothing twice.

Three threads form a pipeline (`stages`): one reads and parses the next block,
one checks the batch before it and computes its target rows, and this one
stores. Per batch, in one transaction (where the engine has them): the rows that
pass go to their tables, the rows that fail go to `quarantine`, and the `imports`
ledger records the counts and `resume_row`. A run killed at any moment therefore
resumes from the last committed batch; and because every row is also anti-joined on its
natural key, neither a resume nor a re-import of overlapping files loads a row twice.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from jingzhun.collect.importers import readers
from jingzhun.collect.importers.batch import Outcome, Plan, prepare, set_aside, store
from jingzhun.collect.importers.encoding import detect_encoding
from jingzhun.collect.importers.kinds import KINDS, Lookup
from jingzhun.collect.importers.ledger import Run, find_run, now, save_run
from jingzhun.collect.importers.mapping import Mapping, builtin_mapping
from jingzhun.collect.importers.stages import ahead
from jingzhun.collect.importers.validate import Context
from jingzhun.core.errors import ConfigError, JingzhunError
from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine
from jingzhun.schema import migrate

Progress = Callable[[float, int], None]


class ImportFileError(JingzhunError):
    """The file cannot be imported as asked (missing, unknown kind)."""


@dataclass
class ImportResult:
    """What one import did. `rows_read == rows_loaded + rows_quarantined + rows_duplicate`."""

    import_id: str
    kind: str
    file: str
    encoding: str | None
    status: str  # finished | already_imported
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    rows_duplicate: int
    resumed_from: int = 0
    seconds: float = 0.0
    written: dict[str, int] = field(default_factory=dict)

    @property
    def balanced(self) -> bool:
        return self.rows_read == self.rows_loaded + self.rows_quarantined + self.rows_duplicate


def file_sha256(path: Path) -> str:
    """The file's identity: the same bytes are the same import."""
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _kind(kind: str) -> None:
    if kind not in KINDS:
        raise ImportFileError(
            f"unknown import kind `{kind}`.", field="kind", fix=f"use one of: {', '.join(KINDS)}",
            message_zh=f"未知的导入类型 `{kind}`。", fix_zh=f"请使用：{'、'.join(KINDS)}",
        )


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise ImportFileError(f"file {path} does not exist.", location=path, fix="check the path",
                              message_zh=f"文件 {path} 不存在。", fix_zh="检查文件路径")


def _batches(path: Path, mapping: Mapping, encoding: str | None, skip: int) -> Iterator[readers.Batch]:
    fmt = readers.sniff_format(path, mapping.format)
    if fmt == "csv":
        return readers.read_csv(path, encoding or "utf-8", skip)
    if fmt == "excel":
        return readers.read_excel(path, mapping.sheet, skip)
    if fmt == "jsonl":
        return readers.read_jsonl(path, skip)
    return readers.read_parquet(path, skip)


def regroup(batches: Iterator[readers.Batch], column: str | None) -> Iterator[readers.Batch]:
    """Hold back a batch's trailing rows of one group (a receipt) until the group ends.

    Files list a receipt's lines together; a block boundary inside a receipt would
    otherwise load half a receipt now and half in the next batch. A batch that is
    all one group (e.g. the short remainder of a block after a resume) is held whole.
    """
    carried: readers.Batch | None = None
    for batch in batches:
        if carried is not None:
            batch = _join(carried, batch)
        carried = None
        if column and batch.table.num_rows and column in batch.table.column_names:
            keys = batch.table.column(column).combine_chunks()
            cut = len(keys) - _trailing_true(pc.equal(keys, keys[len(keys) - 1]))
            carried = readers.Batch(batch.table.slice(cut), batch.line_no.slice(cut))
            batch = readers.Batch(batch.table.slice(0, cut), batch.line_no.slice(0, cut), batch.bad_lines,
                                  batch.fraction_done)
        if batch.rows_read:
            yield batch
    if carried is not None and carried.rows_read:
        yield carried


def _join(first: readers.Batch, second: readers.Batch) -> readers.Batch:
    """`first`'s rows followed by `second`'s (same source columns)."""
    if not second.table.num_rows:
        return readers.Batch(first.table, first.line_no, [*first.bad_lines, *second.bad_lines], second.fraction_done)
    table = pa.concat_tables([first.table, second.table.select(first.table.column_names)])
    return readers.Batch(table, pa.concat_arrays([first.line_no, second.line_no]),
                         [*first.bad_lines, *second.bad_lines], second.fraction_done)


def _trailing_true(mask: pa.Array) -> int:
    """How many values at the end of `mask` are true."""
    flags = pc.fill_null(mask, False).to_numpy(zero_copy_only=False)[::-1]
    return int(flags.argmin()) if not flags.all() else len(flags)


def build_plan(workspace: Workspace, engine: Engine, mapping: Mapping, run: Run) -> Plan:
    config = workspace.config
    known = {}
    for spec in mapping.fields.values():
        if spec.references and "." in spec.references:
            table, column = spec.references.split(".", 1)
            if engine.table_exists(table) and engine.row_count(table):
                query = exp.select(exp.column(column)).distinct().from_(exp.to_table(table))
                known[spec.references] = engine.query(query).column(0).combine_chunks()
    salt = workspace.pii_salt() if config.pii.mode == "salted_hash" else None
    zone = mapping.timezone or config.timezone
    context = Context(timezone=zone, country_code=config.pii.default_country_code, language=config.language,
                      known=known, pii_salt=salt, today=datetime.now(ZoneInfo(zone)).date())
    kind = KINDS[mapping.kind]
    loaded = engine.table_exists(kind.primary) and engine.row_count(kind.primary) > 0
    return Plan(engine, kind, mapping, context, run.import_id, run.source_id, run.file_path, config.currency, now(),
                lookups={lookup.name: fetch_lookup(engine, lookup) for lookup in kind.lookups}, loaded_before=loaded)


def fetch_lookup(engine: Engine, lookup: Lookup) -> pa.Table:
    """A kind's reference data from the workspace (no rows while its table is empty or missing)."""
    if engine.table_exists(lookup.table) and engine.row_count(lookup.table):
        found = engine.query(lookup.sql)
        return pa.table({name: pc.cast(found.column(name), pa.string()) for name in lookup.columns})
    return pa.table({name: pa.array([], pa.string()) for name in lookup.columns})


def _prepared(plan: Plan, batches: Iterator[readers.Batch]) -> Iterator[tuple[int, float, Outcome]]:
    """Each batch checked and turned into target rows, ready to store (the raw rows are let go)."""
    for batch in batches:
        yield batch.rows_read, batch.fraction_done, prepare(plan, batch.table, batch.line_no, batch.bad_lines)


def _record(plan: Plan, run: Run, rows_read: int, outcome: Outcome) -> None:
    """Record one batch's counts and progress beside its data (in its transaction)."""
    if outcome.quarantine is not None:
        set_aside(plan, outcome.quarantine)
    run.rows_read += rows_read
    run.rows_loaded += outcome.loaded
    run.rows_quarantined += outcome.quarantined
    run.rows_duplicate += outcome.duplicate
    run.resume_row += rows_read
    save_run(plan.engine, run)


def _start(engine: Engine, kind: str, path: Path, mapping: Mapping, encoding: str | None, sha: str) -> Run:
    previous = find_run(engine, kind, sha)
    if previous is not None:
        return previous
    return Run(import_id=uuid.uuid4().hex, kind=kind, source_id=f"import:{kind}", file_path=str(path),
               file_sha256=sha, mapping=orjson.dumps(mapping.model_dump(mode="json")).decode(),
               encoding=encoding, started_at=now())


def resolve_mapping(kind: str, mapping: Mapping | str | Path | None) -> Mapping:
    """The mapping to use: given, loaded from a path, or the built-in one for `kind`.

    Fields a given mapping leaves out are read as the built-in mapping reads them
    (defaults such as `currency: CNY` included): the kind's SQL uses every one of
    them, and a mapping written to change one field should not have to repeat the rest.
    """
    from jingzhun.collect.importers.mapping import load_mapping

    chosen = mapping if isinstance(mapping, Mapping) else load_mapping(mapping) if mapping else builtin_mapping(kind)
    if chosen.kind != kind:
        raise ConfigError(f"the mapping is for kind `{chosen.kind}`, not `{kind}`.", field="kind",
                          fix=f"use a mapping with `kind: {kind}`",
                          message_zh=f"映射文件的类型是 `{chosen.kind}`，不是 `{kind}`。",
                          fix_zh=f"请使用 `kind: {kind}` 的映射文件")
    builtin = builtin_mapping(kind)
    if chosen is builtin or set(builtin.fields) <= set(chosen.fields):
        return chosen
    return chosen.model_copy(update={"fields": {**builtin.fields, **chosen.fields}})


def import_file(workspace: Workspace, engine: Engine, kind: str, path: str | Path,
                mapping: Mapping | str | Path | None = None, progress: Progress | None = None,
                encoding: str | None = None) -> ImportResult:
    """Import one file of `kind`; resume an interrupted run of the same file.

    Args:
        mapping: a Mapping, a path to a mapping YAML, or None for the built-in one.
        progress: called after each committed batch with (fraction of the file done, rows stored so far).
        encoding: override the detected CSV encoding.
    """
    _kind(kind)
    path = Path(path).resolve()
    _check_file(path)
    chosen = resolve_mapping(kind, mapping)
    migrate(engine)
    fmt = readers.sniff_format(path, chosen.format)
    text = detect_encoding(path, encoding or chosen.encoding) if fmt == "csv" else None
    run = _start(engine, kind, path, chosen, text, file_sha256(path))
    started = time.perf_counter()
    if run.status == "finished":
        return _result(run, "already_imported", 0.0, {}, run.resume_row)
    plan = build_plan(workspace, engine, chosen, run)
    resumed_from, written = run.resume_row, {}
    group = chosen.source_of(chosen.group_by) if chosen.group_by else None
    batches = regroup(ahead(_batches(path, chosen, run.encoding or text, run.resume_row)), group)
    for rows_read, fraction_done, prepared in ahead(_prepared(plan, batches), plan.on_engine):
        with engine.transaction():
            outcome = store(plan, prepared)
            _record(plan, run, rows_read, outcome)
        for table, count in outcome.written.items():
            written[table] = written.get(table, 0) + count
        if progress:
            progress(fraction_done, run.rows_read)
    _finish(engine, run, plan)
    return _result(run, "finished", time.perf_counter() - started, written, resumed_from)


def _finish(engine: Engine, run: Run, plan: Plan) -> None:
    run.status, run.finished_at = "finished", now()
    with engine.transaction():
        save_run(engine, run)
    engine.drop_table(f"import_keys_{run.import_id[:12]}")
    plan.local.close()


def _result(run: Run, status: str, seconds: float, written: dict[str, int], resumed: int) -> ImportResult:
    return ImportResult(run.import_id, run.kind, run.file_path, run.encoding, status, run.rows_read,
                        run.rows_loaded, run.rows_quarantined, run.rows_duplicate, resumed, seconds, written)
