"""The console in headless Chromium against `jingzhun serve` on the demo: what a marketer does —
log in, find a customer by phone, build an audience and watch its size, launch a campaign and
read its results, switch language — each number checked against SQL or the REST API."""

from __future__ import annotations

import re
from datetime import date

from tests.web.conftest import PASSWORDS
from tests.web.console.conftest import ARTIFACTS, Console, Tab, log_in


def sql_count(console: Console, query: str) -> int:
    """An independent count through the SQL endpoint (not the code path the page uses)."""
    answer = console.api("POST", "/sql", json={"query": query})
    assert answer.status_code == 200, answer.text
    return int(answer.json()["items"][0]["n"])


def number(text: str) -> int:
    return int(re.sub(r"[^\d]", "", text))


def test_log_in_with_the_form_and_out_again(console: Console, fresh_tab: Tab) -> None:
    page, url = fresh_tab.page, fresh_tab.url
    page.goto(f"{url}/")
    assert "/login" in page.url  # the console asks for a log-in first
    page.fill("#username", "marketer")
    page.fill("#password", "not-the-password")
    page.click("#login-submit")
    assert "用户名或密码错误" in page.locator("#login-error").inner_text()
    page.fill("#password", PASSWORDS["marketer"])
    page.click("#login-submit")
    page.wait_for_selector("#overview-kpis .kpi-value")  # the overview first
    assert "marketer" in page.locator("#who").inner_text()
    first, last = re.findall(r"\d{4}-\d{2}-\d{2}", page.locator("#overview-kpis > p").inner_text())
    assert (date.fromisoformat(last) - date.fromisoformat(first)).days == 29  # the last 30 days with orders
    shown = [number(v) for v in page.locator("#overview-kpis .kpi-value").all_inner_texts()[1:3]]
    cube = console.api("GET", "/analytics/cube", params={"measure": ["orders", "buyers"], "period": f"{first}..{last}"})
    assert shown == [cube.json()["items"][0]["orders"], cube.json()["items"][0]["buyers"]] and shown[0] > 0
    fresh_tab.shot("logged-in-overview")
    page.click("#nav a[data-section=persons]")
    page.wait_for_selector("#person-search")
    page.click("#logout")
    page.wait_for_url(re.compile(r"/login"))
    assert page.context.request.get(f"{url}/static/console/app.js").status == 401  # the assets too need a session
    assert fresh_tab.errors == []


def test_look_up_a_demo_person_by_phone(console: Console, admin_tab: Tab) -> None:
    members = console.api("GET", "/audiences/valuable_at_risk/members", params={"limit": 20}).json()["items"]
    views = (console.api("GET", f"/persons/{m['person_id']}").json() for m in members)
    view = next(v for v in views if any(i["id_type"] == "phone" for i in v["identities"]))
    phone = next(i["id_value"] for i in view["identities"] if i["id_type"] == "phone").removeprefix("+86")
    page = admin_tab.page
    admin_tab.open("persons")
    page.fill("#person-search", phone)  # the bare mobile number, as a shop assistant types it
    page.click("#person-search-submit")
    page.wait_for_selector("#person-head")
    assert page.locator("#person-id").inner_text() == view["person_id"]
    assert page.locator("#person-tags .chip").count() == len(view["tags"])
    assert page.locator("#person-timeline tbody tr").count() == min(20, len(view["timeline"]))
    for section in ("身份标识", "属性", "预测评分", "推荐商品", "收到的营销", "时间线"):
        assert page.get_by_role("heading", name=section).count() == 1
    admin_tab.open("persons/nobody-has-this-id")
    page.wait_for_selector("#person-missing")
    admin_tab.open(f"persons/{phone}")
    page.wait_for_selector("#person-head")
    assert admin_tab.errors == []


def test_build_an_audience_and_watch_its_size(console: Console, marketer_tab: Tab) -> None:
    women = sql_count(console, "SELECT COUNT(*) AS n FROM person_traits WHERE gender = 'F'")
    repeat_women = sql_count(console, "SELECT COUNT(DISTINCT pt.person_id) AS n FROM person_traits AS pt "
                                      "JOIN tags AS t ON t.person_id = pt.person_id AND t.tag_id = 'repeat_buyer' "
                                      "AND t.valid_to IS NULL WHERE pt.gender = 'F'")
    assert 0 < repeat_women < women
    page = marketer_tab.page
    marketer_tab.open("audiences/new")
    preview = page.locator("#audience-preview")
    page.wait_for_selector(f"#audience-preview[data-size='{women}']")  # the first condition: gender = F
    page.select_option("#rule-editor .adder", "tag")  # add a condition; the size follows
    page.select_option("#rule-editor .kind-tag select.tag-name", "repeat_buyer")
    page.wait_for_selector(f"#audience-preview[data-size='{repeat_women}']")
    assert number(page.locator("#audience-size").inner_text()) == repeat_women
    assert "占全部" in preview.inner_text()
    marketer_tab.shot("audience-builder")
    page.check("#rule-editor .kind-tag .not-toggle input")  # not a repeat buyer: the complement among women
    page.wait_for_selector(f"#audience-preview[data-size='{women - repeat_women}']")
    page.uncheck("#rule-editor .kind-tag .not-toggle input")
    page.wait_for_selector(f"#audience-preview[data-size='{repeat_women}']")
    page.fill("#audience-id", "tour_repeat_women")
    page.fill("#audience-name-zh", "复购女性")
    page.fill("#audience-name-en", "Women who buy again")
    page.click("#audience-save")  # saved, then snapshotted as a background job
    page.wait_for_selector("#audience-title", timeout=60_000)
    assert page.locator("#audience-title").inner_text() == "复购女性"
    saved = console.api("GET", "/audiences/tour_repeat_women").json()
    assert saved["summary"]["members"] == repeat_women
    assert saved["definition"]["rule"] == {"all": [{"trait": "gender", "op": "=", "value": "F"},
                                                   {"tag": "repeat_buyer"}]}
    page.wait_for_selector("#audience-members tbody tr")
    assert f"{repeat_women}" in page.locator("#audience-members").inner_text()
    assert marketer_tab.errors == []


def test_launch_a_campaign_and_read_its_results(console: Console, marketer_tab: Tab) -> None:
    page = marketer_tab.page
    marketer_tab.open("campaigns/new?audience=valuable_at_risk")
    page.wait_for_selector("#campaign-id")
    page.fill("#campaign-id", "tour_winback_ads")
    page.fill("#campaign-name-zh", "高价值召回投放")
    page.fill("#campaign-name-en", "Win back valuable customers (ads)")
    page.select_option("#campaign-template", "personal_picks")
    page.check("#campaign-channels input[value=ads]")
    page.fill("#campaign-holdout", "20")
    page.click("#campaign-create")
    page.wait_for_selector("#campaign-launch")
    assert page.locator("#campaign-title").inner_text().startswith("高价值召回投放")
    page.click("#campaign-launch")  # plan and send, as a job; the page follows its progress
    page.wait_for_selector("#campaign-run-status:has-text('已执行')", timeout=90_000)
    page.wait_for_selector("#campaign-totals")
    results = console.api("GET", "/campaigns/tour_winback_ads/results").json()
    totals = {m: sum(r[m] for r in results["funnel"]) for m in ("audience", "held_out", "sent")}
    members = console.api("GET", "/audiences/valuable_at_risk").json()["summary"]["members"]
    assert totals["audience"] == members and totals["held_out"] > 0 and totals["sent"] > 0
    shown = [number(v) for v in page.locator("#campaign-totals .kpi-value").all_inner_texts()[:3]]
    assert shown == [totals["audience"], totals["held_out"], totals["sent"]]
    page.wait_for_selector("#campaign-verdict, #campaign-no-lift")  # lift and ROI from the measure stage
    lift = console.api("GET", "/measure/lift", params={"campaign_id": "tour_winback_ads"}).json()
    assert lift["items"][0]["units_treatment"] == totals["sent"]
    assert page.locator("#campaign-verdict").inner_text() == lift["items"][0]["verdict_zh"]
    assert "sent" in {row["status"] for row in console.api(
        "GET", "/persons/" + results_person(console, "tour_winback_ads") + "/campaigns").json()["items"]}
    assert marketer_tab.errors == []


def results_person(console: Console, campaign_id: str) -> str:
    """A person the campaign sent to (read back through SQL)."""
    answer = console.api("POST", "/sql", json={"query": "SELECT person_id FROM deliveries WHERE campaign_id = "
                                                        f"'{campaign_id}' AND status = 'sent' ORDER BY 1 LIMIT 1"})
    return answer.json()["items"][0]["person_id"]


def test_switch_language_and_keep_it(admin_tab: Tab) -> None:
    page = admin_tab.page
    admin_tab.open("audiences")
    page.wait_for_selector("#audience-new")
    assert page.locator(".page h1").inner_text() == "人群"
    page.click("#lang-switch")
    page.wait_for_selector(".page h1:has-text('Audiences')")
    assert page.locator("#nav a[data-section=persons]").inner_text() == "Person 360"
    assert page.locator("#audience-new").inner_text() == "New audience"
    assert page.locator("html").get_attribute("lang") == "en"
    page.reload()  # kept in the jz_lang cookie
    page.wait_for_selector(".page h1:has-text('Audiences')")
    admin_tab.open("overview")
    page.wait_for_selector("#overview-kpis .kpi-value")
    admin_tab.shot("overview-in-english")
    admin_tab.open("persons/nobody-has-this-id")
    page.wait_for_selector("#person-missing:has-text('Nobody holds')")
    page.click("#lang-switch")
    page.wait_for_selector("#person-missing:has-text('没有找到')")
    assert admin_tab.errors == []


def test_roles_see_only_what_they_may_do(viewer_tab: Tab) -> None:
    page = viewer_tab.page
    viewer_tab.open("audiences/new")
    page.wait_for_selector("#rule-editor")
    assert page.locator("#audience-save").count() == 0 and page.locator("#audience-size").count() == 0
    assert page.locator(".denied").first.inner_text() == "需要分析师或更高权限。"
    viewer_tab.open("data/sources")
    page.wait_for_selector(".denied:has-text('仅管理员可用')")
    viewer_tab.open("campaigns")
    page.wait_for_selector(".page h1")
    assert page.locator("#campaign-new").count() == 0
    assert viewer_tab.errors == []


SHOWN = {"tags/repeat_buyer": "tags", "analytics/funnel": "analytics-funnel", "measurement/lift": "measurement-lift",
         "data/quality": "data-quality"}  # pages the console tour (docs/console.md) shows


def test_every_page_renders_from_this_server_only(console: Console, admin_tab: Tab) -> None:
    page = admin_tab.page
    pages = {"overview": "#overview-kpis", "tags/repeat_buyer": "#tag-holders tbody tr",
             "audiences": "#overlap-run", "audiences/valuable_at_risk": "#audience-members tbody tr",
             "analytics/cube": "#analysis-result table", "analytics/funnel": "#analysis-result canvas",
             "analytics/retention": "#analysis-result canvas", "measurement/lift": "#measure-lift table",
             "measurement/attribution": "#measure-attribution table", "measurement/budget": "#measure-budget table",
             "data/quality": "#data-quality table",
             "data/quarantine": "#data-quarantine table", "campaigns": ".page h1"}
    for route, ready in pages.items():
        admin_tab.open(route)
        page.wait_for_selector(ready, timeout=60_000)
        assert page.locator(".page .error").count() == 0, (route, page.locator(".page .error").all_inner_texts())
        if route in SHOWN:
            admin_tab.shot(SHOWN[route])
    admin_tab.open("analytics/cube")  # drill down: click a month, see its days
    page.wait_for_selector("#analysis-result tbody tr")
    page.locator("#analysis-result tbody tr").last.click()
    page.wait_for_selector("#analysis-result th:has-text('day')")
    assert re.fullmatch(r"\d{4}-\d{2}", page.locator("input[name=period]").input_value())
    admin_tab.shot("analytics-cube-drilled")
    outside = [u for u in admin_tab.requests if not u.startswith(console.url) and not u.startswith(("data:", "blob:"))]
    assert outside == []
    assert admin_tab.errors == []


def test_pages_reference_no_external_url(console: Console, browser: object) -> None:
    context = browser.new_context()
    page = context.new_page()
    log_in(page, console.url, "analyst", "en")
    for path in ("/login", "/", "/docs"):
        html = page.goto(f"{console.url}{path}").text() if path != "/login" else \
            context.request.get(f"{console.url}{path}").text()
        assert not re.search(r"""(src|href|action)\s*=\s*["']?(https?:)?//""", html), path
    page.wait_for_selector(".swagger-ui .opblock")  # the API's docs drawn from the vendored Swagger UI
    page.screenshot(path=str(ARTIFACTS / "test_pages_reference_no_external_url.png"))
    context.close()
