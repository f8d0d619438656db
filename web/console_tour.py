"""Screenshots for docs/console.md: the console tour, page by page.

    make demo            # the demo workspace (stop its server with Ctrl-C once it is built)
    make console-tour    # writes docs/images/console/*.png

The demo is left as it is: the tour copies the workspace, gives the copy an ad-audience file
channel and an opt-out send policy (the demo records no marketing consents, so under the
default opt-in policy a campaign would send to no one) and a user `tour`, serves the copy with
`jingzhun serve` on a free port, and drives the console in Debian's Chromium (Playwright, no
browser download) as a marketer would: look a customer up by phone, size an audience while
editing its rule, launch a campaign and read its results, switch language. Each page is saved
1280 wide, its top 1,500 pixels at most, as a 256-colour palette PNG (the console is flat
colours and text: the palette changes nothing visible and makes each file a fraction).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from PIL import Image
from playwright.sync_api import Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
WIDTH, HEIGHT, MAX_HEIGHT = 1280, 800, 1500
OUT = Path(__file__).resolve().parents[1] / "docs" / "images" / "console"
JINGZHUN = str(Path(sys.executable).with_name("jingzhun"))
SETTINGS = {"delivery.yaml": "channels:\n  ads: {adapter: file, folder: exports, hashes: [sha256]}\n",
            "send_policy.yaml": "consent_regime: opt_out\n"}


def tour_copy(workspace: Path, folder: Path, password: str) -> Path:
    """The demo's configuration and database copied (its source files linked), with the tour's
    channel, policy and user."""
    copy = folder / "ws"
    shutil.copytree(workspace, copy, ignore=shutil.ignore_patterns("data", "demo-truth", "log", "*.log"))
    for linked in ("data", "demo-truth"):
        if (workspace / linked).exists():
            (copy / linked).symlink_to((workspace / linked).resolve())
    for name, text in SETTINGS.items():
        (copy / "definitions" / name).write_text(text, encoding="utf-8")
    subprocess.run([JINGZHUN, "user", "add", "tour", "--role", "admin", "--password-stdin", "-w", str(copy)],
                   input=password + "\n", text=True, check=True, capture_output=True)
    return copy


@contextmanager
def serving(workspace: Path) -> Iterator[str]:
    """`jingzhun serve` on a free port of 127.0.0.1 until the tour ends."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with (workspace / "serve.log").open("ab") as log:
        server = subprocess.Popen([JINGZHUN, "serve", "-w", str(workspace), "--port", str(port)], stdout=log,
                                  stderr=log)
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"jingzhun serve did not start: {workspace / 'serve.log'}")
                time.sleep(0.5)
            yield url
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(120)


def save(page: Page, name: str, out: Path) -> None:
    """The page's top MAX_HEIGHT pixels at full width, as a palette PNG."""
    path = out / f"{name}.png"
    height = min(MAX_HEIGHT, page.evaluate("document.documentElement.scrollHeight"))
    page.screenshot(path=str(path), full_page=True, clip={"x": 0, "y": 0, "width": WIDTH, "height": height})
    image = Image.open(path).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    image.save(path, optimize=True)
    sys.stdout.write(f"{path}  {path.stat().st_size // 1024} KB\n")


def settle(page: Page, ready: str) -> None:
    """Wait for the page's data, then for the charts' entry animations to end."""
    page.wait_for_selector(ready, timeout=180_000)
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(1200)


def sql(page: Page, url: str, query: str) -> list[dict]:
    """A read through the API's SQL endpoint with the page's own session."""
    token = page.get_attribute('meta[name="csrf-token"]', "content")
    answer = page.context.request.post(f"{url}/api/v1/sql", data={"query": query}, headers={"X-CSRF-Token": token})
    return answer.json()["items"]


def look_up_by_phone(page: Page, url: str, shot: Callable[..., None]) -> None:
    """A member of the win-back audience with a name and a phone, found by the bare mobile number."""
    phone = sql(page, url, "SELECT MIN(i.id_value) AS phone FROM identities AS i JOIN person_traits AS p "
                           "USING (person_id) JOIN segment_members AS m USING (person_id) WHERE i.id_type = 'phone' "
                           "AND p.name IS NOT NULL AND m.segment_id = 'valuable_at_risk'")[0]["phone"]
    page.goto(f"{url}/#persons")
    page.fill("#person-search", phone.removeprefix("+86"))
    page.click("#person-search-submit")
    shot(None, "#person-timeline tbody tr", "person-360")


def build_an_audience(page: Page, url: str, shot: Callable[..., None]) -> None:
    """The builder starts with `gender = F`; adding `tag repeat_buyer` resizes it."""
    page.goto(f"{url}/#audiences/new")
    page.wait_for_selector("#audience-preview[data-size]")
    page.select_option("#rule-editor .adder", "tag")
    page.select_option("#rule-editor .kind-tag select.tag-name", "repeat_buyer")
    page.wait_for_timeout(1000)  # the preview asks again 400 ms after the last change
    shot(None, "#audience-preview:not(.busy)[data-size]", "audience-builder")


def launch_a_campaign(page: Page, url: str, shot: Callable[..., None]) -> None:
    """Win back valuable customers on the ads channel with a 20% holdout, then its results."""
    page.goto(f"{url}/#campaigns/new?audience=valuable_at_risk")
    page.wait_for_selector("#campaign-id")
    page.fill("#campaign-id", "spring_winback")
    page.fill("#campaign-name-zh", "春季高价值召回")
    page.fill("#campaign-name-en", "Spring win-back")
    page.select_option("#campaign-template", "personal_picks")
    page.check("#campaign-channels input[value=ads]")
    page.fill("#campaign-holdout", "20")
    shot(None, "#campaign-create", "campaign-new")
    page.click("#campaign-create")
    page.wait_for_selector("#campaign-launch")
    page.click("#campaign-launch")
    page.wait_for_selector("#campaign-run-status:has-text('已执行')", timeout=300_000)
    shot(None, "#campaign-verdict, #campaign-no-lift", "campaign-results")


def tour(page: Page, url: str, out: Path) -> None:
    def shot(route: str | None, ready: str, name: str) -> None:
        if route is not None:
            page.goto(f"{url}/#{route}")
        settle(page, ready)
        save(page, name, out)

    shot("overview", "#overview-kpis .kpi-value", "overview")
    look_up_by_phone(page, url, shot)
    shot("tags/repeat_buyer", "#tag-holders tbody tr", "tags")
    build_an_audience(page, url, shot)
    page.goto(f"{url}/#audiences")
    page.wait_for_selector("#overlap-run")
    page.click("#overlap-run")
    shot(None, "#overlap-result canvas", "audiences")
    shot("audiences/valuable_at_risk", "#audience-members tbody tr", "audience")
    shot("analytics/cube", "#analysis-result table", "analytics-cube")
    shot("analytics/funnel", "#analysis-result canvas", "analytics-funnel")
    shot("analytics/fans-vs-buyers", "#analysis-result table", "analytics-fans-vs-buyers")
    launch_a_campaign(page, url, shot)
    shot("measurement/lift", "#measure-lift table", "measurement-lift")
    shot("measurement/attribution", "#measure-attribution table", "measurement-attribution")
    shot("measurement/budget", "#measure-budget table", "measurement-budget")
    shot("data/imports", "#data-imports tbody tr", "data-imports")
    shot("data/quality", "#data-quality table", "data-quality")
    page.click("#lang-switch")  # English from here on, kept in the jz_lang cookie
    shot("overview", "#overview-kpis .kpi-value", "overview-en")
    page.click("#lang-switch")
    page.goto(f"{url}/docs")
    shot(None, ".swagger-ui .opblock", "api-docs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", type=Path, default=Path("demo-workspace"))
    parser.add_argument("--out", type=Path, default=OUT)
    options = parser.parse_args()
    options.out.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(12)
    with tempfile.TemporaryDirectory(prefix="console-tour-") as folder:
        copy = tour_copy(options.workspace, Path(folder), password)
        with serving(copy) as url, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}, locale="zh-CN",
                                          timezone_id="Asia/Shanghai")
            context.set_default_timeout(120_000)
            page = context.new_page()
            page.goto(f"{url}/login?lang=zh")
            page.fill("#username", "tour")
            page.fill("#password", password)
            save(page, "login", options.out)
            page.click("#login-submit")
            page.wait_for_url(f"{url}/")
            tour(page, url, options.out)
            browser.close()


if __name__ == "__main__":
    os.environ.setdefault("JINGZHUN_LANG", "zh")
    main()
