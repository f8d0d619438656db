"""The decision API (下一个最佳推荐): any identifier and a placement → the next best offers and their copy.

A `Decider` answers from a `DecisionSnapshot` held in memory (decisions_snapshot.py): one
engine query per table after each pipeline run or refresh, then dictionary lookups per
request — no query. A new snapshot is swapped in whole (one reference assignment), so a
refresh never serves half of one and half of the other.

A decision, in order:

1. the identifier → the person (Python normalization identical to the identity stage's,
   decisions_ids.py; an unknown visitor is a person of None);
2. the placement's daily cap: a person shown it `daily_cap` times today (counted in memory,
   seeded from the decision log at start) gets nothing more today (`impression_cap`);
3. a marketing message placement (`message_channel`) needs what a campaign needs: consent,
   no suppression, a usable address, room under the campaigns' frequency caps (the send
   policy's query, in the snapshot), and not quiet hours now;
4. the offers: the person's lists in the placement's kinds (`recommendations`), the
   product's related products (`related`), or the cart's (`cart`), topped up from the
   person's lists and then popular products; an unknown visitor gets popular products
   (`fallback`);
5. a placement with a coupon campaign hands out the person's valid code of it, and
   nothing to someone without one (`no_coupon`);
6. the copy in zh and en, rendered by the content sandbox from texts compiled once;
7. the decision is appended to an in-memory log, written to `decisions` in batches by
   whoever runs the Decider (the server: every second; the CLI: at once).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import orjson
import pyarrow as pa

from jingzhun.activation.channels import Where, check_push
from jingzhun.activation.content_context import (
    coupon_fields,
    local_date_text,
    person_fields,
    unsubscribe_text,
)
from jingzhun.activation.content_jinja import CompiledText, compile_texts, render_text
from jingzhun.activation.content_templates import (
    ChannelContent,
    MessageTemplate,
    ProductSource,
    Text,
    Variant,
    load_settings,
    load_template,
)
from jingzhun.activation.decisions_ids import PERSON_ID_TYPE, IdNormalizer
from jingzhun.activation.decisions_settings import (
    DecisionSettings,
    Placement,
    load_decision_settings,
)
from jingzhun.activation.decisions_snapshot import (
    IMPRESSIONS_SQL,
    DecisionSnapshot,
    SnapshotMeta,
    current_snapshot,
    fingerprint,
    new_version,
    read_snapshot,
    snapshot_tables,
    write_snapshot,
)
from jingzhun.activation.policy import load_send_policy, quiet_channels
from jingzhun.activation.recommend_sql import bind
from jingzhun.core.errors import JingzhunError
from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine
from jingzhun.identity.operators import PERSON_ID
from jingzhun.schema.tables import DECISIONS

LANGUAGES = ("zh", "en")
POPULAR_REASON = ("热门推荐：很多顾客都在买", "Popular: many customers are buying it")
Clock = Callable[[], datetime]


class DecisionError(JingzhunError):
    """A decision cannot be made as asked (unknown placement, bad identifier, no snapshot yet)."""


@dataclass(frozen=True)
class Decision:
    """One answer: the offers, the coupon and the copy, and why (`outcome`)."""

    decision_id: str
    placement: str
    person_id: str | None
    outcome: str
    offers: list[dict]
    coupon: dict | None
    copy: dict | None
    impressions_today: int
    daily_cap: int | None
    retry_after: str | None
    model_version: str | None
    snapshot_version: str
    latency_us: int

    def as_json(self) -> dict[str, object]:
        return {"decision_id": self.decision_id, "placement": self.placement, "person_id": self.person_id,
                "known": self.person_id is not None, "outcome": self.outcome, "offers": public_offers(self),
                "coupon": self.coupon, "copy": self.copy, "impressions_today": self.impressions_today,
                "daily_cap": self.daily_cap, "retry_after": self.retry_after, "model_version": self.model_version,
                "snapshot_version": self.snapshot_version, "latency_us": self.latency_us}


@dataclass
class DecisionLog:
    """Decisions waiting to be written to `decisions`; bounded, and it says what it had to drop."""

    limit: int = 200_000
    rows: list[dict] = field(default_factory=list)
    dropped: int = 0
    written: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, row: dict) -> None:
        with self._lock:
            if len(self.rows) >= self.limit:
                self.dropped += 1
                return
            self.rows.append(row)

    def drain(self) -> list[dict]:
        with self._lock:
            taken, self.rows = self.rows, []
        return taken

    def put_back(self, rows: list[dict]) -> None:
        """A batch that could not be written waits for the next flush (the oldest first)."""
        with self._lock:
            room = max(self.limit - len(self.rows), 0)
            self.dropped += max(len(rows) - room, 0)
            self.rows[:0] = rows[:room]

    def __len__(self) -> int:
        return len(self.rows)


DECISIONS_SCHEMA = pa.schema([
    ("decision_id", pa.string()), ("decided_at", pa.timestamp("us", tz="UTC")), ("day", pa.date32()),
    ("placement", pa.string()), ("person_id", pa.string()), ("id_type", pa.string()), ("outcome", pa.string()),
    ("product_ids", pa.string()), ("kinds", pa.string()), ("context_product_ids", pa.string()),
    ("coupon_code", pa.string()), ("model_version", pa.string()), ("snapshot_version", pa.string()),
    ("latency_us", pa.int32()),
])


def append_decisions(engine: Engine, rows: list[dict]) -> int:
    """Write a batch of logged decisions (as `Decider.log` holds them) to `decisions`."""
    if rows:
        engine.write_table(DECISIONS.name, pa.Table.from_pylist(rows, schema=DECISIONS_SCHEMA))
    return len(rows)


# ---- building and loading snapshots ----------------------------------------------------------------


def build_snapshot(engine: Engine, workspace: Workspace, *, settings: DecisionSettings | None = None,
                   now: datetime | None = None) -> tuple[dict[str, pa.Table], SnapshotMeta]:
    """Read every table a snapshot holds (one engine query each) and describe it."""
    chosen = settings or load_decision_settings(workspace)
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    today = moment.astimezone(ZoneInfo(workspace.config.timezone)).date()
    if not engine.table_exists(DECISIONS.name):
        raise DecisionError("the decision log table does not exist yet.", field="workspace",
                            fix="run `jingzhun migrate`", message_zh="决策日志表尚不存在。",
                            fix_zh="请运行 `jingzhun migrate`")
    stamp = fingerprint(engine, workspace)
    tables, sql = snapshot_tables(engine, workspace, chosen, moment, today)
    versions = tables["offers"].column("model_version").unique().to_pylist()
    meta = SnapshotMeta(new_version(moment), moment.isoformat(), today.isoformat(),
                        max((v for v in versions if v), default=None), stamp,
                        {name: table.num_rows for name, table in tables.items()}, sql)
    return tables, meta


def refresh_snapshot(engine: Engine, workspace: Workspace, *, now: datetime | None = None) -> SnapshotMeta:
    """Build a snapshot and write it under `.jingzhun/decisions/` as the current one."""
    tables, meta = build_snapshot(engine, workspace, now=now)
    write_snapshot(workspace, tables, meta)
    return meta


def logged_impressions(engine: Engine, workspace: Workspace, *, now: datetime | None = None
                       ) -> tuple[str, dict[tuple[str, str], int]]:
    """(today, shown per (person, placement)) from the decision log: what a snapshot read from disk
    at a restart does not know (decisions made after it was built)."""
    moment = (now or datetime.now(UTC)).astimezone(ZoneInfo(workspace.config.timezone))
    rows = engine.query(bind(IMPRESSIONS_SQL, {"day": moment.date()})).to_pylist()
    return moment.date().isoformat(), {(row["person_id"], row["placement"]): int(row["shown"]) for row in rows}


def snapshot_fingerprint(engine: Engine, workspace: Workspace) -> dict[str, str]:
    """What the current snapshot's freshness is judged by (see decisions_snapshot.FINGERPRINT_SQL)."""
    return fingerprint(engine, workspace)


def load_snapshot(workspace: Workspace, folder=None) -> DecisionSnapshot | None:  # noqa: ANN001 — a Path
    """The snapshot in `folder` (default: the current one on disk), ready to answer; None if there is none."""
    found = folder or current_snapshot(workspace)
    if found is None:
        return None
    tables, meta = read_snapshot(found)
    return in_memory(workspace, tables, meta)


def in_memory(workspace: Workspace, tables: dict[str, pa.Table], meta: SnapshotMeta) -> DecisionSnapshot:
    """A snapshot's tables shaped for lookups."""
    return DecisionSnapshot(tables, meta, load_settings(workspace).site_url, workspace.config.currency)


# ---- deciding ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Copy:
    """A placement's copy compiled once: per language, its parts' compiled texts."""

    template: MessageTemplate
    channel: str
    texts: dict[str, dict[str, CompiledText]]


class Decider:
    """Answers decisions from the installed snapshot; `install` swaps in a new one."""

    def __init__(self, workspace: Workspace, settings: DecisionSettings | None = None,
                 clock: Clock | None = None) -> None:
        self.workspace = workspace
        self.settings = settings or load_decision_settings(workspace)
        self.placements = self.settings.all_placements()
        self.normalizer = IdNormalizer.for_workspace(workspace)
        self.policy = load_send_policy(workspace)
        content = load_settings(workspace)
        brand = content.brand
        self._brand = {"zh": brand.zh if brand else "", "en": brand.en if brand else ""}
        self._site = content.site_url or ""
        self._content = content
        self.zone = ZoneInfo(workspace.config.timezone)
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.copies = {name: _compile(workspace, name, p) for name, p in self.placements.items() if p.copy_text}
        self.snapshot: DecisionSnapshot | None = None
        self.log = DecisionLog()
        self._counts: dict[tuple[str, str], int] = {}
        self._day: date | None = None
        self._lock = threading.Lock()

    # -- snapshots --

    def install(self, snapshot: DecisionSnapshot) -> None:
        """Serve `snapshot` from now on; impression counts keep the larger of memory and the log."""
        with self._lock:
            self._remember(snapshot.meta.day, snapshot.impressions)
            self.snapshot = snapshot

    def remember(self, day: str, counts: dict[tuple[str, str], int]) -> None:
        """Impressions of `day` read from the log (`logged_impressions`): each count keeps the larger number."""
        with self._lock:
            self._remember(day, counts)

    def _remember(self, day: str, counts: dict[tuple[str, str], int]) -> None:
        given = date.fromisoformat(day)
        if self._day is None or given > self._day:  # a later day starts every count again
            self._counts, self._day = {}, given
        if given == self._day:
            for key, shown in counts.items():
                if shown > self._counts.get(key, 0):
                    self._counts[key] = shown

    # -- one decision --

    def decide(self, placement: str, identifier: str | None = None, id_type: str | None = None, *,
               product_id: str | None = None, cart: tuple[str, ...] | list[str] = ()) -> Decision:
        """The next best offers for whoever `identifier` names, on `placement`."""
        started = time.perf_counter_ns()
        spot = self._placement(placement)
        snapshot = self.snapshot
        if snapshot is None:
            raise DecisionError("the decision snapshot is not loaded yet.", field="snapshot",
                                fix="retry in a few seconds; the server builds it at start",
                                message_zh="决策快照尚未加载。", fix_zh="请几秒后重试；服务启动时会构建快照")
        person, given_type = self.resolve(snapshot, identifier, id_type)
        now = self.clock()
        count_key = (person, placement) if person else None
        shown = self._shown(count_key, now)
        outcome, retry = self._blocked(spot, person, snapshot, shown, now)
        coupon = self._coupon(spot, snapshot, person, now) if not outcome else None
        if not outcome and spot.coupon_campaign and coupon is None:
            outcome = "no_coupon"  # a coupon placement shows nothing to someone without a valid code
        offers, kinds = ([], []) if outcome else self._offers(spot, snapshot, person, product_id, tuple(cart))
        if not outcome:
            outcome = "empty" if not offers else ("personal" if person else "fallback")
        coupon = coupon if offers else None
        copy = self._render(placement, spot, snapshot, person, offers, coupon, now) if offers else None
        if offers and count_key is not None:
            shown = self._count(count_key)
        latency = (time.perf_counter_ns() - started) // 1000
        decision = Decision(uuid.uuid4().hex, placement, person, outcome, offers,
                            _coupon_json(coupon) if coupon else None, copy, shown, spot.daily_cap,
                            retry, snapshot.meta.model_version, snapshot.meta.version, int(latency))
        self.log.add(_log_row(decision, now, self._day_of(now), given_type, kinds, product_id, cart))
        return decision

    def _placement(self, name: str) -> Placement:
        spot = self.placements.get(name)
        if spot is None:
            names = ", ".join(sorted(self.placements))
            raise DecisionError(f"unknown placement {name!r}.", field="placement",
                                fix=f"use one of: {names}, or define it in definitions/decisions.yaml",
                                message_zh=f"未知的投放位 {name!r}。",
                                fix_zh=f"可用：{names}；或在 definitions/decisions.yaml 中定义")
        return spot

    def resolve(self, snapshot: DecisionSnapshot, value: str | None, id_type: str | None) -> tuple[str | None, str]:
        """(person or None, the id type used) for a value of a type, or of any type when none is given."""
        if value is None or not value.strip():
            return None, "none"
        if id_type is None and ":" in value and self.normalizer.id_type(value.split(":", 1)[0]):
            id_type, value = value.split(":", 1)
        if id_type is None:
            return self._guess(snapshot, value)
        if id_type == PERSON_ID_TYPE:
            return snapshot.person_of(PERSON_ID_TYPE, value.strip()), PERSON_ID_TYPE
        kinds = ("member_id", "user_id") if id_type == "user_id" else (self.normalizer.id_type(id_type),)
        if kinds[0] is None:
            known = ", ".join([PERSON_ID_TYPE, *self.normalizer.registry.names()])
            raise DecisionError(f"unknown identifier type {id_type!r}.", field="identifier.type",
                                fix=f"use one of: {known}", message_zh=f"未知的标识类型 {id_type!r}。",
                                fix_zh=f"可用类型：{known}")
        stored = [self.normalizer.stored(kind, value) for kind in kinds if kind]
        if not any(stored):
            raise DecisionError(f"{value!r} is not a valid {id_type}.", field="identifier.value",
                                fix="check the value (a phone has 11 digits, an e-mail an @)",
                                message_zh=f"{value!r} 不是有效的 {id_type}。", fix_zh="请检查取值（手机号 11 位，邮箱含 @）")
        found = next((snapshot.person_of(*pair) for pair in stored if pair and snapshot.person_of(*pair)), None)
        return found, id_type

    def _guess(self, snapshot: DecisionSnapshot, value: str) -> tuple[str | None, str]:
        """A bare value: a person id, else each linkable type, strongest first (as `find_person`)."""
        text = value.strip()
        if PERSON_ID.match(text) and snapshot.person_of(PERSON_ID_TYPE, text):
            return snapshot.person_of(PERSON_ID_TYPE, text), PERSON_ID_TYPE
        for kind in self.normalizer.linkable_types():
            stored = self.normalizer.stored(kind, text)
            found = snapshot.person_of(*stored) if stored else None
            if found:
                return found, kind
        return None, "unknown"

    # -- rules --

    def _day_of(self, now: datetime) -> date:
        return now.astimezone(self.zone).date()

    def _shown(self, key: tuple[str, str] | None, now: datetime) -> int:
        """Today's impressions of `key`; a new local day starts every count again."""
        day = self._day_of(now)
        with self._lock:
            if day != self._day:
                self._counts, self._day = {}, day
            return self._counts.get(key, 0) if key else 0

    def _count(self, key: tuple[str, str]) -> int:
        with self._lock:
            self._counts[key] = shown = self._counts.get(key, 0) + 1
        return shown

    def _blocked(self, spot: Placement, person: str | None, snapshot: DecisionSnapshot, shown: int,
                 now: datetime) -> tuple[str | None, str | None]:
        """Why nothing may be offered now (and until when, for quiet hours), or (None, None)."""
        if person and spot.daily_cap is not None and shown >= spot.daily_cap:
            return "impression_cap", None
        channel = spot.message_channel
        if channel is None:
            return None, None
        if person is None:
            return "no_consent", None  # nobody known: no consent on record
        reason = snapshot.blocked.get(channel, {}).get(person)
        if reason:
            return reason, None
        silent, until = quiet_channels(now, self.workspace.config.timezone, self.policy, "marketing", (channel,))
        return ("quiet_hours", until.isoformat() if until else None) if silent else (None, None)

    def _offers(self, spot: Placement, snapshot: DecisionSnapshot, person: str | None, product_id: str | None,
                cart: tuple[str, ...]) -> tuple[list[dict], list[str]]:
        """Up to `spot.offers` products, each with its list, score and reasons."""
        picked: dict[str, tuple[str, float, str | None, str | None]] = {}
        skip = set(cart)
        if spot.source == "related":
            if not product_id:
                raise DecisionError("the product_page placement needs the product shown.", field="product_id",
                                    fix="send product_id", message_zh="商品页投放位需要当前商品。",
                                    fix_zh="请传入 product_id")
            if product_id not in snapshot.products:
                raise DecisionError(f"unknown product {product_id!r}.", field="product_id",
                                    fix="use a product_id from the catalogue",
                                    message_zh=f"未知商品 {product_id!r}。", fix_zh="请使用商品目录中的 product_id")
            skip.add(product_id)
            _take(picked, spot.offers, skip, _related(snapshot, (product_id,)))
        elif spot.source == "cart":
            _take(picked, spot.offers, skip, _related(snapshot, cart))
        if person:
            _take(picked, spot.offers, skip, _personal(snapshot, person, spot.kinds))
        _take(picked, spot.offers, skip, ((pid, "popular", score, *POPULAR_REASON) for pid, score in snapshot.popular))
        offers = [_offer(rank, snapshot.products[pid], kind, score, zh, en)
                  for rank, (pid, (kind, score, zh, en)) in enumerate(picked.items(), start=1)]
        return offers, [offer["kind"] for offer in offers]

    def _coupon(self, spot: Placement, snapshot: DecisionSnapshot, person: str | None, now: datetime) -> dict | None:
        if not spot.coupon_campaign or not person:
            return None
        row = snapshot.coupons.get((spot.coupon_campaign, person))
        return row if row and row["valid_from"] <= now < row["valid_to"] else None

    def _render(self, name: str, spot: Placement, snapshot: DecisionSnapshot, person: str | None,
                offers: list[dict], coupon: dict | None, now: datetime) -> dict | None:
        compiled = self.copies.get(name)
        if compiled is None:
            return None
        row = snapshot.persons.get(person) if person else None
        rendered = {}
        for language, texts in compiled.texts.items():
            context = self._context(language, row or {"person_id": ""}, offers, coupon, spot, now)
            parts = {part: render_text(compiled.template, text, context, person or "-") for part, text in texts.items()}
            if compiled.channel == "app_push" and "title" in parts and "body" in parts:
                pushed = check_push(parts["title"], parts["body"], truncate=True,
                                    where=Where(compiled.template.id, "app_push", language, person))
                parts["title"], parts["body"] = pushed.title or "", pushed.body
            rendered[language] = parts
        return rendered

    def _context(self, language: str, row: dict, offers: list[dict], coupon: dict | None, spot: Placement,
                 now: datetime) -> dict:
        products = [{**offer["_copy"][language], "reason": offer["reason"][language]} for offer in offers]
        channel = spot.message_channel
        return {
            "person": person_fields(row, language), "products": products, "product": products[0],
            "coupon": coupon_fields(_coupon_row(coupon), language, self.workspace.config.timezone, now)
            if coupon else None,
            "store": None, "brand": self._brand[language], "site_url": self._site,
            "channel": channel or "web", "language": language,
            "unsubscribe": unsubscribe_text(channel, language, self._content) if channel else "",
            "today": local_date_text(now, self.workspace.config.timezone, language, now),
            "url": products[0]["url"] or self._site, "link": _same,
        }


def _same(url: object) -> str:
    return str(url)


def _compile(workspace: Workspace, name: str, spot: Placement) -> _Copy:
    """A placement's copy compiled in the content sandbox; a broken text fails now, naming the placement."""
    copy = spot.copy_text
    assert copy is not None
    if copy.template:
        template, channel = load_template(workspace, copy.template), copy.channel
    else:
        assert copy.zh is not None and copy.en is not None
        template = MessageTemplate(
            id=f"placement_{name}"[:63].lower(), kind="custom", name=Text(zh=name, en=name),
            products=ProductSource(source="none"), purpose="marketing" if spot.message_channel else "transactional",
            channels={"app_push": ChannelContent(zh=Variant(title=copy.zh.title, body=copy.zh.body),
                                                 en=Variant(title=copy.en.title, body=copy.en.body), truncate=True)})
        channel = "app_push"
    texts = {language: compile_texts(template, channel, language) for language in LANGUAGES
             if template.texts(channel, language)}
    for compiled in texts.values():
        compiled.pop("link", None)
    return _Copy(template, channel, texts)


def _personal(snapshot: DecisionSnapshot, person: str, kinds: tuple[str, ...]):  # noqa: ANN202 — an iterator
    lists = snapshot.offers.get(person, ())
    for kind in kinds:
        for product_id, listed, score, zh, en in lists:
            if listed == kind:
                yield product_id, kind, score, zh, en


def _related(snapshot: DecisionSnapshot, products: tuple[str, ...]) -> list[tuple]:
    """Related products of every given product, best score first (a product once, at its best)."""
    rows = sorted((row for pid in products for row in snapshot.related.get(pid, ())),
                  key=lambda row: -(row[2] or 0.0))
    return [(related, "related", score, zh, en) for related, _, score, zh, en in rows]


def _take(picked: dict, limit: int, skip: set[str], candidates) -> None:  # noqa: ANN001 — an iterable of tuples
    for product_id, kind, score, zh, en in candidates:
        if len(picked) >= limit:
            return
        if product_id not in picked and product_id not in skip:
            picked[product_id] = (kind, score, zh, en)


def _offer(rank: int, product, kind: str, score: float | None, zh: str | None, en: str | None) -> dict:  # noqa: ANN001
    return {"rank": rank, "product_id": product.product_id, "name": product.name, "category": product.category,
            "price": product.price, "price_text": product.zh["price_text"], "url": product.zh["url"] or None,
            "kind": kind, "score": round(float(score), 6) if score is not None else None,
            "reason": {"zh": zh or "", "en": en or ""}, "_copy": {"zh": product.zh, "en": product.en}}


def _coupon_row(coupon: dict) -> dict:
    """A snapshot coupon as content_context.coupon_fields reads it."""
    return {"coupon_code": coupon["code"], "coupon_name_zh": coupon["name_zh"], "coupon_name_en": coupon["name_en"],
            "discount_type": coupon["discount_type"], "discount_value": coupon["discount_value"],
            "min_spend": coupon["min_spend"], "coupon_currency": coupon["currency"],
            "valid_from": coupon["valid_from"], "valid_to": coupon["valid_to"]}


def _coupon_json(coupon: dict) -> dict:
    return {"code": coupon["code"], "campaign_id": coupon["campaign_id"],
            "name": {"zh": coupon["name_zh"], "en": coupon["name_en"]},
            "valid_from": coupon["valid_from"].isoformat(), "valid_to": coupon["valid_to"].isoformat()}


def _log_row(decision: Decision, now: datetime, day: date, id_type: str, kinds: list[str], product_id: str | None,
             cart: tuple[str, ...] | list[str]) -> dict:
    context = [product_id] if product_id else list(cart)
    return {"decision_id": decision.decision_id, "decided_at": now, "day": day, "placement": decision.placement,
            "person_id": decision.person_id, "id_type": id_type, "outcome": decision.outcome,
            "product_ids": orjson.dumps([o["product_id"] for o in decision.offers]).decode(),
            "kinds": orjson.dumps(kinds).decode(), "context_product_ids": orjson.dumps(context).decode(),
            "coupon_code": decision.coupon["code"] if decision.coupon else None,
            "model_version": decision.model_version, "snapshot_version": decision.snapshot_version,
            "latency_us": decision.latency_us}


def public_offers(decision: Decision) -> list[dict]:
    """The offers without their internal copy context (what the API and the CLI show)."""
    return [{key: value for key, value in offer.items() if not key.startswith("_")} for offer in decision.offers]


def decide_once(engine: Engine, workspace: Workspace, placement: str, identifier: str | None, *,
                id_type: str | None = None, product_id: str | None = None, cart: tuple[str, ...] = (),
                now: datetime | None = None) -> tuple[Decision, SnapshotMeta]:
    """One decision on a fresh snapshot, logged at once (the CLI's `jingzhun decide`, for testing)."""
    tables, meta = build_snapshot(engine, workspace, now=now)
    decider = Decider(workspace, clock=(lambda: now) if now is not None else None)
    decider.install(in_memory(workspace, tables, meta))
    decision = decider.decide(placement, identifier, id_type, product_id=product_id, cart=cart)
    append_decisions(engine, decider.log.drain())
    return decision, meta
