"""A small hand-made world where each person trips exactly one rule of the send policy.

Written through `Engine.write_table`, so the same rows load into DuckDB and Spark for the
parity test. `EXPECTED` is what the policy must decide for a marketing SMS at `NOW`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pyarrow as pa

from jingzhun.engine import Engine
from jingzhun.schema import canonical_tables

NOW = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
DAY = timedelta(days=1)
SEGMENT = "policy_people"
TABLES = ("persons", "identities", "consents", "suppressions", "deliveries", "segment_members")

# person: (phone, email, what they are here for)
PEOPLE = {
    "P01": ("+8613800000001", "p01@example.com", "granted, reachable"),
    "P02": ("+8613800000002", None, "no consent record"),
    "P03": ("+8613800000003", "p03@example.com", "granted, then withdrew SMS"),
    "P04": ("+8613800000004", None, "granted, phone on the suppression list"),
    "P05": (None, None, "granted, no phone"),
    "P06": ("+8613800000006", None, "granted, two marketing SMS this week"),
    "P07": ("+8613800000007", None, "granted, two marketing SMS over a week ago"),
    "P08": ("+8613800000008", None, "granted, one marketing and one transactional SMS this week"),
    "P09": ("+8612345", None, "granted, a phone that is no mobile number"),
    "P10": ("+8613800000010", None, "granted, withdrew, granted again"),
    "P11": ("+8613800000011", None, "granted, suppressed as a person for SMS"),
    "P12": ("+8613800000012", None, "merged into P01: not in any audience"),
    "P13": ("+8613800000013", None, "granted; a withdrawal recorded after now"),
    "P14": ("+8613800000014", None, "granted; a suppression that expired"),
}

EXPECTED_SMS = {  # person → (status, reason) for a marketing SMS, opt-in, no holdout
    "P01": ("queued", None), "P02": ("suppressed", "no_consent"), "P03": ("suppressed", "no_consent"),
    "P04": ("suppressed", "suppressed"), "P05": ("suppressed", "unreachable"),
    "P06": ("suppressed", "frequency_cap"), "P07": ("queued", None), "P08": ("queued", None),
    "P09": ("suppressed", "unreachable"), "P10": ("queued", None), "P11": ("suppressed", "suppressed"),
    "P13": ("queued", None), "P14": ("queued", None),
}


def _schema(name: str) -> pa.Schema:
    kinds = {"VARCHAR": pa.string(), "INTEGER": pa.int32(), "BIGINT": pa.int64(), "DOUBLE": pa.float64(),
             "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"), "DATE": pa.date32(), "BOOLEAN": pa.bool_()}
    table = next(t for t in canonical_tables() if t.name == name)
    fields = []
    for column in table.columns:
        base = column.type.split("(")[0]
        fields.append((column.name, pa.decimal128(18, 4) if base == "DECIMAL" else kinds[base]))
    return pa.schema(fields)


def _rows(name: str, rows: list[dict]) -> pa.Table:
    schema = _schema(name)
    return pa.Table.from_pylist([{field: row.get(field) for field in schema.names} for row in rows], schema=schema)


def load_policy_world(engine: Engine) -> None:
    """Write the six tables the policy reads (replacing them)."""
    persons = [{"person_id": p, "status": "merged" if p == "P12" else "active", "created_at": NOW - 100 * DAY,
                "merged_into": "P01" if p == "P12" else None} for p in PEOPLE]
    identities = [{"id_type": kind, "id_value": value, "person_id": p, "strength": "strong"}
                  for p, (phone, mail, _) in PEOPLE.items() for kind, value in (("phone", phone), ("email", mail))
                  if value]
    granted = [p for p in PEOPLE if p != "P02"]
    consents = [{"person_id": p, "purpose": "marketing", "channel": None, "status": "granted",
                 "recorded_at": NOW - 30 * DAY} for p in granted]
    consents += [
        {"person_id": "P03", "purpose": "marketing", "channel": "sms", "status": "withdrawn", "recorded_at": NOW - 2 * DAY},
        {"person_id": "P10", "purpose": "marketing", "channel": None, "status": "withdrawn", "recorded_at": NOW - 20 * DAY},
        {"person_id": "P10", "purpose": "marketing", "channel": "sms", "status": "granted", "recorded_at": NOW - 10 * DAY},
        {"person_id": "P13", "purpose": "marketing", "channel": None, "status": "withdrawn", "recorded_at": NOW + DAY},
        {"person_id": "P08", "purpose": "transactional", "channel": "sms", "status": "withdrawn",
         "recorded_at": NOW - DAY},
    ]
    suppressions = [
        {"id_type": "phone", "id_value": PEOPLE["P04"][0], "channel": None, "reason": "complaint",
         "created_at": NOW - 5 * DAY},
        {"id_type": "person_id", "id_value": "P11", "channel": "sms", "reason": "unsubscribed", "created_at": NOW - DAY},
        {"id_type": "phone", "id_value": PEOPLE["P14"][0], "channel": "sms", "reason": "bounce",
         "created_at": NOW - 40 * DAY, "expires_at": NOW - 10 * DAY},
    ]
    sends = [("P06", 1, "marketing"), ("P06", 3, "marketing"), ("P07", 8, "marketing"), ("P07", 9, "marketing"),
             ("P08", 2, "marketing"), ("P08", 1, "transactional")]
    deliveries = [{"delivery_id": f"old{i}", "campaign_id": "earlier", "person_id": p, "channel": "sms",
                   "status": "sent", "sent_at": NOW - days * DAY, "scheduled_at": NOW - days * DAY,
                   "purpose": purpose} for i, (p, days, purpose) in enumerate(sends)]
    members = [{"segment_id": SEGMENT, "person_id": p, "snapshot_date": date(2026, 10, 31), "entered_at": NOW - DAY}
               for p in PEOPLE]
    for name, rows in (("persons", persons), ("identities", identities), ("consents", consents),
                       ("suppressions", suppressions), ("deliveries", deliveries), ("segment_members", members)):
        engine.write_table(name, _rows(name, rows), mode="replace")
