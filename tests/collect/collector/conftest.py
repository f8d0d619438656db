"""Helpers for the collector tests: a workspace with sources and a real server process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from jingzhun.collect.collector import add_source, create_app
from jingzhun.core import Workspace
from jingzhun.engine import open_engine
from jingzhun.schema import migrate

JINGZHUN = str(Path(sys.executable).with_name("jingzhun"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    """A `jingzhun serve` process on 127.0.0.1."""

    workspace: Workspace
    port: int
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        env = {**os.environ, "JINGZHUN_LANG": "en"}
        self.stderr = self.workspace.root / "serve.stderr"  # a file: a full pipe would block the server
        with self.stderr.open("ab") as sink:
            self.process = subprocess.Popen(
                [JINGZHUN, "serve", "--workspace", str(self.workspace.root), "--port", str(self.port)],
                env=env, stdout=subprocess.DEVNULL, stderr=sink)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.stderr.read_text()}")

    def health(self) -> dict:
        return httpx.get(f"{self.url}/health", timeout=5).json()

    def stop(self) -> None:
        """Graceful stop: SIGTERM lets the loader drain the log into `events`."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)


@contextmanager
def serving(workspace: Workspace, **options: object) -> Iterator[str]:
    """The collector app (`create_app(workspace, **options)`) under uvicorn on 127.0.0.1, in a
    thread of this process; leaving stops it gracefully (the loader drains the log)."""
    app = create_app(workspace, load_interval=0.05, **options)  # type: ignore[arg-type]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the collector did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(120)


@pytest.fixture
def keyed_workspace(workspace: Workspace) -> tuple[Workspace, dict[str, str]]:
    """A workspace with a web, an app and a server source; returns their write keys."""
    keys = {}
    with open_engine(workspace) as engine:
        migrate(engine)
        for kind in ("web", "app", "server"):
            _, keys[kind] = add_source(engine, f"{kind}-source", kind)
    return workspace, keys


@pytest.fixture
def server(keyed_workspace: tuple[Workspace, dict[str, str]]) -> Iterator[Server]:
    running = Server(keyed_workspace[0], free_port())
    yield running
    if running.process and running.process.poll() is None:
        running.kill()
