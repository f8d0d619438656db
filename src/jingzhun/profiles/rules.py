"""The rule language of tags and audiences: YAML/JSON → pydantic → sqlglot.

A rule says who belongs to a group, in terms a marketer uses: traits of the
portrait, predictive scores, identifiers a person can be reached on, other tags,
and what they did (events) or bought (orders) in a time window. Three layers
(STYLE.md): the pydantic models below give the shape; `check_rule` checks names
against a `Catalog` (columns, score models, identifier types, tags) and collects
every problem with its rule path; `RuleCompiler` turns a checked rule into one
sqlglot SELECT without touching a connection. User values only ever enter the
query as sqlglot literals.

The compiled query has one shape on every engine::

    WITH rule_1 AS (SELECT person_id, <measure> AS value FROM … GROUP BY person_id), …
    SELECT pt.person_id FROM person_traits AS pt
    LEFT JOIN rule_1 ON rule_1.person_id = pt.person_id …
    WHERE <boolean tree over pt columns and rule_N.value>

Each event/order/score/tag/identifier condition is a per-person aggregate joined
once, so "fewer than 2 orders" includes people with none (the missing value counts
as 0), and every leaf is TRUE or FALSE, never NULL: `not` is the exact complement
(a person whose gender is unknown is matched by `not: gender = F`, not by
`gender != F`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from sqlglot import exp

from jingzhun.core.errors import JingzhunError
from jingzhun.engine.dialects import json_text, to_local_time

DEFAULT_TIMEZONE = "Asia/Shanghai"
POPULATION = "person_traits"
PT = "pt"

# ---- errors ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a rule: where (`rule.all[2].event.window.last`), what, the fix."""

    path: str
    message: str
    message_zh: str
    fix: str = ""
    fix_zh: str = ""


class RuleError(JingzhunError):
    """A rule (of a tag or an audience) is invalid; `problems` lists every finding."""

    def __init__(self, problems: list[Problem], location: str | None = None) -> None:
        self.problems = problems
        super().__init__(
            "; ".join(f"{p.path}: {p.message}" for p in problems),
            fix="; ".join(f"{p.path}: {p.fix}" for p in problems if p.fix),
            field=problems[0].path, location=location,
            message_zh="；".join(f"{p.path}：{p.message_zh}" for p in problems),
            fix_zh="；".join(f"{p.path}：{p.fix_zh}" for p in problems if p.fix_zh),
        )


def _invalid(en: str, zh: str, fix: str = "", fix_zh: str = "") -> PydanticCustomError:
    """A validation error that carries both languages and the fix through pydantic."""
    return PydanticCustomError("jingzhun_rule", "{en}", {"en": en, "zh": zh, "fix": fix, "fix_zh": fix_zh})


# ---- durations and windows ------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+)\s*([hdw])\s*$")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


def parse_duration(text: str) -> timedelta:
    """'7d' → 7 days; units h (hours), d (days), w (weeks).

    Example:
        >>> parse_duration("2w")
        datetime.timedelta(days=14)
    """
    matched = _DURATION.match(str(text))
    if not matched:
        raise _invalid(
            f"{text!r} is not a duration.", f"{text!r} 不是时长。",
            "write a number and a unit: 24h, 7d, 4w", "写成数字加单位：24h、7d、4w",
        )
    return int(matched.group(1)) * _UNITS[matched.group(2)]


def moment(value: object) -> date | datetime:
    """A calendar date ('2025-11-11') or an instant ('2025-11-11T20:00:00', naive = local time)."""
    if isinstance(value, date):
        return value
    text = str(value).strip()
    try:
        return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
    except ValueError:
        raise _invalid(f"{value!r} is not a date or a date-time.", f"{value!r} 不是日期或日期时间。",
                       "write 2025-11-11 or 2025-11-11T20:00:00", "写成 2025-11-11 或 2025-11-11T20:00:00") from None


def _duration(value: object) -> str:
    parse_duration(str(value))
    return str(value).strip()


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class RelativeWindow(_Model):
    """The `last` span before `as_of` (optionally ending `offset` before it): {last: 7d}."""

    last: str
    offset: str | None = None

    @field_validator("last", "offset", mode="before")
    @classmethod
    def _is_duration(cls, value: object) -> object:
        return value if value is None else _duration(value)


class AbsoluteWindow(_Model):
    """Calendar dates (local, both inclusive) or instants: {from: 2025-11-01, to: 2025-11-11}."""

    from_: date | datetime | None = Field(None, alias="from")
    to: date | datetime | None = None

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _is_moment(cls, value: object) -> object:
        return value if value is None else moment(value)

    @model_validator(mode="after")
    def _ordered(self) -> AbsoluteWindow:
        if self.from_ is None and self.to is None:
            raise _invalid("a window needs `from`, `to` or `last`.", "时间窗需要 from、to 或 last。",
                           "e.g. {last: 30d} or {from: 2025-11-01, to: 2025-11-11}",
                           "例如 {last: 30d} 或 {from: 2025-11-01, to: 2025-11-11}")
        return self


def _window_kind(value: object) -> str | None:
    if isinstance(value, BaseModel):
        return "relative" if isinstance(value, RelativeWindow) else "absolute"
    return "relative" if isinstance(value, dict) and "last" in value else "absolute"


Window = Annotated[
    Annotated[RelativeWindow, Tag("relative")] | Annotated[AbsoluteWindow, Tag("absolute")],
    Discriminator(_window_kind),
]

# ---- leaf conditions --------------------------------------------------------------------

Op = Literal["=", "!=", "<", "<=", ">", ">=", "in", "not_in", "between", "is_null", "is_not_null",
             "contains", "within", "older_than"]
NumberOp = Literal["=", "!=", "<", "<=", ">", ">="]
_NO_VALUE = {"is_null", "is_not_null"}
_LIST_VALUE = {"in", "not_in"}
_DURATION_VALUE = {"within", "older_than"}


def _check_value(op: str, value: object) -> object:
    """The value's shape must fit the operator (types are checked against the catalog later)."""
    if op in _NO_VALUE:
        if value is not None:
            raise _invalid(f"`{op}` takes no value.", f"`{op}` 不需要 value。", "remove `value`", "删除 value")
        return value
    if value is None:
        raise _invalid(f"`{op}` needs a value.", f"`{op}` 需要 value。", "add `value`", "补上 value")
    if op in _LIST_VALUE and not (isinstance(value, list) and value):
        raise _invalid(f"`{op}` needs a non-empty list.", f"`{op}` 需要非空列表。",
                       "write value: [a, b]", "写成 value: [a, b]")
    if op == "between" and not (isinstance(value, list) and len(value) == 2):
        raise _invalid("`between` needs [low, high].", "`between` 需要 [下限, 上限]。",
                       "write value: [25, 34]", "写成 value: [25, 34]")
    if op in _DURATION_VALUE:
        return _duration(value)
    if op not in _LIST_VALUE | {"between"} and isinstance(value, list | dict):
        raise _invalid(f"`{op}` compares with one value, not a list.", f"`{op}` 只比较一个值，不能是列表。",
                       "use `in` for a list", "列表请用 in")
    return value


class TraitCondition(_Model):
    """A column of the person's portrait: {trait: age, op: between, value: [25, 34]}."""

    KIND: ClassVar[str] = "trait"
    trait: str
    op: Op
    value: Any = None

    @field_validator("value")
    @classmethod
    def _value_fits_op(cls, value: object, info: ValidationInfo) -> object:
        return _check_value(info.data["op"], value) if "op" in info.data else value


class ScoreCondition(_Model):
    """The latest predictive score of a model: {score: churn_90d, op: '>=', value: 0.7}.

    `of: percentile` compares the person's rank among everyone scored by the model
    instead (0 = lowest, 1 = highest), so `{score: clv_365d, of: percentile, op: '>=',
    value: 0.8}` is the top 20% whatever the model's scale or calibration.
    """

    KIND: ClassVar[str] = "score"
    score: str
    of: Literal["score", "percentile"] = "score"
    op: Literal["=", "!=", "<", "<=", ">", ">=", "between", "is_null", "is_not_null"]
    value: float | list[float] | None = None

    @field_validator("value")
    @classmethod
    def _value_fits_op(cls, value: object, info: ValidationInfo) -> object:
        return _check_value(info.data["op"], value) if "op" in info.data else value


class IdentifierCondition(_Model):
    """The person can be reached on this identifier type: {has_identifier: wechat_openid}."""

    KIND: ClassVar[str] = "has_identifier"
    has_identifier: str | list[str]


class TagCondition(_Model):
    """The person currently holds another tag (optionally with one of these values)."""

    KIND: ClassVar[str] = "tag"
    tag: str
    value: str | list[str] | None = None


class ConsentSpec(_Model):
    """Which consent: a purpose and, optionally, a channel (a consent without channel covers all)."""

    purpose: str = "marketing"
    channel: str | None = None


class ConsentCondition(_Model):
    """The person's latest consent for the purpose (and channel) is granted: {consent: {channel: sms}}."""

    KIND: ClassVar[str] = "consent"
    consent: ConsentSpec


class SegmentCondition(_Model):
    """The person is in the latest snapshot of another audience: {segment: spring_vip}."""

    KIND: ClassVar[str] = "segment"
    segment: str


_PROPERTY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def property_name(name: str) -> str:
    """Event property names are plain keys (dots for nesting): they become a JSON path."""
    if not _PROPERTY.match(name):
        raise _invalid(f"{name!r} is not a property name.", f"{name!r} 不是有效的属性名。",
                       "use letters, digits and underscores, dots for nested keys: category, page.path",
                       "只用字母、数字、下划线，嵌套键用点：category、page.path")
    return name


class PropertyFilter(_Model):
    """A filter on an event property: {property: category, op: '=', value: cosmetics}."""

    property: str
    op: Literal["=", "!=", "<", "<=", ">", ">=", "in", "not_in", "contains", "is_null", "is_not_null"]
    value: str | bool | int | float | list[str | int | float] | None = None

    _name = field_validator("property")(classmethod(lambda cls, value: property_name(value)))

    @field_validator("value")
    @classmethod
    def _value_fits_op(cls, value: object, info: ValidationInfo) -> object:
        return _check_value(info.data["op"], value) if "op" in info.data else value


Names = str | list[str]


class ProductFilter(_Model):
    """Which products count, by catalogue attributes (each a value or a list)."""

    product_id: Names | None = None
    sku: Names | None = None
    category: Names | None = None
    subcategory: Names | None = None
    brand: Names | None = None
    product_line: Names | None = None

    def filters(self) -> Iterator[tuple[str, list[str]]]:
        for name in ProductFilter.model_fields:
            chosen = getattr(self, name)
            if chosen is not None:
                yield name, [chosen] if isinstance(chosen, str) else list(chosen)


class LocalTime(_Model):
    """Local wall-clock filter in the workspace time zone: ISO weekdays (1 = Monday) and hours."""

    weekdays: list[Annotated[int, Field(ge=1, le=7)]] | None = Field(None, min_length=1)
    hours: list[Annotated[int, Field(ge=0, le=23)]] | None = Field(None, min_length=1)


class Threshold(_Model):
    """An aggregate compared with a number: {op: '>=', value: 2}."""

    op: NumberOp = ">="
    value: int | float


class PropertySum(Threshold):
    property: str

    _name = field_validator("property")(classmethod(lambda cls, value: property_name(value)))


class OrderSum(Threshold):
    field: Literal["net_amount", "gross_amount", "discount_amount", "amount"] = "net_amount"


def _one_measure(model: BaseModel, names: tuple[str, ...]) -> None:
    chosen = [name for name in names if getattr(model, name) is not None]
    if len(chosen) > 1:
        raise _invalid(f"choose one measure, not {' and '.join(chosen)}.", f"只能选一个度量，不能同时用 {'、'.join(chosen)}。",
                       f"keep one of {', '.join(names)}", f"在 {'、'.join(names)} 中保留一个")


class EventSpec(_Model):
    """What the person did: event names, filters, a window and how often (default: at least once)."""

    name: Names | None = None
    type: Literal["track", "page", "screen", "identify"] | None = None
    channel: Names | None = None
    where: list[PropertyFilter] = Field(default_factory=list)
    product: ProductFilter | None = None
    local_time: LocalTime | None = None
    window: Window | None = None
    count: Threshold | None = None
    sum: PropertySum | None = None
    distinct_days: Threshold | None = None

    @model_validator(mode="after")
    def _single_measure(self) -> EventSpec:
        _one_measure(self, ("count", "sum", "distinct_days"))
        return self


class OrderSpec(_Model):
    """What the person bought: order and product filters, a window and a measure."""

    channel: Names | None = None
    platform: Names | None = None
    store_id: Names | None = None
    status: Names | None = None
    has_coupon: bool | None = None
    product: ProductFilter | None = None
    local_time: LocalTime | None = None
    window: Window | None = None
    count: Threshold | None = None
    sum: OrderSum | None = None
    quantity: Threshold | None = None
    distinct_days: Threshold | None = None

    @model_validator(mode="after")
    def _single_measure(self) -> OrderSpec:
        _one_measure(self, ("count", "sum", "quantity", "distinct_days"))
        return self


class EventCondition(_Model):
    KIND: ClassVar[str] = "event"
    event: EventSpec


class OrderCondition(_Model):
    KIND: ClassVar[str] = "order"
    order: OrderSpec


# ---- nesting ------------------------------------------------------------------------------

CONDITION_KINDS = ("all", "any", "not", "trait", "score", "has_identifier", "tag", "event", "order",
                   "consent", "segment")


def _condition_kind(value: object) -> str | None:
    if isinstance(value, BaseModel):
        return getattr(value, "KIND", None)
    if not isinstance(value, dict):
        return None
    present = [kind for kind in CONDITION_KINDS if kind in value]
    return present[0] if len(present) == 1 else None


class AllCondition(_Model):
    KIND: ClassVar[str] = "all"
    all: list[Condition] = Field(min_length=1)


class AnyCondition(_Model):
    KIND: ClassVar[str] = "any"
    any: list[Condition] = Field(min_length=1)


class NotCondition(_Model):
    KIND: ClassVar[str] = "not"
    not_: Condition = Field(alias="not")


Condition = Annotated[
    (
        Annotated[AllCondition, Tag("all")] | Annotated[AnyCondition, Tag("any")]
        | Annotated[NotCondition, Tag("not")] | Annotated[TraitCondition, Tag("trait")]
        | Annotated[ScoreCondition, Tag("score")] | Annotated[IdentifierCondition, Tag("has_identifier")]
        | Annotated[TagCondition, Tag("tag")] | Annotated[EventCondition, Tag("event")]
        | Annotated[OrderCondition, Tag("order")] | Annotated[ConsentCondition, Tag("consent")]
        | Annotated[SegmentCondition, Tag("segment")]
    ),
    Discriminator(
        _condition_kind, custom_error_type="condition_kind",
        custom_error_message="a condition needs exactly one of: " + ", ".join(CONDITION_KINDS),
    ),
]
for _model in (AllCondition, AnyCondition, NotCondition):
    _model.model_rebuild()
CONDITION_ADAPTER: TypeAdapter[Any] = TypeAdapter(Condition)

# ---- parsing and error paths -------------------------------------------------------------------

_GENERIC_ZH = {
    "missing": ("this field is required", "缺少此字段", "add it", "补上此字段"),
    "extra_forbidden": ("unknown field", "未知字段", "remove it or fix its spelling (see docs/tags.md)",
                        "删除它或更正拼写（见 docs/tags.md）"),
    "too_short": ("needs at least one item", "至少需要一项", "add an item or remove the key", "补上一项或删除此键"),
    "condition_kind": ("a condition needs exactly one of: " + ", ".join(CONDITION_KINDS),
                       "条件必须且只能包含以下之一：" + "、".join(CONDITION_KINDS),
                       "e.g. {trait: gender, op: '=', value: F} or {all: [...]}",
                       "例如 {trait: gender, op: '=', value: F} 或 {all: [...]}"),
}


def rule_path(loc: tuple[int | str, ...], root: str = "rule") -> str:
    """`('all', 2, 'event', 'event', 'window', 'last')` → `rule.all[2].event.window.last`.

    pydantic puts the union tag before each condition's fields; the tag is dropped.
    """
    path, at_condition, previous = root, True, None
    for part in loc:
        if at_condition and isinstance(part, str) and part in CONDITION_KINDS + ("relative", "absolute"):
            at_condition, previous = False, part
            continue
        if isinstance(part, int):
            path += f"[{part}]"
            at_condition = previous in ("all", "any")
        else:
            path += f".{part}"
            at_condition = part in ("not", "window", "when", "rule")
        previous = part
    return path


def problems_from(error: ValidationError, root: str = "rule") -> list[Problem]:
    """pydantic's errors as bilingual problems with rule paths and fixes."""
    problems = []
    for item in error.errors():
        path = rule_path(tuple(item["loc"]), root)
        ctx = item.get("ctx") or {}
        if item["type"] == "jingzhun_rule":
            problems.append(Problem(path, ctx["en"], ctx["zh"], ctx.get("fix", ""), ctx.get("fix_zh", "")))
        elif item["type"] in _GENERIC_ZH:
            en, zh, fix, fix_zh = _GENERIC_ZH[item["type"]]
            problems.append(Problem(path, en, zh, fix, fix_zh))
        elif item["type"] == "literal_error":
            expected = ctx.get("expected", "")
            problems.append(Problem(path, f"must be one of {expected}", f"取值必须是 {expected} 之一",
                                    f"use one of {expected}", f"改用 {expected} 之一"))
        else:
            problems.append(Problem(path, item["msg"], f"取值无效：{item['msg']}",
                                    "see docs/tags.md for the rule language", "规则语法见 docs/tags.md"))
    return problems


def parse_rule(data: object, root: str = "rule", location: str | None = None) -> Any:
    """A rule from YAML/JSON data, or a `RuleError` naming every problem and its path.

    Example:
        >>> type(parse_rule({"trait": "gender", "op": "=", "value": "F"})).__name__
        'TraitCondition'
    """
    try:
        return CONDITION_ADAPTER.validate_python(data)
    except ValidationError as failure:
        raise RuleError(problems_from(failure, root), location) from None


def dump_rule(condition: object) -> Any:
    """The rule as plain JSON-ready data, as written (aliases such as `not` and `from` restored)."""
    return CONDITION_ADAPTER.dump_python(condition, mode="json", by_alias=True, exclude_unset=True)


def walk(condition: object, path: str = "rule") -> Iterator[tuple[str, object]]:
    """Every condition of a rule with its path, parents before children."""
    yield path, condition
    if isinstance(condition, AllCondition | AnyCondition):
        key = condition.KIND
        for index, child in enumerate(getattr(condition, key)):
            yield from walk(child, f"{path}.{key}[{index}]")
    elif isinstance(condition, NotCondition):
        yield from walk(condition.not_, f"{path}.not")


def referenced_tags(condition: object) -> set[str]:
    """Tags a rule depends on (so tags can be computed in dependency order)."""
    return {c.tag for _, c in walk(condition) if isinstance(c, TagCondition)}


# ---- the catalog: names a rule may use ------------------------------------------------------

TRAIT_KINDS = ("text", "integer", "number", "boolean", "date", "timestamp")

# person_traits, as the traits stage serves it (contract for tags, scores and segments).
PERSON_TRAIT_COLUMNS: dict[str, str] = {
    **dict.fromkeys(("person_id", "name", "gender", "age_band", "province", "city", "member_id",
                     "member_level", "register_store", "income_band", "job", "favourite_category",
                     "preferred_channel", "preferred_store_id", "device_type", "price_band",
                     "rfm_class"), "text"),
    **dict.fromkeys(("age", "active_days_30d", "active_days_90d", "sessions_90d", "page_views_90d",
                     "product_views_90d", "cart_adds_90d", "events_total", "orders_total", "orders_365d",
                     "days_since_last_order", "livestream_views_90d", "social_interactions_90d",
                     "rfm_r", "rfm_f", "rfm_m"), "integer"),
    **dict.fromkeys(("gmv_total", "gmv_365d", "aov", "refund_rate", "online_order_share",
                     "offline_order_share", "coupon_order_share", "holiday_order_share"), "number"),
    **dict.fromkeys(("follows_official_account", "has_phone", "has_email", "has_wechat"), "boolean"),
    "birth_date": "date",
    **dict.fromkeys(("member_since", "first_seen_at", "last_seen_at", "first_order_at", "last_order_at",
                     "computed_at"), "timestamp"),
}
SCORE_MODELS = ("purchase_propensity_30d", "churn_90d", "clv_365d", "clv_expected_purchases_365d", "p_alive")
IDENTIFIER_TYPES = (
    "phone", "phone_masked", "email", "member_id", "wechat_openid", "wechat_unionid",
    "wecom_external_userid", "alipay_user_id", "douyin_user_id", "douyin_openid", "weibo_user_id",
    "tmall_open_uid", "jd_pin", "device_id", "anonymous_id", "user_id", "phone_md5", "phone_sha256",
    "email_md5", "email_sha256",
)


@dataclass(frozen=True)
class Catalog:
    """The names a rule may use. `tags` / `segments` = None skips that check (the caller
    resolves them); `kinds` are the condition kinds allowed (tags, computed before
    audiences, leave out `segment`)."""

    traits: Mapping[str, str] = field(default_factory=lambda: dict(PERSON_TRAIT_COLUMNS))
    score_models: tuple[str, ...] = SCORE_MODELS
    identifier_types: tuple[str, ...] = IDENTIFIER_TYPES
    tags: frozenset[str] | None = None
    segments: frozenset[str] | None = None
    kinds: tuple[str, ...] = CONDITION_KINDS

    @classmethod
    def from_columns(cls, columns: Mapping[str, str], **others: Any) -> Catalog:
        """A catalog from column name → SQL type (e.g. a TableDef's columns)."""
        return cls(traits={name: trait_kind(sql_type) for name, sql_type in columns.items()}, **others)


def trait_kind(sql_type: str) -> str:
    """The rule kind of a SQL column type: 'DECIMAL(18, 2)' → 'number'."""
    upper = sql_type.upper()
    for prefix, kind in (("TIMESTAMP", "timestamp"), ("DATE", "date"), ("BOOL", "boolean"),
                         ("DECIMAL", "number"), ("DOUBLE", "number"), ("FLOAT", "number"),
                         ("REAL", "number"), ("NUMERIC", "number"), ("BIGINT", "integer"),
                         ("INT", "integer"), ("SMALLINT", "integer"), ("TINYINT", "integer")):
        if upper.startswith(prefix):
            return kind
    return "text"


DEFAULT_CATALOG = Catalog()

_COMPARE = {"=", "!=", "<", "<=", ">", ">="}
OPS_BY_KIND: dict[str, set[str]] = {
    "text": {"=", "!=", "in", "not_in", "contains"} | _NO_VALUE,
    "integer": _COMPARE | {"in", "not_in", "between"} | _NO_VALUE,
    "number": _COMPARE | {"in", "not_in", "between"} | _NO_VALUE,
    "boolean": {"=", "!="} | _NO_VALUE,
    "date": _COMPARE | {"between", "within", "older_than"} | _NO_VALUE,
    "timestamp": _COMPARE | {"between", "within", "older_than"} | _NO_VALUE,
}


def coerce(kind: str, value: object) -> object:
    """A rule value as the Python type of a column kind, or a validation error."""
    if kind == "text" and isinstance(value, str | int) and not isinstance(value, bool):
        return str(value)
    if kind == "boolean" and isinstance(value, bool):
        return value
    if kind in ("integer", "number") and isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if kind in ("date", "timestamp") and isinstance(value, str | date):
        try:
            return moment(value)
        except PydanticCustomError:
            pass
    examples = {"text": "'F'", "integer": "30", "number": "0.5", "boolean": "true",
                "date": "2025-11-11", "timestamp": "2025-11-11 or 2025-11-11T20:00:00"}
    raise _invalid(f"{value!r} is not a valid {kind} value.", f"{value!r} 不是有效的 {kind} 类型值。",
                   f"write a value such as {examples[kind]}", f"写成类似 {examples[kind]} 的值")


def _unknown(path: str, what: str, what_zh: str, name: str, allowed: tuple[str, ...] | list[str]) -> Problem:
    close = difflib.get_close_matches(name, list(allowed), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    hint_zh = f"是否想写 {close[0]!r}？" if close else ""
    return Problem(path, f"unknown {what} {name!r}.", f"未知的{what_zh} {name!r}。",
                   f"{hint}allowed: {', '.join(sorted(allowed))}", f"{hint_zh}可用：{'、'.join(sorted(allowed))}")


def _check_trait(path: str, condition: TraitCondition, catalog: Catalog) -> list[Problem]:
    kind = catalog.traits.get(condition.trait)
    if kind is None:
        return [_unknown(f"{path}.trait", "trait", "画像字段", condition.trait, list(catalog.traits))]
    if condition.op not in OPS_BY_KIND[kind]:
        allowed = ", ".join(sorted(OPS_BY_KIND[kind]))
        return [Problem(f"{path}.op", f"`{condition.op}` does not apply to {kind} trait {condition.trait!r}.",
                        f"`{condition.op}` 不适用于 {kind} 类型字段 {condition.trait!r}。",
                        f"use one of {allowed}", f"改用 {allowed} 之一")]
    if condition.op in _NO_VALUE | _DURATION_VALUE:
        return []
    values = condition.value if isinstance(condition.value, list) else [condition.value]
    for value in values:
        try:
            coerce(kind, value)
        except PydanticCustomError as bad:
            ctx = bad.context or {}
            return [Problem(f"{path}.value", ctx["en"], ctx["zh"], ctx["fix"], ctx["fix_zh"])]
    return []


def _check_leaf(path: str, condition: object, catalog: Catalog) -> list[Problem]:
    kind = getattr(condition, "KIND", "")
    if kind not in catalog.kinds:
        allowed = ", ".join(catalog.kinds)
        return [Problem(f"{path}.{kind}", f"`{kind}` conditions are not available here.",
                        f"此处不能使用 `{kind}` 条件。", f"use one of {allowed}", f"改用 {allowed} 之一")]
    if isinstance(condition, SegmentCondition) and catalog.segments is not None and condition.segment not in catalog.segments:
        return [_unknown(f"{path}.segment", "audience", "人群", condition.segment, sorted(catalog.segments))]
    if isinstance(condition, TraitCondition):
        return _check_trait(path, condition, catalog)
    if isinstance(condition, ScoreCondition) and condition.score not in catalog.score_models:
        return [_unknown(f"{path}.score", "score model", "评分模型", condition.score, catalog.score_models)]
    if isinstance(condition, IdentifierCondition):
        wanted = [condition.has_identifier] if isinstance(condition.has_identifier, str) else condition.has_identifier
        return [_unknown(f"{path}.has_identifier", "identifier type", "标识类型", name, catalog.identifier_types)
                for name in wanted if name not in catalog.identifier_types]
    if isinstance(condition, TagCondition) and catalog.tags is not None and condition.tag not in catalog.tags:
        return [_unknown(f"{path}.tag", "tag", "标签", condition.tag, sorted(catalog.tags))]
    return []


def check_rule(condition: object, catalog: Catalog = DEFAULT_CATALOG, root: str = "rule") -> list[Problem]:
    """Every name and value problem of a parsed rule (empty when it can be compiled)."""
    return [problem for path, node in walk(condition, root) for problem in _check_leaf(path, node, catalog)]


# ---- compiling -------------------------------------------------------------------------------

_CMP: dict[str, type[exp.Binary]] = {"=": exp.EQ, "!=": exp.NEQ, "<": exp.LT, "<=": exp.LTE, ">": exp.GT, ">=": exp.GTE}
_NOT_COUNTED = ("cancelled", "refunded")


def literal(value: object) -> exp.Expression:
    """A user value as a sqlglot literal: never formatted into SQL text."""
    if isinstance(value, datetime):
        return instant(value)
    if isinstance(value, date):
        return exp.cast(exp.Literal.string(value.isoformat()), exp.DataType.build("DATE"))
    return exp.convert(value)


def instant(moment: datetime) -> exp.Expression:
    """A UTC instant literal; both engines read the offset."""
    text = moment.astimezone(UTC).isoformat(sep=" ")
    return exp.cast(exp.Literal.string(text), exp.DataType.build("TIMESTAMPTZ"))


def _false_if_null(predicate: exp.Expression) -> exp.Expression:
    return exp.Coalesce(this=predicate, expressions=[exp.false()])


def _names(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _isin(column: exp.Expression, values: list[object]) -> exp.Expression:
    return column.isin(*[literal(v) for v in values]) if len(values) > 1 else exp.EQ(this=column, expression=literal(values[0]))


def compare(column: exp.Expression, op: str, value: object) -> exp.Expression:
    """`column op value` for the scalar, list and null operators (values already typed)."""
    if op == "is_null":
        return column.is_(exp.null())
    if op == "is_not_null":
        return exp.not_(column.is_(exp.null()))
    if op in ("in", "not_in"):
        found = _isin(column, list(value))  # type: ignore[arg-type]
        return found if op == "in" else exp.not_(found)
    if op == "between":
        low, high = value  # type: ignore[misc]
        return exp.Between(this=column, low=literal(low), high=literal(high))
    if op == "contains":
        return exp.GT(this=exp.StrPosition(this=column, substr=literal(value)), expression=exp.Literal.number(0))
    return _CMP[op](this=column, expression=literal(value))


@dataclass
class RuleCompiler:
    """Compiles rules to one SELECT over `population`; collects the per-person aggregates.

    Use one compiler per query: `predicate()` registers the aggregates the rule needs,
    `select()` assembles them. Audiences extend it by subclassing and adding handlers.

    Example:
        >>> compiler = RuleCompiler(as_of=datetime(2026, 1, 1, tzinfo=UTC))
        >>> rule = parse_rule({"trait": "gender", "op": "=", "value": "F"})
        >>> compiler.select(compiler.predicate(rule)).sql()
        "SELECT pt.person_id AS person_id FROM person_traits AS pt WHERE COALESCE(pt.gender = 'F', FALSE)"
    """

    as_of: datetime
    timezone: str = DEFAULT_TIMEZONE
    catalog: Catalog = DEFAULT_CATALOG
    population: str = POPULATION
    aggregates: dict[str, tuple[str, exp.Select]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.as_of.tzinfo is None:
            self.as_of = self.as_of.replace(tzinfo=ZoneInfo(self.timezone))

    # ---- assembling ----

    def predicate(self, condition: object, root: str = "rule") -> exp.Expression:
        """The boolean expression for a rule (checked first; problems raise `RuleError`)."""
        problems = check_rule(condition, self.catalog, root)
        if problems:
            raise RuleError(problems)
        return self._compile(condition)

    def select(self, where: exp.Expression | None, columns: Mapping[str, exp.Expression] | None = None) -> exp.Select:
        """SELECT person_id (and `columns`) FROM the population joined to the aggregates."""
        projections = [exp.column("person_id", table=PT).as_("person_id")]
        projections += [expression.as_(name) for name, expression in (columns or {}).items()]
        query = exp.select(*projections).from_(exp.to_table(self.population).as_(PT))
        for name, _ in self.aggregates.values():
            on = exp.column("person_id", table=name).eq(exp.column("person_id", table=PT))
            query = query.join(exp.to_table(name), on=on, join_type="left")
        if where is not None:
            query = query.where(where)
        for name, aggregate in self.aggregates.values():
            query = query.with_(name, as_=aggregate)
        return query

    def trait_value(self, trait: str) -> exp.Expression:
        """A trait column as text, for value tags such as the person's age band."""
        if trait not in self.catalog.traits:
            raise RuleError([_unknown("value.trait", "trait", "画像字段", trait, list(self.catalog.traits))])
        return exp.cast(exp.column(trait, table=PT), exp.DataType.build("VARCHAR"))

    def _compile(self, condition: object) -> exp.Expression:
        return getattr(self, self.HANDLERS[type(condition)])(condition)

    def _aggregate(self, query: exp.Select) -> str:
        """Register a per-person aggregate (person_id, value) once; return its alias."""
        key = query.sql()
        if key not in self.aggregates:
            self.aggregates[key] = (f"rule_{len(self.aggregates) + 1}", query)
        return self.aggregates[key][0]

    # ---- nesting ----

    def _all(self, condition: AllCondition) -> exp.Expression:
        return exp.and_(*[self._compile(child).copy() for child in condition.all])  # type: ignore[arg-type]

    def _any(self, condition: AnyCondition) -> exp.Expression:
        return exp.or_(*[self._compile(child).copy() for child in condition.any])  # type: ignore[arg-type]

    def _not(self, condition: NotCondition) -> exp.Expression:
        return exp.not_(exp.paren(self._compile(condition.not_)))

    # ---- leaves ----

    def _trait(self, condition: TraitCondition) -> exp.Expression:
        kind = self.catalog.traits[condition.trait]
        column = exp.column(condition.trait, table=PT)
        if condition.op in _NO_VALUE:
            return compare(column, condition.op, None)
        if kind in ("date", "timestamp"):
            return _false_if_null(self._temporal(column, kind, condition.op, condition.value))
        value = [coerce(kind, v) for v in condition.value] if isinstance(condition.value, list) else coerce(kind, condition.value)
        return _false_if_null(compare(column, condition.op, value))

    def _temporal(self, column: exp.Expression, kind: str, op: str, raw: object) -> exp.Expression:
        """Dates mean whole local days: `< 2025-11-11` is before that day, `<=` includes it."""
        if op in _DURATION_VALUE:
            start = self.as_of - parse_duration(str(raw))
            low, high = (self._bound(kind, start), self._bound(kind, self.as_of))
            if op == "older_than":
                return exp.LTE(this=column, expression=low)
            return exp.and_(exp.GT(this=column, expression=low), exp.LTE(this=column, expression=high))
        values = [coerce(kind, v) for v in raw] if isinstance(raw, list) else [coerce(kind, raw)]
        if kind == "date" or all(isinstance(v, datetime) for v in values):
            return compare(column, op, values if op == "between" else values[0])
        starts = [self._day_start(v) for v in values]
        ends = [self._day_start(v, next_day=True) for v in values]
        ranges = {
            "<": exp.LT(this=column, expression=starts[0]), "<=": exp.LT(this=column, expression=ends[0]),
            ">": exp.GTE(this=column, expression=ends[0]), ">=": exp.GTE(this=column, expression=starts[0]),
        }
        if op in ranges:
            return ranges[op]
        first, last = (0, 0) if op in ("=", "!=") else (0, 1)
        inside = exp.and_(exp.GTE(this=column, expression=starts[first]), exp.LT(this=column, expression=ends[last]))
        return exp.not_(exp.paren(inside)) if op == "!=" else inside

    def _bound(self, kind: str, moment: datetime) -> exp.Expression:
        if kind == "date":
            return literal(moment.astimezone(ZoneInfo(self.timezone)).date())
        return instant(moment)

    def _day_start(self, value: date, next_day: bool = False) -> exp.Expression:
        """The instant a local day (or a datetime, naive = local) begins."""
        if isinstance(value, datetime):
            return instant(value if value.tzinfo else value.replace(tzinfo=ZoneInfo(self.timezone)))
        day = value + timedelta(days=1) if next_day else value
        return instant(datetime.combine(day, time.min, tzinfo=ZoneInfo(self.timezone)))

    def _score(self, condition: ScoreCondition) -> exp.Expression:
        ranked = (
            exp.select("person_id", "score", exp.Window(
                this=exp.RowNumber(), partition_by=[exp.column("person_id")],
                order=exp.Order(expressions=[exp.Ordered(this=exp.column("computed_at"), desc=True),
                                             exp.Ordered(this=exp.column("model_version"), desc=True)]),
            ).as_("latest"))
            .from_("scores").where(exp.column("model").eq(literal(condition.score)))
        )
        latest = (exp.select("person_id", exp.column("score").as_("value")).from_(ranked.subquery("s"))
                  .where(exp.column("latest").eq(1)))
        if condition.of == "percentile":
            position = exp.Window(this=exp.func("PERCENT_RANK"),
                                  order=exp.Order(expressions=[exp.Ordered(this=exp.column("value"))]))
            scored = latest.where(exp.not_(exp.column("score").is_(exp.null())))
            latest = exp.select("person_id", position.as_("value")).from_(scored.subquery("scored"))
        value = exp.column("value", table=self._aggregate(latest))
        if condition.op in _NO_VALUE:
            return compare(value, condition.op, None)
        return _false_if_null(compare(value, condition.op, condition.value))

    def _identifier(self, condition: IdentifierCondition) -> exp.Expression:
        query = (exp.select("person_id").distinct().from_("identities")
                 .where(_isin(exp.column("id_type"), _names(condition.has_identifier)))
                 .where(exp.not_(exp.column("person_id").is_(exp.null()))))
        return exp.not_(exp.column("person_id", table=self._aggregate(query)).is_(exp.null()))

    def _tag(self, condition: TagCondition) -> exp.Expression:
        query = (exp.select("person_id", exp.func("MAX", exp.column("value")).as_("value")).from_("tags")
                 .where(exp.column("tag_id").eq(literal(condition.tag)))
                 .where(exp.column("valid_to").is_(exp.null())).group_by("person_id"))
        alias = self._aggregate(query)
        held = exp.not_(exp.column("person_id", table=alias).is_(exp.null()))
        if condition.value is None:
            return held
        return _false_if_null(_isin(exp.column("value", table=alias), _names(condition.value)))

    def _consent(self, condition: ConsentCondition) -> exp.Expression:
        """The latest consent record up to as_of for the purpose (this channel, or all) is a grant."""
        spec = condition.consent
        scope = [exp.column("purpose").eq(literal(spec.purpose)),
                 exp.LTE(this=exp.column("recorded_at"), expression=instant(self.as_of))]
        if spec.channel is not None:
            scope.append(exp.or_(exp.column("channel").eq(literal(spec.channel)), exp.column("channel").is_(exp.null())))
        latest = exp.Window(this=exp.RowNumber(), partition_by=[exp.column("person_id")],
                            order=exp.Order(expressions=[exp.Ordered(this=exp.column("recorded_at"), desc=True)]))
        ranked = exp.select("person_id", "status", latest.as_("latest")).from_("consents").where(*scope)
        granted = (exp.select("person_id").from_(ranked.subquery("c"))
                   .where(exp.column("latest").eq(1), exp.column("status").eq(literal("granted"))))
        return exp.not_(exp.column("person_id", table=self._aggregate(granted)).is_(exp.null()))

    def _segment(self, condition: SegmentCondition) -> exp.Expression:
        """Members of the audience's latest snapshot on or before the as_of day."""
        day = literal(self.as_of.astimezone(ZoneInfo(self.timezone)).date())
        this = exp.column("segment_id").eq(literal(condition.segment))
        latest = (exp.select(exp.func("MAX", exp.column("snapshot_date"))).from_("segment_members")
                  .where(this.copy(), exp.LTE(this=exp.column("snapshot_date"), expression=day.copy())))
        members = (exp.select("person_id").distinct().from_("segment_members")
                   .where(this, exp.column("snapshot_date").eq(latest.subquery())))
        return exp.not_(exp.column("person_id", table=self._aggregate(members)).is_(exp.null()))

    def _event(self, condition: EventCondition) -> exp.Expression:
        spec = condition.event
        timestamp = exp.column("timestamp", table="e")
        query = (exp.select(exp.column("person_id", table="rp").as_("person_id"))
                 .from_(exp.to_table("events").as_("e"))
                 .join(exp.to_table("record_persons").as_("rp"), on=exp.and_(
                     exp.column("record_kind", table="rp").eq(literal("event")),
                     exp.column("record_id", table="rp").eq(exp.column("message_id", table="e")))))
        filters = [*self._window(timestamp, spec.window), *self._local_time(timestamp, spec.local_time)]
        for column, chosen in (("event", spec.name), ("type", spec.type), ("channel", spec.channel)):
            if chosen is not None:
                filters.append(_isin(exp.column(column, table="e"), _names(chosen)))
        filters += [self._property(item) for item in spec.where]
        if spec.product is not None:
            filters += self._event_product(spec.product)
        measure, threshold = self._event_measure(spec, timestamp)
        return self._measured(query.where(*filters), measure, threshold)

    def _event_measure(self, spec: EventSpec, timestamp: exp.Expression) -> tuple[exp.Expression, Threshold]:
        if spec.sum is not None:
            number = exp.TryCast(this=self._prop(spec.sum.property), to=exp.DataType.build("DOUBLE"), safe=True)
            return exp.func("SUM", number), spec.sum
        if spec.distinct_days is not None:
            return self._distinct_days(timestamp), spec.distinct_days
        return exp.func("COUNT", exp.Star()), spec.count or Threshold(op=">=", value=1)

    def _measured(self, query: exp.Select, measure: exp.Expression, threshold: Threshold) -> exp.Expression:
        """Group the filtered rows per person and compare the measure (missing = 0)."""
        grouped = query.select(measure.as_("value")).group_by(exp.column("person_id", table="rp"))
        value = exp.Coalesce(this=exp.column("value", table=self._aggregate(grouped)),
                             expressions=[exp.Literal.number(0)])
        number = int(threshold.value) if float(threshold.value).is_integer() else threshold.value
        return _CMP[threshold.op](this=value, expression=literal(number))

    def _prop(self, name: str) -> exp.Expression:
        return json_text(exp.column("properties", table="e"), f"$.{name}")

    def _property(self, item: PropertyFilter) -> exp.Expression:
        values = item.value if isinstance(item.value, list) else [item.value]
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        if numeric and item.value is not None and item.op != "contains":
            column: exp.Expression = exp.TryCast(this=self._prop(item.property), to=exp.DataType.build("DOUBLE"), safe=True)
        else:
            column = self._prop(item.property)
            values = [str(v).lower() if isinstance(v, bool) else str(v) for v in values]
        value = values if isinstance(item.value, list) else values[0]
        found = compare(column, item.op, value)
        return found if item.op in _NO_VALUE else _false_if_null(found)

    def _event_product(self, product: ProductFilter) -> list[exp.Expression]:
        """Events name their product in properties; catalogue attributes come from products."""
        filters, catalogue = [], []
        for name, values in product.filters():
            if name in ("product_id", "sku"):
                filters.append(_isin(self._prop(name), values))
            else:
                catalogue.append(_isin(exp.column(name), values))
        if catalogue:
            products = exp.select("product_id").from_("products").where(*catalogue)
            filters.append(self._prop("product_id").isin(query=products))
        return filters

    def _order(self, condition: OrderCondition) -> exp.Expression:
        spec = condition.order
        placed = exp.column("placed_at", table="o")
        query = (exp.select(exp.column("person_id", table="rp").as_("person_id"))
                 .from_(exp.to_table("orders").as_("o"))
                 .join(exp.to_table("record_persons").as_("rp"), on=exp.and_(
                     exp.column("record_kind", table="rp").eq(literal("order")),
                     exp.column("record_id", table="rp").eq(exp.column("order_id", table="o")))))
        filters = [*self._window(placed, spec.window), *self._local_time(placed, spec.local_time),
                   *self._order_filters(spec)]
        line_level = spec.quantity is not None or (spec.sum is not None and spec.sum.field == "amount")
        if line_level:
            query = query.join(self._lines(spec.product).subquery("l"),
                               on=exp.column("order_id", table="l").eq(exp.column("order_id", table="o")))
        elif spec.product is not None:
            matching = exp.select("order_id").from_(self._lines(spec.product).subquery("l"))
            filters.append(exp.column("order_id", table="o").isin(query=matching))
        measure, threshold = self._order_measure(spec, placed)
        return self._measured(query.where(*filters), measure, threshold)

    def _order_filters(self, spec: OrderSpec) -> list[exp.Expression]:
        filters = []
        for column in ("channel", "platform", "store_id", "status"):
            chosen = getattr(spec, column)
            if chosen is not None:
                filters.append(_isin(exp.column(column, table="o"), _names(chosen)))
        if spec.status is None:  # a purchase: cancelled and refunded orders do not count
            status = exp.column("status", table="o")
            filters.append(exp.or_(status.is_(exp.null()), exp.not_(_isin(status, list(_NOT_COUNTED)))))
        if spec.has_coupon is not None:
            has = exp.not_(exp.column("coupon_code", table="o").is_(exp.null()))
            filters.append(has if spec.has_coupon else exp.not_(has))
        return filters

    def _order_measure(self, spec: OrderSpec, placed: exp.Expression) -> tuple[exp.Expression, Threshold]:
        if spec.sum is not None:
            table = "l" if spec.sum.field == "amount" else "o"
            return exp.func("SUM", exp.column(spec.sum.field, table=table)), spec.sum
        if spec.quantity is not None:
            return exp.func("SUM", exp.column("quantity", table="l")), spec.quantity
        if spec.distinct_days is not None:
            return self._distinct_days(placed), spec.distinct_days
        distinct_orders = exp.Count(this=exp.Distinct(expressions=[exp.column("order_id", table="o")]))
        return distinct_orders, spec.count or Threshold(op=">=", value=1)

    def _lines(self, product: ProductFilter | None) -> exp.Expression:
        """Order lines with their catalogue product: online lines carry the SKU, POS lines the barcode."""
        columns = [exp.column(name, table="oi") for name in ("order_id", "quantity", "amount")]
        if product is None:
            return exp.select(*columns).from_(exp.to_table("order_items").as_("oi"))
        filters = [_isin(exp.column(name, table="p"), values) for name, values in product.filters()]

        def joined(key: str) -> exp.Select:
            return (exp.select(*[c.copy() for c in columns]).from_(exp.to_table("order_items").as_("oi"))
                    .join(exp.to_table("products").as_("p"),
                          on=exp.column(key, table="p").eq(exp.column(key, table="oi")))
                    .where(*[f.copy() for f in filters]))
        by_barcode = joined("barcode").where(exp.column("sku", table="oi").is_(exp.null()))
        return exp.union(joined("sku"), by_barcode, distinct=False)

    # ---- time ----

    def _window(self, column: exp.Expression, window: RelativeWindow | AbsoluteWindow | None) -> list[exp.Expression]:
        """Rows up to `as_of` (inclusive), inside the window; relative windows are (start, end]."""
        end = self.as_of
        if isinstance(window, RelativeWindow) and window.offset:
            end = self.as_of - parse_duration(window.offset)
        filters: list[exp.Expression] = [exp.LTE(this=column, expression=instant(end))]
        if isinstance(window, RelativeWindow):
            filters.append(exp.GT(this=column, expression=instant(end - parse_duration(window.last))))
        elif isinstance(window, AbsoluteWindow):
            if window.from_ is not None:
                filters.append(exp.GTE(this=column, expression=self._day_start(window.from_)))
            if window.to is not None:
                filters.append(exp.LT(this=column, expression=self._day_start(window.to, next_day=True)))
        return filters

    def _local_time(self, column: exp.Expression, local: LocalTime | None) -> list[exp.Expression]:
        if local is None:
            return []
        wall = to_local_time(column, self.timezone)
        filters = []
        if local.weekdays:
            filters.append(_isin(exp.DayOfWeekIso(this=wall), sorted(set(local.weekdays))))
        if local.hours:
            filters.append(_isin(exp.Hour(this=wall.copy()), sorted(set(local.hours))))
        return filters

    def _distinct_days(self, column: exp.Expression) -> exp.Expression:
        day = exp.cast(to_local_time(column, self.timezone), exp.DataType.build("DATE"))
        return exp.Count(this=exp.Distinct(expressions=[day]))

    # Condition type → method name; a subclass (audiences) adds its own kinds here.
    HANDLERS: ClassVar[dict[type, str]] = {
        AllCondition: "_all", AnyCondition: "_any", NotCondition: "_not", TraitCondition: "_trait",
        ScoreCondition: "_score", IdentifierCondition: "_identifier", TagCondition: "_tag",
        EventCondition: "_event", OrderCondition: "_order", ConsentCondition: "_consent",
        SegmentCondition: "_segment",
    }


def build_rule_sql(
    rule: object,
    *,
    as_of: datetime,
    timezone: str = DEFAULT_TIMEZONE,
    catalog: Catalog = DEFAULT_CATALOG,
) -> exp.Select:
    """SELECT person_id of everyone the rule matches at `as_of` (a rule model or its data).

    Example:
        >>> sql = build_rule_sql({"has_identifier": "wechat_openid"}, as_of=datetime(2026, 1, 1, tzinfo=UTC))
        >>> "identities" in sql.sql()
        True
    """
    condition = rule if isinstance(rule, BaseModel) else parse_rule(rule)
    compiler = RuleCompiler(as_of=as_of, timezone=timezone, catalog=catalog)
    return compiler.select(compiler.predicate(condition))
