"""The portrait matrix on the portrayed demo: one row per active person, traits as numbers,
categorical traits one-hot, current tags as 1/0 and scores as columns, each value
checked against the tables it came from."""

from __future__ import annotations

import numpy as np
import pytest

from jingzhun.core import Workspace
from jingzhun.engine import Engine, parse_sql
from jingzhun.segments.feature_labels import feature_label
from jingzhun.segments.portrait_matrix import portrait_matrix, portrait_matrix_sql


def test_matrix_matches_the_portrait_tables(demo_workspace: tuple[Workspace, Engine]) -> None:
    _, engine = demo_workspace
    held = engine.query("SELECT tag_id, COUNT(*) AS n FROM tags WHERE valid_to IS NULL GROUP BY tag_id "
                        "ORDER BY n DESC, tag_id LIMIT 2").column("tag_id").to_pylist()
    matrix = portrait_matrix(engine, numeric=["age", "orders_total", "has_wechat"], categorical=["gender"],
                             tags=held, scores=["churn_90d"])
    active = engine.query("SELECT pt.person_id, pt.age, pt.orders_total, pt.has_wechat, pt.gender FROM person_traits "
                          "AS pt JOIN persons AS p ON p.person_id = pt.person_id AND p.status = 'active'").to_pandas()
    frame = matrix.frame
    assert list(frame.index) == sorted(active["person_id"]) and frame.index.is_unique
    traits = active.set_index("person_id").loc[frame.index]
    np.testing.assert_array_equal(frame["age"].to_numpy(), traits["age"].astype(float).to_numpy())
    np.testing.assert_array_equal(frame["has_wechat"].to_numpy(), traits["has_wechat"].astype(float).to_numpy())
    for value in traits["gender"].dropna().unique():
        assert (frame[f"gender={value}"] == (traits["gender"] == value).astype(float)).all()
    holders = set(engine.query(f"SELECT person_id FROM tags WHERE valid_to IS NULL AND tag_id = '{held[0]}'")
                  .column(0).to_pylist())
    assert set(frame.index[frame[f"tag:{held[0]}"] == 1.0]) == holders & set(frame.index)
    churn = engine.query("SELECT person_id, score FROM scores WHERE model = 'churn_90d'").to_pandas()
    churn = churn.set_index("person_id")["score"].reindex(frame.index)
    np.testing.assert_allclose(frame["score:churn_90d"].to_numpy(), churn.to_numpy())
    assert matrix.features == list(frame.columns) and "FROM person_traits" in matrix.sql


def test_population_restricts_rows_and_standardizing_fills_missing(demo_workspace: tuple[Workspace, Engine]) -> None:
    _, engine = demo_workspace
    women = parse_sql("SELECT person_id FROM person_traits WHERE gender = 'F'")
    matrix = portrait_matrix(engine, numeric=["age", "aov"], categorical=[], population=women)
    expected = set(engine.query(women).column(0).to_pylist())
    assert set(matrix.frame.index) <= expected and len(matrix.frame) > 0.9 * len(expected)
    scaled = matrix.standardized()
    assert not np.isnan(scaled).any()
    assert np.allclose(scaled.mean(axis=0), 0.0, atol=1e-9)


def test_unknown_traits_are_refused_and_labels_read_well() -> None:
    with pytest.raises(ValueError, match="unknown trait"):
        portrait_matrix_sql(numeric=["age; DROP TABLE persons"])
    assert feature_label("orders_365d") == ("近一年订单数", "Orders (last year)")
    assert feature_label("gender=F") == ("性别 = F", "Gender = F")
