"""Sales leads over the REST API on a server of their own (a copy of the demo with its lead file
imported and the example sales team): scoring as a job and an assignment round as a marketer,
the list with its filters, paging and SQL, an outcome recorded and visible, errors that name the
field, a viewer who may read (masked) but not change."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from jingzhun.activation import install_example_sales
from jingzhun.collect.importers import import_file
from jingzhun.engine import open_engine
from jingzhun.web import create_app
from tests.web.conftest import Api, prepared_workspace

REPLAY = "2026-09-01T00:00:00+08:00"  # the demo's newest leads are still open then (docs/leads.md)
MORNING = "2026-09-01T09:00:00+08:00"
NOTE = "团购 20 套，客户回电 13812345678"
MASKED_PHONE = re.compile(r"^1\d\d\*{4}\d{4}$")


@pytest.fixture(scope="module")
def sales(portrayed_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    workspace, keys = prepared_workspace(portrayed_demo, tmp_path_factory.mktemp("web-leads"))
    install_example_sales(workspace.root)  # `demo generate` writes it; an older cached demo may lack it
    with open_engine(workspace) as engine:
        imported = import_file(workspace, engine, "prospects", workspace.root / "data" / "leads" / "prospects.csv")
    assert imported.rows_loaded > 2900
    with TestClient(create_app(workspace, load_interval=0.05)) as client:
        yield Api(workspace, client, keys)


@pytest.fixture(scope="module")
def replayed(sales: Api) -> dict:
    """Scored as of REPLAY (a job) and one assignment round that morning, both as a marketer."""
    job = sales.post("/api/v1/leads/score", "marketer", json={"as_of": REPLAY})
    assert job.status_code == 202, job.text
    done = sales.wait_job(job.json())
    assert done["status"] == "succeeded", done
    handed = sales.post("/api/v1/leads/assign", "marketer", json={"at": MORNING})
    assert handed.status_code == 200, handed.text
    return {"scoring": done["result"], "round": handed.json()}


def rerun(api: Api, sql: str) -> list[dict]:
    answer = api.post("/api/v1/sql", json={"query": sql, "limit": 100_000})
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]


def audited(api: Api, action: str) -> list[dict]:
    return api.get("/api/v1/audit", params={"action": action, "limit": 100}).json()["items"]


def test_scoring_and_a_round_fill_each_rep_s_quota_once(sales: Api, replayed: dict) -> None:
    scoring, handed = replayed["scoring"], replayed["round"]
    assert scoring["statuses"]["open"] > 100 and scoring["test"]["auc"] > scoring["test"]["freshness_auc"]
    assert set(scoring["sql"]) == {"leads_features", "leads"}
    team = sales.get("/api/v1/leads/settings", "viewer").json()
    quotas = {rep["id"]: rep["quota"] for rep in team["reps"]}
    assert handed["per_rep"] == quotas and handed["assigned"] == sum(quotas.values()) == len(handed["assignments"])
    again = sales.post("/api/v1/leads/assign", "marketer", json={"at": MORNING}).json()
    assert again["assigned"] == 0  # the day's quotas are used
    assert {row["rep_id"]: row["holding"] for row in team["workload"]} == quotas
    rounds = audited(sales, "lead.assign")
    assert len(audited(sales, "lead.score")) == 1 and len(rounds) == 2
    assert {row["assigned_by"] for row in handed["assignments"]} == {row["actor"] for row in rounds}
    assert rounds[0]["actor"].startswith("api_key:") and rounds[0]["details"]["at"].startswith("2026-09-01T09:00")
    assert team["territories"]["north"]["cities"][0] == "北京市" and team["sql"]["workload"]


def test_the_list_filters_pages_and_reruns_as_its_sql(sales: Api, replayed: dict) -> None:
    first = sales.get("/api/v1/leads", "analyst", params={"limit": 5}).json()
    assert first["total"] == replayed["scoring"]["statuses"]["open"] and len(first["items"]) == 5
    assert {"score", "freshness_part", "intent_part", "fit_part", "intent_tags", "rep_id"} <= set(first["columns"])
    second = sales.get("/api/v1/leads", "analyst", params={"limit": 5, "offset": 5}).json()
    everyone = [row["lead_id"] for row in rerun(sales, first["sql"]["leads"])]
    assert len(everyone) == first["total"]
    assert [row["lead_id"] for row in first["items"] + second["items"]] == everyone[:10]
    scores = [row["score"] for row in first["items"] + second["items"]]
    assert scores == sorted(scores, reverse=True)
    held = sales.get("/api/v1/leads", params={"rep_id": "zhang_wei", "status": "all"}).json()
    assert held["total"] == 4 and {row["rep_id"] for row in held["items"]} == {"zhang_wei"}
    assigned = sales.get("/api/v1/leads", params={"assigned": "true", "limit": 1}).json()["total"]
    unassigned = sales.get("/api/v1/leads", params={"assigned": "false", "limit": 1}).json()["total"]
    assert assigned == replayed["round"]["assigned"] and assigned + unassigned == first["total"]
    refused = sales.get("/api/v1/leads", params={"rep_id": "nobody"})
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "lead_error" and error["field"] == "rep_id" and "nobody" in error["message"]
    assert "zhang_wei" in error["fix"]


def test_an_outcome_is_recorded_audited_and_visible(sales: Api, replayed: dict) -> None:
    lead_id = sales.get("/api/v1/leads", params={"rep_id": "zhang_wei"}).json()["items"][0]["lead_id"]
    recorded = sales.post(f"/api/v1/leads/{lead_id}/outcome", "marketer",
                          json={"outcome": "won", "rep_id": "zhang_wei", "note": NOTE})
    assert recorded.status_code == 201, recorded.text
    assert recorded.json()["outcome"] == "won" and recorded.json()["assignment_id"] == f"{lead_id}:1"
    view = sales.get(f"/api/v1/leads/{lead_id}").json()
    assert view["lead"]["status"] == "won" and view["held_by"] is None
    assert view["assignments"][0]["close_reason"] == "won" and view["outcomes"][-1]["note"] == NOTE
    assert view["outcomes"][-1]["recorded_by"].startswith("api_key:")
    assert view["model"]["coefficients"]["freshness"] > 0 and view["lead"]["freshness_part"] is not None
    assert rerun(sales, view["sql"]["outcomes"])[-1]["note"] == NOTE
    assert sales.get("/api/v1/leads", params={"rep_id": "zhang_wei"}).json()["total"] == 3  # one closed
    assert lead_id in [row["object_id"] for row in audited(sales, "lead.outcome")]


def test_bad_outcomes_are_refused_naming_the_field(sales: Api, replayed: dict) -> None:
    held = sales.get("/api/v1/leads", params={"rep_id": "wang_fang", "limit": 1}).json()["items"][0]["lead_id"]
    cases = [({"outcome": "won", "rep_id": "nobody"}, held, 400, "rep_id", "unknown sales rep"),
             ({"outcome": "won", "rep_id": "zhang_wei"}, held, 400, "rep_id", "is assigned to wang_fang"),
             ({"outcome": "maybe"}, held, 422, "outcome", "won"),
             ({"outcome": "won"}, "zz-no-such-lead", 404, "lead_id", "unknown lead")]
    for body, lead_id, status, field, words in cases:
        answer = sales.post(f"/api/v1/leads/{lead_id}/outcome", "marketer", json=body)
        error = answer.json()["error"]
        assert (answer.status_code, error["field"]) == (status, field), answer.text
        assert words in error["message"] and error["code"], answer.text
    unheld = sales.get("/api/v1/leads", params={"assigned": "false", "limit": 1}).json()["items"][0]["lead_id"]
    answer = sales.post(f"/api/v1/leads/{unheld}/outcome", "marketer", json={"outcome": "lost"})
    assert answer.status_code == 400 and answer.json()["error"]["field"] == "lead"
    chinese = sales.client.post(f"/api/v1/leads/{held}/outcome", json={"outcome": "won", "rep_id": "nobody"},
                                headers={**sales.key("marketer"), "Accept-Language": "zh-CN"})
    assert chinese.json()["error"]["message"].startswith("未知的销售代表")
    assert sales.get("/api/v1/leads", params={"rep_id": "wang_fang"}).json()["total"] == 3  # nothing closed


def test_a_viewer_reads_masked_and_cannot_change(sales: Api, replayed: dict) -> None:
    for role in ("viewer", "analyst"):
        assert sales.post("/api/v1/leads/assign", role, json={"at": MORNING}).status_code == 403
        assert sales.post("/api/v1/leads/score", role, json={}).status_code == 403
    lead_id = sales.get("/api/v1/leads", params={"rep_id": "chen_jing"}).json()["items"][0]["lead_id"]
    assert sales.post(f"/api/v1/leads/{lead_id}/outcome", "viewer", json={"outcome": "lost"}).status_code == 403
    unanswered = {"outcome": "no_answer", "note": NOTE}
    assert sales.post(f"/api/v1/leads/{lead_id}/outcome", "marketer", json=unanswered).status_code == 201
    full, masked = (sales.get(f"/api/v1/leads/{lead_id}", role).json() for role in ("marketer", "viewer"))
    assert full["lead"]["phone"].lstrip("+").isdigit() and MASKED_PHONE.match(masked["lead"]["phone"])
    assert full["lead"]["phone"].endswith(masked["lead"]["phone"][-4:])
    name = full["lead"]["contact_name"]
    assert "*" not in name and masked["lead"]["contact_name"] == name[0] + "*" * (len(name) - 1)
    assert "13812345678" in full["outcomes"][-1]["note"] and "138****5678" in masked["outcomes"][-1]["note"]
    listed = sales.get("/api/v1/leads", "viewer", params={"status": "all", "limit": 50}).json()["items"]
    assert all(row["contact_name"] is None or "*" in row["contact_name"] for row in listed)
    assert masked["lead"]["score"] == full["lead"]["score"]  # only identifiers are masked
