"""The leads page in headless Chromium, as a sales manager uses it: the demo's lead file imported
(through the API, as an admin would upload it), then on the page: score and assign as of a
replayed morning, filter the list by rep, open a lead, see why it scored so, record the rep's
outcome and see it — each checked against the REST API; a viewer sees the lead masked and no form."""

from __future__ import annotations

import json
import time

from jingzhun.activation import install_example_sales
from tests.web.console.conftest import Console, Tab

MORNING = "2026-09-01T09:00"  # the browser's local time (Asia/Shanghai): the demo's newest leads are open
NOTE = "客户确认团购 20 套"


def import_prospects(console: Console) -> dict:
    """The demo's lead file uploaded to the console's server as an import job, waited for."""
    install_example_sales(console.root)  # `demo generate` writes it; an older cached demo may lack it
    content = (console.root / "data" / "leads" / "prospects.csv").read_bytes()
    job = console.api("POST", "/imports", data={"kind": "prospects"},
                      files={"file": ("prospects.csv", content, "text/csv")}).json()
    deadline = time.monotonic() + 120
    while job["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.3)
        job = console.api("GET", f"/jobs/{job['job_id']}").json()
    assert job["status"] == "succeeded", job
    return job["result"]


def test_score_assign_and_record_an_outcome_on_the_leads_page(console: Console, marketer_tab: Tab,
                                                               viewer_tab: Tab) -> None:
    assert import_prospects(console)["rows_loaded"] > 2900
    page = marketer_tab.page
    marketer_tab.open("leads")
    page.wait_for_selector("#leads-score")
    page.fill("#leads-at", MORNING)
    page.click("#leads-score")  # a background job; the page follows it
    page.wait_for_selector("#leads-run-status:has-text('评分完成')", timeout=60_000)
    opened = console.api("GET", "/leads", params={"limit": 1}).json()["total"]
    assert opened > 100
    page.wait_for_selector(f"#leads-list[data-total='{opened}']")
    page.click("#leads-assign")
    page.wait_for_selector("#leads-run-status:has-text('本轮分配')")
    quotas = {rep["id"]: rep["quota"] for rep in console.api("GET", "/leads/settings").json()["reps"]}
    assert f"本轮分配 {sum(quotas.values())} 条" in page.locator("#leads-run-status").inner_text()
    page.select_option("#leads-rep", "zhang_wei")
    page.wait_for_selector(f"#leads-list[data-total='{quotas['zhang_wei']}']")
    held = console.api("GET", "/leads", params={"rep_id": "zhang_wei"}).json()["items"]
    shown = page.locator("#leads-list tbody tr td:first-child").all_inner_texts()
    assert shown == [row["lead_id"] for row in held]  # best first, as the API lists them
    marketer_tab.shot("leads-list")
    page.locator("#leads-list tbody tr").first.click()
    page.wait_for_selector("#outcome-form")
    lead_id = held[0]["lead_id"]
    assert lead_id in page.locator("#lead-title").inner_text()
    assert page.locator("#outcome-rep").input_value() == "zhang_wei"
    assert "*" not in page.locator("#lead-phone").inner_text()  # a marketer sees the prospect's phone
    assert page.locator("#lead-tags .chip").count() == len(json.loads(held[0]["intent_tags"]))
    page.select_option("#outcome-kind", "won")
    page.fill("#outcome-note", NOTE)
    page.click("#outcome-submit")
    page.wait_for_selector("#lead-notice")
    assert page.locator("#lead-status").inner_text() == "已成交"
    assert NOTE in page.locator("#lead-outcomes").inner_text()
    assert page.locator("#outcome-not-held").count() == 1  # closed: nothing more to record
    view = console.api("GET", f"/leads/{lead_id}").json()
    assert view["outcomes"][-1]["note"] == NOTE and view["outcomes"][-1]["recorded_by"] == "user:marketer"
    assert view["lead"]["status"] == "won" and view["held_by"] is None
    marketer_tab.shot("leads-outcome-recorded")
    assert marketer_tab.errors == []
    viewer = viewer_tab.page  # reads the same lead, masked, and may change nothing
    viewer_tab.open(f"leads/{held[1]['lead_id']}")
    viewer.wait_for_selector("#lead-phone")
    assert "****" in viewer.locator("#lead-phone").inner_text()
    assert viewer.locator("#outcome-form").count() == 0 and viewer.locator(".denied").count() == 1
    viewer_tab.shot("leads-viewer")
    assert viewer_tab.errors == []
