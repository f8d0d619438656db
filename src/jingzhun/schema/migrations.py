"""Versioned schema migrations: `jingzhun migrate` brings any older workspace forward.

Each migration is a numbered list of portable steps (create a table, add a
column) that runs on every engine. The applied versions are recorded in
`schema_migrations`, so migrating is idempotent and a workspace written by a newer
jingzhun is refused instead of being damaged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
from sqlglot import exp

from jingzhun.core.errors import SchemaError
from jingzhun.engine import Column, Engine
from jingzhun.schema import tables as t


@dataclass(frozen=True)
class CreateTable:
    """Create a canonical table (if it does not exist)."""

    table: t.TableDef

    def apply(self, engine: Engine) -> None:
        engine.create_table(self.table.name, self.table.columns)


@dataclass(frozen=True)
class AddColumn:
    """Add a nullable column to an existing table, on every engine.

    Engines without ALTER (Spark over Parquet) rewrite the table with the new
    column as NULL, which is also a new immutable version of it.
    """

    table: str
    column: Column

    def apply(self, engine: Engine) -> None:
        present = engine.query(exp.select("*").from_(self.table).limit(0)).column_names
        if self.column.name in present:
            return
        null = exp.cast(exp.null(), exp.DataType.build(self.column.type, dialect="duckdb"))
        engine.materialize(self.table, exp.select("*", null.as_(self.column.name)).from_(self.table))


Step = CreateTable | AddColumn


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    steps: tuple[Step, ...]


def _creates(*defs: t.TableDef) -> tuple[Step, ...]:
    return tuple(CreateTable(table) for table in defs)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "collected data: events, commerce, stock, surveys, benchmarks, ad spend", _creates(
        t.SOURCES, t.EVENTS, t.ORDERS, t.ORDER_ITEMS, t.PRODUCTS, t.STORES,
        t.INVENTORY_MOVEMENTS, t.STOCK_COUNTS, t.SURVEY_RESPONSES, t.BENCHMARKS,
        t.SOURCE_RECORDS, t.AD_SPEND, t.QUARANTINE,
    )),
    Migration(2, "identity graph and portraits", _creates(
        t.IDENTITIES, t.IDENTITY_LINKS, t.PERSONS, t.TRAITS, t.TAG_DEFINITIONS, t.TAGS, t.SCORES,
    )),
    Migration(3, "audiences, campaigns and outcomes", _creates(
        t.SEGMENTS, t.SEGMENT_MEMBERS, t.CAMPAIGNS, t.DELIVERIES, t.MESSAGE_EVENTS, t.EXPERIMENTS,
    )),
    Migration(4, "consent and governance", _creates(
        t.CONSENTS, t.SUPPRESSIONS, t.AUDIT_LOG, t.USERS, t.API_KEYS,
    )),
    Migration(5, "import runs and where quarantined rows came from", (
        CreateTable(t.IMPORTS),
        AddColumn("quarantine", Column("import_id", "VARCHAR", description="the import run, if from a file")),
        AddColumn("quarantine", Column("source_file", "VARCHAR", description="file the row came from")),
        AddColumn("quarantine", Column("line_no", "BIGINT", description="line or row number in that file")),
    )),
    Migration(6, "OneID: record owners, merges and splits, overrides, erasure, matches, model runs", (
        AddColumn("orders", Column("customer_identifiers", "VARCHAR",
                                   description="JSON {id_type: value}: every buyer identifier the source gave")),
        *_creates(t.RECORD_PERSONS, t.IDENTITY_CHANGES, t.IDENTITY_OVERRIDES, t.ERASED_IDENTIFIERS,
                  t.MATCH_CANDIDATES, t.MODEL_RUNS),
    )),
    Migration(7, "the portrait's serving table: typed traits, one row per person", _creates(t.PERSON_TRAITS)),
    Migration(8, "identifier values refused as evidence, with the reason", _creates(t.IDENTITY_JUNK)),
    Migration(9, "real time: identifiers bound as events arrive, live audience entries and exits",
              _creates(t.IDENTITY_LIVE_BINDINGS, t.SEGMENT_LIVE_MEMBERS)),
    Migration(10, "recommendations and related products, served", _creates(t.RECOMMENDATIONS, t.RELATED_PRODUCTS)),
    Migration(11, "personal coupon codes with validity windows", _creates(t.COUPONS)),
    Migration(12, "campaign runs, send locks, and the send state of deliveries", (
        *_creates(t.CAMPAIGN_RUNS, t.SEND_LOCKS),
        AddColumn("campaigns", Column("version", "INTEGER", description="definition version, from 1")),
        AddColumn("campaigns", Column("purpose", "VARCHAR", description="marketing | transactional")),
        AddColumn("campaigns", Column("updated_at", "TIMESTAMPTZ", description="last status change")),
        AddColumn("deliveries", Column("run_id", "VARCHAR", description="the campaign run")),
        AddColumn("deliveries", Column("purpose", "VARCHAR", description="marketing | transactional")),
        AddColumn("deliveries", Column("reason", "VARCHAR", description="why suppressed, deferred or failed")),
        AddColumn("deliveries", Column("attempts", "INTEGER", description="adapter calls so far")),
        AddColumn("deliveries", Column("cost", "DECIMAL(18, 4)", description="price of the message")),
        AddColumn("deliveries", Column("updated_at", "TIMESTAMPTZ", description="last status change")),
    )),
    Migration(13, "the receiver's name on orders (marketplaces mask it: 王**), for linking buyers to members", (
        AddColumn("orders", Column("receiver_name", "VARCHAR",
                                   description="the receiver as the order names them; masked on marketplaces")),
    )),
    Migration(14, "the server: console sessions, background jobs, who made each API key and when users log in", (
        *_creates(t.WEB_SESSIONS, t.JOBS),
        AddColumn("api_keys", Column("created_by", "VARCHAR", description="the user who created the key")),
        AddColumn("api_keys", Column("key_prefix", "VARCHAR", description="the key's first characters, to tell keys apart")),
        AddColumn("users", Column("last_login_at", "TIMESTAMPTZ", description="the last successful log-in")),
    )),
    Migration(15, "measure: imported message history, campaign KPIs, attribution, responses, send times, alerts",
              _creates(t.MESSAGE_HISTORY, t.HISTORY_DELIVERIES, t.CAMPAIGN_KPIS, t.ATTRIBUTION_CREDITS,
                       t.CHANNEL_RESPONSES, t.SEND_TIME_PREFERENCES, t.ALERT_HISTORY)),
    Migration(16, "journeys: definitions, each person's state and every move",
              _creates(t.JOURNEYS, t.JOURNEY_STATES, t.JOURNEY_TRANSITIONS)),
    Migration(17, "decisions and leads: the decision log, scored leads, assignments and outcomes",
              _creates(t.DECISIONS, t.LEADS, t.LEAD_ASSIGNMENTS, t.LEAD_OUTCOMES)),
    Migration(18, "live KPIs at scale: kept orders with their person, maintained", _creates(t.CONVERSION_ORDERS)),
)
LATEST_VERSION = MIGRATIONS[-1].version


def current_version(engine: Engine) -> int:
    """The highest migration applied to this engine's storage (0 for a new one)."""
    if not engine.table_exists(t.SCHEMA_MIGRATIONS.name):
        return 0
    result = engine.query(exp.select(exp.func("max", exp.column("version")).as_("v")).from_("schema_migrations"))
    value = result.column("v")[0].as_py()
    return int(value) if value is not None else 0


def migrate(
    engine: Engine,
    target: int = LATEST_VERSION,
    on_step: Callable[[Migration], None] | None = None,
) -> list[Migration]:
    """Apply every migration after the stored version up to `target`; return them."""
    found = current_version(engine)
    if found > LATEST_VERSION:
        raise SchemaError(
            f"this workspace's schema is version {found}, newer than this jingzhun knows ({LATEST_VERSION}).",
            fix="upgrade jingzhun (pip install -U jingzhun) before using this workspace",
            message_zh=f"此工作区的表结构版本为 {found}，比当前 jingzhun 支持的 {LATEST_VERSION} 更新。",
            fix_zh="先升级 jingzhun（pip install -U jingzhun）再使用此工作区",
        )
    engine.create_table(t.SCHEMA_MIGRATIONS.name, t.SCHEMA_MIGRATIONS.columns)
    pending = [m for m in MIGRATIONS if found < m.version <= target]
    for migration in pending:
        with engine.transaction():
            for step in migration.steps:
                step.apply(engine)
            _record(engine, migration)
        if on_step is not None:
            on_step(migration)
    return pending


def _record(engine: Engine, migration: Migration) -> None:
    row = pa.table({
        "version": pa.array([migration.version], pa.int32()),
        "name": [migration.name],
        "applied_at": pa.array([datetime.now(UTC)], pa.timestamp("us", tz="UTC")),
    })
    engine.write_table(t.SCHEMA_MIGRATIONS.name, row, mode="append")


def canonical_tables() -> list[t.TableDef]:
    """Every canonical table at the latest schema, columns added by later migrations included."""
    added: dict[str, list[Column]] = {}
    for migration in MIGRATIONS:
        for step in migration.steps:
            if isinstance(step, AddColumn):
                added.setdefault(step.table, []).append(step.column)
    return [
        t.TableDef(step.table.name, step.table.description, step.table.columns + tuple(added.get(step.table.name, ())))
        for m in MIGRATIONS for step in m.steps if isinstance(step, CreateTable)
    ]
