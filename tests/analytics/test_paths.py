"""Paths after and before an event, checked against sessions cut in pandas."""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest

from jingzhun.analytics import AnalyticsError, paths, paths_sql
from jingzhun.analytics.paths import END, OTHER, START
from jingzhun.engine import render

ANCHOR = "Product Viewed"


@pytest.fixture(scope="module")
def sessions(demo) -> list[list[str]]:
    """Every session's steps in order: a person's events with gaps of at most 30 minutes."""
    rows = demo.query("""SELECT rp.person_id, e.timestamp, e.message_id, e.type, e.event FROM events AS e
        JOIN record_persons AS rp ON rp.record_kind = 'event' AND rp.record_id = e.message_id""").to_pandas()
    names = {"page": "Page Viewed", "screen": "Screen Viewed", "identify": "Identify"}
    kinds = zip(rows["type"], rows["event"], strict=True)
    rows["step"] = [event if kind == "track" else names.get(kind, kind) for kind, event in kinds]
    rows = rows.sort_values(["person_id", "timestamp", "message_id"])
    gap = rows.groupby("person_id")["timestamp"].diff() > pd.Timedelta(minutes=30)
    first = rows["person_id"].ne(rows["person_id"].shift())
    rows["session"] = (gap | first).cumsum()
    return rows.groupby("session")["step"].apply(list).tolist()


def _neighbours(sessions: list[list[str]], forward: bool) -> Counter:
    found: Counter = Counter()
    for steps in sessions:
        if ANCHOR in steps:
            at = steps.index(ANCHOR)
            if forward:
                found[steps[at + 1] if at + 1 < len(steps) else END] += 1
            else:
                found[steps[at - 1] if at > 0 else START] += 1
    return found


def test_next_steps_match_pandas(demo, sessions) -> None:
    found = paths(demo, ANCHOR, depth=2, top=50)
    first = found.frame[found.frame["depth"] == 1]
    assert set(first["source"]) == {ANCHOR}
    assert dict(zip(first["target"], first["paths"], strict=True)) == _neighbours(sessions, forward=True)
    assert found.frame.groupby(["depth", "source"])["share"].sum().to_numpy() == pytest.approx(1.0, abs=1e-3)
    assert found.readings and "paths" in found.sql


def test_previous_steps_match_pandas(demo, sessions) -> None:
    found = paths(demo, ANCHOR, direction="previous", depth=1, top=50)
    assert set(found.frame["target"]) == {ANCHOR}
    expected = _neighbours(sessions, forward=False)
    assert dict(zip(found.frame["source"], found.frame["paths"], strict=True)) == expected


def test_rare_steps_pool_as_other(demo) -> None:
    found = paths(demo, ANCHOR, depth=3, top=2)
    for _, edges in found.frame.groupby("depth"):
        named = set(edges["target"]) - {OTHER, END}
        assert len(named) <= 2
    full = paths(demo, ANCHOR, depth=3, top=50)
    assert found.frame.groupby("depth")["paths"].sum().equals(full.frame.groupby("depth")["paths"].sum())


def test_property_labels_keep_the_anchor(demo) -> None:
    found = paths(demo, "Product Added", prop="category", depth=1)
    sources = set(found.frame["source"])
    assert sources and all(source.startswith("Product Added · ") for source in sources)


@pytest.mark.parametrize(("kwargs", "field"), [({"direction": "sideways"}, "direction"), ({"depth": 0}, "depth"),
                                               ({"top": 0}, "top"), ({"prop": "a b"}, "property")])
def test_bad_paths_are_refused(demo, kwargs, field) -> None:
    with pytest.raises(AnalyticsError) as refused:
        paths(demo, ANCHOR, **kwargs)
    assert refused.value.field == field


def test_paths_sql_renders_for_spark() -> None:
    assert "LAG(" in render(paths_sql(ANCHOR, direction="previous", prop="category"), "spark")
