"""The server under test: a copy of the portrayed demo with a user and an API key per role.

`api` is the app under `TestClient` (its lifespan starts the real engine process, which
owns the real DuckDB file); `live_server` is `jingzhun serve` itself, a uvicorn process on
127.0.0.1, on its own copy, shared by the server, schemathesis and console tests. Both live for
the whole session: starting `jingzhun serve` costs 10-20 s on a busy 2-core machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from jingzhun.core import Workspace
from jingzhun.engine import open_engine
from jingzhun.schema import migrate
from jingzhun.web import create_api_key, create_app, create_user
from tests.collect.collector.conftest import free_port
from tests.conftest import copy_workspace

ROLES = ("admin", "marketer", "analyst", "viewer")
PASSWORDS = {role: f"{role}-pass-2026!" for role in ROLES}
JINGZHUN = str(Path(sys.executable).with_name("jingzhun"))
# The demo's send-to-file channel: a campaign run writes an ad-audience file, no server needed.
DELIVERY = "channels:\n  ads: {adapter: file, folder: exports, hashes: [sha256]}\n"
# The live server's send policy: the demo records no marketing consents, and under the default
# opt-in policy a campaign launched in the console would leave everyone out.
SEND_POLICY = "consent_regime: opt_out\n"


def prepared_workspace(portrayed_demo: Path, folder: Path) -> tuple[Workspace, dict[str, str]]:
    """A writable copy of the demo with one user and one API key per role; returns the keys."""
    workspace = copy_workspace(portrayed_demo, folder / "ws")
    (workspace.definitions_dir / "delivery.yaml").write_text(DELIVERY, encoding="utf-8")
    with open_engine(workspace) as engine:
        migrate(engine)
        keys = {}
        for role in ROLES:
            create_user(engine, role, role, PASSWORDS[role], f"Test {role}")
            keys[role] = create_api_key(engine, f"{role}-key", role)[1]
    return workspace, keys


@dataclass
class Api:
    """The app under TestClient, with credentials per role."""

    workspace: Workspace
    client: TestClient
    keys: dict[str, str]
    sessions: dict[str, tuple[str, str]] = field(default_factory=dict)  # role → (cookie, csrf)

    def key(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}", "Accept-Language": "en"}

    def session(self, role: str) -> dict[str, str]:
        """Headers of a logged-in browser: the session cookie and the CSRF token."""
        if role not in self.sessions:
            answer = self.client.post("/api/v1/auth/login", json={"username": role, "password": PASSWORDS[role]})
            assert answer.status_code == 200, answer.text
            self.sessions[role] = (answer.cookies["jz_session"], answer.json()["csrf_token"])
            self.client.cookies.clear()  # each request names its session itself
        cookie, csrf = self.sessions[role]
        return {"Cookie": f"jz_session={cookie}", "X-CSRF-Token": csrf, "Accept-Language": "en"}

    def get(self, path: str, role: str = "admin", **options: object) -> httpx.Response:
        return self.client.get(path, headers=self.key(role), **options)

    def post(self, path: str, role: str = "admin", **options: object) -> httpx.Response:
        return self.client.post(path, headers=self.key(role), **options)

    def wait_job(self, job: dict, seconds: float = 120) -> dict:
        deadline = time.monotonic() + seconds
        while True:
            state = self.get(f"/api/v1/jobs/{job['job_id']}").json()
            if state["status"] != "running" or time.monotonic() > deadline:
                return state
            time.sleep(0.2)


@pytest.fixture(scope="session")
def api(portrayed_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    workspace, keys = prepared_workspace(portrayed_demo, tmp_path_factory.mktemp("web-api"))
    with TestClient(create_app(workspace, load_interval=0.05)) as client:
        yield Api(workspace, client, keys)


@dataclass
class LiveServer:
    """`jingzhun serve` on 127.0.0.1."""

    workspace: Workspace
    keys: dict[str, str]
    url: str
    process: subprocess.Popen

    def headers(self, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}", "Accept-Language": "en"}


@pytest.fixture(scope="session")
def live_server(portrayed_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workspace, keys = prepared_workspace(portrayed_demo, tmp_path_factory.mktemp("web-live"))
    (workspace.definitions_dir / "send_policy.yaml").write_text(SEND_POLICY, encoding="utf-8")
    port = free_port()
    log = (workspace.root / "serve.log").open("ab")
    process = subprocess.Popen([JINGZHUN, "serve", "-w", str(workspace.root), "--port", str(port)],
                               env={**os.environ, "JINGZHUN_LANG": "en"}, stdout=log, stderr=log)
    server = LiveServer(workspace, keys, f"http://127.0.0.1:{port}", process)
    deadline = time.monotonic() + 60
    while True:  # ready when the engine process answers an API call
        try:
            if httpx.get(f"{server.url}/api/v1/auth/me", headers=server.headers(), timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline and process.poll() is None, (workspace.root / "serve.log").read_text()
        time.sleep(0.2)
    yield server
    process.send_signal(signal.SIGTERM)
    process.wait(120)
    log.close()
