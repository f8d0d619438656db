"""Fixtures for the measure tests: a writable copy of the portrayed demo (whose pipeline ran the
measure stage over the imported message history), its planted truth, and a real collector."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jingzhun.core import Workspace, open_workspace
from jingzhun.engine import open_engine
from jingzhun.schema import migrate
from tests.conftest import copy_workspace

# What `jingzhun serve` runs after each batch, in its order, ending with the live KPIs.
HOOKS = ("jingzhun.identity.realtime:attribute_new_events", "jingzhun.activation.tracking:record_message_events",
         "jingzhun.measure.kpis:update_kpis")


@pytest.fixture
def demo(portrayed_demo: Path, tmp_path: Path) -> Workspace:
    """A private copy of the portrayed demo, at the latest schema."""
    workspace = copy_workspace(portrayed_demo, tmp_path / "ws")
    with open_engine(workspace) as engine:
        migrate(engine)
    return workspace


@pytest.fixture(scope="session")
def portrayed(portrayed_demo: Path) -> Workspace:
    """The shared portrayed demo, for reading only."""
    return open_workspace(portrayed_demo)


@pytest.fixture(scope="session")
def truth(portrayed_demo: Path) -> dict:
    return json.loads((portrayed_demo / "demo-truth" / "patterns_marketing.json").read_text(encoding="utf-8"))


