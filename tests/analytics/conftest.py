"""Fixtures of the analytics tests: the portrayed demo opened read-only, once per module."""

from __future__ import annotations

from pathlib import Path

import pytest

from jingzhun.core import open_workspace
from jingzhun.engine import open_engine


@pytest.fixture(scope="module")
def demo(portrayed_demo: Path):
    """The 1,500-person portrayed demo's warehouse, read-only (the analyses only query)."""
    with open_engine(open_workspace(portrayed_demo), read_only=True) as engine:
        yield engine
