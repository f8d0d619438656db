"""Lead distribution on the demo's 3,000 leads: the score beats freshness alone on the planted outcomes,
assignment keeps quotas and territories and never gives a lead to two reps (two assigners at once
included), and the reps' outcomes teach the next scoring."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from jingzhun.activation import (
    LeadError,
    assign_leads,
    list_leads,
    load_sales_settings,
    record_lead_outcome,
    score_leads,
)
from jingzhun.collect.importers import import_file
from jingzhun.core import Workspace
from jingzhun.engine import DuckDBEngine, Engine, open_engine
from jingzhun.schema import migrate
from tests.conftest import copy_workspace

REPLAY = datetime(2026, 9, 1, tzinfo=UTC)  # leads created in the 44 days before are still open then
MONDAY = datetime(2026, 9, 7, 2, 0, tzinfo=UTC)
SALES_YAML = """
territories:
  north: {cities: [北京市, 天津市, 石家庄市, 太原市, 呼和浩特市, 沈阳市, 长春市, 哈尔滨市, 济南市, 青岛市]}
  east: {cities: [上海市, 杭州市, 南京市, 苏州市, 无锡市, 宁波市, 合肥市, 南昌市, 福州市, 厦门市]}
  south: {cities: [广州市, 深圳市, 佛山市, 东莞市, 南宁市, 海口市]}
  west: {cities: [成都市, 重庆市, 西安市, 昆明市, 贵阳市, 兰州市, 乌鲁木齐市]}
reps:
  - {id: zhang_wei, territories: [north], quota: 4}
  - {id: wang_fang, territories: [east], quota: 3}
  - {id: li_na, territories: [east, south], quota: 3}
  - {id: chen_jing, territories: [west], quota: 2}
  - {id: zhao_lei, territories: [other], quota: 5, period: week}
"""


@pytest.fixture(scope="module")
def sales(portrayed_demo: Path, tmp_path_factory: pytest.TempPathFactory):
    workspace = copy_workspace(portrayed_demo, tmp_path_factory.mktemp("leads") / "ws")
    (workspace.definitions_dir / "sales.yaml").write_text(SALES_YAML, encoding="utf-8")
    engine = open_engine(workspace)
    migrate(engine)
    imported = import_file(workspace, engine, "prospects", workspace.root / "data" / "leads" / "prospects.csv")
    assert imported.rows_loaded > 2900 and imported.rows_quarantined > 0  # 7-digit phones wait in quarantine
    yield workspace, engine
    engine.close()


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


def _assignments(engine: Engine) -> pd.DataFrame:
    return engine.query("SELECT a.*, l.city FROM lead_assignments AS a JOIN leads AS l USING (lead_id)").to_pandas()


def test_assignment_keeps_quota_and_territory(sales: tuple[Workspace, Engine]) -> None:
    workspace, engine = sales
    replay = score_leads(workspace, engine, as_of=REPLAY)
    assert replay.statuses["open"] > 100
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
    workspace, engine = sales
    day = MONDAY + timedelta(days=2)
    before = len(_assignments(engine))
    barrier, results, errors = threading.Barrier(2), [], []

    def assign() -> None:
        own = DuckDBEngine(workspace.resolve(workspace.config.engine.duckdb.path))
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


def test_outcomes_feed_the_next_scoring(sales: tuple[Workspace, Engine]) -> None:
    workspace, engine = sales
    before = score_leads(workspace, engine, as_of=REPLAY + timedelta(days=3))
    held = engine.query("SELECT lead_id, rep_id FROM lead_assignments WHERE closed_at IS NULL ORDER BY lead_id")
    held = held.to_pylist()
    won, lost, unanswered = held[:6], held[6:12], held[12]
    at = REPLAY + timedelta(days=2)
    for row in won:
        record_lead_outcome(engine, row["lead_id"], "won", rep_id=row["rep_id"], now=at)
    for row in lost:
        record_lead_outcome(engine, row["lead_id"], "lost", now=at)
    record_lead_outcome(engine, unanswered["lead_id"], "no_answer", now=at)
    after = score_leads(workspace, engine, as_of=REPLAY + timedelta(days=3))
    assert after.model.rows == before.model.rows + 12 and after.model.positives == before.model.positives + 6
    assert after.model_version != before.model_version
    statuses = engine.query("SELECT lead_id, status, status_source, no_answers FROM leads").to_pandas()
    statuses = statuses.set_index("lead_id")
    assert (statuses.loc[[r["lead_id"] for r in won], ["status", "status_source"]] == ["won", "rep"]).all().all()
    assert (statuses.loc[[r["lead_id"] for r in lost], "status"] == "lost").all()
    assert statuses.loc[unanswered["lead_id"], "status"] == "open" and statuses.loc[unanswered["lead_id"], "no_answers"] == 1
    # the unanswered lead waits out its cool-down before another rep may get it
    soon = assign_leads(workspace, engine, now=at + timedelta(hours=1))
    assert unanswered["lead_id"] not in set(soon.assignments.lead_id)


def test_outcome_errors_name_the_problem(sales: tuple[Workspace, Engine]) -> None:
    workspace, engine = sales
    with pytest.raises(LeadError) as unknown:
        record_lead_outcome(engine, "L10000001", "maybe")
    assert unknown.value.field == "outcome" and "no_answer" in unknown.value.fix
    free = list_leads(engine, assigned=False, limit=1)[0].lead_id[0]
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
    (copy.definitions_dir / "sales.yaml").unlink()
    refused = runner.invoke(app, ["lead", "assign", "-w", str(copy.root)])
    assert isinstance(refused.exception, LeadError) and refused.exception.field == "reps"
