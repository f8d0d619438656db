"""Fixtures for the measure tests: a writable copy of the portrayed demo (whose pipeline ran the
measure stage over the imported message history), its planted truth, and a real collector."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import pytest

from jingzhun.collect.collector import create_app
from jingzhun.core import Workspace, open_workspace
from jingzhun.engine import open_engine
from jingzhun.schema import migrate
from tests.activation.campaign_fixtures import wait_for
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


class Collector:
    """The collector app under uvicorn in a thread: a real HTTP server on 127.0.0.1 whose
    loader process runs `hooks` after each batch."""

    def __init__(self, workspace: Workspace, port: int, hooks: tuple[str, ...] = HOOKS) -> None:
        import uvicorn

        app = create_app(workspace, after_load=list(hooks))
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> Collector:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=120)
        return self

    def health(self) -> dict:
        return httpx.get(f"{self.url}/health", timeout=5).json()

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True  # the lifespan drains the log into `events`, hooks included
        self.thread.join(120)
