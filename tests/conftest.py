"""Shared fixtures: real engines on real storage, never mocks of our own parts.

`engine` runs a test on DuckDB (a file on disk) and, under `-m spark`, on a
local-mode Spark session with Parquet tables in the test's own folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pytest

from jingzhun.core import Workspace, WorkspaceConfig, init_workspace
from jingzhun.engine import DuckDBEngine, Engine

os.environ.setdefault("JINGZHUN_LANG", "en")


@pytest.fixture(scope="session")
def spark_session(tmp_path_factory: pytest.TempPathFactory):
    """One local Spark for the whole run: UI off, one shuffle partition, UTC."""
    from jingzhun.engine.spark import build_spark_session

    scratch = tmp_path_factory.mktemp("spark-scratch")
    session = build_spark_session(
        "local[2]",
        "jingzhun-tests",
        {
            "spark.ui.enabled": "false",
            "spark.sql.shuffle.partitions": "1",
            "spark.default.parallelism": "2",
            "spark.sql.adaptive.enabled": "false",
            "spark.local.dir": str(scratch),
            "spark.sql.warehouse.dir": str(scratch / "catalog"),
            "spark.driver.memory": "2g",
        },
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _reset(spark) -> None:
    """Forget every view a previous test registered, so tests stay independent."""
    for table in spark.catalog.listTables():
        if table.isTemporary:
            spark.catalog.dropTempView(table.name)
    spark.catalog.clearCache()


def make_engine(kind: str, folder: Path, request: pytest.FixtureRequest) -> Engine:
    if kind == "duckdb":
        return DuckDBEngine(folder / "warehouse.duckdb")
    from jingzhun.engine.spark import SparkEngine

    spark = request.getfixturevalue("spark_session")
    _reset(spark)
    return SparkEngine(spark, str(folder / "spark-warehouse"))


@pytest.fixture(params=["duckdb", pytest.param("spark", marks=pytest.mark.spark)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """The same test on each engine."""
    opened = make_engine(request.param, tmp_path, request)
    yield opened
    opened.close()


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """A fresh workspace on disk."""
    return init_workspace(tmp_path / "ws", WorkspaceConfig(name="测试品牌"))


@pytest.fixture
def both_engines(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    """DuckDB and Spark side by side, for parity tests (mark the test `spark`)."""
    duck = make_engine("duckdb", tmp_path / "duckdb", request)
    spark = make_engine("spark", tmp_path / "spark", request)
    yield duck, spark
    duck.close()
    spark.close()


# Developers may set JINGZHUN_TEST_DEMO_CACHE to a folder to build the two demo workspaces
# below once and reuse them across pytest runs. The cache is keyed by the code that makes
# them (demo, collect, identity, profiles, segments, recommend, schema, engine, pipeline), so a change
# there builds new ones. CI does not set it.
DEMO_CACHE_ENV = "JINGZHUN_TEST_DEMO_CACHE"
_DEMO_CODE = ("demo", "collect", "identity", "profiles", "segments", "schema", "engine", "core", "pipeline.py",
              # the pipeline's recommend stage (the rest of activation does not change the demo)
              "activation/recommend.py", "activation/recommend_sql.py", "activation/recommend_lists.py",
              "activation/recommend_settings.py",
              "measure", "cli/demo_load.py")  # the pipeline's last stage; which demo files are loaded


def _demo_cache(kind: str) -> Path | None:
    """The cached workspace folder for `kind` under the developer's cache, or None."""
    import hashlib

    root = os.environ.get(DEMO_CACHE_ENV)
    if not root:
        return None
    source = Path(__file__).parent.parent / "src" / "jingzhun"
    digest = hashlib.sha256()
    for part in _DEMO_CODE:
        files = [source / part] if (source / part).is_file() else sorted((source / part).rglob("*"))
        for path in files:
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(source)).encode() + path.read_bytes())
    return Path(root) / f"{kind}-{digest.hexdigest()[:16]}" / "ws"


@contextmanager
def _building(cached: Path | None) -> Iterator[None]:
    """Hold the cache entry's lock while it is checked and built, so two pytest runs never
    build (or read a half-built) one at the same time."""
    if cached is None:
        yield
        return
    import fcntl

    cached.parent.parent.mkdir(parents=True, exist_ok=True)
    with open(cached.parent.parent / f"{cached.parent.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def loaded_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo workspace of 1,500 persons loaded the way `make demo` loads it: events over
    HTTP through the collector, files through the importers. Read-only: tests that write
    copy it first with `copy_workspace`."""
    import subprocess
    import sys

    cached = _demo_cache("loaded")
    with _building(cached):
        if cached is not None and (cached.parent / "ready").exists():
            return cached
        if cached is not None and cached.exists():  # an interrupted build
            import shutil

            shutil.rmtree(cached)
        root = cached or tmp_path_factory.mktemp("loaded-demo") / "ws"
        cli = [sys.executable, "-m", "jingzhun"]
        subprocess.run([*cli, "demo", "generate", str(root), "--persons", "1500", "--seed", "11"],
                       check=True, capture_output=True)
        subprocess.run([*cli, "demo", "load", str(root)], check=True, capture_output=True)
        if cached is not None:
            (cached.parent / "ready").touch()
        return root


@pytest.fixture(scope="session")
def portrayed_demo(loaded_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 1,500-person demo with every pipeline stage run. Read-only: copy it
    (`copy_workspace`) before writing."""
    from jingzhun.engine import open_engine
    from jingzhun.pipeline import run_pipeline

    cached = _demo_cache("portrayed")
    with _building(cached):
        if cached is not None and (cached.parent / "ready").exists():
            return cached
        if cached is not None and cached.exists():  # an interrupted build
            import shutil

            shutil.rmtree(cached)
        workspace = copy_workspace(loaded_demo, cached or tmp_path_factory.mktemp("portrayed-demo") / "ws")
        with open_engine(workspace) as engine:
            run_pipeline(workspace, engine)
        if cached is not None:
            (cached.parent / "ready").touch()
        return workspace.root


def copy_workspace(source: Path, target: Path) -> Workspace:
    """A private, writable copy of a workspace (its config, definitions and warehouse)."""
    import shutil

    from jingzhun.core import open_workspace

    shutil.copytree(source, target, ignore=shutil.ignore_patterns("data", "demo-truth", "log"))
    (target / "log").mkdir(exist_ok=True)
    for extra in ("data", "demo-truth"):
        if (source / extra).exists():
            (target / extra).symlink_to(source / extra)
    return open_workspace(target)


# The importers', identify, portray and segment tests run every engine-parametrized test on
# Spark too; on a 2-core CI machine that alone takes longer than the whole suite should.
# `make test` runs their direct DuckDB-vs-Spark comparisons (`both_engines`: the importers'
# and the inventory's parity tests among them) and the pipeline parity harness
# (tests/test_parity.py) on Spark; `make test-spark-full` runs every variant.
_FULL_SPARK_DIRS = ("tests/collect/importers/", "tests/collect/test_", "tests/identity/", "tests/profiles/",
                    "tests/segments/")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        in_stage = any(part in item.nodeid for part in _FULL_SPARK_DIRS)
        if in_stage and item.get_closest_marker("spark") and "both_engines" not in item.fixturenames:
            item.add_marker(pytest.mark.spark_full)


# ---- the parity harness's engines, shared by every stage's parity tests ---------------------

COLLECTED = ("sources", "events", "orders", "order_items", "products", "stores", "inventory_movements",
             "stock_counts", "survey_responses", "benchmarks", "source_records", "ad_spend", "quarantine",
             "imports", "message_history")


@pytest.fixture(scope="session")
def demo_workspace(loaded_demo: Path) -> Workspace:
    from jingzhun.core import open_workspace

    return open_workspace(loaded_demo)


@pytest.fixture(scope="session")
def demo_tables(demo_workspace: Workspace) -> dict[str, pa.Table]:
    """Every collected table as the real collector and importers stored it."""
    from jingzhun.engine import open_engine

    with open_engine(demo_workspace) as engine:
        return {name: engine.read_table(name) for name in COLLECTED}


def load(engine: Engine, tables: dict[str, pa.Table]) -> None:
    from jingzhun.schema import migrate

    migrate(engine)
    for name, rows in tables.items():
        engine.write_table(name, rows, mode="append")


@pytest.fixture(scope="session")
def pipelines_on_both(request, tmp_path_factory, demo_workspace: Workspace, demo_tables):
    """Both engines loaded with the same demo rows, the whole pipeline run on each: one pair
    for the whole run, so every stage's parity test (mark it `spark`) compares its own
    queries on them without running the pipeline on Spark again. Call `spark.refresh()`
    first: other tests' Spark engines forget the session's views."""
    from jingzhun.pipeline import run_pipeline

    folder = tmp_path_factory.mktemp("parity-engines")
    engines = (make_engine("duckdb", folder / "duckdb", request), make_engine("spark", folder / "spark", request))
    results = {}
    for engine in engines:
        load(engine, demo_tables)
        results[engine.NAME] = run_pipeline(demo_workspace, engine)
    yield engines, results
    for engine in engines:
        engine.close()
