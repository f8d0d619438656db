"""Every route of the OpenAPI spec, without credentials and with each role, against a table of
who may do what (written here by hand from docs/api.md, not read from the code).

Requests are built so that an allowed call fails cheaply *after* the permission check (an
unknown id, a body that is not an object, `limit=0`), so nothing changes and the whole matrix
takes seconds; a refused one must answer 401 (no credentials) or 403 (the role may not).
"""

from __future__ import annotations

import pytest

from tests.web.conftest import ROLES, Api

LEVELS = {"viewer": 0, "analyst": 1, "marketer": 2, "admin": 3}
# Who may call each operation: the least role (roles are nested: viewer ⊂ analyst ⊂ marketer ⊂
# admin), "public" (no credentials), or "write_key" (the collector: only a source's write key).
WHO_MAY: dict[tuple[str, str], str] = {
    ("GET", "/health"): "public",
    **{("POST", f"/v1/{kind}"): "write_key"
       for kind in ("track", "identify", "page", "screen", "group", "alias", "batch", "import")},
    ("POST", "/api/v1/auth/login"): "public",
    ("POST", "/api/v1/auth/logout"): "viewer",
    ("GET", "/api/v1/auth/me"): "viewer",
    ("POST", "/api/v1/auth/password"): "viewer",
    ("GET", "/api/v1/persons/lookup"): "viewer",
    ("GET", "/api/v1/persons/{identifier}"): "viewer",
    ("GET", "/api/v1/persons/{identifier}/timeline"): "viewer",
    ("GET", "/api/v1/persons/{identifier}/campaigns"): "viewer",
    ("GET", "/api/v1/tags"): "viewer",
    ("GET", "/api/v1/tags/{tag_id}/holders"): "viewer",
    ("GET", "/api/v1/tags/{tag_id}/trend"): "viewer",
    ("POST", "/api/v1/tags/apply"): "marketer",
    ("GET", "/api/v1/audiences"): "viewer",
    ("POST", "/api/v1/audiences"): "marketer",
    ("POST", "/api/v1/audiences/preview"): "analyst",
    ("GET", "/api/v1/audiences/overlap"): "viewer",
    ("POST", "/api/v1/audiences/cluster"): "analyst",
    ("GET", "/api/v1/audiences/{segment_id}"): "viewer",
    ("PUT", "/api/v1/audiences/{segment_id}"): "marketer",
    ("GET", "/api/v1/audiences/{segment_id}/members"): "viewer",
    ("GET", "/api/v1/audiences/{segment_id}/export"): "analyst",
    ("GET", "/api/v1/audiences/{segment_id}/changes"): "viewer",
    ("GET", "/api/v1/audiences/{segment_id}/live"): "viewer",
    ("POST", "/api/v1/audiences/{segment_id}/snapshot"): "marketer",
    ("POST", "/api/v1/audiences/{segment_id}/lookalike"): "analyst",
    ("GET", "/api/v1/campaigns"): "viewer",
    ("POST", "/api/v1/campaigns"): "marketer",
    ("GET", "/api/v1/campaigns/{campaign_id}"): "viewer",
    ("PUT", "/api/v1/campaigns/{campaign_id}"): "marketer",
    ("POST", "/api/v1/campaigns/{campaign_id}/run"): "marketer",
    ("POST", "/api/v1/campaigns/{campaign_id}/pause"): "marketer",
    ("POST", "/api/v1/campaigns/{campaign_id}/resume"): "marketer",
    ("GET", "/api/v1/campaigns/{campaign_id}/results"): "viewer",
    ("GET", "/api/v1/campaigns/{campaign_id}/preview"): "marketer",
    ("GET", "/api/v1/leads"): "viewer",
    ("GET", "/api/v1/leads/settings"): "viewer",
    ("GET", "/api/v1/leads/{lead_id}"): "viewer",
    ("POST", "/api/v1/leads/score"): "marketer",
    ("POST", "/api/v1/leads/assign"): "marketer",
    ("POST", "/api/v1/leads/{lead_id}/outcome"): "marketer",
    ("GET", "/api/v1/templates"): "viewer",
    ("GET", "/api/v1/templates/{template_id}"): "viewer",
    ("GET", "/api/v1/templates/{template_id}/preview"): "marketer",
    ("GET", "/api/v1/recommendations/persons/{identifier}"): "viewer",
    ("GET", "/api/v1/recommendations/products/{product_id}/related"): "viewer",
    **{("GET", f"/api/v1/analytics/{name}"): "viewer"
       for name in ("cube/catalog", "cube", "compare", "root-cause", "rules", "cross-sell", "lineup", "bundles",
                    "fans-vs-buyers", "retention", "paths", "seasonality", "source-value")},
    ("POST", "/api/v1/analytics/funnel"): "viewer",
    ("POST", "/api/v1/analytics/compare-audiences"): "analyst",
    ("POST", "/api/v1/analytics/hypotheses"): "analyst",
    ("POST", "/api/v1/sql"): "marketer",
    ("POST", "/api/v1/decide"): "viewer",
    ("POST", "/v1/decide"): "viewer",  # the decision API at the path: API keys and sessions, no write key
    ("GET", "/api/v1/decide/status"): "viewer",
    ("POST", "/api/v1/decide/refresh"): "marketer",
    **{("GET", f"/api/v1/measure/{name}"): "viewer" for name in ("kpis", "lift", "attribution", "budget")},
    ("GET", "/api/v1/console/catalog"): "viewer",  # the console's routes (web/api/routes/console_*.py)
    ("GET", "/api/v1/sources"): "admin",
    ("POST", "/api/v1/sources"): "admin",
    ("GET", "/api/v1/imports"): "admin",
    ("POST", "/api/v1/imports"): "admin",
    ("GET", "/api/v1/imports/kinds"): "admin",
    ("GET", "/api/v1/quarantine"): "admin",
    ("GET", "/api/v1/quarantine/{quarantine_id}"): "admin",
    ("POST", "/api/v1/quarantine/retry"): "admin",
    ("GET", "/api/v1/inventory/checks"): "viewer",
    ("GET", "/api/v1/inventory/stock"): "viewer",
    ("GET", "/api/v1/inventory/stockouts"): "viewer",
    ("GET", "/api/v1/inventory/reconciliation"): "viewer",
    ("GET", "/api/v1/jobs"): "viewer",
    ("GET", "/api/v1/jobs/{job_id}"): "viewer",
    ("GET", "/api/v1/pipeline/stages"): "viewer",
    ("POST", "/api/v1/pipeline/runs"): "admin",
    ("GET", "/api/v1/users"): "admin",
    ("POST", "/api/v1/users"): "admin",
    ("PATCH", "/api/v1/users/{username}"): "admin",
    ("PUT", "/api/v1/users/{username}/password"): "admin",
    ("GET", "/api/v1/api-keys"): "admin",
    ("POST", "/api/v1/api-keys"): "admin",
    ("DELETE", "/api/v1/api-keys/{key_id}"): "admin",
    ("GET", "/api/v1/audit"): "admin",
}
# Values for required query parameters: well-formed, naming nothing that exists.
REQUIRED = {"identifier": "zz-nobody", "person": "zz-nobody", "measure": "zz_none", "segment_ids": ["zz_a", "zz_b"],
            "account": "zz-none", "event": "zz-none", "period": "zz-none"}


def operations(spec: dict) -> list[tuple[str, str, dict]]:
    return [(method.upper(), path, operation) for path, methods in spec["paths"].items()
            for method, operation in methods.items()]


def harmless_request(path: str, operation: dict) -> dict:
    """A request that passes the permission check and then fails (unknown ids, bad values, no body)."""
    url = path
    query: dict[str, object] = {}
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path":
            url = url.replace("{" + parameter["name"] + "}", "zz-missing")
        elif parameter["name"] == "limit":
            query["limit"] = 0  # below its minimum: refused by validation, after the permission check
        elif parameter.get("required"):
            query[parameter["name"]] = REQUIRED[parameter["name"]]
    options: dict[str, object] = {"params": query}
    if "requestBody" in operation and "application/json" in operation["requestBody"]["content"]:
        options["json"] = "not an object"
    return {"url": url, **options}


@pytest.fixture(scope="module")
def spec(api: Api) -> dict:
    answer = api.get("/openapi.json")
    assert answer.status_code == 200
    return answer.json()


def test_the_table_covers_every_route(spec: dict) -> None:
    found = {(method, path) for method, path, _ in operations(spec)}
    assert found == set(WHO_MAY), f"unlisted: {sorted(found - set(WHO_MAY))}; gone: {sorted(set(WHO_MAY) - found)}"


def expected_denial(rule: str, role: str | None) -> int | None:
    """The status a refused call must get (None: the call is allowed)."""
    if rule in ("public", "write_key"):
        return None
    if role is None:
        return 401
    return None if LEVELS[role] >= LEVELS[rule] else 403


@pytest.mark.parametrize("role", [None, *ROLES], ids=["anonymous", *ROLES])
def test_every_route_answers_each_role_as_the_table_says(api: Api, spec: dict, role: str | None) -> None:
    wrong = []
    for method, path, operation in operations(spec):
        rule = WHO_MAY[(method, path)]
        request = harmless_request(path, operation)
        headers = api.key(role) if role else {"Accept-Language": "en"}
        answer = api.client.request(method, headers=headers, **request)
        denial = expected_denial(rule, role)
        if denial is not None and answer.status_code != denial:
            wrong.append(f"{method} {path}: {answer.status_code}, expected {denial}")
        if denial is None and answer.status_code in (401, 403) and rule != "write_key":
            wrong.append(f"{method} {path}: {answer.status_code}, expected to be allowed: {answer.text[:120]}")
        if rule == "write_key" and answer.status_code not in (400, 401):
            wrong.append(f"{method} {path}: {answer.status_code}; a user's credentials open nothing here")
        if answer.status_code >= 500:
            wrong.append(f"{method} {path}: {answer.status_code} {answer.text[:200]}")
        if answer.status_code in (401, 403) and "error" not in answer.json():
            wrong.append(f"{method} {path}: not the API's error shape: {answer.text[:120]}")
    assert not wrong, "\n".join(wrong)


def test_a_session_cookie_gets_the_same_answers_as_the_role_s_key(api: Api, spec: dict) -> None:
    """Sessions and keys carry the same role: spot-check one refused and one allowed call per role."""
    for role in ROLES:
        headers = api.session(role)
        assert api.client.get("/api/v1/audit", headers=headers).status_code == (200 if role == "admin" else 403)
        assert api.client.get("/api/v1/tags", headers=headers, params={"limit": 1}).status_code == 200
