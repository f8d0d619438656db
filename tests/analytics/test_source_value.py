"""Data-source value on a constructed partner file: our persons' phones hashed as ad platforms
hash them, plus rows that are nobody of ours, one tag planted on persons who go on to buy
and one drawn at random. The overlap, the lift, the freshness and the ranking must tell
them apart exactly as constructed."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jingzhun.analytics import (
    AnalyticsError,
    load_partner_file,
    partner_freshness,
    partner_overlap,
    partner_tag_lift,
    rank_sources,
)
from jingzhun.analytics.source_value import FRESHNESS_BUCKETS
from jingzhun.core import Workspace
from jingzhun.engine import Engine, open_engine, parse_sql, render
from jingzhun.profiles.tags import data_as_of
from jingzhun.segments.insight import goal_sql
from tests.cli.test_foundation import run
from tests.conftest import copy_workspace

WINDOW = 90
JUNK_HASHES, BAD_VALUES = 200, 10


@pytest.fixture(scope="module")
def demo(portrayed_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workspace, Engine]]:
    workspace = copy_workspace(portrayed_demo, tmp_path_factory.mktemp("source-value") / "ws")
    with open_engine(workspace) as engine:
        yield workspace, engine


def _bucket(age: int) -> str:
    return next((label for days, label in FRESHNESS_BUCKETS if age <= days), ">365")


@pytest.fixture(scope="module")
def partner(demo: tuple[Workspace, Engine], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """phone_md5 (11 digits, as Tencent/Ocean Engine hash) for every phone of ours, phone_sha256
    (E.164, as Google hashes) for every other one, `interest` planted on 70% of the persons who
    buy in the last two windows (10% of the others), `travel` on a random 30%."""
    workspace, engine = demo
    end = data_as_of(engine)
    start = end - dt.timedelta(days=2 * WINDOW)
    buyers = set(engine.query(goal_sql({"order": {}}, start, 2 * WINDOW)).column("person_id").to_pylist())
    phones = engine.query("SELECT i.person_id, i.id_value FROM identities AS i JOIN persons AS p "
                          "ON p.person_id = i.person_id AND p.status = 'active' WHERE i.id_type = 'phone' "
                          "ORDER BY i.id_value").to_pandas().drop_duplicates("person_id")
    rng = np.random.default_rng(7)
    bought = phones["person_id"].isin(buyers).to_numpy()
    sha = np.arange(len(phones)) % 2 == 1
    ages = rng.integers(0, 500, len(phones) + JUNK_HASHES + BAD_VALUES)
    # observed at noon Beijing time (04:00 UTC), `ages` calendar days before our latest data
    seen = [dt.datetime.combine(end.date() - dt.timedelta(days=int(a)), dt.time(12)) for a in ages]
    real = pd.DataFrame({
        "phone_md5": [None if s else hashlib.md5(v[3:].encode()).hexdigest() for v, s in zip(phones["id_value"], sha, strict=True)],
        "phone_sha256": [hashlib.sha256(v.encode()).hexdigest() if s else None for v, s in zip(phones["id_value"], sha, strict=True)],
        "interest": np.where(rng.random(len(phones)) < np.where(bought, 0.7, 0.1), "美妆达人", "其他"),
        "travel": np.where(rng.random(len(phones)) < 0.3, "爱旅行", "不旅行")})
    strangers = pd.DataFrame({"phone_md5": [hashlib.md5(f"stranger-{i}".encode()).hexdigest()
                                            for i in range(JUNK_HASHES)] + ["not-a-hash"] * BAD_VALUES,
                              "phone_sha256": None, "interest": "其他", "travel": "不旅行"})
    frame = pd.concat([real, strangers], ignore_index=True)
    frame["更新时间"] = [moment.strftime("%Y-%m-%d %H:%M:%S") for moment in seen]
    path = tmp_path_factory.mktemp("partner") / "vendor_tags.csv"
    frame.to_csv(path, index=False, encoding="utf-8")
    data = load_partner_file(engine, path, workspace=workspace)
    return {"data": data, "path": path, "phones": len(phones), "sha": int(sha.sum()),
            "buckets": pd.Series([_bucket(int(a)) for a in ages]).value_counts().to_dict()}


def test_the_file_is_stored_with_its_columns_recognized(partner: dict) -> None:
    data = partner["data"]
    assert data.id_types == {"id_0": "phone_md5", "id_1": "phone_sha256"}
    assert [data.label(t) for t in data.tags] == ["interest", "travel"] and data.timed and not data.scores
    assert data.table == "analytics_partner_vendor_tags" and data.rows == partner["phones"] + JUNK_HASHES + BAD_VALUES


def test_overlap_matches_every_hashed_phone_of_ours_and_nothing_else(demo: tuple[Workspace, Engine],
                                                                      partner: dict) -> None:
    workspace, engine = demo
    overlap = partner_overlap(engine, partner["data"], workspace)
    assert render(parse_sql(overlap.sql["overlap"]), "spark")
    frame = overlap.frame.set_index("column")
    phones, sha = partner["phones"], partner["sha"]
    md5 = frame.loc["phone_md5"]
    assert (md5["rows_with_value"], md5["valid_rows"], md5["matched_rows"]) == (
        phones - sha + JUNK_HASHES + BAD_VALUES, phones - sha + JUNK_HASHES, phones - sha)
    google = frame.loc["phone_sha256"]  # E.164 with '+': matched through identity's hash forms
    assert (google["valid_rows"], google["matched_rows"], google["match_rate"]) == (sha, sha, 1.0)
    whole = frame.loc["(any)"]
    assert whole["matched_persons"] == phones
    assert whole["match_rate"] == pytest.approx(phones / partner["data"].rows)


def test_the_planted_tag_lifts_conversion_and_the_random_one_does_not(demo: tuple[Workspace, Engine],
                                                                       partner: dict) -> None:
    workspace, engine = demo
    lift = partner_tag_lift(engine, partner["data"], window_days=WINDOW, workspace=workspace)
    rows = lift.frame.set_index(["tag", "value"])
    useful, useless = rows.loc[("interest", "美妆达人")], rows.loc[("travel", "爱旅行")]
    assert useful["significant"] and useful["rate_ratio_low"] > 2
    assert not useless["significant"] and useless["rate_ratio_low"] < 1 < useless["rate_ratio_high"]
    assert lift.frame.iloc[0]["value"] == "美妆达人"
    assert render(parse_sql(lift.sql["tag_lift"]), "spark")
    assert lift.params["persons"] <= partner["phones"] and 0 < lift.params["converters"] < lift.params["persons"]


def test_freshness_counts_the_records_by_age(demo: tuple[Workspace, Engine], partner: dict) -> None:
    _, engine = demo
    frame = partner_freshness(engine, partner["data"]).frame
    assert dict(zip(frame["bucket"], frame["rows"], strict=True)) == partner["buckets"]
    assert frame["share"].sum() == pytest.approx(1.0)


def test_the_ranking_puts_the_planted_tag_above_the_random_one(demo: tuple[Workspace, Engine],
                                                               partner: dict) -> None:
    workspace, engine = demo
    ranking = rank_sources(engine, window_days=WINDOW, partner=partner["data"], workspace=workspace)
    frame = ranking.frame.set_index("source")
    useful, useless = frame.loc["partner:interest"], frame.loc["partner:travel"]
    assert useful["auc"] > 0.6 and useful["auc"] > useless["auc"] and useful["rank"] < useless["rank"]
    # beyond our own sources and being in the file at all, only the planted column adds anything
    assert useful["auc_gain"] > 0.02 and abs(useless["auc_gain"]) < 0.01
    assert frame.loc["partner", "auc_gain"] > 0.02
    assert frame.loc["transactions", "auc"] > 0.55 and frame.index[0] == "all_ours"
    assert {"transactions", "search", "browsing", "context", "social", "membership", "demographics",
            "survey"} <= set(frame.index)
    for sql in ranking.sql.values():
        assert render(parse_sql(sql), "spark")


def test_a_file_without_identifiers_is_refused(demo: tuple[Workspace, Engine], tmp_path: Path) -> None:
    workspace, engine = demo
    path = tmp_path / "tags.csv"
    path.write_text("name,tag\n张三,美妆\n", encoding="utf-8")
    with pytest.raises(AnalyticsError) as refused:
        load_partner_file(engine, path, workspace=workspace)
    assert refused.value.field == "id_columns" and "phone_md5" in refused.value.fix


def test_source_value_from_the_command_line(portrayed_demo: Path, partner: dict, tmp_path: Path) -> None:
    workspace = copy_workspace(portrayed_demo, tmp_path / "ws")  # the module's copy is held open
    out = tmp_path / "value.csv"
    done = run("report", "source-value", str(partner["path"]), "-w", str(workspace.root), "--section", "overlap",
               "--section", "freshness", "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert "match" in done.stdout and (tmp_path / "value-source_overlap.csv").exists()
    assert (tmp_path / "value-source_freshness.csv").exists()
