"""Turn a source column of text into a typed canonical column: SQL over the whole batch.

Each field type is a few DuckDB expressions over the field's cleaned text: the
typed value and, per row, a reason code where the text could not be accepted
(NULL where it was fine). `validate.map_batch` runs them over each column's
distinct values, with no per-row Python; the only Python is `phonenumbers` for
the rare phones the SQL fast path does not recognize.

The `to_*` functions run one type over an Arrow array, for callers (and tests)
that need a single conversion.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass

import duckdb
import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc

from jingzhun.collect.importers.mapping import FieldMap

DEFAULT_DATE_FORMATS = ["%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%Y.%m.%d"]
DEFAULT_TIME_FORMATS = [
    "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y/%m/%d %H:%M:%S",
    "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%d",
]
_NUMBER = r"[+-]?(\d+\.?\d*|\.\d+)"
_INTEGER = r"[+-]?\d+(\.0*)?"
_CN_MOBILE = r"1[3-9]\d{9}"
_MASKED = r"1\d{2}\*{4}\d{4}"
_TRUE = ["true", "1", "是", "y", "yes", "t", "真"]
_FALSE = ["false", "0", "否", "n", "no", "f", "假"]
def lit(text: str) -> str:
    """A SQL string literal (DuckDB: quotes doubled, backslashes literal)."""
    return "'" + text.replace("'", "''") + "'"


def ident(name: str) -> str:
    """A quoted SQL identifier (source columns are often Chinese, sometimes odd)."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Cols:
    """Column names a field's SQL refers to: its text `t`, prepared text `x`, typed value `v`."""

    t: str = "t"
    x: str = "x"
    v: str = "v"


@dataclass(frozen=True)
class FieldSQL:
    """One field type as SQL: `prepared` over the text, then the value over the
    prepared text (or the text), then the problem over the text and the value."""

    value: str
    problem: str | None = None
    prepared: str | None = None
    masked: str | None = None  # phones: kept but masked (weak identifier)
    codes: tuple[str, ...] = ()  # reason codes `problem` can give


@dataclass
class Converted:
    """A typed column and, per row, why its text was refused (null = accepted)."""

    values: pa.Array
    problem: pa.Array  # string reason codes, null where fine
    masked: pa.Array | None = None  # phones only: kept but masked (weak identifier)


def value_map_sql(text: str, spec: FieldMap) -> tuple[str, str | None]:
    """(mapped text, unknown-value flag or None): replace values per `values:`."""
    if not spec.values:
        return text, None
    cases = " ".join(f"WHEN {lit(key)} THEN {'NULL' if target is None else lit(target)}"
                     for key, target in spec.values.items())
    keys = ", ".join(lit(key) for key in spec.values)
    unknown = f"({text} IS NOT NULL AND {text} NOT IN ({keys}))" if spec.strict_values else None
    return f"CASE {text} {cases} ELSE {text} END", unknown


def _refused(c: Cols, code: str) -> str:
    return f"CASE WHEN {c.t} IS NOT NULL AND {c.v} IS NULL THEN '{code}' END"


def number_sql(c: Cols, integer: bool, decimal: bool = False) -> FieldSQL:
    """Numbers with optional thousands separators and a ¥ sign; others refused."""
    prepared = rf"regexp_replace({c.t}, '[,，¥￥\s]', '', 'g')"
    x = c.x
    if integer:
        value = (f"CASE WHEN regexp_full_match({x}, '{_INTEGER}') "
                 rf"THEN TRY_CAST(regexp_replace({x}, '\.0*$', '') AS BIGINT) END")
    elif decimal:
        value = (f"CASE WHEN regexp_full_match({x}, '{_NUMBER}') "
                 f"THEN TRY_CAST(round(TRY_CAST({x} AS DOUBLE), 2) AS DECIMAL(18, 2)) END")
    else:
        value = f"CASE WHEN regexp_full_match({x}, '{_NUMBER}') THEN TRY_CAST({x} AS DOUBLE) END"
    code = "not_an_integer" if integer else "not_a_number"
    return FieldSQL(value, _refused(c, code), prepared, codes=(code,))


def boolean_sql(c: Cols) -> FieldSQL:
    yes, no = ", ".join(map(lit, _TRUE)), ", ".join(map(lit, _FALSE))
    return FieldSQL(f"CASE WHEN lower({c.t}) IN ({yes}) THEN true WHEN lower({c.t}) IN ({no}) THEN false END",
                    _refused(c, "not_a_boolean"), codes=("not_a_boolean",))


def timestamp_sql(c: Cols, formats: list[str], zone: str, date_only: bool = False) -> FieldSQL:
    """Parse with each format in turn; naive local times are in `zone`, stored as UTC.

    DuckDB's `try_strptime` is strict where Arrow's is lenient (Arrow turns
    `2025-02-30` into March 2nd). One call per format: DuckDB 1.x's list form with
    %z rolls 2025-02-30 over to March 2nd, while the single-format call refuses it.
    """
    chosen = formats or (DEFAULT_DATE_FORMATS if date_only else DEFAULT_TIME_FORMATS)
    parts = []
    for fmt in chosen:
        parsed = f"try_strptime({c.t}, {lit(fmt)})"
        parts.append(parsed if "%z" in fmt else f"timezone({lit(zone)}, {parsed})")
    value = f"coalesce({', '.join(parts)})"
    if date_only:
        value = f"CAST(timezone({lit(zone)}, {value}) AS DATE)"
    code = "bad_date" if date_only else "bad_timestamp"
    return FieldSQL(value, _refused(c, code), codes=(code,))


def phone_sql(c: Cols, country_code: str = "86") -> FieldSQL:
    """Phones to E.164; masked ones (`187****8991`) kept as they are and flagged.

    Chinese mobiles in the usual spellings are recognized in SQL (plain 11 digits
    skip the clean-up regexes). The rest is refused here and gets a second look
    from `phonenumbers` (`rescue_phones`): few values, and no Python inside the query.
    """
    compact = rf"regexp_replace({c.t}, '[\s\-()（）.]', '', 'g')"
    if country_code == "86":
        compact = (rf"CASE WHEN regexp_full_match({c.t}, '\d{{11}}') THEN {c.t} ELSE "
                   rf"regexp_replace({compact}, '^(\+86|0086|86)(1\d{{10}})$', '\2') END")
    masked = rf"coalesce(regexp_full_match({c.x}, '{_MASKED}'), false)"
    fast = f"WHEN regexp_full_match({c.x}, '{_CN_MOBILE}') THEN '+86' || {c.x} " if country_code == "86" else ""
    value = f"CASE {fast}WHEN {masked} THEN {c.x} END"
    return FieldSQL(value, _refused(c, "bad_phone"), compact, masked, ("bad_phone",))


def email_sql(c: Cols) -> FieldSQL:
    """E-mail addresses, lower-cased (mail systems treat them so); malformed ones refused."""
    value = rf"CASE WHEN regexp_full_match(lower({c.t}), '[^@\s]+@[^@\s]+\.[^@\s]+') THEN lower({c.t}) END"
    return FieldSQL(value, _refused(c, "bad_email"), codes=("bad_email",))


def ean13_sql(c: Cols) -> FieldSQL:
    """EAN-13 / GTIN-13 with its check digit verified (integer arithmetic on the 12-digit body)."""
    body = rf"CASE WHEN regexp_full_match({c.t}, '\d{{13}}') THEN CAST(left({c.t}, 12) AS BIGINT) END"
    total = " + ".join(f"(({c.x} // {10 ** (11 - i)}) % 10) * {3 if i % 2 else 1}" for i in range(12))
    problem = (f"CASE WHEN {c.t} IS NULL THEN NULL WHEN {c.x} IS NULL THEN 'bad_barcode' "
               f"WHEN CAST(right({c.t}, 1) AS INTEGER) <> (10 - ({total}) % 10) % 10 THEN 'bad_check_digit' END")
    return FieldSQL(c.t, problem, body, codes=("bad_barcode", "bad_check_digit"))


def type_sql(spec: FieldMap, c: Cols, zone: str, country_code: str) -> FieldSQL:
    """The SQL of one field's type."""
    kind = spec.type
    if kind in ("integer", "decimal", "float"):
        return number_sql(c, integer=kind == "integer", decimal=kind == "decimal")
    if kind in ("date", "timestamp"):
        return timestamp_sql(c, spec.formats, zone, date_only=kind == "date")
    builders = {"phone": lambda: phone_sql(c, country_code), "email": lambda: email_sql(c),
                "ean13": lambda: ean13_sql(c), "boolean": lambda: boolean_sql(c)}
    return builders[kind]() if kind in builders else FieldSQL(c.t)


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


def rescue_phones(text: pa.Array, values: pa.Array, problem: pa.Array,
                  country_code: str = "86") -> tuple[pa.Array, pa.Array]:
    """Phones the SQL fast path refused, checked by `phonenumbers`: (values, problems) with
    the valid ones (landlines, other countries, odd spellings) accepted in E.164."""
    refused = pc.fill_null(pc.equal(problem, "bad_phone"), False)
    if not pc.any(refused).as_py():
        return values, problem
    rows = pc.indices_nonzero(refused)
    region = phonenumbers.region_code_for_country_code(int(country_code))
    found = pa.array(_phone_slow(pc.take(text, rows).to_pylist(), region), pa.string())
    rescued = _scatter(found, rows, len(values))
    return pc.coalesce(values, rescued), pc.if_else(pc.is_valid(rescued), pa.scalar(None, pa.string()), problem)


def _scatter(values: pa.Array, rows: pa.Array, length: int) -> pa.Array:
    """Place `values` at `rows` of an otherwise null array of `length`."""
    position = np.full(length, -1, np.int64)
    position[rows.to_numpy()] = np.arange(len(rows))
    return pc.take(values, pa.array(position, mask=position < 0))


_LOCAL = threading.local()


def private_duckdb() -> duckdb.DuckDBPyConnection:
    """A private in-process DuckDB per thread, used as a vectorized converter."""
    if not hasattr(_LOCAL, "connection"):
        _LOCAL.connection = duckdb.connect(config={"threads": 2})
        _LOCAL.connection.execute("SET TimeZone = 'UTC'")
    return _LOCAL.connection


def run_field(values: pa.Array, sql: FieldSQL, country_code: str = "86") -> Converted:
    """Apply one field type's SQL (over the default `Cols()`) to an Arrow array of text."""
    connection = private_duckdb()
    query = (f"SELECT t, v, {sql.problem or 'NULL'} AS p, {sql.masked or 'NULL'} AS m FROM "
             f"(SELECT *, {sql.value} AS v FROM (SELECT t, {sql.prepared or 't'} AS x FROM convert_input))")
    connection.register("convert_input", pa.table({"t": pc.cast(values, pa.string())}))
    try:
        found = connection.sql(query).to_arrow_table()
    finally:
        connection.unregister("convert_input")
    typed, problem = (found.column(name).combine_chunks() for name in ("v", "p"))
    problem = problem.cast(pa.string())
    if sql.masked:  # phones
        typed, problem = rescue_phones(found.column("t").combine_chunks(), typed, problem, country_code)
    masked = found.column("m").combine_chunks() if sql.masked else None
    return Converted(typed, problem, masked)


def to_number(values: pa.Array, integer: bool) -> Converted:
    return run_field(values, number_sql(Cols(), integer))


def to_boolean(values: pa.Array) -> Converted:
    return run_field(values, boolean_sql(Cols()))


def to_timestamp(values: pa.Array, formats: list[str], zone: str, date_only: bool = False) -> Converted:
    return run_field(values, timestamp_sql(Cols(), formats, zone, date_only))


def to_phone(values: pa.Array, country_code: str = "86") -> Converted:
    return run_field(values, phone_sql(Cols(), country_code), country_code)


def to_email(values: pa.Array) -> Converted:
    return run_field(values, email_sql(Cols()))


def to_ean13(values: pa.Array) -> Converted:
    return run_field(values, ean13_sql(Cols()))


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
