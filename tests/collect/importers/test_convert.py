import pyarrow as pa
import pytest

from jingzhun.collect.importers import convert

PHONES = [
    ("13812345678", "+8613812345678", None, False),
    ("138-1234-5678", "+8613812345678", None, False),
    ("+86 138 1234 5678", "+8613812345678", None, False),
    ("86-13812345678", "+8613812345678", None, False),
    ("+8613812345678", "+8613812345678", None, False),
    ("138****5678", "138****5678", None, True),
    ("1381234567", None, "bad_phone", False),
    ("1381234x678", None, "bad_phone", False),
    ("+44 20 7946 0958", "+442079460958", None, False),
    (None, None, None, False),
]


@pytest.mark.parametrize(("raw", "e164", "problem", "masked"), PHONES)
def test_phone_to_e164(raw, e164, problem, masked) -> None:
    result = convert.to_phone(pa.array([raw], pa.string()))
    assert result.values.to_pylist() == [e164]
    assert result.problem.to_pylist() == [problem]
    assert result.masked.to_pylist() == [masked]


def test_ean13_check_digit() -> None:
    result = convert.to_ean13(pa.array(["6975432100007", "6975432100008", "69754321", None]))
    assert result.problem.to_pylist() == [None, "bad_check_digit", "bad_barcode", None]


def test_local_times_become_utc_and_impossible_dates_are_refused() -> None:
    values = pa.array(["2025-03-08 14:23:05", "2025-02-30 10:00:00", "不详", "2025-01-01T10:37:13+08:00"])
    result = convert.to_timestamp(values, [], "Asia/Shanghai")
    assert [v.isoformat() if v else None for v in result.values.to_pylist()] == [
        "2025-03-08T06:23:05+00:00", None, None, "2025-01-01T02:37:13+00:00"]
    assert result.problem.to_pylist() == [None, "bad_timestamp", "bad_timestamp", None]


def test_numbers() -> None:
    assert convert.to_number(pa.array(["1", "-2", "3.0", "x"]), integer=True).problem.to_pylist() == [
        None, None, None, "not_an_integer"]
    assert convert.to_number(pa.array(["¥1,299.50", "--"]), integer=False).values.to_pylist() == [1299.5, None]
