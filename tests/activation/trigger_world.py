"""A copy of the portrayed demo ready for triggered campaigns and journeys, and the rows a
test plants in it: consents, and events attributed to persons as the collector's loader
and identity's real-time hook would leave them (`events` + `record_persons`)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from jingzhun.core import Workspace
from jingzhun.engine import Engine, open_engine
from jingzhun.schema import migrate
from tests.conftest import copy_workspace

_ids = itertools.count()


@pytest.fixture(name="demo")
def demo_fixture(portrayed_demo: Path, tmp_path: Path) -> Workspace:
    """`demo`: a private, migrated copy of the portrayed demo (import `demo_fixture` into a test module)."""
    workspace = copy_workspace(portrayed_demo, tmp_path / "ws")
    with open_engine(workspace) as engine:
        migrate(engine)
    return workspace


def reachable_persons(engine: Engine, count: int, skip: int = 0) -> list[str]:
    """Active persons with a mainland mobile (SMS can reach them), in a fixed order."""
    rows = engine.query(
        "SELECT DISTINCT i.person_id FROM identities AS i JOIN persons AS p ON p.person_id = i.person_id "
        "AND p.status = 'active' WHERE i.id_type = 'phone' AND REGEXP_MATCHES(i.id_value, '^[+]861[3-9][0-9]{9}$') "
        f"ORDER BY i.person_id LIMIT {count} OFFSET {skip}").column(0).to_pylist()
    assert len(rows) == count, f"the demo has too few reachable persons ({len(rows)} < {count})"
    return rows


def grant(engine: Engine, persons: list[str], at: datetime, status: str = "granted",
          channel: str | None = None) -> None:
    """Marketing consent records (granted, or withdrawn) at `at`."""
    values = ", ".join(f"('{p}', 'marketing', {repr(channel) if channel else 'NULL'}, '{status}', "
                       f"TIMESTAMPTZ '{at.isoformat()}')" for p in persons)
    engine.execute(f"INSERT INTO consents (person_id, purpose, channel, status, recorded_at) VALUES {values}")


def add_events(engine: Engine, rows: list[tuple[str, str, datetime]]) -> pa.Table:
    """Track events (person, event name, time) as loaded and attributed; returns them as the
    batch the after-load hooks would get."""
    ids = [f"test-{next(_ids)}-{person}" for person, _, _ in rows]
    values = ", ".join(
        f"('{mid}', 'track', '{event}', TIMESTAMPTZ '{at.isoformat()}', TIMESTAMPTZ '{at.isoformat()}', "
        f"TIMESTAMPTZ '{(at + timedelta(seconds=1)).isoformat()}')"
        for mid, (_, event, at) in zip(ids, rows, strict=True))
    engine.execute("INSERT INTO events (message_id, type, event, timestamp, received_at, loaded_at) "
                   f"VALUES {values}")
    engine.execute("INSERT INTO record_persons (record_kind, record_id, person_id) VALUES " + ", ".join(
        f"('event', '{mid}', '{person}')" for mid, (person, _, _) in zip(ids, rows, strict=True)))
    listed = ", ".join(f"'{mid}'" for mid in ids)
    return engine.query(f"SELECT * FROM events WHERE message_id IN ({listed})")


def deliveries_of(engine: Engine, campaign_id: str):  # type: ignore[no-untyped-def]
    """The campaign's deliveries as a DataFrame indexed by person."""
    return engine.query(f"SELECT * FROM deliveries WHERE campaign_id = '{campaign_id}'").to_pandas()
