"""Access control end to end: log-in, sessions and their cookies, CSRF, rate limits, API keys,
write keys, the console's pages, masking of personal identifiers, and the audit log."""

from __future__ import annotations

import base64
import csv
import io
import re

from tests.web.conftest import PASSWORDS, Api


def login(api: Api, username: str, password: str, url: str = "/api/v1/auth/login"):
    answer = api.client.post(url, json={"username": username, "password": password},
                             headers={"Accept-Language": "en"})
    api.client.cookies.clear()
    return answer


def test_login_sets_a_secure_session_cookie_and_returns_the_csrf_token(api: Api) -> None:
    answer = login(api, "marketer", PASSWORDS["marketer"])
    assert answer.status_code == 200
    body = answer.json()
    assert body["role"] == "marketer" and body["sees_pii"] and len(body["csrf_token"]) > 30
    cookie = answer.headers["set-cookie"]
    assert "jz_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # plain http in auto mode
    over_https = login(api, "marketer", PASSWORDS["marketer"], "https://testserver/api/v1/auth/login")
    assert "Secure" in over_https.headers["set-cookie"]


def test_wrong_password_and_unknown_user_get_the_same_answer_in_the_caller_s_language(api: Api) -> None:
    wrong = login(api, "viewer", "not-the-password")
    nobody = login(api, "no-such-user", "not-the-password")
    assert wrong.status_code == nobody.status_code == 401
    assert wrong.json() == nobody.json()
    assert wrong.json()["error"]["field"] == "password"
    chinese = api.client.post("/api/v1/auth/login", json={"username": "viewer", "password": "nope-nope"})
    assert chinese.json()["error"]["message"].startswith("用户名或密码错误")


def test_failed_logins_are_rate_limited(api: Api) -> None:
    created = api.post("/api/v1/users", json={"username": "zz-limited", "role": "viewer", "password": "right-passphrase"})
    assert created.status_code == 201
    statuses = [login(api, "zz-limited", f"guess-{n}").status_code for n in range(6)]
    assert statuses == [401] * 5 + [429]
    blocked = login(api, "zz-limited", "right-passphrase")  # even the right password waits now
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0


def test_changes_by_cookie_need_the_csrf_token(api: Api) -> None:
    headers = api.session("marketer")
    body = {"rule": {"trait": "gender", "op": "=", "value": "F"}, "sample": 0}
    without = {k: v for k, v in headers.items() if k != "X-CSRF-Token"}
    refused = api.client.post("/api/v1/audiences/preview", json=body, headers=without)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
    forged = api.client.post("/api/v1/audiences/preview", json=body, headers={**without, "X-CSRF-Token": "x" * 43})
    assert forged.status_code == 403
    assert api.client.post("/api/v1/audiences/preview", json=body, headers=headers).status_code == 200
    assert api.client.get("/api/v1/auth/me", headers=without).status_code == 200  # reads need no token
    keyed = api.post("/api/v1/audiences/preview", "marketer", json=body)  # an API key is not a cookie
    assert keyed.status_code == 200


def test_console_login_form_uses_a_double_submit_token(api: Api) -> None:
    client = api.client
    assert client.get("/", follow_redirects=False).headers["location"] == "/login?next=/"
    page = client.get("/login?next=/docs")
    assert page.status_code == 200 and "jz_login_csrf" in page.headers["set-cookie"]
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    form = {"username": "viewer", "password": PASSWORDS["viewer"], "next": "/docs"}
    client.cookies.clear()
    assert client.post("/login", data={**form, "csrf_token": token}, follow_redirects=False).status_code == 403
    client.cookies.set("jz_login_csrf", page.cookies["jz_login_csrf"], path="/login")
    done = client.post("/login", data={**form, "csrf_token": token}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/docs"
    shell = client.get("/")
    assert shell.status_code == 200 and 'name="csrf-token"' in shell.text and "viewer" in shell.text
    assert "default-src 'self'" in shell.headers["content-security-policy"]
    assert client.get("/docs").status_code == 200 and client.get("/openapi.json").status_code == 200
    assert client.get("/static/vendor/swagger-ui/swagger-ui.css").status_code == 200
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', shell.text).group(1)
    assert client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    assert client.get("/", follow_redirects=False).status_code == 303
    client.cookies.clear()


def test_only_health_collector_and_login_answer_without_credentials(api: Api) -> None:
    client = api.client
    client.cookies.clear()
    assert client.get("/health").json()["ok"] is True
    assert client.get("/login").status_code == 200
    for path in ("/openapi.json", "/static/console.css", "/api/v1/tags"):
        assert client.get(path, headers={"Accept": "application/json"}).status_code == 401, path
    assert client.get("/docs", follow_redirects=False).status_code == 303
    assert client.get("/login?next=//evil.example").text.count('value="/"') == 1  # no open redirect


def test_api_keys_are_scoped_to_their_role_and_revocable(api: Api) -> None:
    assert api.get("/api/v1/analytics/cube", "analyst", params={"measure": "orders", "by": "year"}).status_code == 200
    campaign = {"campaign_id": "zz_denied", "name_zh": "x", "name_en": "x"}
    assert api.post("/api/v1/campaigns", "analyst", json=campaign).status_code == 403
    created = api.post("/api/v1/api-keys", json={"name": "short-lived", "role": "viewer"})
    assert created.status_code == 201
    secret, key_id = created.json()["secret"], created.json()["key_id"]
    as_key = {"Authorization": f"Bearer {secret}"}
    assert api.client.get("/api/v1/auth/me", headers=as_key).json()["role"] == "viewer"
    assert api.client.delete(f"/api/v1/api-keys/{key_id}", headers=api.key("admin")).status_code == 204
    assert api.client.get("/api/v1/auth/me", headers=as_key).status_code == 401
    listed = api.get("/api/v1/api-keys").json()
    assert all("secret" not in row and "key_hash" not in row for row in listed)


def test_collector_write_keys_only_write_events(api: Api) -> None:
    created = api.post("/api/v1/sources", json={"name": "web-test-source", "kind": "web"}).json()
    write_key = created["write_key"]
    basic = {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}
    event = {"type": "track", "event": "Zz Tested", "userId": "zz-user", "messageId": "zz-write-key-1"}
    assert api.client.post("/v1/track", json=event, headers=basic).json() == {"success": True}  # at once
    for headers in (basic, {"Authorization": f"Bearer {write_key}"}):
        assert api.client.get("/api/v1/tags", headers=headers).status_code == 401


def test_personal_identifiers_are_masked_for_viewer_and_analyst(api: Api) -> None:
    phone = api.post("/api/v1/sql", json={"query": "SELECT id_value FROM identities WHERE id_type = 'phone' AND "
                     "person_id IN (SELECT person_id FROM person_traits WHERE name IS NOT NULL) ORDER BY 1 LIMIT 1"}
                     ).json()["items"][0]["id_value"]
    seen = {}
    for role in ("admin", "marketer", "analyst", "viewer"):
        person = api.get(f"/api/v1/persons/phone:{phone}", role)
        assert person.status_code == 200, person.text
        seen[role] = person.json()
    full = seen["admin"]
    name = next(t["value"] for t in full["traits"] if t["trait"] == "name")
    assert phone in str(full) and name in str(full) and seen["marketer"] == full
    for role in ("analyst", "viewer"):
        text = str(seen[role])
        assert phone not in text and phone[3:] not in text and name not in text, role
        phones = [i["id_value"] for i in seen[role]["identities"] if i["id_type"] == "phone"]
        assert phones and all(re.fullmatch(r"1\d\d\*{4}\d{4}", p) for p in phones)
        assert next(t["value"] for t in seen[role]["traits"] if t["trait"] == "name") == name[0] + "*" * (len(name) - 1)
    exported = api.get("/api/v1/audiences/valuable_at_risk/export", "analyst", params={"format": "csv"})
    assert exported.status_code == 200 and "text/csv" in exported.headers["content-type"]
    rows = list(csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert rows and list(rows[0])[:3] == ["person_id", "name", "phone"]
    assert [row["phone"] for row in rows if not re.fullmatch(r"(1\d\d\*{4}\d{4})?", row["phone"])] == []
    assert all(not row["name"] or row["name"][1:] == "*" * (len(row["name"]) - 1) for row in rows)
    unmasked = api.get("/api/v1/audiences/valuable_at_risk/export", "marketer", params={"format": "csv"})
    phones = [row["phone"] for row in csv.DictReader(io.StringIO(unmasked.content.decode("utf-8-sig")))]
    assert any(re.fullmatch(r"\+861\d{10}", phone) for phone in phones)


def test_every_change_is_in_the_audit_log(api: Api) -> None:
    user = api.post("/api/v1/users", json={"username": "zz-audited", "role": "viewer", "password": "a-good-passphrase"})
    assert user.status_code == 201
    assert api.client.patch("/api/v1/users/zz-audited", json={"disabled": True}, headers=api.key("admin")).status_code == 200
    refused = login(api, "zz-audited", "a-good-passphrase")
    assert refused.status_code == 401  # a disabled user cannot log in
    entries = api.get("/api/v1/audit", params={"object_type": "user", "limit": 200}).json()["items"]
    mine = {e["action"]: e["actor"] for e in entries if e["object_id"] == "zz-audited"}
    assert set(mine) >= {"user.create", "user.update", "auth.login_failed"}
    assert mine["user.create"].startswith("api_key:k_") and mine["user.update"].startswith("api_key:k_")
    assert all(e["occurred_at"] for e in entries)
    sessions = api.get("/api/v1/audit", params={"action": "auth.login", "limit": 5}).json()
    assert sessions["total"] >= 1 and sessions["items"][0]["actor"].startswith("user:")
