"""The `jingzhun` console script, run as a user runs it: a real process, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jingzhun.schema import LATEST_VERSION

JINGZHUN = str(Path(sys.executable).parent / "jingzhun")


def run(*args: str, language: str = "en", cwd: Path | None = None, env_extra: dict | None = None,
        timeout: float = 120):
    env = {**os.environ, "JINGZHUN_LANG": language, "COLUMNS": "200"}
    env.pop("JINGZHUN_WORKSPACE", None)
    env.update(env_extra or {})
    return subprocess.run([JINGZHUN, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


@pytest.fixture
def initialized(tmp_path: Path) -> Path:
    folder = tmp_path / "brand"
    done = run("init", str(folder), "--name", "测试品牌")
    assert done.returncode == 0, done.stderr
    return folder


def test_init_creates_workspace_and_storage(initialized: Path) -> None:
    assert (initialized / "jingzhun.yaml").is_file()
    assert (initialized / "warehouse.duckdb").is_file()
    assert "测试品牌" in (initialized / "jingzhun.yaml").read_text(encoding="utf-8")


def test_init_rejects_bad_option_with_the_fix(tmp_path: Path) -> None:
    done = run("init", str(tmp_path / "x"), "--timezone", "Asia/Shangai")
    assert done.returncode == 2
    assert "Asia/Shanghai" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x").exists()


def test_migrate_and_pipeline_report_in_chinese(initialized: Path) -> None:
    migrated = run("migrate", "--workspace", str(initialized), language="zh")
    assert migrated.returncode == 0 and "最新版本" in migrated.stdout
    piped = run("pipeline", "--workspace", str(initialized), language="zh")
    assert piped.returncode == 0, piped.stderr
    assert "流水线完成" in piped.stdout and f"表结构版本 {LATEST_VERSION}" in piped.stdout


def test_pipeline_runs_chosen_stages_and_names_an_unknown_one(initialized: Path) -> None:
    only = run("pipeline", "-w", str(initialized), "--stage", "schema")
    assert only.returncode == 0, only.stderr
    assert "1 stages" in only.stdout and "matching" not in only.stdout
    typo = run("pipeline", "-w", str(initialized), "-s", "schema", "-s", "tratis")
    assert typo.returncode == 2 and "Traceback" not in typo.stderr
    assert "`tratis`" in typo.stderr and "`traits`" in typo.stderr


def test_sql_prints_table_csv_and_json(initialized: Path) -> None:
    query = "SELECT version, name FROM schema_migrations ORDER BY version"
    as_csv = run("sql", query, "-w", str(initialized), "--format", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    lines = as_csv.stdout.strip().splitlines()
    assert lines[0] == '"version","name"' and lines[1].startswith("1,")
    as_json = run("sql", query, "-w", str(initialized), "--format", "json")
    assert [row["version"] for row in json.loads(as_json.stdout)] == list(range(1, LATEST_VERSION + 1))
    as_table = run("sql", query, "-w", str(initialized))
    assert "identity graph" in as_table.stdout and f"{LATEST_VERSION} rows" in as_table.stdout


def test_sql_refuses_writes(initialized: Path) -> None:
    done = run("sql", "DELETE FROM events", "-w", str(initialized))
    assert done.returncode == 2
    assert "read-only" in done.stderr and "Traceback" not in done.stderr


def test_workspace_from_environment(initialized: Path, tmp_path: Path) -> None:
    done = run("sql", "SELECT 42 AS answer", "--format", "csv", cwd=tmp_path,
               env_extra={"JINGZHUN_WORKSPACE": str(initialized)})
    assert done.returncode == 0 and "42" in done.stdout


def test_missing_workspace_is_one_clear_message(tmp_path: Path) -> None:
    done = run("pipeline", "--workspace", str(tmp_path / "nowhere"))
    assert done.returncode == 2
    assert "does not exist" in done.stderr and "jingzhun init" in done.stderr
    assert "Traceback" not in done.stderr
    not_a_workspace = run("pipeline", cwd=tmp_path)
    assert "not a jingzhun workspace" in not_a_workspace.stderr


def test_bad_config_is_one_clear_message(initialized: Path) -> None:
    config = initialized / "jingzhun.yaml"
    config.write_text(config.read_text(encoding="utf-8").replace("currency: CNY", "currency: rmb"), encoding="utf-8")
    for language, words in (("en", "Fix:"), ("zh", "修复")):
        done = run("pipeline", "-w", str(initialized), language=language)
        assert done.returncode == 2
        assert "currency" in done.stderr and words in done.stderr
        assert "Traceback" not in done.stderr


@pytest.mark.spark
def test_pipeline_runs_on_spark_from_the_command_line(initialized: Path) -> None:
    config = initialized / "jingzhun.yaml"
    config.write_text(config.read_text(encoding="utf-8").replace("master: local[*]", "master: local[1]"),
                      encoding="utf-8")
    # the schema and the last stage (every stage on Spark is the parity harness's job, with data;
    # on an empty warehouse the measure stage once failed on Spark only: an all-null date column)
    done = run("pipeline", "--workspace", str(initialized), "--engine", "spark", "-s", "schema", "-s", "measure",
               timeout=400)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Pipeline finished" in done.stdout
    assert (initialized / "spark-warehouse" / "events" / "_current").is_file()
