"""Apply a mapping to a batch: typed canonical columns and, per row, the first problem.

All checks are whole-column operations. A row with any problem is set aside with
the field at fault and a reason a person can act on (in the workspace language);
the reason code stays machine-readable for summaries and retries.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from jingzhun.collect.importers import convert
from jingzhun.collect.importers.mapping import FieldMap, Mapping
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
    "unknown_value": ("{label} has a value the mapping does not list: ", "{label} 的值不在映射的取值表中："),
    "unknown_reference": ("{label} is not in {references} (add it there first, then retry): ",
                          "{label} 不在 {references} 中（请先添加，再重试）："),
    "group_rejected": ("another row of the same {label} was set aside; the group loads together: ",
                       "同一{label}的其他行被隔离，整组一起导入："),
    "unreadable_row": ("the line could not be read: ", "该行无法读取："),
}


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


def reason_text(code: str, name: str, spec: FieldMap, language: str) -> str:
    """The reason prefix for `code` on field `name` (the value is appended)."""
    label = f"{spec.source or name}" if spec.source else name
    en, zh = REASONS[code]
    template = zh if language == "zh" else en
    return template.format(label=label, min=spec.min, references=spec.references)


def source_column(table: pa.Table, name: str, spec: FieldMap, mapping: Mapping) -> pa.Array | None:
    """The source column for a field; a required one missing from the file is an error."""
    column = spec.source or name
    if column in table.column_names:
        return table.column(column).combine_chunks()
    if not spec.required or spec.default is not None:
        return None
    close = difflib.get_close_matches(column, table.column_names, n=1)
    hint = f"; did you mean `{close[0]}`?" if close else ""
    raise ConfigError(
        f"the file has no column `{column}` for required field `{name}`{hint}",
        field=f"fields.{name}.source", fix=f"set `source:` to one of: {', '.join(table.column_names)}",
        message_zh=f"文件中没有必填字段 `{name}` 所需的列 `{column}`{hint}",
        fix_zh=f"把 `source:` 改为以下列之一：{'、'.join(table.column_names)}",
    )


def convert_field(raw: pa.Array, spec: FieldMap, mapping: Mapping, ctx: Context) -> convert.Converted:
    """Clean, map, default and type one column; report the first problem per row."""
    text = convert.clean_text(raw)
    text, unknown = convert.apply_value_map(text, spec)
    if spec.default is not None:
        text = pc.fill_null(text, spec.default)
    typed = _typed(text, spec, mapping, ctx)
    if ctx.pii_salt is not None and spec.type in ("phone", "email"):
        typed.values = convert.salted_hash(typed.values, ctx.pii_salt, typed.masked)
    problem = typed.problem if unknown is None else pc.coalesce(unknown, typed.problem)
    if spec.required:
        problem = pc.coalesce(convert._problem(pc.is_null(text), "missing_required"), problem)
    if spec.min is not None and spec.type in ("integer", "decimal", "float"):
        problem = pc.coalesce(problem, convert._problem(pc.less(typed.values, spec.min), "below_min"))
    return convert.Converted(typed.values, problem, typed.masked)


def reference_problem(values: pa.Array, spec: FieldMap, ctx: Context) -> pa.Array | None:
    """`unknown_reference` where a value is missing from its reference table.

    Checked after every field's own checks, so a row shows the problem in its own
    data first; a missing store or product is fixed elsewhere and then retried.
    """
    if not spec.references or spec.references not in ctx.known:
        return None
    unseen = pc.and_(pc.is_valid(values), pc.invert(pc.is_in(values, ctx.known[spec.references])))
    return convert._problem(unseen, "unknown_reference")


def _typed(text: pa.Array, spec: FieldMap, mapping: Mapping, ctx: Context) -> convert.Converted:
    zone = spec.timezone or mapping.timezone or ctx.timezone
    kind = spec.type
    if kind in ("integer", "decimal", "float"):
        number = convert.to_number(text, integer=kind == "integer")
        if kind == "decimal":
            number.values = pc.round(number.values, 2).cast(pa.decimal128(18, 2))
        return number
    if kind in ("date", "timestamp"):
        return convert.to_timestamp(text, spec.formats, zone, date_only=kind == "date")
    converters = {"phone": lambda: convert.to_phone(text, ctx.country_code), "ean13": lambda: convert.to_ean13(text),
                  "email": lambda: convert.to_email(text),
                  "boolean": lambda: convert.to_boolean(text)}
    if kind in converters:
        return converters[kind]()
    return convert.Converted(text, pa.nulls(len(text), pa.string()))


def map_batch(table: pa.Table, mapping: Mapping, ctx: Context) -> Mapped:
    """Every field of the mapping, typed; the first problem of each row, with its reason."""
    columns: dict[str, pa.Array] = {}
    extra: dict[str, pa.Array] = {}
    code = pa.nulls(table.num_rows, pa.string())
    at_field = pa.nulls(table.num_rows, pa.string())
    reason = pa.nulls(table.num_rows, pa.string())
    for name, spec in mapping.fields.items():
        raw = source_column(table, name, spec, mapping)
        raw = pa.nulls(table.num_rows, pa.string()) if raw is None else raw
        converted = convert_field(raw, spec, mapping, ctx)
        columns[name] = converted.values
        if converted.masked is not None:
            extra[f"{name}_masked"] = converted.masked
        first = pc.and_(pc.is_null(code), pc.is_valid(converted.problem))
        code = pc.if_else(first, converted.problem, code)
        at_field = pc.if_else(first, pa.scalar(spec.source or name), at_field)
        reason = _with_reasons(reason, first, converted.problem, raw, name, spec, ctx.language)
    mapped = Mapped(pa.table(columns), code, at_field, reason, extra)
    for name, spec in mapping.fields.items():
        problem = reference_problem(columns[name], spec, ctx)
        if problem is not None:
            _note(mapped, problem, table.column(spec.source or name).combine_chunks(), name, spec, ctx.language)
    return mapped


def _note(mapped: Mapped, problem: pa.Array, raw: pa.Array, name: str, spec: FieldMap, language: str) -> None:
    """Record `problem` on rows that have no earlier one."""
    first = pc.and_(pc.is_null(mapped.code), pc.is_valid(problem))
    mapped.code = pc.if_else(first, problem, mapped.code)
    mapped.field = pc.if_else(first, pa.scalar(spec.source or name), mapped.field)
    mapped.reason = _with_reasons(mapped.reason, first, problem, raw, name, spec, language)


def _with_reasons(reason: pa.Array, first: pa.Array, problem: pa.Array, raw: pa.Array,
                  name: str, spec: FieldMap, language: str) -> pa.Array:
    """Fill `reason` for rows whose first problem is on this field: prefix + raw value."""
    if not pc.any(first).as_py():
        return reason
    shown = pc.fill_null(raw, "(empty)" if language == "en" else "（空）")
    for code in pc.unique(pc.filter(problem, first)).to_pylist():
        prefix = reason_text(code, name, spec, language)
        these = pc.fill_null(pc.and_(first, pc.equal(problem, code)), False)
        reason = pc.if_else(these, pc.binary_join_element_wise(prefix, shown, ""), reason)
    return reason


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
