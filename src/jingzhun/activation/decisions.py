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
6. the copy in zh and en, rendered by the content sandbox from texts compiled once, each
   distinct rendering only once (decisions_copy.py);
7. the decision is appended to an in-memory log, written to `decisions` in batches by
   whoever runs the Decider (the server: every second; the CLI: at once).

Steps 4 to 6 depend on the snapshot, the placement, the person, the product or cart, the
coupon and the day, nothing else: their result is kept, serialized, as the person's answer
(`Decider._answer`), and the next ask only runs steps 1-3 and 7 (about 7 µs instead of 60
on the 20,000-person demo; benchmarks/decide.py). Identifiers resolved are kept likewise.
Both stores belong to the snapshot serving and start again with the next one.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
import pyarrow as pa

from jingzhun.activation.content_context import (
    coupon_fields,
    local_date_text,
    person_fields,
    unsubscribe_text,
)
from jingzhun.activation.content_jinja import CONTEXT
from jingzhun.activation.content_templates import (
    ChannelContent,
    MessageTemplate,
    ProductSource,
    Text,
    Variant,
    load_settings,
    load_template,
)
from jingzhun.activation.decisions_copy import CopyRenderer
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

ANSWER_LIMIT = 100_000  # answers kept (Decider._answer); the store starts again when full
RESOLVED_LIMIT = 200_000  # identifiers asked about, with the person they found (cleared with each snapshot)
POPULAR_REASON = ("热门推荐：很多顾客都在买", "Popular: many customers are buying it")
Clock = Callable[[], datetime]


class DecisionError(JingzhunError):
    """A decision cannot be made as asked (unknown placement, bad identifier, no snapshot yet)."""


NOTHING = b"[]"


@dataclass(slots=True)  # not frozen: made on every request, and a frozen one costs twice as much to make
class Decision:
    """One answer: the offers, the coupon and the copy, and why (`outcome`).

    Offers and copy are kept as the JSON they are answered with (`offers_json`, `copy_json`):
    the same bytes serve every ask of one person on one placement while a snapshot serves
    (`Decider._answer`); `offers` and `copy` read them back for Python callers.
    """

    decision_id: str
    placement: str
    person_id: str | None
    outcome: str
    offers_json: bytes
    coupon: dict | None
    copy_json: bytes | None
    impressions_today: int
    daily_cap: int | None
    retry_after: str | None
    model_version: str | None
    snapshot_version: str
    latency_us: int

    @property
    def offers(self) -> list[dict]:
        return orjson.loads(self.offers_json)

    @property
    def copy(self) -> dict | None:
        return orjson.loads(self.copy_json) if self.copy_json else None

    def as_json(self) -> dict[str, object]:
        return self._fields(self.offers, self.copy)

    def json_bytes(self) -> bytes:
        """The answer as the API sends it (offers and copy spliced in as they were serialized)."""
        return orjson.dumps(self._fields(orjson.Fragment(self.offers_json),
                                         orjson.Fragment(self.copy_json) if self.copy_json else None))

    def _fields(self, offers: object, copy: object) -> dict[str, object]:
        return {"decision_id": self.decision_id, "placement": self.placement, "person_id": self.person_id,
                "known": self.person_id is not None, "outcome": self.outcome, "offers": offers,
                "coupon": self.coupon, "copy": copy, "impressions_today": self.impressions_today,
                "daily_cap": self.daily_cap, "retry_after": self.retry_after, "model_version": self.model_version,
                "snapshot_version": self.snapshot_version, "latency_us": self.latency_us}


@dataclass
class DecisionLog:
    """Decisions waiting to be written to `decisions`; bounded, and it says what it had to drop."""

    limit: int = 200_000
    rows: list[tuple] = field(default_factory=list)
    dropped: int = 0
    written: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, row: tuple) -> None:
        with self._lock:
            if len(self.rows) >= self.limit:
                self.dropped += 1
                return
            self.rows.append(row)

    def drain(self) -> list[tuple]:
        with self._lock:
            taken, self.rows = self.rows, []
        return taken

    def put_back(self, rows: list[tuple]) -> None:
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


# The log keeps the time as microseconds and the day as days since 1970 (a datetime costs six
# times as much to pickle to the engine process as the whole rest of a row).
_LOGGED_AS = {pa.timestamp("us", tz="UTC"): pa.int64(), pa.date32(): pa.int32()}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY = date(1970, 1, 1).toordinal()
_MICROSECOND = timedelta(microseconds=1)


def append_decisions(engine: Engine, rows: list[tuple]) -> int:
    """Write a batch of logged decisions (as `Decider.log` holds them) to `decisions`."""
    if rows:
        columns = [pa.array(values, type=_LOGGED_AS.get(kind, kind)).cast(kind)
                   for values, kind in zip(zip(*rows, strict=True), DECISIONS_SCHEMA.types, strict=True)]
        engine.write_table(DECISIONS.name, pa.Table.from_arrays(columns, schema=DECISIONS_SCHEMA))
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
        self.brand = {"zh": brand.zh if brand else "", "en": brand.en if brand else ""}
        self.site = content.site_url or ""
        self.content = content
        self._todays: dict[tuple[str, date], str] = {}
        self._answers: dict[tuple, tuple[bytes, bytes | None, str, str, int]] = {}
        self.answer_hits = self.answer_misses = 0
        self._resolved: dict[tuple[str, str | None, str | None], tuple[str | None, str]] = {}
        self._day_bounds = (datetime.max.replace(tzinfo=UTC), datetime.min.replace(tzinfo=UTC), date.min)
        self._id_prefix, self._ids = secrets.token_hex(10), itertools.count()  # ids: 32 hex digits, unique
        self.zone = ZoneInfo(workspace.config.timezone)
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.copies = {name: _compile(workspace, name, p) for name, p in self.placements.items() if p.copy_text}
        person_fields({"person_id": "", "name": "王小明", "gender": "F"}, "en")  # loads the pinyin tables now, not on a request
        self.snapshot: DecisionSnapshot | None = None
        self.log = DecisionLog()
        self._counts: dict[tuple[str, str], int] = {}
        self._day: date | None = None
        self._lock = threading.Lock()

    # -- snapshots --

    def adopt(self, previous: Decider) -> None:
        """Carry on from the Decider this one replaces (new definitions): its log and today's counts."""
        with previous._lock:
            self.log, self._counts, self._day = previous.log, previous._counts, previous._day

    def install(self, snapshot: DecisionSnapshot) -> None:
        """Serve `snapshot` from now on; impression counts keep the larger of memory and the log."""
        with self._lock:
            self._remember(snapshot.meta.day, snapshot.impressions)
            # what was worked out from the snapshot serving until now
            self.snapshot, self._answers, self._resolved = snapshot, {}, {}

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
        asked = (snapshot.meta.version, identifier, id_type)
        found = self._resolved.get(asked)
        if found is None:
            found = self.resolve(snapshot, identifier, id_type)
            if len(self._resolved) >= RESOLVED_LIMIT:
                self._resolved.clear()
            self._resolved[asked] = found
        person, given_type = found
        now = self.clock()
        day = self._day_of(now)
        count_key = (person, placement) if person else None
        shown = self._shown(count_key, day)
        outcome, retry = self._blocked(spot, person, snapshot, shown, now)
        coupon = self._coupon(spot, snapshot, person, now) if not outcome else None
        if not outcome and spot.coupon_campaign and coupon is None:
            outcome = "no_coupon"  # a coupon placement shows nothing to someone without a valid code
        offers, copy, product_ids, kinds, count = _NO_ANSWER if outcome else self._answer(
            placement, spot, snapshot, person, product_id, tuple(cart), coupon, now, day)
        if not outcome:
            outcome = "empty" if not count else ("personal" if person else "fallback")
        if count and count_key is not None:
            shown = self._count(count_key)
        latency = (time.perf_counter_ns() - started) // 1000
        decision = Decision(f"{self._id_prefix}{next(self._ids):012x}", placement, person, outcome, offers,
                            _coupon_json(coupon) if coupon and count else None, copy, shown, spot.daily_cap,
                            retry, snapshot.meta.model_version, snapshot.meta.version, int(latency))
        context = orjson.dumps([product_id] if product_id else list(cart)).decode() if product_id or cart else "[]"
        self.log.add((decision.decision_id, (now - _EPOCH) // _MICROSECOND, day.toordinal() - _EPOCH_DAY, placement,
                      person, given_type, outcome, product_ids, kinds,
                      context, decision.coupon["code"] if decision.coupon else None, decision.model_version,
                      decision.snapshot_version, decision.latency_us))  # DECISIONS_SCHEMA's order
        return decision

    def _answer(self, name: str, spot: Placement, snapshot: DecisionSnapshot, person: str | None,
                product_id: str | None, cart: tuple[str, ...], coupon: dict | None, now: datetime,
                day: date) -> tuple[bytes, bytes | None, str, str, int]:
        """(offers JSON, copy JSON, the log's product ids and kinds, how many offers), worked out
        once per person, placement, product or cart, coupon and day while this snapshot serves:
        they depend on nothing else (caps, consent and quiet hours are decided before, every time)."""
        key = (snapshot.meta.version, name, person, product_id, cart, coupon["code"] if coupon else None, day)
        found = self._answers.get(key)
        if found is not None:
            self.answer_hits += 1
            return found
        offers, kinds = self._offers(spot, snapshot, person, product_id, cart)
        copy = self._render(name, spot, snapshot, person, offers, coupon, now) if offers else None
        found = (orjson.dumps(offers), orjson.dumps(copy) if copy else None,
                 orjson.dumps([offer["product_id"] for offer in offers]).decode(), orjson.dumps(kinds).decode(),
                 len(offers))
        with self._lock:
            if len(self._answers) >= ANSWER_LIMIT:
                self._answers.clear()
            self._answers[key] = found
        self.answer_misses += 1
        return found

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
        """The local day of `now` (worked out once a day: the day's bounds in UTC are kept)."""
        first, last, day = self._day_bounds
        if first <= now < last:
            return day
        local = now.astimezone(self.zone)
        day = local.date()
        start = datetime.combine(day, datetime.min.time(), self.zone)
        self._day_bounds = (start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC), day)
        return day

    def _shown(self, key: tuple[str, str] | None, day: date) -> int:
        """Today's impressions of `key`; a new local day starts every count again."""
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
        renderer = self.copies.get(name)
        if renderer is None:
            return None
        row = (snapshot.persons.get(person) if person else None) or {"person_id": ""}
        return {language: renderer.render(language, _Context(self, language, row, offers, coupon, spot, now, snapshot),
                                          person)
                for language in renderer.texts}

    def today_text(self, language: str, now: datetime) -> str:
        """`today` as copy shows it (10月31日 / Oct 31), worked out once a day."""
        key = (language, now.astimezone(self.zone).date())
        text = self._todays.get(key)
        if text is None:
            if len(self._todays) > 16:
                self._todays.clear()
            text = self._todays[key] = local_date_text(now, self.workspace.config.timezone, language, now)
        return text


class _Context(Mapping):
    """A placement copy's render context (content_jinja.CONTEXT), each value made on first use:
    a rendering the memo already holds reads only what its text reads (decisions_copy.py)."""

    __slots__ = ("_args", "_made")

    def __init__(self, decider: Decider, language: str, row: dict, offers: list[dict], coupon: dict | None,
                 spot: Placement, now: datetime, snapshot: DecisionSnapshot) -> None:
        self._args = (decider, language, row, offers, coupon, spot, now, snapshot)
        self._made: dict[str, object] = {}

    def __getitem__(self, name: str) -> object:
        made = self._made
        if name not in made:
            made[name] = self._make(name)
        return made[name]

    def __iter__(self):  # noqa: ANN204 — an iterator over CONTEXT's names
        return iter(CONTEXT)

    def __len__(self) -> int:
        return len(CONTEXT)

    def _make(self, name: str) -> object:  # noqa: PLR0911 — one answer per name of the context
        decider, language, row, offers, coupon, spot, now, snapshot = self._args
        channel = spot.message_channel
        if name == "products":
            return [{**getattr(snapshot.products[offer["product_id"]], language), "reason": offer["reason"][language]}
                    for offer in offers]
        if name == "product":
            return self["products"][0]
        if name == "person":
            return person_fields(row, language)
        if name == "coupon":
            return coupon_fields(_coupon_row(coupon), language, decider.workspace.config.timezone, now) \
                if coupon else None
        if name == "url":
            return self["product"]["url"] or decider.site  # type: ignore[index]
        if name == "unsubscribe":
            return unsubscribe_text(channel, language, decider.content) if channel else ""
        if name == "today":
            return decider.today_text(language, now)
        fixed = {"store": None, "brand": decider.brand[language], "site_url": decider.site, "link": _same,
                 "channel": channel or "web", "language": language}
        if name in fixed:
            return fixed[name]
        raise KeyError(name)


def _same(url: object) -> str:
    return str(url)


def _compile(workspace: Workspace, name: str, spot: Placement) -> CopyRenderer:
    """A placement's copy compiled in the content sandbox; a broken text fails now, naming the placement."""
    copy = spot.copy_text
    assert copy is not None
    if copy.template:
        return CopyRenderer.compile(load_template(workspace, copy.template), copy.channel)
    assert copy.zh is not None and copy.en is not None
    template = MessageTemplate(
        id=f"placement_{name}"[:63].lower(), kind="custom", name=Text(zh=name, en=name),
        products=ProductSource(source="none"), purpose="marketing" if spot.message_channel else "transactional",
        channels={"app_push": ChannelContent(zh=Variant(title=copy.zh.title, body=copy.zh.body),
                                             en=Variant(title=copy.en.title, body=copy.en.body), truncate=True)})
    return CopyRenderer.compile(template, "app_push")


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
            "reason": {"zh": zh or "", "en": en or ""}}


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


_NO_ANSWER: tuple[bytes, None, str, str, int] = (NOTHING, None, "[]", "[]", 0)


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
