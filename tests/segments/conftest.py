"""A writable copy of the portrayed demo (tests/conftest.py `portrayed_demo`) for the
segment tests, and the demo's answer key per person_id."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from jingzhun.core import Workspace
from jingzhun.engine import Engine, open_engine
from tests.conftest import copy_workspace


@pytest.fixture
def demo_workspace(portrayed_demo: Path, tmp_path: Path) -> Iterator[tuple[Workspace, Engine]]:
    """A private, writable copy of the portrayed demo and its engine."""
    workspace = copy_workspace(portrayed_demo, tmp_path / "ws")
    with open_engine(workspace) as engine:
        yield workspace, engine


def person_truth(engine: Engine, root: Path) -> pd.DataFrame:
    """The answer key per person_id: each person's most common `person_key` over their
    identifiers (demo-truth/identifiers.parquet), with that key's persona, gender,
    is_high_value and churn_date from demo-truth/persons.parquet."""
    identifiers = pq.read_table(root / "demo-truth" / "identifiers.parquet").to_pandas()
    resolved = engine.query("SELECT person_id, id_type, id_value FROM identities").to_pandas()
    joined = resolved.merge(identifiers, on=["id_type", "id_value"])
    votes = joined.groupby(["person_id", "person_key"]).size().rename("n").reset_index()
    best = votes.sort_values(["person_id", "n", "person_key"], ascending=[True, False, True])
    keys = best.drop_duplicates("person_id")[["person_id", "person_key"]]
    persons = pd.read_parquet(root / "demo-truth" / "persons.parquet",
                              columns=["person_key", "persona", "gender", "is_high_value", "churn_date"])
    return keys.merge(persons, on="person_key").set_index("person_id")


def fragment_keys(engine: Engine, root: Path) -> pd.Series:
    """person_key of every person_id, fragments included: a marketplace buyer the ID
    graph could not link (Tmall gives an open_uid, nothing else) is a person of its
    own, whose true person_key is the one of its identifiers."""
    return person_truth(engine, root)["person_key"]
