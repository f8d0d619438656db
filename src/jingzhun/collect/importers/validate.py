"""Apply a mapping to a batch: typed canonical columns and, per row, the first problem.

Each field's value map, default, type conversion and checks are one DuckDB
query over the field's distinct values (`field_sql`), spread back over the rows
with Arrow; no per-row Python. Checks that need data from outside the row —
known stores and products, mojibake — follow as whole-column Arrow operations,
so a row shows the problem in its own data first. A row with any problem is
set aside with the field at fault and a reason a person can act on (in the
workspace language); the reason code stays machine-readable for summaries and
retries.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from datetime import date, timedelta

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from jingzhun.collect.importers import convert
from jingzhun.collect.importers.convert import Cols, lit
from jingzhun.collect.importers.mapping import FieldMap, Mapping
from jingzhun.collect.importers.mojibake import CODEC_NAMES, find_garbled
from jingzhun.core.errors import ConfigError

REASONS: dict[str, tuple[str, str]] = {
    "missing_required": ("{label} is empty but required: ", "{label} 为空，但这是必填项："),
    "not_a_number": ("{label} is not a number: ", "{label} 不是数字："),
    "not_an_integer": ("{label} is not a whole number: ", "{label} 不是整数："),
    "not_a_boolean": ("{label} is not yes/no: ", "{label} 不是是/否："),
    "bad_date": ("{label} is not a valid date: ", "{label} 不是有效日期："),
    "bad_timestamp": ("{label} is not a valid date and time: ", "{label} 不是有效的日期时间："),
    "bad_phone": ("{label} is not a valid phone number: ", "{label} 不是有效的手机号："),
    "bad_email": ("{label} is not a valid e-mail address: ", "{label} 不是有效的邮箱地址："),
    "bad_barcode": ("{label} is not a 13-digit EAN-13 barcode: ", "{label} 不是 13 位 EAN-13 条码："),
    "bad_check_digit": ("{label} has a wrong EAN-13 check digit: ", "{label} 的 EAN-13 校验位错误："),
    "below_min": ("{label} must be at least {min:g}: ", "{label} 不能小于 {min:g}："),
    "implausible_time": ("{label} is outside {earliest} – {latest}, likely a placeholder for an unknown time "
                         "(if such values are real, widen `not_before`/`not_after` in the mapping): ",
                         "{label} 不在 {earliest} 至 {latest} 之间，可能是未知时间的占位值（如确为真实数据，请在映射中"
                         "放宽 `not_before`/`not_after`）："),
    "unknown_value": ("{label} has a value the mapping does not list: ", "{label} 的值不在映射的取值表中："),
    "unknown_reference": ("{label} is not in {references} (add it there first, then retry): ",
                          "{label} 不在 {references} 中（请先添加，再重试）："),
    "mojibake": ("{label} is garbled text (UTF-8 read as {codec}); it probably says “{repaired}” — correct it "
                 "or re-export the file as UTF-8, then retry: ",
                 "{label} 是乱码（UTF-8 文本被当作 {codec} 读取），原文可能是“{repaired}”；请改正或把文件重新导出为 "
                 "UTF-8 后重试："),
    "bad_encoding": ("{label} holds bytes that are not text in the file's encoding (check it, --encoding): ",
                     "{label} 含有不属于文件编码的字节（请检查文件编码，--encoding）："),
    "group_rejected": ("another row of the same {label} was set aside; the group loads together: ",
                       "同一{label}的其他行被隔离，整组一起导入："),
    "unreadable_row": ("the line could not be read: ", "该行无法读取："),
}


def empty_text(language: str) -> str:
    """How an empty cell is shown in a reason."""
    return "(empty)" if language == "en" else "（空）"


@dataclass
class Mapped:
    """A batch in canonical fields, and per row the first problem (null = fine)."""

    table: pa.Table
    code: pa.Array
    field: pa.Array
    reason: pa.Array
    extra: dict[str, pa.Array] = field(default_factory=dict)

    @property
    def ok(self) -> pa.Array:
        return pc.is_null(self.code)


@dataclass
class Context:
    """What checks need beyond the mapping: zones, phone country, known references."""

    timezone: str
    country_code: str = "86"
    language: str = "zh"
    known: dict[str, pa.Array] = field(default_factory=dict)  # "table.column" -> values present
    pii_salt: bytes | None = None  # set when the workspace stores phones and e-mails hashed
    today: date = field(default_factory=date.today)  # local date of the import: bounds plausible times


def reason_text(code: str, name: str, spec: FieldMap, language: str, **values: str) -> str:
    """The reason prefix for `code` on field `name` (the value is appended)."""
    label = f"{spec.source or name}" if spec.source else name
    en, zh = REASONS[code]
    template = zh if language == "zh" else en
    return template.format(label=label, min=spec.min, references=spec.references, **values)


def check_sources(columns: list[str], mapping: Mapping) -> None:
    """A required field whose column is missing from the file (and has no default) is an error."""
    for name, spec in mapping.fields.items():
        column = spec.source or name
        if column in columns or not spec.required or spec.default is not None:
            continue
        close = difflib.get_close_matches(column, columns, n=1)
        hint = f"; did you mean `{close[0]}`?" if close else ""
        raise ConfigError(
            f"the file has no column `{column}` for required field `{name}`{hint}",
            field=f"fields.{name}.source", fix=f"set `source:` to one of: {', '.join(columns)}",
            message_zh=f"文件中没有必填字段 `{name}` 所需的列 `{column}`{hint}",
            fix_zh=f"把 `source:` 改为以下列之一：{'、'.join(columns)}",
        )


def field_sql(name: str, spec: FieldMap, mapping: Mapping, ctx: Context) -> str:
    """One field as a query over its distinct values (`distinct_values`: raw text `r`, cleaned `c`).

    Gives the typed value `v`, the masked flag `m` (phones), the reason code `p`
    and the reason (prefix + the raw value) per distinct value. Layered so each
    expression is computed once: mapped text, prepared text, typed value, problem.
    """
    text, unknown = convert.value_map_sql("c", spec)
    if spec.default is not None:
        text = f"coalesce({text}, {lit(spec.default)})"
    sql = convert.type_sql(spec, Cols(), spec.timezone or mapping.timezone or ctx.timezone, ctx.country_code)
    checks = [*(["CASE WHEN t IS NULL THEN 'missing_required' END"] if spec.required else []),
              *(["CASE WHEN u THEN 'unknown_value' END"] if unknown else []),
              *([sql.problem] if sql.problem else [])]
    codes = [*(["missing_required"] if spec.required else []), *(["unknown_value"] if unknown else []), *sql.codes]
    if spec.min is not None and spec.type in ("integer", "decimal", "float"):
        checks.append(f"CASE WHEN v < {spec.min!r} THEN 'below_min' END")
        codes.append("below_min")
    earliest, latest = spec.plausible_window(ctx.today)
    if earliest or latest:
        zone = spec.timezone or mapping.timezone or ctx.timezone
        checks.append(f"CASE WHEN {_outside_sql(spec, zone, earliest, latest)} THEN 'implausible_time' END")
        codes.append("implausible_time")
    shown = {"earliest": str(earliest or "…"), "latest": str(latest or "…")}
    prefixes = " ".join(f"WHEN '{code}' THEN {lit(reason_text(code, name, spec, ctx.language, **shown))}"
                        for code in codes)
    problem = f"coalesce({', '.join(checks)}, NULL)" if checks else "NULL"
    reason = f"(CASE p {prefixes} END) || coalesce(r, {lit(empty_text(ctx.language))})" if codes else "NULL"
    return (f"SELECT t, v, {sql.masked or 'false'} AS m, p, CAST({reason} AS VARCHAR) AS reason FROM "
            f"(SELECT *, CAST({problem} AS VARCHAR) AS p FROM (SELECT *, {sql.value} AS v FROM "
            f"(SELECT *, {sql.prepared or 't'} AS x FROM (SELECT r, {text} AS t"
            f"{f', {unknown} AS u' if unknown else ''} FROM distinct_values))))")


def _outside_sql(spec: FieldMap, zone: str, earliest: date | None, latest: date | None) -> str:
    """`v` before the first or after the last day of the window (local days, inclusive)."""
    def start_of(day: date) -> str:
        if spec.type == "date":
            return f"DATE '{day.isoformat()}'"
        return f"timezone({lit(zone)}, TIMESTAMP '{day.isoformat()} 00:00:00')"

    tests = [*([f"v < {start_of(earliest)}"] if earliest else []),
             *([f"v >= {start_of(latest + timedelta(days=1))}"] if latest else [])]
    return " OR ".join(tests)


@dataclass
class FieldResult:
    """One field of a batch: typed values, masked flags (phones), reason code and reason per row."""

    values: pa.Array
    masked: pa.Array | None
    problem: pa.Array | None  # None: no row has a problem in this field
    reason: pa.Array | None


def convert_field(raw: pa.Array, name: str, spec: FieldMap, mapping: Mapping, ctx: Context,
                  connection: duckdb.DuckDBPyConnection) -> FieldResult:
    """Convert and check a column once per distinct value, then spread the results over the rows.

    Exports repeat values heavily (stores, products, prices, one time per receipt),
    so the checks run on far fewer values than rows. Spaces are trimmed by Arrow,
    an order of magnitude cheaper than DuckDB's trim with a character set; plain
    text fields need nothing more and skip the query.
    """
    encoded = _distinct(raw)
    distinct = encoded.dictionary if encoded is not None else raw
    cleaned = pc.utf8_trim_whitespace(distinct)
    cleaned = pc.if_else(pc.equal(cleaned, ""), pa.scalar(None, pa.string()), cleaned)
    if _plain(spec):
        columns = _plain_text(distinct, cleaned, name, spec, ctx.language)
    else:
        columns = _queried(distinct, cleaned, name, spec, mapping, ctx, connection)
    _undecodable_first(columns, distinct, name, spec, ctx.language)

    def spread(column: str) -> pa.Array:
        return columns[column] if encoded is None else pc.take(columns[column], encoded.indices)

    failing = columns["p"].null_count < len(columns["p"])
    return FieldResult(spread("v"), spread("m") if spec.type == "phone" else None,
                       spread("p") if failing else None, spread("reason") if failing else None)


def _undecodable_first(columns: dict[str, pa.Array], raw: pa.Array, name: str, spec: FieldMap,
                       language: str) -> None:
    """Text with U+FFFD (bytes the file's encoding does not know, replaced on reading) is
    refused before any other check: every other verdict on it would be a guess."""
    broken = pc.fill_null(pc.match_substring(raw, "\ufffd"), False)
    if not pc.any(broken).as_py():
        return
    prefix = reason_text("bad_encoding", name, spec, language)
    columns["p"] = pc.if_else(broken, pa.scalar("bad_encoding"), columns["p"])
    columns["reason"] = pc.if_else(broken, pc.binary_join_element_wise(prefix, raw, ""), columns["reason"])


def _plain(spec: FieldMap) -> bool:
    return spec.type in ("string", "json") and not spec.values


def _plain_text(raw: pa.Array, cleaned: pa.Array, name: str, spec: FieldMap, language: str) -> dict[str, pa.Array]:
    """A text field without a value map: the trimmed text (or the default); missing if required."""
    values = cleaned if spec.default is None else pc.fill_null(cleaned, spec.default)
    nothing = pa.nulls(len(values), pa.string())
    if not spec.required or values.null_count == 0:
        return {"v": values, "p": nothing, "reason": nothing}
    missing = pc.is_null(values)
    prefix = reason_text("missing_required", name, spec, language)
    return {"v": values, "p": pc.if_else(missing, pa.scalar("missing_required"), nothing),
            "reason": pc.if_else(missing, pc.binary_join_element_wise(
                prefix, pc.fill_null(raw, empty_text(language)), ""), nothing)}


def _queried(raw: pa.Array, cleaned: pa.Array, name: str, spec: FieldMap, mapping: Mapping, ctx: Context,
             connection: duckdb.DuckDBPyConnection) -> dict[str, pa.Array]:
    """A typed field through its DuckDB query (`field_sql`), phones then rescued by phonenumbers."""
    connection.register("distinct_values", pa.table({"r": raw, "c": cleaned}))
    try:
        found = connection.sql(field_sql(name, spec, mapping, ctx)).to_arrow_table()
    finally:
        connection.unregister("distinct_values")
    columns = {column: found.column(column).combine_chunks() for column in ("v", "m", "p", "reason")}
    if spec.type == "phone":
        columns["v"], problem = convert.rescue_phones(found.column("t").combine_chunks(), columns["v"],
                                                      columns["p"], ctx.country_code)
        columns["reason"] = pc.if_else(pc.is_null(problem), pa.scalar(None, pa.string()), columns["reason"])
        columns["p"] = problem
    return columns


def _distinct(raw: pa.Array, sample: int = 2000) -> pa.DictionaryArray | None:
    """The column dictionary-encoded, or None when a sample says values hardly repeat
    (phones, receipt numbers): encoding them would cost more than it saves."""
    head = raw.slice(0, sample)
    if len(raw) > 2 * sample and len(pc.unique(head)) > 0.6 * len(head):
        return None
    return pc.dictionary_encode(raw, null_encoding="encode")


def map_batch(table: pa.Table, mapping: Mapping, ctx: Context,
              connection: duckdb.DuckDBPyConnection | None = None) -> Mapped:
    """Every field of the mapping, typed; the first problem of each row, with its reason."""
    check_sources(table.column_names, mapping)
    connection = connection or convert.private_duckdb()
    nothing = pa.nulls(table.num_rows, pa.string())
    mapped = Mapped(pa.table({}), nothing, nothing, nothing)
    columns: dict[str, pa.Array] = {}
    raws = {name: _raw(table, name, spec) for name, spec in mapping.fields.items()}
    for name, spec in mapping.fields.items():
        found = convert_field(raws[name], name, spec, mapping, ctx, connection)
        columns[name] = found.values
        if found.masked is not None:
            mapped.extra[f"{name}_masked"] = found.masked
        if found.problem is not None:
            _first(mapped, found.problem, found.reason, spec.source or name)
    if ctx.pii_salt is not None:
        _hash_pii(columns, mapped.extra, mapping, ctx.pii_salt)
    mapped.table = pa.table(columns)
    for name, spec in mapping.fields.items():
        raw = raws[name]
        problem = reference_problem(columns[name], spec, ctx)
        if problem is not None:
            _note(mapped, problem, raw, name, spec, ctx.language)
        if spec.check_mojibake:
            _note_mojibake(mapped, columns[name], raw, name, spec, ctx.language)
    return mapped


def _first(mapped: Mapped, problem: pa.Array, reason: pa.Array, label: str) -> None:
    """Keep `problem` (with its reason) on rows that have no earlier one."""
    first = pc.and_(pc.is_null(mapped.code), pc.is_valid(problem))
    mapped.code = pc.if_else(first, problem, mapped.code)
    mapped.field = pc.if_else(first, pa.scalar(label), mapped.field)
    mapped.reason = pc.if_else(first, reason, mapped.reason)


def _raw(table: pa.Table, name: str, spec: FieldMap) -> pa.Array:
    column = spec.source or name
    if column not in table.column_names:
        return pa.nulls(table.num_rows, pa.string())
    values = table.column(column)
    values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    return values if values.type == pa.string() else pc.cast(values, pa.string())


def _hash_pii(columns: dict[str, pa.Array], extra: dict[str, pa.Array], mapping: Mapping, salt: bytes) -> None:
    """Phones and e-mails as salted SHA-256 (masked phones, already unusable, stay as they are)."""
    for name, spec in mapping.fields.items():
        if spec.type in ("phone", "email"):
            columns[name] = convert.salted_hash(columns[name], salt, extra.get(f"{name}_masked"))


def reference_problem(values: pa.Array, spec: FieldMap, ctx: Context) -> pa.Array | None:
    """`unknown_reference` where a value is missing from its reference table.

    Checked after every field's own checks, so a row shows the problem in its own
    data first; a missing store or product is fixed elsewhere and then retried.
    """
    if not spec.references or spec.references not in ctx.known:
        return None
    unseen = pc.and_(pc.is_valid(values), pc.invert(pc.is_in(values, ctx.known[spec.references])))
    return pc.if_else(unseen, pa.scalar("unknown_reference"), pa.scalar(None, pa.string()))


def _note(mapped: Mapped, problem: pa.Array, raw: pa.Array, name: str, spec: FieldMap, language: str) -> None:
    """Record `problem` on rows that have no earlier one."""
    first = pc.and_(pc.is_null(mapped.code), pc.is_valid(problem))
    if not pc.any(first).as_py():
        return
    mapped.code = pc.if_else(first, problem, mapped.code)
    mapped.field = pc.if_else(first, pa.scalar(spec.source or name), mapped.field)
    shown = pc.fill_null(raw, empty_text(language))
    for code in pc.unique(pc.filter(problem, first)).to_pylist():
        prefix = reason_text(code, name, spec, language)
        these = pc.fill_null(pc.and_(first, pc.equal(problem, code)), False)
        mapped.reason = pc.if_else(these, pc.binary_join_element_wise(prefix, shown, ""), mapped.reason)


def _note_mojibake(mapped: Mapped, values: pa.Array, raw: pa.Array, name: str, spec: FieldMap,
                   language: str) -> None:
    """Set aside garbled text, naming the likely original in the reason (one reason per distinct value)."""
    flagged, verdicts = find_garbled(values)
    if flagged is None:
        return
    first = pc.and_(pc.is_null(mapped.code), flagged)
    if not pc.any(first).as_py():
        return
    texts = pa.array(list(verdicts), pa.string())
    reasons = pa.array([reason_text("mojibake", name, spec, language, codec=CODEC_NAMES[found.codec],
                                    repaired=found.repaired) for found in verdicts.values()], pa.string())
    reason = pc.binary_join_element_wise(pc.take(reasons, pc.index_in(values, value_set=texts)), raw, "")
    mapped.code = pc.if_else(first, pa.scalar("mojibake"), mapped.code)
    mapped.field = pc.if_else(first, pa.scalar(spec.source or name), mapped.field)
    mapped.reason = pc.if_else(first, reason, mapped.reason)


def reject_groups(mapped: Mapped, group: str, label: str, language: str) -> Mapped:
    """Set aside every row of a group (e.g. a receipt) in which one row was set aside.

    A receipt loaded without its bad line would carry wrong totals forever; held
    back whole, it loads complete once the bad line is fixed and retried.
    """
    keys = mapped.table.column(group)
    bad_keys = pc.unique(pc.filter(keys, pc.invert(mapped.ok)))
    sibling = pc.and_(mapped.ok, pc.fill_null(pc.is_in(keys, bad_keys), False))
    if not pc.any(sibling).as_py():
        return mapped
    prefix = reason_text("group_rejected", group, FieldMap(source=label), language)
    mapped.code = pc.if_else(sibling, pa.scalar("group_rejected"), mapped.code)
    mapped.field = pc.if_else(sibling, pa.scalar(label), mapped.field)
    mapped.reason = pc.if_else(sibling, pc.binary_join_element_wise(prefix, pc.cast(keys, pa.string()), ""),
                               mapped.reason)
    return mapped
