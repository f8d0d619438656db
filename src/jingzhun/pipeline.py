"""The pipeline: every stage that exists, left to right, on the chosen engine.

Each stage reads the tables of the stages before it and writes its own, so the
whole pipeline can be rebuilt from stored events and imports. Stages register
here as they are built; the parity harness runs this same list on DuckDB and on
Spark and compares every table it produces.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from jingzhun.activation.recommend import run_recommend
from jingzhun.core.errors import ConfigError
from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine
from jingzhun.identity import build_identity
from jingzhun.identity.matching import match_records
from jingzhun.measure import run_measure
from jingzhun.profiles.scores import run_scores
from jingzhun.profiles.tags import run_tags
from jingzhun.profiles.traits import run_traits
from jingzhun.schema import canonical_tables, current_version, migrate
from jingzhun.segments.audiences import run_segments


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


StepProgress = Callable[[str, int, int], None]  # (step, done, total) inside a stage


@dataclass(frozen=True)
class Stage:
    """A named step of the pipeline and the function that runs it."""

    name: str
    title_zh: str
    title_en: str
    run: Callable[[Workspace, Engine, StepProgress | None], StageResult]


def _schema_stage(workspace: Workspace, engine: Engine, progress: StepProgress | None = None) -> StageResult:
    """Bring storage to the latest schema so every later stage finds its tables."""
    started = time.perf_counter()
    applied = migrate(engine)
    counts = {table.name: engine.row_count(table.name) for table in canonical_tables()}
    notes = [Note("note.migration_applied", {"version": m.version, "name": m.name}) for m in applied]
    notes.append(Note("note.schema_version", {"version": current_version(engine)}))
    return StageResult("schema", time.perf_counter() - started, counts, notes)


def _stage(name: str, run: Callable[[Workspace, Engine, StepProgress | None], Any]) -> Callable[..., StageResult]:
    """Adapt a stage function's own result (tables written, (key, values) notes) to a StageResult."""

    def timed(workspace: Workspace, engine: Engine, progress: StepProgress | None = None) -> StageResult:
        started = time.perf_counter()
        result = run(workspace, engine, progress)
        notes = [Note(key, dict(values)) for key, values in result.notes]
        return StageResult(name, time.perf_counter() - started, dict(result.tables), notes)

    timed.__doc__ = run.__doc__
    return timed


STAGES: tuple[Stage, ...] = (
    Stage("schema", "表结构", "schema", _schema_stage),
    Stage("matching", "概率匹配", "probabilistic matching", _stage("matching", match_records)),
    Stage("identity", "身份识别 OneID", "identity (OneID)", _stage("identity", build_identity)),
    Stage("traits", "用户属性", "traits", _stage("traits", run_traits)),
    Stage("scores", "预测评分", "predictive scores", _stage("scores", run_scores)),
    Stage("tags", "标签", "tags", _stage("tags", run_tags)),
    Stage("segments", "人群", "audiences", _stage("segments", run_segments)),
    Stage("recommend", "商品推荐", "recommendations", _stage("recommend", run_recommend)),
    Stage("measure", "效果度量", "measure", _stage("measure", run_measure)),
)


def run_pipeline(
    workspace: Workspace,
    engine: Engine,
    on_stage: Callable[[Stage, int, int], None] | None = None,
    on_step: StepProgress | None = None,
    stages: Sequence[str] | None = None,
) -> list[StageResult]:
    """Run every stage in order (or only `stages`, by name, still in order).

    `on_stage(stage, index, total)` reports each stage; `on_step(step, done, total)`
    the steps inside it, so long stages show progress.
    """
    known = [stage.name for stage in STAGES]
    unknown = [name for name in stages or () if name not in known]
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f" (did you mean `{close[0]}`?)" if close else ""
        raise ConfigError(f"unknown pipeline stage `{unknown[0]}`{hint}.", field="stages",
                          fix=f"use stage names from: {', '.join(known)}",
                          message_zh=f"未知的流水线阶段 `{unknown[0]}`{hint}。",
                          fix_zh=f"阶段名称可选：{'、'.join(known)}")
    chosen = [stage for stage in STAGES if stages is None or stage.name in stages]
    results = []
    for index, stage in enumerate(chosen):
        if on_stage is not None:
            on_stage(stage, index, len(chosen))
        results.append(stage.run(workspace, engine, on_step))
    return results
