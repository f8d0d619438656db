"""The two route files the console added to the REST API: the builder's catalogue and measurement.
Run against the console's server (no browser); every list comes with SQL that reruns to the same rows."""

from __future__ import annotations

from tests.web.console.conftest import Console


def rerun(console: Console, sql: str) -> list[dict]:
    answer = console.api("POST", "/sql", json={"query": sql, "limit": 1000})
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]


def test_the_builder_catalogue_names_what_a_rule_may_use(console: Console) -> None:
    found = console.api("GET", "/console/catalog", "viewer").json()
    traits = {t["name"]: t for t in found["traits"]}
    assert traits["gender"]["kind"] == "text" and "contains" in traits["gender"]["ops"]
    assert traits["age"]["ops"][:2] == ["=", "!="] and "between" in traits["age"]["ops"]
    assert "churn_90d" in found["score_models"] and "phone" in found["identifier_types"]
    assert {"repeat_buyer", "female"} <= {t["tag_id"] for t in found["tags"]}
    assert "valuable_at_risk" in {a["segment_id"] for a in found["audiences"]}
    events = found["values"]["events"]
    assert events[0]["rows"] >= events[-1]["rows"] and "Product Viewed" in {e["event"] for e in events}
    assert rerun(console, found["sql"]["categories"]) == found["values"]["categories"]


def test_measurement_answers_with_its_sql(console: Console) -> None:
    lift = console.api("GET", "/measure/lift", "viewer", params={"limit": 5}).json()
    assert len(lift["items"]) == 5 and lift["total"] > 5
    assert {"lift", "incremental_roi", "verdict_zh", "verdict_en"} <= set(lift["columns"])
    assert {row["campaign_id"] for row in lift["sequential"]} == {row["campaign_id"] for row in lift["items"]}
    attribution = console.api("GET", "/measure/attribution", "viewer").json()
    assert {"first", "last", "markov"} <= {row["model"] for row in attribution["channels"]}
    credits, offset = [], 0
    while offset < attribution["total"]:  # every credit, a page at a time
        credits += console.api("GET", "/measure/attribution", params={"limit": 1000, "offset": offset}).json()["items"]
        offset += 1000
    for model in ("first", "markov"):  # the sums per channel are the credits' own
        summed = sum(row["value"] for row in attribution["channels"] if row["model"] == model)
        assert abs(summed - sum(row["value"] for row in credits if row["model"] == model)) < 1e-6 * summed
    assert attribution["sql"]
    budget = console.api("GET", "/measure/budget", "viewer", params={"total": 5000}).json()
    assert budget["total_budget"] == 5000 and abs(sum(row["recommended"] for row in budget["items"]) - 5000) < 1
    kpis = console.api("GET", "/measure/kpis", "viewer", params={"by": ["channel"]}).json()
    assert kpis["items"] and rerun(console, kpis["sql"]["kpis"])[0]["channel"] == kpis["items"][0]["channel"]
    refused = console.api("GET", "/measure/kpis", "viewer", params={"by": ["nonsense"]})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_request"
    missing = console.api("GET", "/measure/lift", "viewer", params={"campaign_id": "no_such_campaign"})
    assert missing.status_code == 400 and missing.json()["error"]["field"] == "campaign_ids"
