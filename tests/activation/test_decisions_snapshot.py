"""The decision snapshot's lookup structures: the same values as the tables, repeated texts held once."""

from __future__ import annotations

import pyarrow as pa

from jingzhun.activation.decisions_snapshot import _grouped, _rows, _shared


def test_shared_values_equal_the_column_and_repeat_one_object() -> None:
    column = pa.chunked_array([["全店热卖", None, "popular"], ["全店热卖", "popular", None]])
    values = _shared(column)
    assert values == column.to_pylist()
    assert values[0] is values[3] and values[2] is values[4]
    numbers = pa.chunked_array([[1.5, None, 2.0]])
    assert _shared(numbers) == [1.5, None, 2.0]


def test_grouped_offers_and_rows_keep_every_row_in_order() -> None:
    offers = pa.table({"person_id": ["P1", "P2", "P1"], "product_id": ["A", "B", "C"],
                       "reason_zh": ["全店热卖", "同类热卖", "全店热卖"], "score": [1.0, 0.5, 0.25]})
    grouped = _grouped(offers, "person_id", ("product_id", "reason_zh", "score"))
    assert grouped == {"P1": [("A", "全店热卖", 1.0), ("C", "全店热卖", 0.25)], "P2": [("B", "同类热卖", 0.5)]}
    assert grouped["P1"][0][1] is grouped["P1"][1][1]
    persons = pa.table({"person_id": ["P1", "P2"], "gender": ["female", "female"], "city": ["上海", None]})
    assert _rows(persons, "person_id") == {row["person_id"]: row for row in persons.to_pylist()}
