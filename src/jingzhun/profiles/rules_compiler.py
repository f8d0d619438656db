"""Compiling a checked rule to one sqlglot SELECT (the third layer of `rules`).

`RuleCompiler` walks the condition tree of a rule parsed and checked by
`jingzhun.profiles.rules` and builds the query described there: one per-person
aggregate CTE per event/order/score/tag/identifier leaf, joined once to
`person_traits`, under a WHERE that is TRUE or FALSE for every person, never NULL.
It never touches a connection and user values enter only as sqlglot literals, so the
same rule renders for DuckDB and Spark alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import ClassVar
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
)
from sqlglot import exp

from jingzhun.engine.dialects import json_text, to_local_time
from jingzhun.profiles.rules import (
    DEFAULT_CATALOG,
    DEFAULT_TIMEZONE,
    DURATION_OPS,
    NO_VALUE_OPS,
    POPULATION,
    PT,
    AbsoluteWindow,
    AllCondition,
    AnyCondition,
    Catalog,
    ConsentCondition,
    EventCondition,
    EventSpec,
    IdentifierCondition,
    LocalTime,
    NotCondition,
    OrderCondition,
    OrderSpec,
    ProductFilter,
    PropertyFilter,
    RelativeWindow,
    RuleError,
    ScoreCondition,
    SegmentCondition,
    TagCondition,
    Threshold,
    TraitCondition,
    check_rule,
    coerce,
    parse_duration,
    parse_rule,
    unknown_name,
)

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


def _owned_records(table: str, alias: str, kind: str, id_column: str) -> exp.Select:
    """SELECT person_id FROM `table` joined to its owner through `record_persons`."""
    return (exp.select(exp.column("person_id", table="rp").as_("person_id"))
            .from_(exp.to_table(table).as_(alias))
            .join(exp.to_table("record_persons").as_("rp"), on=exp.and_(
                exp.column("record_kind", table="rp").eq(literal(kind)),
                exp.column("record_id", table="rp").eq(exp.column(id_column, table=alias)))))


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
            raise RuleError([unknown_name("value.trait", "trait", "画像字段", trait, list(self.catalog.traits))])
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
        if condition.op in NO_VALUE_OPS:
            return compare(column, condition.op, None)
        if kind in ("date", "timestamp"):
            return _false_if_null(self._temporal(column, kind, condition.op, condition.value))
        value = [coerce(kind, v) for v in condition.value] if isinstance(condition.value, list) else coerce(kind, condition.value)
        return _false_if_null(compare(column, condition.op, value))

    def _temporal(self, column: exp.Expression, kind: str, op: str, raw: object) -> exp.Expression:
        """Dates mean whole local days: `< 2025-11-11` is before that day, `<=` includes it."""
        if op in DURATION_OPS:
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
        if condition.op in NO_VALUE_OPS:
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
        query = _owned_records("events", "e", "event", "message_id")
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
        return found if item.op in NO_VALUE_OPS else _false_if_null(found)

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
        query = _owned_records("orders", "o", "order", "order_id")
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
