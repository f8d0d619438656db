"""The console under test: `jingzhun serve` on 127.0.0.1 over a copy of the portrayed demo (the
web tests' shared `live_server`: a user and an API key per role, an `ads` channel that writes an
audience file, an opt-out send policy so a campaign has someone to send to), driven by Debian's
Chromium through Playwright (headless, no browser download).

Every test leaves a screenshot in test-artifacts/console/ (also when it fails).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.web.conftest import PASSWORDS, LiveServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "console"
VIEWPORT = {"width": 1400, "height": 900}



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
def console(live_server: LiveServer) -> Console:
    return Console(live_server.url, live_server.keys, live_server.workspace.root)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Debian's Chromium under Playwright; the tests that need it skip where it is missing (the
    console's API and message tests need no browser)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():  # `make test` installs it (the chromium target)
        pytest.skip(f"{CHROMIUM} is not installed (make chromium)")
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
