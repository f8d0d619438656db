"""The console under test: `jingzhun serve` on 127.0.0.1 over a copy of the portrayed demo, driven
by Debian's Chromium through Playwright (headless, no browser download).

The workspace is the web tests' (a user and an API key per role, an `ads` channel that writes
an audience file) plus an opt-out send policy: the demo records no marketing consents, and
under the default opt-in policy a campaign would leave everyone out — the test wants sends.
Every test leaves a screenshot in test-artifacts/console/ (also when it fails).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.collect.collector.conftest import free_port
from tests.web.conftest import JINGZHUN, PASSWORDS, prepared_workspace

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "console"
VIEWPORT = {"width": 1400, "height": 900}
SEND_POLICY = "consent_regime: opt_out\n"

sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():  # `make test` installs it (the chromium target)
    pytest.skip(f"{CHROMIUM} is not installed (make chromium)", allow_module_level=True)


@dataclass
class Console:
    """The running server: its address, workspace and API keys per role."""

    url: str
    keys: dict[str, str]
    root: Path

    def api(self, method: str, path: str, role: str = "admin", **options: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.keys[role]}", "Accept-Language": "en"}
        return httpx.request(method, f"{self.url}/api/v1{path}", headers=headers, timeout=120, **options)


@pytest.fixture(scope="session")
def console(portrayed_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    workspace, keys = prepared_workspace(portrayed_demo, tmp_path_factory.mktemp("console"))
    (workspace.definitions_dir / "send_policy.yaml").write_text(SEND_POLICY, encoding="utf-8")
    port = free_port()
    log = (workspace.root / "serve.log").open("ab")
    process = subprocess.Popen([JINGZHUN, "serve", "-w", str(workspace.root), "--port", str(port)],
                               env={**os.environ, "JINGZHUN_LANG": "en"}, stdout=log, stderr=log)
    server = Console(f"http://127.0.0.1:{port}", keys, workspace.root)
    deadline = time.monotonic() + 60
    while True:  # ready when the engine process answers an API call
        try:
            if server.api("GET", "/auth/me").status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline and process.poll() is None, (workspace.root / "serve.log").read_text()
        time.sleep(0.2)
    yield server
    process.send_signal(signal.SIGTERM)
    process.wait(120)
    log.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


def log_in(page: object, url: str, role: str, lang: str = "zh") -> None:
    """The real log-in form, as a person fills it."""
    page.goto(f"{url}/login?lang={lang}")
    page.fill("#username", role)
    page.fill("#password", PASSWORDS[role])
    page.click("#login-submit")
    page.wait_for_url(f"{url}/")


@pytest.fixture(scope="session")
def sessions(console: Console, browser: object, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A logged-in browser state per role (cookies), so each test starts logged in."""
    folder = tmp_path_factory.mktemp("console-sessions")
    found = {}
    for role in ("admin", "marketer", "viewer"):
        context = browser.new_context(viewport=VIEWPORT)
        log_in(context.new_page(), console.url, role)
        found[role] = folder / f"{role}.json"
        context.storage_state(path=str(found[role]))
        context.close()
    return found


@dataclass
class Tab:
    """One browser tab on the console, with every request it made and every error it logged."""

    page: object
    url: str
    requests: list[str]
    errors: list[str]

    def open(self, hash_route: str) -> None:
        self.page.goto(f"{self.url}/#{hash_route}")

    def shot(self, name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


def _tab(browser: object, console: Console, request: pytest.FixtureRequest, state: Path | None) -> Iterator[Tab]:
    context = browser.new_context(viewport=VIEWPORT, storage_state=str(state) if state else None,
                                  locale="zh-CN", timezone_id="Asia/Shanghai")
    context.set_default_timeout(30_000)
    page = context.new_page()
    tab = Tab(page, console.url, [], [])
    page.on("request", lambda r: tab.requests.append(r.url))
    page.on("pageerror", lambda error: tab.errors.append(str(error)))
    yield tab
    tab.shot(request.node.name)  # the test's artifact, pass or fail
    context.close()


@pytest.fixture
def admin_tab(browser: object, console: Console, sessions: dict[str, Path], request: pytest.FixtureRequest
              ) -> Iterator[Tab]:
    yield from _tab(browser, console, request, sessions["admin"])


@pytest.fixture
def marketer_tab(browser: object, console: Console, sessions: dict[str, Path], request: pytest.FixtureRequest
                 ) -> Iterator[Tab]:
    yield from _tab(browser, console, request, sessions["marketer"])


@pytest.fixture
def viewer_tab(browser: object, console: Console, sessions: dict[str, Path], request: pytest.FixtureRequest
               ) -> Iterator[Tab]:
    yield from _tab(browser, console, request, sessions["viewer"])


@pytest.fixture
def fresh_tab(browser: object, console: Console, request: pytest.FixtureRequest) -> Iterator[Tab]:
    """A tab that has not logged in."""
    yield from _tab(browser, console, request, None)
