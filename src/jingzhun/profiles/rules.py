"""The rule language of tags and audiences: YAML/JSON → pydantic → sqlglot.

A rule says who belongs to a group, in terms a marketer uses: traits of the
portrait, predictive scores, identifiers a person can be reached on, other tags,
and what they did (events) or bought (orders) in a time window. Three layers
(STYLE.md): the pydantic models below give the shape; `check_rule` checks names
against a `Catalog` (columns, score models, identifier types, tags) and collects
every problem with its rule path; `RuleCompiler` (in `rules_compiler`) turns a
checked rule into one sqlglot SELECT without touching a connection. User values only ever enter the
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
from datetime import date, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal

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

from jingzhun.core.errors import JingzhunError

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
NO_VALUE_OPS = {"is_null", "is_not_null"}
_LIST_VALUE = {"in", "not_in"}
DURATION_OPS = {"within", "older_than"}


def _check_value(op: str, value: object) -> object:
    """The value's shape must fit the operator (types are checked against the catalog later)."""
    if op in NO_VALUE_OPS:
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
    if op in DURATION_OPS:
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
    "text": {"=", "!=", "in", "not_in", "contains"} | NO_VALUE_OPS,
    "integer": _COMPARE | {"in", "not_in", "between"} | NO_VALUE_OPS,
    "number": _COMPARE | {"in", "not_in", "between"} | NO_VALUE_OPS,
    "boolean": {"=", "!="} | NO_VALUE_OPS,
    "date": _COMPARE | {"between", "within", "older_than"} | NO_VALUE_OPS,
    "timestamp": _COMPARE | {"between", "within", "older_than"} | NO_VALUE_OPS,
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


def unknown_name(path: str, what: str, what_zh: str, name: str, allowed: tuple[str, ...] | list[str]) -> Problem:
    close = difflib.get_close_matches(name, list(allowed), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    hint_zh = f"是否想写 {close[0]!r}？" if close else ""
    return Problem(path, f"unknown {what} {name!r}.", f"未知的{what_zh} {name!r}。",
                   f"{hint}allowed: {', '.join(sorted(allowed))}", f"{hint_zh}可用：{'、'.join(sorted(allowed))}")


def _check_trait(path: str, condition: TraitCondition, catalog: Catalog) -> list[Problem]:
    kind = catalog.traits.get(condition.trait)
    if kind is None:
        return [unknown_name(f"{path}.trait", "trait", "画像字段", condition.trait, list(catalog.traits))]
    if condition.op not in OPS_BY_KIND[kind]:
        allowed = ", ".join(sorted(OPS_BY_KIND[kind]))
        return [Problem(f"{path}.op", f"`{condition.op}` does not apply to {kind} trait {condition.trait!r}.",
                        f"`{condition.op}` 不适用于 {kind} 类型字段 {condition.trait!r}。",
                        f"use one of {allowed}", f"改用 {allowed} 之一")]
    if condition.op in NO_VALUE_OPS | DURATION_OPS:
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
        return [unknown_name(f"{path}.segment", "audience", "人群", condition.segment, sorted(catalog.segments))]
    if isinstance(condition, TraitCondition):
        return _check_trait(path, condition, catalog)
    if isinstance(condition, ScoreCondition) and condition.score not in catalog.score_models:
        return [unknown_name(f"{path}.score", "score model", "评分模型", condition.score, catalog.score_models)]
    if isinstance(condition, IdentifierCondition):
        wanted = [condition.has_identifier] if isinstance(condition.has_identifier, str) else condition.has_identifier
        return [unknown_name(f"{path}.has_identifier", "identifier type", "标识类型", name, catalog.identifier_types)
                for name in wanted if name not in catalog.identifier_types]
    if isinstance(condition, TagCondition) and catalog.tags is not None and condition.tag not in catalog.tags:
        return [unknown_name(f"{path}.tag", "tag", "标签", condition.tag, sorted(catalog.tags))]
    return []


def check_rule(condition: object, catalog: Catalog = DEFAULT_CATALOG, root: str = "rule") -> list[Problem]:
    """Every name and value problem of a parsed rule (empty when it can be compiled)."""
    return [problem for path, node in walk(condition, root) for problem in _check_leaf(path, node, catalog)]
