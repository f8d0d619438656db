"""Turn a source column of text into a typed canonical column, vectorized.

Each converter returns the typed values and, per row, a reason code where the
text could not be accepted (null where it was fine). Work is done with pyarrow
compute over whole columns; only phone numbers outside the common Chinese
formats go through `phonenumbers` one by one, and those are rare.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass

import duckdb
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc

from jingzhun.collect.importers.mapping import FieldMap

DEFAULT_DATE_FORMATS = ["%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%Y.%m.%d"]
DEFAULT_TIME_FORMATS = [
    "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y/%m/%d %H:%M:%S",
    "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%d",
]
_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)$"
_INTEGER = r"^[+-]?\d+(\.0*)?$"
_CN_MOBILE = r"^1[3-9]\d{9}$"
_MASKED = r"^1\d{2}\*{4}\d{4}$"
_TRUE = ["true", "1", "是", "y", "yes", "t", "真"]
_FALSE = ["false", "0", "否", "n", "no", "f", "假"]


@dataclass
class Converted:
    """A typed column and, per row, why its text was refused (null = accepted)."""

    values: pa.Array
    problem: pa.Array  # string reason codes, null where fine
    masked: pa.Array | None = None  # phones only: kept but masked (weak identifier)


def _problem(mask: pa.Array, code: str, previous: pa.Array | None = None) -> pa.Array:
    """Reason codes where `mask` is true, keeping an earlier problem if there is one."""
    codes = pc.if_else(pc.fill_null(mask, False), pa.scalar(code), pa.scalar(None, pa.string()))
    return codes if previous is None else pc.coalesce(previous, codes)


def clean_text(values: pa.Array) -> pa.Array:
    """Trim spaces; empty becomes null (an empty cell is a missing value)."""
    trimmed = pc.utf8_trim_whitespace(values)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


def apply_value_map(values: pa.Array, spec: FieldMap) -> tuple[pa.Array, pa.Array | None]:
    """Replace values per `values:`; unknown values kept, or refused when strict."""
    if not spec.values:
        return values, None
    keys = pa.array(list(spec.values), pa.string())
    targets = pa.array(list(spec.values.values()), pa.string())
    position = pc.index_in(values, value_set=keys)
    mapped = pc.take(targets, position)
    found = pc.is_valid(position)
    result = pc.if_else(found, mapped, values)
    unknown = pc.and_(pc.is_valid(values), pc.invert(found)) if spec.strict_values else None
    return result, (_problem(unknown, "unknown_value") if unknown is not None else None)


def to_number(values: pa.Array, integer: bool) -> Converted:
    """Numbers with optional thousands separators and a ¥ sign; others refused."""
    text = pc.replace_substring_regex(values, r"[,，¥￥\s]", "")
    good = pc.match_substring_regex(text, _INTEGER if integer else _NUMBER)
    usable = pc.if_else(good, text, pa.scalar(None, pa.string()))
    if integer:
        usable = pc.replace_substring_regex(usable, r"\.0*$", "")
        typed = pc.cast(usable, pa.int64())
    else:
        typed = pc.cast(usable, pa.float64())
    bad = pc.and_(pc.is_valid(values), pc.invert(pc.fill_null(good, False)))
    return Converted(typed, _problem(bad, "not_an_integer" if integer else "not_a_number"))


def to_boolean(values: pa.Array) -> Converted:
    lowered = pc.utf8_lower(values)
    yes, no = pc.is_in(lowered, pa.array(_TRUE)), pc.is_in(lowered, pa.array(_FALSE))
    typed = pc.if_else(yes, True, pc.if_else(no, False, pa.scalar(None, pa.bool_())))
    bad = pc.and_(pc.is_valid(values), pc.is_null(typed))
    return Converted(typed, _problem(bad, "not_a_boolean"))


_LOCAL = threading.local()


def _duckdb() -> duckdb.DuckDBPyConnection:
    """A private in-process DuckDB per thread, used as a date parser."""
    if not hasattr(_LOCAL, "connection"):
        _LOCAL.connection = duckdb.connect(config={"threads": 2})
        _LOCAL.connection.execute("SET TimeZone = 'UTC'")
    return _LOCAL.connection


def to_timestamp(values: pa.Array, formats: list[str], zone: str, date_only: bool = False) -> Converted:
    """Parse with each format in turn; naive local times are in `zone`, stored as UTC.

    DuckDB's `try_strptime` is strict where Arrow's is lenient (Arrow turns
    `2025-02-30` into March 2nd), takes a list of formats, and runs on all cores.
    """
    chosen = formats or (DEFAULT_DATE_FORMATS if date_only else DEFAULT_TIME_FORMATS)
    # One try_strptime per format: DuckDB 1.x's list form with %z rolls 2025-02-30 over
    # to March 2nd, while the single-format call refuses it.
    parts = []
    for fmt in chosen:
        parsed = f"try_strptime(v, {fmt!r})"
        if "%z" not in fmt:
            parsed = f"timezone({zone!r}, {parsed})"
        parts.append(parsed)
    expression = f"coalesce({', '.join(parts)})"
    if date_only:
        expression = f"CAST(timezone({zone!r}, {expression}) AS DATE)"
    connection = _duckdb()
    connection.register("parse_input", pa.table({"v": values}))
    try:
        found = connection.sql(f"SELECT {expression} AS t FROM parse_input").to_arrow_table()
    finally:
        connection.unregister("parse_input")
    found = found.column("t").combine_chunks()
    kind = pa.date32() if date_only else pa.timestamp("us", tz="UTC")
    typed = found.cast(kind)
    bad = pc.and_(pc.is_valid(values), pc.is_null(typed))
    return Converted(typed, _problem(bad, "bad_date" if date_only else "bad_timestamp"))


def _phone_slow(values: list[str | None], region: str) -> list[str | None]:
    """phonenumbers for the rare formats the fast path does not recognize."""
    out: list[str | None] = []
    for value in values:
        try:
            number = phonenumbers.parse(value, region)
        except (phonenumbers.NumberParseException, TypeError):
            out.append(None)
            continue
        valid = phonenumbers.is_valid_number(number)
        out.append(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) if valid else None)
    return out


def to_phone(values: pa.Array, country_code: str = "86") -> Converted:
    """Phones to E.164; masked ones (`187****8991`) kept as they are and flagged."""
    compact = pc.replace_substring_regex(values, r"[\s\-()（）.]", "")
    local = pc.replace_substring_regex(compact, r"^(\+86|0086|86)(1\d{10})$", r"\2") if country_code == "86" else compact
    fast = pc.match_substring_regex(local, _CN_MOBILE) if country_code == "86" else pc.is_null(local)
    masked = pc.fill_null(pc.match_substring_regex(local, _MASKED), False)
    e164 = pc.if_else(fast, pc.binary_join_element_wise("+86", local, ""), pa.scalar(None, pa.string()))
    rest = pc.and_(pc.is_valid(values), pc.invert(pc.or_(pc.fill_null(fast, False), masked)))
    if pc.any(rest).as_py():
        region = phonenumbers.region_code_for_country_code(int(country_code))
        slow_rows = pc.indices_nonzero(rest)
        slow = pa.array(_phone_slow(pc.take(values, slow_rows).to_pylist(), region), pa.string())
        e164 = pc.coalesce(e164, _scatter(slow, slow_rows, len(values)))
    typed = pc.if_else(masked, local, e164)
    bad = pc.and_(pc.is_valid(values), pc.is_null(typed))
    return Converted(typed, _problem(bad, "bad_phone"), masked)


def _scatter(values: pa.Array, rows: pa.Array, length: int) -> pa.Array:
    """Place `values` at `rows` of an otherwise null array of `length`."""
    position = pa.array([None] * length, pa.int64()).to_pandas().to_numpy()
    position[rows.to_numpy()] = range(len(rows))
    return pc.take(values, pa.array(position, pa.int64(), from_pandas=True))


def to_email(values: pa.Array) -> Converted:
    """E-mail addresses, lower-cased (mail systems treat them so); malformed ones refused."""
    lowered = pc.utf8_lower(values)
    good = pc.match_substring_regex(lowered, r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    bad = pc.and_(pc.is_valid(values), pc.invert(pc.fill_null(good, False)))
    return Converted(pc.if_else(good, lowered, pa.scalar(None, pa.string())), _problem(bad, "bad_email"))


def salted_hash(values: pa.Array, salt: bytes, keep: pa.Array | None = None) -> pa.Array:
    """SHA-256(salt + value) as hex, per the workspace's `pii.mode: salted_hash`.

    Hashed once per distinct value (phones repeat across receipts); rows where
    `keep` is true (masked phones, already unusable) stay as they are.
    """
    distinct = pc.unique(values).drop_null()
    digests = pa.array([hashlib.sha256(salt + value.encode()).hexdigest() for value in distinct.to_pylist()],
                       pa.string())
    hashed = pc.take(digests, pc.index_in(values, value_set=distinct))
    return hashed if keep is None else pc.if_else(pc.fill_null(keep, False), values, hashed)


def to_ean13(values: pa.Array) -> Converted:
    """EAN-13 / GTIN-13 with its check digit verified."""
    digits = pc.fill_null(pc.match_substring_regex(values, r"^\d{13}$"), False)
    shaped = pc.if_else(digits, values, pa.scalar(None, pa.string()))
    total = pa.scalar(0, pa.int64())
    for position in range(12):
        digit = pc.cast(pc.utf8_slice_codeunits(shaped, position, position + 1), pa.int64())
        total = pc.add(total, pc.multiply(digit, 3 if position % 2 else 1))
    expected = pc.remainder(pc.subtract(10, pc.remainder(total, 10)), 10)
    check = pc.cast(pc.utf8_slice_codeunits(shaped, 12, 13), pa.int64())
    bad_check = pc.and_(digits, pc.not_equal(check, expected))
    bad_shape = pc.and_(pc.is_valid(values), pc.invert(digits))
    return Converted(values, _problem(bad_check, "bad_check_digit", _problem(bad_shape, "bad_barcode")))
