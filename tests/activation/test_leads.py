"""Lead distribution on the demo's 3,000 leads: the score beats freshness alone on the planted outcomes,
the last three days weigh most, assignment keeps quotas and territories and never gives a lead to two
reps (two assigners at once, in threads or in processes, and reruns included), the reps' outcomes teach
the next scoring, bad settings are refused by name, and the scoring SQL means the same on Spark."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from jingzhun.activation import (
    LeadError,
    LeadScoring,
    SalesSettings,
    assign_leads,
    install_example_sales,
    list_leads,
    load_sales_settings,
    record_lead_outcome,
    score_leads,
)
from jingzhun.activation.leads_model import fit
from jingzhun.activation.leads_settings import parse_sales_settings
from jingzhun.activation.leads_sql import features_sql, matrix_sql, scored_sql
from jingzhun.collect.importers import import_file
from jingzhun.core import ConfigError, Workspace
from jingzhun.engine import Engine, open_engine
from jingzhun.engine.parity import compare_tables
from jingzhun.schema import migrate
from tests.conftest import copy_workspace

REPLAY = datetime(2026, 9, 1, tzinfo=UTC)  # leads created in the 44 days before are still open then
MONDAY = datetime(2026, 9, 7, 2, 0, tzinfo=UTC)


def _sales_workspace(portrayed_demo: Path, target: Path) -> tuple[Workspace, Engine]:
    """A private copy of the demo with the example sales team and the demo's lead file imported."""
    workspace = copy_workspace(portrayed_demo, target)
    install_example_sales(workspace.root)  # `demo generate` writes it; a demo made before it did does not have it
    assert load_sales_settings(workspace).rep("zhang_wei") is not None
    engine = open_engine(workspace)
    migrate(engine)
    imported = import_file(workspace, engine, "prospects", workspace.root / "data" / "leads" / "prospects.csv")
    assert imported.rows_loaded > 2900 and imported.rows_quarantined > 0  # 7-digit phones wait in quarantine
    return workspace, engine


@pytest.fixture(scope="module")
def sales(portrayed_demo: Path, tmp_path_factory: pytest.TempPathFactory):
    workspace, engine = _sales_workspace(portrayed_demo, tmp_path_factory.mktemp("leads") / "ws")
    yield workspace, engine
    engine.close()


@pytest.fixture(scope="module")
def replay(sales: tuple[Workspace, Engine]) -> LeadScoring:
    """The leads as scored on REPLAY, a day when the newest ones were still open."""
    workspace, engine = sales
    scored = score_leads(workspace, engine, as_of=REPLAY)
    assert scored.statuses["open"] > 100
    return scored


def test_score_beats_freshness_alone_on_the_planted_outcomes(sales: tuple[Workspace, Engine]) -> None:
    workspace, engine = sales
    result = score_leads(workspace, engine)
    test = result.test
    assert test is not None and result.statuses["won"] > 500 and "open" not in result.statuses
    leads = engine.query("SELECT lead_id, created_at, status FROM leads WHERE status IN ('won', 'lost')").to_pandas()
    truth = pq.read_table(workspace.root / "demo-truth" / "lead_outcomes.parquet").to_pandas()
    held_out = leads[leads.created_at >= pd.Timestamp(test.split_at)].merge(truth, on="lead_id")
    truth_auc = roc_auc_score(held_out.status == "won", held_out.p_convert)
    print(f"\nlead scoring, time split {test.train_rows} / {test.test_rows}: AUC {test.auc:.3f}, freshness only "  # noqa: T201
          f"{test.freshness_auc:.3f}, the planted probabilities {truth_auc:.3f}; Brier {test.brier:.3f} "
          f"(base rate {test.base_rate_brier:.3f}), calibration error {test.calibration_error:.3f}")
    assert test.auc >= test.freshness_auc + 0.05
    assert test.auc >= truth_auc - 0.04  # close to what the planted model allows
    assert test.brier < test.base_rate_brier and test.calibration_error < 0.06
    coefficients = result.coefficients()
    for planted in ("freshness", "log_pages_viewed", "price_checks", "sample_requested"):
        assert coefficients[planted] > 0.15, planted  # the signals the demo plants carry the score
    stored = engine.query(f"SELECT metrics FROM model_runs WHERE model_version = '{result.model_version}'")
    assert stored.num_rows == 1 and '"auc"' in stored.column(0)[0].as_py()


def test_the_last_three_days_weigh_most(replay: LeadScoring, sales: tuple[Workspace, Engine]) -> None:
    """Freshness is 1 for a lead active within 3 days and halves every 3 days after; with its positive
    coefficient, the freshness share of the score is flat over the last 3 days and falls after."""
    _, engine = sales
    leads = engine.query("SELECT lead_id, days_since_activity AS days, freshness, freshness_part, last_activity_at "
                         "FROM leads WHERE status = 'open' ORDER BY days_since_activity").to_pandas()
    recent, older = leads[leads.days <= 3], leads[leads.days > 3]
    assert len(recent) > 10 and len(older) > 10 and (leads.days >= 0).all()
    assert (recent.freshness == 1.0).all()
    assert np.allclose(older.freshness, 0.5 ** ((older.days - 3) / 3))
    assert replay.coefficients()["freshness"] > 0
    parts = leads.freshness_part.to_numpy()
    assert np.ptp(parts[leads.days <= 3]) < 1e-9 and (np.diff(parts) <= 1e-9).all()
    at_six = older.iloc[(older.days - 6).abs().argmin()]
    assert at_six.freshness == pytest.approx(0.5, abs=0.05)
    # replaying a past day sees no later activity: a lead last active after REPLAY counts from its creation
    assert leads.last_activity_at.max() > REPLAY and leads.days.min() >= 0


def _assignments(engine: Engine) -> pd.DataFrame:
    return engine.query("SELECT a.*, l.city FROM lead_assignments AS a JOIN leads AS l USING (lead_id)").to_pandas()


def test_assignment_keeps_quota_and_territory(replay: LeadScoring, sales: tuple[Workspace, Engine]) -> None:
    workspace, engine = sales
    settings = load_sales_settings(workspace)
    result = assign_leads(workspace, engine, now=MONDAY)
    assert result.per_rep == {"zhang_wei": 4, "wang_fang": 3, "li_na": 3, "chen_jing": 2, "zhao_lei": 5}
    made = _assignments(engine)
    cities = dict(settings.city_territories())
    for row in made.itertuples():
        assert cities.get(row.city, "other") in settings.rep(row.rep_id).territories, row
    assert made.lead_id.is_unique
    best = list_leads(engine, assigned=None, limit=1000)[0]
    east = best[best.city.map(lambda c: cities.get(c, "other")) == "east"]
    assert set(east.lead_id[:3]) <= set(made.lead_id)  # the best leads went out first
    again = assign_leads(workspace, engine, now=MONDAY + timedelta(hours=3))
    assert sum(again.per_rep.values()) == 0  # quotas are used up for the day (and zhao_lei's week)
    tuesday = assign_leads(workspace, engine, now=MONDAY + timedelta(days=1))
    assert tuesday.per_rep["zhao_lei"] == 0 and tuesday.per_rep["zhang_wei"] == 4
    assert _assignments(engine).lead_id.is_unique


def test_two_assigners_at_once_never_give_a_lead_twice(sales: tuple[Workspace, Engine]) -> None:
    """Two threads, each on its own connection, assign the same day at the same moment."""
    workspace, engine = sales
    day = MONDAY + timedelta(days=2)
    before = len(_assignments(engine))
    barrier, results, errors = threading.Barrier(2), [], []

    def assign() -> None:
        own = open_engine(workspace)  # same settings as the fixture's: the same database instance
        try:
            barrier.wait()
            results.append(assign_leads(workspace, own, now=day, assigned_by=threading.current_thread().name))
        except Exception as failure:  # noqa: BLE001 — reported below
            errors.append(failure)
        finally:
            own.close()

    threads = [threading.Thread(target=assign, name=f"assigner-{i}") for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    made = _assignments(engine)
    assert made.lead_id.is_unique and made.assignment_id.is_unique
    assert len(made) - before == 4 + 3 + 3 + 2  # one day's quota, once: the second assigner found it used
    assert sorted(sum(r.per_rep.values()) for r in results) == [0, 12]


def test_two_assign_commands_at_once_take_turns(sales: tuple[Workspace, Engine], tmp_path: Path) -> None:
    """`jingzhun lead assign` while another process is assigning the same day: DuckDB lets one process
    hold the file, so the command waits (and says so), then finds the day's quota used."""
    workspace, engine = sales
    engine.execute("CHECKPOINT")
    copy = copy_workspace(workspace.root, tmp_path / "twice")
    day = MONDAY + timedelta(days=3)
    holder = open_engine(copy)  # this process holds the database, as a first `lead assign` would
    command = [sys.executable, "-m", "jingzhun", "lead", "assign", "--at", day.isoformat(), "-f", "json",
               "-w", str(copy.root)]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "JINGZHUN_LANG": "en"})
    try:
        first = assign_leads(copy, holder, now=day, assigned_by="first")
        said = run.stderr.readline()  # blocks until the command has met the lock
        assert "held by another process; waiting" in said, said
    finally:
        holder.close()
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, said + err
    assert sum(first.per_rep.values()) == 12 and json.loads(out) == []
    with open_engine(copy, read_only=True) as other:
        held = other.query("SELECT lead_id FROM lead_assignments WHERE closed_at IS NULL").column(0).to_pylist()
    assert len(held) == len(set(held)) == len(_assignments(engine)) + 12


def test_outcomes_close_assignments_and_return_unanswered_leads_later(sales: tuple[Workspace, Engine]) -> None:
    workspace, engine = sales
    at = MONDAY + timedelta(days=3)
    before = score_leads(workspace, engine, as_of=at + timedelta(hours=1))
    held = engine.query("SELECT a.lead_id, a.rep_id FROM lead_assignments AS a JOIN leads AS l USING (lead_id) "
                        "WHERE a.closed_at IS NULL AND l.status = 'open' ORDER BY lead_id").to_pylist()
    won, lost, unanswered = held[:6], held[6:12], held[12]  # leads still open then: each outcome is a new label
    for row in won:
        record_lead_outcome(engine, row["lead_id"], "won", rep_id=row["rep_id"], now=at)
    for row in lost:
        record_lead_outcome(engine, row["lead_id"], "lost", now=at)
    record_lead_outcome(engine, unanswered["lead_id"], "no_answer", now=at)
    after = score_leads(workspace, engine, as_of=at + timedelta(hours=1))
    assert after.model.rows == before.model.rows + 12 and after.model.positives == before.model.positives + 6
    assert after.model_version != before.model_version
    statuses = engine.query("SELECT lead_id, status, status_source, no_answers FROM leads").to_pandas()
    statuses = statuses.set_index("lead_id")
    assert (statuses.loc[[r["lead_id"] for r in won], ["status", "status_source"]] == ["won", "rep"]).all().all()
    assert (statuses.loc[[r["lead_id"] for r in lost], "status"] == "lost").all()
    assert statuses.loc[unanswered["lead_id"], "status"] == "open" and statuses.loc[unanswered["lead_id"], "no_answers"] == 1
    closed = engine.query("SELECT COUNT(*) FROM lead_assignments WHERE closed_at IS NOT NULL").column(0)[0].as_py()
    assert closed == 13
    # the unanswered lead waits out its cool-down (24 h) before a rep may get it again
    soon = assign_leads(workspace, engine, now=at + timedelta(hours=2))
    assert unanswered["lead_id"] not in set(soon.assignments.lead_id)
    everyone = SalesSettings(reps=({"id": "team", "territories": ["*"], "quota": 1000},))
    later = assign_leads(workspace, engine, now=at + timedelta(days=1, hours=1), settings=everyone)
    assert later.assignments.set_index("lead_id").loc[unanswered["lead_id"], "attempt"] == 2  # back in the pool
    assert _assignments(engine).groupby("lead_id").closed_at.apply(lambda c: c.isna().sum()).max() == 1


def test_a_pattern_in_the_outcomes_moves_the_next_scores(portrayed_demo: Path, tmp_path: Path) -> None:
    """The reps close every company lead (group purchases) and none of the others: the next scoring
    learns that a company converts, and company leads now score higher than before beside the rest."""
    workspace, engine = _sales_workspace(portrayed_demo, tmp_path / "ws")
    at = REPLAY + timedelta(days=12)
    try:
        before = score_leads(workspace, engine, as_of=at)
        scores_before = engine.query("SELECT lead_id, company IS NOT NULL AS company, score FROM leads").to_pandas()
        everyone = SalesSettings(reps=({"id": "team", "territories": ["*"], "quota": 1000},))
        handed = assign_leads(workspace, engine, now=at - timedelta(hours=2), settings=everyone).assignments
        assert len(handed) == before.statuses["open"] > 100
        companies = set(scores_before.lead_id[scores_before.company])
        for lead_id in handed.lead_id:
            record_lead_outcome(engine, lead_id, "won" if lead_id in companies else "lost",
                                now=at - timedelta(hours=1))
        after = score_leads(workspace, engine, as_of=at)
        scores_after = engine.query("SELECT lead_id, score FROM leads").to_pandas()
    finally:
        engine.close()
    wins = len(companies & set(handed.lead_id))
    assert wins > 15 and after.model.positives == before.model.positives + wins
    shift = after.coefficients()["company"] - before.coefficients()["company"]
    both = scores_before.merge(scores_after, on="lead_id", suffixes=("_before", "_after"))
    gap = {when: both[f"score_{when}"][both.company].mean() - both[f"score_{when}"][~both.company].mean()
           for when in ("before", "after")}
    print(f"\noutcomes fed back: {wins} company leads won, {len(handed) - wins} others lost; company coefficient "  # noqa: T201
          f"{before.coefficients()['company']:+.3f} -> {after.coefficients()['company']:+.3f}; company minus others "
          f"mean score {gap['before']:+.4f} -> {gap['after']:+.4f}")
    assert shift > 0.05
    assert gap["after"] > gap["before"] + 0.01


def test_bad_settings_are_refused_by_name(sales: tuple[Workspace, Engine]) -> None:
    workspace, engine = sales
    rep = {"id": "a", "territories": ["other"], "quota": 1}
    with pytest.raises(ConfigError) as negative:
        parse_sales_settings({"reps": [{**rep, "quota": -1}]})
    assert negative.value.field == "reps.0.quota" and "0 (none) to 10000" in negative.value.fix
    assert "0（不分配）" in negative.value.fix_zh
    with pytest.raises(ConfigError) as unknown:
        parse_sales_settings({"territories": {"north": {"cities": ["北京市"]}}, "reps": [{**rep, "territories": ["nord"]}]})
    assert unknown.value.field == "reps.0.territories" and "'nord'" in unknown.value.message
    assert "north" in unknown.value.fix and "未定义" in unknown.value.message_zh
    with pytest.raises(ConfigError) as twice:
        parse_sales_settings({"territories": {"n": {"cities": ["北京市"]}, "s": {"cities": ["北京市"]}}})
    assert twice.value.field == "territories.s.cities" and "北京市" in twice.value.message_zh
    settings = load_sales_settings(workspace)
    with pytest.raises(LeadError) as nobody:
        list_leads(engine, rep_id="nobody", settings=settings)
    assert nobody.value.field == "rep" and "zhang_wei" in nobody.value.fix and "未知" in nobody.value.message_zh
    with pytest.raises(LeadError) as stranger:
        record_lead_outcome(engine, "L10000001", "won", rep_id="nobody", settings=settings)
    assert stranger.value.field == "rep"


def test_outcome_errors_name_the_problem(sales: tuple[Workspace, Engine]) -> None:
    workspace, engine = sales
    with pytest.raises(LeadError) as unknown:
        record_lead_outcome(engine, "L10000001", "maybe")
    assert unknown.value.field == "outcome" and "no_answer" in unknown.value.fix
    free = list_leads(engine, status=None, assigned=False, limit=1)[0].lead_id[0]
    with pytest.raises(LeadError) as unassigned:
        record_lead_outcome(engine, free, "won")
    assert "not assigned" in unassigned.value.message and "未分配" in unassigned.value.message_zh
    held = engine.query("SELECT lead_id, rep_id FROM lead_assignments WHERE closed_at IS NULL LIMIT 1").to_pylist()[0]
    with pytest.raises(LeadError) as wrong_rep:
        record_lead_outcome(engine, held["lead_id"], "won", rep_id="someone_else")
    assert held["rep_id"] in wrong_rep.value.message


def test_lead_cli_lists_and_refuses_clearly(sales: tuple[Workspace, Engine], tmp_path: Path) -> None:
    from jingzhun.cli import app

    workspace, engine = sales
    engine.execute("CHECKPOINT")
    copy = copy_workspace(workspace.root, tmp_path / "cli")  # the CLI opens its own connection
    runner = CliRunner()
    listed = runner.invoke(app, ["lead", "list", "--assigned", "-w", str(copy.root), "-f", "json"])
    assert listed.exit_code == 0, listed.output
    assert '"rep_id"' in listed.output and '"intent_tags"' in listed.output
    stranger = runner.invoke(app, ["lead", "list", "--rep", "nobody", "-w", str(copy.root)])
    assert isinstance(stranger.exception, LeadError) and stranger.exception.field == "rep"
    (copy.definitions_dir / "sales.yaml").write_text("reps:\n  - {id: a, territories: [nord], quota: 2}\n",
                                                    encoding="utf-8")
    misnamed = runner.invoke(app, ["lead", "assign", "-w", str(copy.root)])
    assert isinstance(misnamed.exception, ConfigError) and misnamed.exception.field == "reps.0.territories"
    (copy.definitions_dir / "sales.yaml").unlink()
    refused = runner.invoke(app, ["lead", "assign", "-w", str(copy.root)])
    assert isinstance(refused.exception, LeadError) and refused.exception.field == "reps"


@pytest.mark.spark
def test_the_scoring_sql_means_the_same_on_spark(pipelines_on_both, sales: tuple[Workspace, Engine]) -> None:
    """Features (status as of a replayed day, freshness, intent from events and livestreams, fit from
    orders, membership and stores) and the scores the fitted model gives them: equal row for row."""
    (duck, spark), _ = pipelines_on_both
    spark.refresh()
    workspace, engine = sales
    records = engine.query("SELECT * FROM source_records WHERE kind = 'lead'")
    settings = SalesSettings.model_validate({}).scoring
    scored = {}
    try:
        for storage in (duck, spark):
            storage.write_table("parity_lead_records", records, mode="replace")
            storage.materialize("parity_lead_features", features_sql(REPLAY, settings, "parity_lead_records"))
        matrix = duck.query(matrix_sql("parity_lead_features")).to_pandas()
        decided = matrix[matrix.status.isin(["won", "lost"])].assign(won=lambda f: (f.status == "won") * 1)
        model = fit(decided, settings.regularization)
        query = scored_sql("parity_lead_features", model.raw_coefficients(), model.centers, model.intercept,
                           "parity", REPLAY, load_sales_settings(workspace).city_territories(), settings.fresh_days)
        for storage in (duck, spark):
            features = storage.query("SELECT * FROM parity_lead_features ORDER BY lead_id")
            scored[storage.NAME] = (features, storage.query(query))
    finally:
        for storage in (duck, spark):
            storage.drop_table("parity_lead_features")
            storage.drop_table("parity_lead_records")
    (duck_features, duck_scores), (spark_features, spark_scores) = scored["duckdb"], scored["spark"]
    assert duck_features.num_rows > 2800 and set(duck_features.column("status").to_pylist()) == {"open", "won", "lost"}
    assert sum(duck_features.column("product_views").to_pylist()) > 0
    assert sum(duck_features.column("orders_before").to_pylist()) > 0
    for name, left, right in (("lead features", duck_features, spark_features),
                              ("lead scores", duck_scores, spark_scores)):
        report = compare_tables(name, left, right)
        assert report.equal, report.differences
