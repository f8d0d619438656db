"""`build_identity`: the identify stage, from collected records to persons, in SQL.

    observations ──► junk ──► links ──► components (with limits) ──► stable person ids
        ──► identities, identity_links, persons, record_persons, identity_changes

Every step is SQL the engine runs (DuckDB or Spark) over named tables; the only Python
loops are over connected-component rounds and link tiers. Intermediate tables are
named `identity_work_*` and dropped at the end; `identity_junk` stays, listing every
value treated as junk and why. See docs/identity.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa

from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine
from jingzhun.identity import links as L
from jingzhun.identity.components import TYPES, ComponentsResult, resolve_limits
from jingzhun.identity.config import IdentityConfig, load_identity_config
from jingzhun.identity.erasure import ERASED_RECORDS, erased_nodes_sql, purge_erased_records
from jingzhun.identity.identifiers import NormalizeSettings
from jingzhun.identity.observations import (
    EVENT_TUPLES,
    OBSERVATIONS,
    ObservationPlan,
    event_tuples_sql,
    observations_sql,
    unknown_types_sql,
)
from jingzhun.identity.persons import assign_person_ids, write_outputs
from jingzhun.identity.registry import Registry
from jingzhun.identity.tables import (
    count_rows,
    drop_work_tables,
    follow_merges,
    materialize,
    require_tables,
    utc_now,
)

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]
STEPS = ("observations", "junk", "links", "components", "persons", "write")


@dataclass
class IdentityResult:
    """What the identity stage did: rows written per table and notes for the summary."""

    seconds: float = 0.0
    tables: dict[str, int] = field(default_factory=dict)
    notes: list[tuple[str, dict[str, object]]] = field(default_factory=list)


def salt_hex(workspace: Workspace | None) -> str | None:
    """The workspace's PII salt as hex, or None when it has none."""
    if workspace is None:
        return None
    path = workspace.resolve(workspace.config.pii.salt_file)
    return path.read_bytes().hex() if path.is_file() else None


def normalize_settings(workspace: Workspace | None) -> NormalizeSettings:
    """Normalization settings from the workspace's PII policy."""
    if workspace is None:
        return NormalizeSettings()
    salted = workspace.config.pii.mode == "salted_hash"
    return NormalizeSettings(workspace.config.pii.default_country_code, salt_hex(workspace) if salted else None)


def types_table(registry: Registry) -> pa.Table:
    """The registry as rows, so SQL can join id types to their rules."""
    kinds = registry.types
    return pa.table({
        "id_type": [k.name for k in kinds],
        "strength": [k.strength for k in kinds],
        "priority": pa.array([k.priority for k in kinds], pa.int32()),
        "max_per_person": pa.array([k.max_per_person for k in kinds], pa.int32()),
        "links": [k.links for k in kinds],
        "pii": [k.pii for k in kinds],
    })


def observation_plan(engine: Engine, config: IdentityConfig, settings: NormalizeSettings) -> ObservationPlan:
    """Resolve per-source settings (by source name or id) to source ids."""
    names = engine.query("SELECT source_id, name FROM sources").to_pylist() if engine.table_exists("sources") else []
    by_name = {row["name"]: row["source_id"] for row in names}
    users, anons = {}, {}
    for key, source in config.sources.items():
        source_id = by_name.get(key, key)
        users[source_id] = source.user_id_type
        anons[source_id] = source.anonymous_id_type
    return ObservationPlan(config.registry(), settings, config, users, anons)


def build_identity(workspace: Workspace, engine: Engine, progress: Progress | None = None) -> IdentityResult:
    """Rebuild the ID graph and every identity table from the collected records.

    Args:
        workspace: supplies definitions/identity.yaml, the PII policy and the salt.
        engine: where the canonical tables are (DuckDB or Spark).
        progress: called as progress(step, index, total) before each step.

    Returns:
        Rows written per table and notes (junk values, conflicts, merges, splits).
    """
    started = time.perf_counter()
    require_tables(engine)
    config = load_identity_config(workspace)
    settings = normalize_settings(workspace)
    plan = observation_plan(engine, config, settings)
    now, salt = utc_now(), salt_hex(workspace)
    result = IdentityResult()

    def step(name: str) -> None:
        log.info("identity: %s", name)
        if progress is not None:
            progress(name, STEPS.index(name), len(STEPS))

    try:
        step("observations")
        _observations(engine, plan, salt, result)
        step("junk")
        _junk(engine, config, plan, result)
        step("links")
        _links(engine, config, plan)
        step("components")
        graph = resolve_limits(engine, config.max_rounds)
        if graph.dropped_links:
            materialize(engine, L.LINKS, L.mark_dropped_sql())
        step("persons")
        assign_person_ids(engine, salt)
        step("write")
        result.tables.update(write_outputs(engine, plan, now))
        if result.tables.get("identity_changes"):
            result.tables.update(follow_merges(engine))
        _summary_notes(engine, graph, result)
    finally:
        drop_work_tables(engine)
    result.seconds = time.perf_counter() - started
    return result


def _observations(engine: Engine, plan: ObservationPlan, salt: str | None, result: IdentityResult) -> None:
    engine.write_table(TYPES, types_table(plan.registry), mode="replace")
    materialize(engine, EVENT_TUPLES, event_tuples_sql(plan))
    materialize(engine, OBSERVATIONS, observations_sql(plan))
    materialize(engine, L.ERASED, erased_nodes_sql(engine, salt))
    if engine.row_count(L.ERASED):
        purged = purge_erased_records(engine, plan)
        result.notes.append(("note.identity_erased_purged", {"count": sum(purged.values())}))
        materialize(engine, OBSERVATIONS, f"SELECT o.* FROM {OBSERVATIONS} AS o ANTI JOIN {ERASED_RECORDS} AS x "
                                         "ON x.record_kind = o.record_kind AND x.record_id = o.record_id")
    unknown = engine.query(unknown_types_sql(plan.registry)).to_pylist()
    for row in unknown:
        result.notes.append(("note.identity_unknown_type", {"id_type": row["id_type"], "records": row["records"]}))


def _junk(engine: Engine, config: IdentityConfig, plan: ObservationPlan, result: IdentityResult) -> None:
    materialize(engine, L.DECLARED_JUNK, L.declared_junk_sql(config, plan.registry, plan.settings))
    materialize(engine, L.JUNK, L.junk_sql(config))
    counts = engine.query(f"SELECT reason, COUNT(*) AS n FROM {L.JUNK} GROUP BY reason ORDER BY reason")
    for row in counts.to_pylist():
        result.notes.append(("note.identity_junk", {"reason": row["reason"], "count": row["n"]}))


def _links(engine: Engine, config: IdentityConfig, plan: ObservationPlan) -> None:
    materialize(engine, L.SEEN, L.seen_sql())
    materialize(engine, L.CENTERS, L.centers_sql())
    overrides = materialize(engine, L.OVERRIDES, L.overrides_sql()).row_count() > 0
    hashes = L.has_hashed_observations(engine)
    materialize(engine, L.LINKS, L.all_links_sql(hashes, overrides, config, plan.registry, plan.settings))
    L.graph_inputs(engine)


def _summary_notes(engine: Engine, graph: ComponentsResult, result: IdentityResult) -> None:
    active = count_rows(engine, "SELECT 1 FROM persons WHERE status = 'active'")
    result.notes.append(("note.identity_persons", {"active": active, "identifiers": result.tables.get("identities", 0)}))
    if graph.invalid_components:
        result.notes.append(("note.identity_conflicts", {"components": graph.invalid_components,
                                                    "dropped_links": graph.dropped_links}))
    changes = result.tables.get("identity_changes", 0)
    if changes:
        result.notes.append(("note.identity_changes", {"count": changes}))
    result.notes.append(("note.identity_rounds", {"rounds": graph.rounds}))
