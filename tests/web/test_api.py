"""The REST API on the portrayed demo (a real DuckDB file, the real engine process): persons,
tags, audiences, campaigns, analytics with their SQL, data, jobs, errors and paging."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import openpyxl

from tests.web.conftest import Api


def rerun(api: Api, sql: str) -> list[dict]:
    """Run a query an answer carried, as it stands, through the API's read-only SQL."""
    answer = api.post("/api/v1/sql", json={"query": sql, "limit": 100_000})
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]


def first_phone(api: Api) -> tuple[str, str]:
    row = rerun(api, "SELECT person_id, id_value FROM identities WHERE id_type = 'phone' ORDER BY person_id LIMIT 1")[0]
    return row["person_id"], row["id_value"]


def test_person_360_from_a_phone_with_the_sql_behind_each_part(api: Api) -> None:
    person_id, phone = first_phone(api)
    national = phone.removeprefix("+86")
    assert api.get("/api/v1/persons/lookup", params={"identifier": national}).json() == {"person_id": person_id}
    view = api.get(f"/api/v1/persons/{national}").json()
    assert view["person_id"] == person_id
    assert {"identities", "traits", "tags", "scores", "timeline", "recommendations", "campaigns"} <= set(view)
    assert any(i["id_type"] == "phone" and i["id_value"] == phone for i in view["identities"])
    assert set(view["sql"]) >= {"identities", "traits", "tags", "scores", "timeline", "campaigns"}
    assert len(rerun(api, view["sql"]["traits"])) == len(view["traits"])
    page = api.get(f"/api/v1/persons/{person_id}/timeline", params={"limit": 2, "offset": 1}).json()
    assert page["limit"] == 2 and page["offset"] == 1 and len(page["items"]) <= 2
    assert page["items"] == view["timeline"][1:3]


def test_errors_name_the_field_in_the_caller_s_language(api: Api) -> None:
    missing = api.get("/api/v1/persons/zz-nobody")
    assert missing.status_code == 404
    error = missing.json()["error"]
    assert error["code"] == "person_not_found" and error["field"] == "ID" and error["fix"]
    chinese = api.client.get("/api/v1/persons/zz-nobody", headers={**api.key("admin"), "Accept-Language": "zh-CN"})
    assert chinese.json()["error"]["message"].startswith("没有客户持有标识")
    bad = api.get("/api/v1/analytics/cube", params={"measure": "zz_gmv"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "analytics_error"
    invalid = api.get("/api/v1/tags", params={"limit": 5000})
    assert invalid.status_code == 422 and invalid.json()["error"]["field"] == "limit"


def test_tags_and_holders_page_with_totals(api: Api) -> None:
    tags = api.get("/api/v1/tags", params={"limit": 100}).json()
    held = next(row for row in tags["items"] if row["holders"] > 3)
    holders = api.get(f"/api/v1/tags/{held['tag_id']}/holders", params={"limit": 2}).json()
    assert holders["total"] == held["holders"] and len(holders["items"]) == 2
    assert len(rerun(api, holders["sql"]["holders"])) == held["holders"]
    assert api.get("/api/v1/tags/zz_none/holders").status_code == 404


AUDIENCE = {"segment_id": "zz_women_buyers", "name_zh": "女性买家", "name_en": "Women who bought",
            "rule": {"all": [{"trait": "gender", "op": "=", "value": "F"},
                             {"trait": "orders_total", "op": ">=", "value": 1}]}}


def test_audience_create_preview_snapshot_members_export(api: Api) -> None:
    preview = api.post("/api/v1/audiences/preview", "analyst", json={"rule": AUDIENCE["rule"], "sample": 3}).json()
    assert preview["size"] > 0 and preview["population"] >= preview["size"] and len(preview["sample"]) == 3
    assert len(rerun(api, preview["sql"]["members"])) == preview["size"]
    created = api.post("/api/v1/audiences", "marketer", json=AUDIENCE)
    assert created.status_code == 201 and created.json() == {"segment_id": "zz_women_buyers", "version": 1}
    assert api.post("/api/v1/audiences", "marketer", json=AUDIENCE).status_code == 409
    changed = {**AUDIENCE, "name_en": "Women who bought at least once"}
    assert api.client.put("/api/v1/audiences/zz_women_buyers", json=changed,
                          headers=api.key("marketer")).json()["version"] == 2
    job = api.post("/api/v1/audiences/zz_women_buyers/snapshot", "marketer")
    assert job.status_code == 202
    done = api.wait_job(job.json())
    assert done["status"] == "succeeded", done
    members = api.get("/api/v1/audiences/zz_women_buyers/members", params={"limit": 5}).json()
    assert members["total"] == preview["size"] and len(members["items"]) == 5
    workbook = openpyxl.load_workbook(io.BytesIO(api.get("/api/v1/audiences/zz_women_buyers/export",
                                                         "marketer", params={"format": "xlsx"}).content))
    assert workbook.active.max_row == preview["size"] + 1
    listed = {row["segment_id"]: row for row in api.get("/api/v1/audiences").json()["items"]}
    assert listed["zz_women_buyers"]["members"] == preview["size"]
    overlap = api.get("/api/v1/audiences/overlap", params={"segment_ids": ["zz_women_buyers", "valuable_at_risk"]}).json()
    assert overlap["counts"]["zz_women_buyers"]["zz_women_buyers"] == preview["size"]
    changes = api.get("/api/v1/audiences/zz_women_buyers/changes").json()
    assert changes["entered"] == preview["size"] and changes["exited"] == 0


def test_clusters_and_lookalikes_of_an_audience(api: Api) -> None:
    clusters = api.post("/api/v1/audiences/cluster", "analyst", json={"segment_id": "valuable_at_risk", "k": 2,
                                                                       "assignments": 5}).json()
    assert clusters["k"] == 2 and len(clusters["clusters"]) == 2 and len(clusters["assignments"]) == 5
    assert all(c["description_zh"] and c["description_en"] for c in clusters["clusters"])
    found = api.post("/api/v1/audiences/holiday_women_fashion_beauty/lookalike", "analyst",
                     json={"top_n": 50, "rows": 10}).json()
    assert found["found"] == 50 and len(found["ranked"]) == 10 and found["drivers"] and found["sql"]


def test_campaign_create_run_as_a_job_results_pause_resume(api: Api) -> None:
    start = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    campaign = {"campaign_id": "zz_ads_winback", "name_zh": "召回投放", "name_en": "Win-back ads",
                "audience": {"segment_id": "valuable_at_risk"}, "template_id": "personal_picks",
                "channels": ["ads"], "schedule": {"kind": "once", "at": start}, "holdout": 0.2}
    assert api.post("/api/v1/campaigns", "marketer", json=campaign).status_code == 201
    job = api.post("/api/v1/campaigns/zz_ads_winback/run", "marketer")
    assert job.status_code == 202 and job.headers["content-type"] == "application/json"
    done = api.wait_job(job.json())
    assert done["status"] == "succeeded", done
    results = api.get("/api/v1/campaigns/zz_ads_winback/results").json()
    arms = {row["arm"]: row for row in results["funnel"]}
    assert arms["control"]["held_out"] > 0 and arms["treatment"]["audience"] > 0
    assert results["sql"] and rerun(api, next(iter(results["sql"].values())))
    assert api.post("/api/v1/campaigns/zz_ads_winback/pause", "marketer").json()["status"] == "paused"
    assert api.get("/api/v1/campaigns/zz_ads_winback").json()["status"] == "paused"
    assert api.post("/api/v1/campaigns/zz_ads_winback/resume", "marketer").json()["status"] == "active"
    person_id, _ = first_phone(api)
    copy = api.get("/api/v1/templates/personal_picks/preview", "marketer",
                   params={"person": person_id, "channel": "sms", "lang": "en"}).json()
    assert copy["message"]["person_id"] == person_id and copy["sms"]["parts"] >= 1
    actions = {e["action"] for e in api.get("/api/v1/audit", params={"object_type": "campaign", "limit": 50}
                                            ).json()["items"]}
    assert {"campaign.create", "campaign.run", "campaign.pause", "campaign.resume"} <= actions


def test_every_analysis_answers_with_its_sql(api: Api) -> None:
    cube = api.get("/api/v1/analytics/cube", params={"measure": ["gmv", "orders"], "by": "month", "limit": 100}).json()
    assert cube["columns"] == ["month", "gmv", "orders"] and cube["total"] == len(cube["items"]) > 6
    again = rerun(api, cube["sql"]["cube"])
    assert round(sum(r["gmv"] for r in again), 2) == round(sum(r["gmv"] for r in cube["items"]), 2)
    calls = [("/api/v1/analytics/compare", {"measure": "gmv", "by": "category", "period": "2026-Q2"}),
             ("/api/v1/analytics/root-cause", {"measure": "gmv", "period": "2026-06"}),
             ("/api/v1/analytics/rules", {}), ("/api/v1/analytics/cross-sell", {}),
             ("/api/v1/analytics/lineup", {"slots": 4}), ("/api/v1/analytics/bundles", {}),
             ("/api/v1/analytics/retention", {"period": "month"}),
             ("/api/v1/analytics/paths", {"event": "Product Viewed"}),
             ("/api/v1/analytics/seasonality", {})]
    for path, params in calls:
        answer = api.get(path, params={**params, "limit": 3})
        assert answer.status_code == 200, (path, answer.text[:300])
        body = answer.json()
        assert body["sql"] and all(isinstance(sql, str) and sql.strip() for sql in body["sql"].values()), path
        assert len(body["items"]) <= 3 and body["total"] >= len(body["items"]), path
    funnel = api.post("/api/v1/analytics/funnel", "viewer", json={"steps": ["Product Viewed", "order"]}).json()
    assert funnel["items"][0]["persons"] >= funnel["items"][1]["persons"] > 0 and funnel["readings"]


def test_data_area_imports_with_progress_quarantine_and_inventory(api: Api) -> None:
    stores = (api.workspace.root / "data" / "catalog" / "stores.csv").read_bytes()
    job = api.client.post("/api/v1/imports", headers=api.key("admin"), data={"kind": "stores"},
                          files={"file": ("门店 stores.csv", stores, "text/csv")})
    assert job.status_code == 202, job.text
    done = api.wait_job(job.json())
    assert done["status"] == "succeeded" and done["progress"] == 1.0, done
    assert done["result"]["rows_read"] == done["result"]["rows_loaded"] + done["result"]["rows_quarantined"] + \
        done["result"]["rows_duplicate"]
    imported = api.get("/api/v1/imports", params={"kind": "stores"}).json()
    assert done["result"]["import_id"] in {row["import_id"] for row in imported["items"]}
    quarantined = api.get("/api/v1/quarantine", params={"limit": 1}).json()
    assert quarantined["total"] > 0
    one = api.get(f"/api/v1/quarantine/{quarantined['items'][0]['quarantine_id']}").json()
    assert one["reason"] and "payload" in one
    findings = api.get("/api/v1/inventory/checks", "viewer", params={"limit": 5}).json()
    assert findings["total"] > 0 and findings["sql"]
    assert sum(row["findings"] for row in findings["summary"]) == findings["total"]  # all counted, not the page
    assert rerun(api, findings["sql"]["summary"]) == findings["summary"]


def test_a_pipeline_stage_runs_as_a_job_one_at_a_time(api: Api) -> None:
    assert api.post("/api/v1/pipeline/runs", json={"stages": ["zz_nope"]}).status_code == 400
    job = api.post("/api/v1/pipeline/runs", json={"stages": ["schema"]})
    assert job.status_code == 202
    done = api.wait_job(job.json())
    assert done["status"] == "succeeded" and done["result"][0]["stage"] == "schema"
    listed = api.get("/api/v1/jobs", params={"kind": "pipeline"}).json()
    assert listed["items"][0]["job_id"] == job.json()["job_id"] and listed["total"] >= 1


def test_recommendations_for_a_person_and_a_product(api: Api) -> None:
    person_id, _ = first_phone(api)
    lists = api.get(f"/api/v1/recommendations/persons/{person_id}", params={"k": 3}).json()
    assert lists["person_id"] == person_id and lists["items"] and lists["sql"]
    product = lists["items"][0]["product_id"]
    related = api.get(f"/api/v1/recommendations/products/{product}/related", params={"k": 3}).json()
    assert related["product_id"] == product and len(related["items"]) <= 3


def test_read_only_sql_reads_tables_and_nothing_else(api: Api) -> None:
    counted = api.post("/api/v1/sql", json={"query": "WITH o AS (SELECT * FROM orders) SELECT COUNT(*) AS n FROM o"})
    assert counted.status_code == 200 and counted.json()["items"][0]["n"] > 0
    for query in ("SELECT * FROM read_text('/etc/passwd')", "SELECT * FROM '/etc/hosts'", "DELETE FROM orders",
                  "SELECT * FROM glob('*')"):
        refused = api.post("/api/v1/sql", json={"query": query})
        assert refused.status_code == 400 and refused.json()["error"]["field"] == "query", query
    assert api.post("/api/v1/sql", "analyst", json={"query": "SELECT 1 AS x FROM orders"}).status_code == 403
    hypotheses = api.post("/api/v1/analytics/hypotheses", "analyst", json={
        "baseline": "2025-03", "current": "2025-04", "kpi": "custom", "kpi_sql": "SELECT * FROM read_text('/etc/passwd')"})
    assert hypotheses.status_code == 400 and hypotheses.json()["error"]["field"] == "kpi_sql"
