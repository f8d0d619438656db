"""Tiny collected records for identity tests: events, orders, CRM rows, written through
the engine into a migrated schema, the way the collector and importers leave them."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from jingzhun.engine import Engine
from jingzhun.schema import migrate

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
_counter = itertools.count(1)
TS = pa.timestamp("us", tz="UTC")


def _at(minutes: int | None) -> datetime:
    return T0 + timedelta(minutes=minutes if minutes is not None else next(_counter))


def prepare(engine: Engine) -> Engine:
    migrate(engine)
    return engine


def event(engine: Engine, *, type: str = "track", user_id: str | None = None,
          anonymous_id: str | None = None, device_id: str | None = None, traits: dict | None = None,
          previous_id: str | None = None, source_id: str = "src_web", message_id: str | None = None,
          minutes: int | None = None) -> str:
    """One Segment message; returns its message_id."""
    message_id = message_id or f"m{next(_counter):06d}"
    at = _at(minutes)
    row = {
        "message_id": [message_id], "type": [type], "event": ["Product Viewed" if type == "track" else None],
        "user_id": [user_id], "anonymous_id": [anonymous_id], "previous_id": [previous_id],
        "timestamp": pa.array([at], TS), "received_at": pa.array([at], TS), "source_id": [source_id],
        "context": [json.dumps({"device": {"id": device_id}}) if device_id else "{}"],
        "traits": [json.dumps(traits, ensure_ascii=False) if traits else None],
    }
    engine.write_table("events", pa.table(row), mode="append")
    return message_id


def identify(engine: Engine, user_id: str | None, anonymous_id: str, *, message_id: str | None = None,
             minutes: int | None = None, **traits: str) -> str:
    return event(engine, type="identify", user_id=user_id, anonymous_id=anonymous_id, traits=traits or None,
                 message_id=message_id, minutes=minutes)


def order(engine: Engine, order_id: str, *, ref: str | None = None, ref_type: str | None = None,
          identifiers: dict | None = None, minutes: int | None = None) -> str:
    at = _at(minutes)
    row = {
        "order_id": [order_id], "source_id": ["import:pos_sales"], "channel": ["offline"], "platform": ["pos"],
        "customer_ref": [ref], "customer_ref_type": [ref_type], "placed_at": pa.array([at], TS),
        "currency": ["CNY"], "net_amount": pa.array([100.0], pa.float64()),
        "customer_identifiers": [json.dumps(identifiers, ensure_ascii=False) if identifiers else None],
    }
    engine.write_table("orders", pa.table(row), mode="append")
    engine.write_table("order_items", pa.table({
        "order_id": [order_id], "line_no": pa.array([1], pa.int32()), "quantity": pa.array([1], pa.int32()),
    }), mode="append")
    return order_id


def crm(engine: Engine, record_id: str, kind: str = "member", source_id: str = "import:crm_members",
        minutes: int | None = None, **identifiers: str) -> str:
    at = _at(minutes)
    row = {
        "record_id": [record_id], "source_id": [source_id], "kind": [kind], "occurred_at": pa.array([at], TS),
        "identifiers": [json.dumps(identifiers, ensure_ascii=False)], "attributes": ["{}"],
        "imported_at": pa.array([at], TS),
    }
    engine.write_table("source_records", pa.table(row), mode="append")
    return record_id


def survey(engine: Engine, response_id: str, ref: str, ref_type: str) -> str:
    row = {"response_id": [response_id], "survey_id": ["s1"], "respondent_ref": [ref],
           "respondent_ref_type": [ref_type], "submitted_at": pa.array([_at(None)], TS), "answers": ["{}"]}
    engine.write_table("survey_responses", pa.table(row), mode="append")
    return response_id


def match(engine: Engine, left: tuple[str, str], right: tuple[str, str], status: str = "auto_merged",
          probability: float = 0.999, minutes: int | None = None) -> None:
    row = {"candidate_id": [f"mc-{left[1]}-{right[1]}"], "left_type": [left[0]], "left_value": [left[1]],
           "right_type": [right[0]], "right_value": [right[1]], "match_probability": [probability],
           "status": [status], "created_at": pa.array([_at(minutes)], TS)}
    engine.write_table("match_candidates", pa.table(row), mode="append")


def person_of(engine: Engine, id_type: str, id_value: str) -> str | None:
    rows = engine.query(f"SELECT person_id FROM identities WHERE id_type = '{id_type}' "
                        f"AND id_value = '{id_value}'").to_pylist()
    return rows[0]["person_id"] if rows else None


def persons_table(engine: Engine) -> list[dict]:
    return sorted(engine.query("SELECT person_id, status, merged_into FROM persons").to_pylist(),
                  key=lambda row: row["person_id"])


def changes(engine: Engine, kind: str | None = None) -> list[dict]:
    where = f"WHERE kind = '{kind}'" if kind else ""
    return engine.query(f"SELECT * FROM identity_changes {where} ORDER BY change_id").to_pylist()
