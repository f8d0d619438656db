"""The pipeline: every stage that exists, left to right, on the chosen engine.

Each stage reads the tables of the stages before it and writes its own, so the
whole pipeline can be rebuilt from stored events and imports. Stages register
here as they are built; the parity harness runs this same list on DuckDB and on
Spark and compares every table it produces.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine
from jingzhun.schema import canonical_tables, current_version, migrate


@dataclass(frozen=True)
class Note:
    """Something a stage reports, as an i18n message key and its values."""

    key: str
    values: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class StageResult:
    """What one stage did: the tables it wrote and their row counts."""

    stage: str
    seconds: float
    tables: dict[str, int] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)


@dataclass(frozen=True)
class Stage:
    """A named step of the pipeline and the function that runs it."""

    name: str
    title_zh: str
    title_en: str
    run: Callable[[Workspace, Engine], StageResult]


def _schema_stage(workspace: Workspace, engine: Engine) -> StageResult:
    """Bring storage to the latest schema so every later stage finds its tables."""
    started = time.perf_counter()
    applied = migrate(engine)
    counts = {table.name: engine.row_count(table.name) for table in canonical_tables()}
    notes = [Note("note.migration_applied", {"version": m.version, "name": m.name}) for m in applied]
    notes.append(Note("note.schema_version", {"version": current_version(engine)}))
    return StageResult("schema", time.perf_counter() - started, counts, notes)


STAGES: tuple[Stage, ...] = (
    Stage("schema", "表结构", "schema", _schema_stage),
)


def run_pipeline(
    workspace: Workspace,
    engine: Engine,
    on_stage: Callable[[Stage, int, int], None] | None = None,
) -> list[StageResult]:
    """Run every stage in order; `on_stage(stage, index, total)` reports progress."""
    results = []
    for index, stage in enumerate(STAGES):
        if on_stage is not None:
            on_stage(stage, index, len(STAGES))
        results.append(stage.run(workspace, engine))
    return results
