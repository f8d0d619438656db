"""Fixtures for the importer tests: one small generated demo shared by the session."""

from __future__ import annotations

from pathlib import Path

import pytest

from jingzhun.demo import generate_demo
from jingzhun.engine import Engine


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's source files (`data/...`) for 600 persons, generated once."""
    root = tmp_path_factory.mktemp("demo")
    generate_demo(root, persons=600, seed=42)
    return root / "data"


def scalar(engine: Engine, sql: str) -> object:
    """The single value a query returns."""
    return engine.query(sql).column(0)[0].as_py()


def reasons(engine: Engine, kind: str) -> dict[str, int]:
    """Quarantined rows of `kind` per reason code."""
    rows = engine.query(f"SELECT reason_code, count(*) AS n FROM quarantine WHERE kind = '{kind}' GROUP BY 1")
    return dict(zip(rows.column(0).to_pylist(), rows.column(1).to_pylist(), strict=True))
