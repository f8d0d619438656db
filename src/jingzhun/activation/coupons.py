"""Personal coupons: unique, unguessable codes per person and campaign, and their redemptions.

A code is HMAC-SHA256(key, campaign_id ␟ person_id ␟ attempt), its first 10 bytes each
taken modulo 32 (256 is a multiple of 32, so every symbol is equally likely) into
`23456789ABCDEFGHJKLMNPQRSTUVWXYZ` — no 0/O or 1/I to misread off a phone screen. The
key is derived from the workspace's secret salt, so knowing person ids (or one's own
code) says nothing about anyone else's code: 50 random bits per code. The HMAC runs in
the engine (SHA-256 with the key's inner and outer pads as literals), so issuing for a
million persons is one query on DuckDB or Spark, and the same person and campaign always
get the same code: issuing again after a crash adds nobody twice. A clash with any
existing code (expected about once in 2,000 campaigns of a million) is re-hashed with
the next attempt number until the codes are unique.

Validity windows are calendar days in the workspace time zone, stored as UTC instants
(`valid_to` exclusive). Redemptions are matched from `orders.coupon_code` (normalized:
upper case, without spaces or dashes), within the window, by the same person through
`record_persons` (following one merge) — see `match_redemptions`.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from jingzhun.activation.person_batch import lit, person_batch
from jingzhun.core.errors import JingzhunError
from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine, MaterializeHints
from jingzhun.schema.tables import COUPONS

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
CODE_LENGTH = 10
MAX_ATTEMPTS = 8
_KEY_LABEL = b"jingzhun/coupon-codes/v1"
_HEX = "0123456789abcdef"
_SEPARATOR = "\x1f"  # ASCII unit separator: cannot occur in ids, so (a, bc) never hashes like (ab, c)


class CouponError(JingzhunError):
    """A coupon definition, issue or lookup is invalid."""


# ---- definitions -----------------------------------------------------------------------------


class CouponText(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    zh: str = Field(min_length=1, max_length=40)
    en: str = Field(min_length=1, max_length=80)


class CouponDefinition(BaseModel):
    """What a coupon gives and when it can be used (YAML under a template's `coupon:`).

    `valid_days` counts calendar days in the workspace time zone, the first being the
    start day: 1 is "today only", 7 is today and the next six days.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: CouponText | None = None
    discount: Literal["amount", "percent"] = "amount"
    value: Decimal = Field(gt=0, description="CNY off (amount) or percent off (percent)")
    min_spend: Decimal = Field(Decimal(0), ge=0)
    valid_from: date | datetime | None = None
    valid_to: date | datetime | None = None
    valid_days: int = Field(7, ge=1, le=366)

    @model_validator(mode="after")
    def _sane(self) -> CouponDefinition:
        if self.discount == "percent" and self.value >= 100:
            raise ValueError("value: a percent discount must be below 100 (15 means 15% off, 8.5折).")
        return self

    def label(self, language: str, currency: str = "CNY") -> str:
        """满199减30 / ¥30 off orders over ¥199 / 8.5折 / 15% off — or the given name."""
        if self.name is not None:
            return self.name.zh if language == "zh" else self.name.en
        return discount_label(self.discount, self.value, self.min_spend, language, currency)

    def window(self, issued_at: datetime, timezone: str) -> tuple[datetime, datetime]:
        """(valid_from, valid_to) as UTC instants, valid_to exclusive."""
        zone = ZoneInfo(timezone)
        start = _instant(self.valid_from, zone) if self.valid_from is not None else issued_at
        if self.valid_to is None:
            first_day = start.astimezone(zone).date()
            end = datetime.combine(first_day + timedelta(days=self.valid_days), time(), zone)
        elif isinstance(self.valid_to, datetime):
            end = _instant(self.valid_to, zone)
        else:
            end = datetime.combine(self.valid_to + timedelta(days=1), time(), zone)
        if end <= start:
            raise CouponError(f"the coupon ends ({end.isoformat()}) before it starts ({start.isoformat()}).",
                              field="valid_to", fix="set valid_to after valid_from (dates are inclusive)",
                              message_zh="优惠券的结束时间早于开始时间。", fix_zh="让 valid_to 晚于 valid_from（日期含当天）")
        return start.astimezone(UTC), end.astimezone(UTC)


def _instant(value: date | datetime, zone: ZoneInfo) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=zone)
    return datetime.combine(value, time(), zone)


def parse_coupon_definition(data: object, location: str = "coupon") -> CouponDefinition:
    """Validate a coupon definition; a bad one names the key and the fix."""
    if isinstance(data, CouponDefinition):
        return data
    try:
        return CouponDefinition.model_validate(data)
    except ValidationError as invalid:
        first = invalid.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "coupon"
        reason = str(first["msg"]).removeprefix("Value error, ")
        raise CouponError(f"invalid coupon `{key}`: {reason}", field=key, location=location,
                          fix="e.g. {discount: amount, value: 30, min_spend: 199, valid_days: 7}",
                          message_zh=f"优惠券的 `{key}` 无效：{reason}",
                          fix_zh="例如 {discount: amount, value: 30, min_spend: 199, valid_days: 7}") from None


def money_text(value: Decimal | float | int, currency: str = "CNY") -> str:
    """¥199 / ¥19.9 / USD 12.5: no trailing zeros, the yuan sign for CNY.

    Example:
        >>> money_text(Decimal("199.00")), money_text(19.90), money_text(5, "USD")
        ('¥199', '¥19.9', 'USD 5')
    """
    text = plain_number(Decimal(str(value)).quantize(Decimal("0.01")))
    return f"¥{text}" if currency in ("CNY", "RMB") else f"{currency} {text}"


def plain_number(number: Decimal | float | int) -> str:
    """A number without trailing decimal zeros: 20, 8.5, 19.9 (never 2 for 20)."""
    text = f"{Decimal(str(number)):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def discount_label(kind: str, value: Decimal, min_spend: Decimal, language: str, currency: str = "CNY") -> str:
    """How marketers name a discount: 满199减30, 立减20元, 8.5折 / ¥30 off orders over ¥199, 15% off."""
    plain = money_text(value, currency).removeprefix("¥")
    threshold = money_text(min_spend, currency)
    if kind == "percent":
        fold = plain_number((Decimal(100) - Decimal(value)) / 10)
        if language == "zh":
            return f"满{threshold.removeprefix('¥')}享{fold}折" if min_spend > 0 else f"{fold}折"
        off = plain_number(value)
        return f"{off}% off orders over {threshold}" if min_spend > 0 else f"{off}% off"
    if language == "zh":
        return f"满{threshold.removeprefix('¥')}减{plain}" if min_spend > 0 else f"立减{plain}元"
    amount = money_text(value, currency)
    return f"{amount} off orders over {threshold}" if min_spend > 0 else f"{amount} off"


# ---- codes -------------------------------------------------------------------------------------


def coupon_key(workspace: Workspace) -> bytes:
    """The HMAC key for coupon codes, derived from the workspace's secret salt.

    A separate key (not the salt itself) keeps coupon codes and PII hashes apart.
    """
    salt_file = workspace.resolve(workspace.config.pii.salt_file)
    if not salt_file.is_file():
        raise CouponError(f"the workspace has no secret salt at {salt_file}.", field="pii.salt_file",
                          fix="restore the salt file (`jingzhun init` creates it); coupon codes are derived from it",
                          message_zh=f"工作区缺少盐值文件 {salt_file}。",
                          fix_zh="恢复盐值文件（`jingzhun init` 会创建），券码由它派生")
    return hmac.new(salt_file.read_bytes(), _KEY_LABEL, hashlib.sha256).digest()


def coupon_code(key: bytes, campaign_id: str, person_id: str, attempt: int = 0,
                length: int = CODE_LENGTH) -> str:
    """The code in Python: the reference the engine's SQL is tested against.

    Example:
        >>> coupon_code(b"k" * 32, "c1", "P1")
        'XW2YLS6RXT'
    """
    message = _SEPARATOR.join((campaign_id, person_id, str(attempt))).encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return "".join(ALPHABET[byte % 32] for byte in digest[:length])


def coupon_digest_sql(key: bytes, campaign: str, person: str, attempt: str) -> str:
    """HMAC-SHA256 of (campaign, person, attempt) as lower-case hex, a SQL expression over SQL operands.

    HMAC(K, m) = SHA256((K ⊕ opad) ‖ SHA256((K ⊕ ipad) ‖ m)); the two pads are literals,
    and SHA256/UNHEX/ENCODE render as SHA2/UNHEX/ENCODE on Spark, so both engines
    compute the same digest as Python's `hmac`.
    """
    block = key.ljust(64, b"\0") if len(key) <= 64 else hashlib.sha256(key).digest().ljust(64, b"\0")
    inner_pad, outer_pad = bytes(b ^ 0x36 for b in block).hex(), bytes(b ^ 0x5C for b in block).hex()
    message = f"{campaign} || CHR(31) || {person} || CHR(31) || CAST({attempt} AS VARCHAR)"
    return f"SHA256(UNHEX('{outer_pad}') || UNHEX(SHA256(UNHEX('{inner_pad}') || ENCODE({message}))))"


def code_from_digest_sql(digest: str, length: int = CODE_LENGTH) -> str:
    """The code's symbols from a hex digest column: byte i is hex characters 2i+1..2i+2,
    and its value modulo 32 is (high nibble mod 2) × 16 + low nibble."""
    symbols = []
    for index in range(length):
        high = f"STRPOS('{_HEX}', SUBSTR({digest}, {2 * index + 1}, 1)) - 1"
        low = f"STRPOS('{_HEX}', SUBSTR({digest}, {2 * index + 2}, 1)) - 1"
        symbols.append(f"SUBSTR('{ALPHABET}', (({high}) % 2) * 16 + ({low}) + 1, 1)")
    return " || ".join(symbols)


def normalized_code_sql(column: str) -> str:
    """A typed-in code as stored: upper case, no spaces or dashes."""
    return f"UPPER(REPLACE(REPLACE(TRIM({column}), '-', ''), ' ', ''))"


def _check_campaign(campaign_id: str) -> str:
    if not isinstance(campaign_id, str) or not campaign_id.strip():
        raise CouponError("a coupon needs the campaign it belongs to.", field="campaign_id",
                          fix="pass the campaign's id, e.g. spring_sale_2026",
                          message_zh="优惠券必须属于某个活动。", fix_zh="传入活动 ID，例如 spring_sale_2026")
    return campaign_id.strip()


def _require_table(engine: Engine) -> None:
    if not engine.table_exists(COUPONS.name):
        raise CouponError("this workspace has no coupons table yet.", field="coupons",
                          fix="run `jingzhun migrate` (schema version 11 adds it)",
                          message_zh="此工作区还没有 coupons 表。", fix_zh="运行 `jingzhun migrate`（表结构版本 11 加入）")


# ---- issue ---------------------------------------------------------------------------------------


def issue_coupons(engine: Engine, campaign_id: str, person_ids: list[str] | tuple[str, ...],
                  definition: CouponDefinition | dict, *, workspace: Workspace,
                  issued_at: datetime | None = None, length: int = CODE_LENGTH) -> pa.Table:
    """Give each person a personal code for `campaign_id`; return the codes of all of them.

    Persons who already hold a code for the campaign keep it (and its window): issuing is
    idempotent, so a campaign that crashed mid-send can issue again safely.

    Args:
        engine: the workspace's engine (writes `coupons`).
        campaign_id: the campaign the codes belong to.
        person_ids: who gets a code.
        definition: a `CouponDefinition` or its dict (discount, value, min_spend, window).
        workspace: supplies the secret salt (the HMAC key) and the time zone of the window.
        issued_at: the issue instant (default now); the window starts here unless set.
        length: symbols per code (tests shorten it to force clashes).

    Returns:
        Arrow rows of `coupons` for `person_ids` in this campaign.
    """
    definition = parse_coupon_definition(definition)
    campaign_id = _check_campaign(campaign_id)
    issued_at = (issued_at or datetime.now(UTC)).astimezone(UTC)
    window = definition.window(issued_at, workspace.config.timezone)
    key = coupon_key(workspace)
    _require_table(engine)
    with person_batch(engine, person_ids, "coupon_persons") as persons, engine.transaction():
        fresh = _unique_codes(engine, key, campaign_id, persons, length)
        if fresh.num_rows:
            rows = _coupon_rows(fresh, campaign_id, definition, window, issued_at, workspace.config.currency)
            engine.write_table(COUPONS.name, rows, mode="append")
        return engine.query(f"SELECT c.* FROM {COUPONS.name} AS c JOIN {persons} AS w ON w.person_id = c.person_id "
                            f"WHERE c.campaign_id = {lit(campaign_id)} ORDER BY c.person_id")


def _unique_codes(engine: Engine, key: bytes, campaign_id: str, persons: str, length: int) -> pa.Table:
    """(person_id, attempt, code) for persons without a code yet, re-hashing clashes."""
    campaign = lit(campaign_id)
    work = f"coupon_issue_{uuid.uuid4().hex[:12]}"
    engine.materialize(f"{work}_0", f"""
SELECT person_id, 0 AS attempt, {code_from_digest_sql('digest', length)} AS code FROM (
  SELECT w.person_id, {coupon_digest_sql(key, campaign, 'w.person_id', '0')} AS digest
  FROM {persons} AS w
  LEFT JOIN (SELECT DISTINCT person_id FROM {COUPONS.name} WHERE campaign_id = {campaign}) AS held
    ON held.person_id = w.person_id
  WHERE held.person_id IS NULL) AS d""", MaterializeHints(scratch=True))
    current = f"{work}_0"
    try:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if _count(engine, _clashes_sql(current)) == 0:
                return engine.query(f"SELECT person_id, attempt, code FROM {current}")
            following = f"{work}_{attempt}"
            engine.materialize(following, _rehash_sql(key, campaign, current, attempt, length),
                               MaterializeHints(scratch=True))
            engine.drop_table(current)
            current = following
        raise CouponError(f"coupon codes still clash after {MAX_ATTEMPTS} re-hashes.", field="length",
                          fix="use longer codes (length) — at 10 symbols a clash is a one-in-a-thousand event",
                          message_zh=f"重新哈希 {MAX_ATTEMPTS} 次后券码仍有重复。", fix_zh="加长券码（length）")
    finally:
        engine.drop_table(current)


def _count(engine: Engine, sql: str) -> int:
    return int(engine.query(f"SELECT COUNT(*) AS n FROM ({sql}) AS counted").column("n")[0].as_py())


def _clashes_sql(work: str) -> str:
    """Persons whose code equals a stored code, or another new person's (the smallest id keeps it)."""
    return f"""
SELECT n.person_id FROM (
  SELECT person_id, code, MIN(person_id) OVER (PARTITION BY code) AS keeper FROM {work}) AS n
LEFT JOIN (SELECT DISTINCT code FROM {COUPONS.name}) AS stored ON stored.code = n.code
WHERE stored.code IS NOT NULL OR n.person_id <> n.keeper"""


def _rehash_sql(key: bytes, campaign: str, work: str, attempt: int, length: int) -> str:
    return f"""
SELECT person_id, CASE WHEN clash THEN {attempt} ELSE attempt END AS attempt,
       CASE WHEN clash THEN {code_from_digest_sql('digest', length)} ELSE code END AS code
FROM (
  SELECT w.person_id, w.attempt, w.code, x.person_id IS NOT NULL AS clash,
         {coupon_digest_sql(key, campaign, 'w.person_id', str(attempt))} AS digest
  FROM {work} AS w LEFT JOIN ({_clashes_sql(work)}) AS x ON x.person_id = w.person_id) AS r"""


def _coupon_rows(fresh: pa.Table, campaign_id: str, definition: CouponDefinition,
                 window: tuple[datetime, datetime], issued_at: datetime, currency: str) -> pa.Table:
    count = fresh.num_rows

    def constant(value: object, kind: pa.DataType) -> pa.Array:
        return pa.array([value] * count, kind)

    instant, money = pa.timestamp("us", tz="UTC"), pa.decimal128(18, 2)
    document = definition.model_dump_json()
    return pa.table({
        "code": fresh.column("code"), "campaign_id": constant(campaign_id, pa.string()),
        "person_id": fresh.column("person_id"),
        "name_zh": constant(definition.label("zh", currency), pa.string()),
        "name_en": constant(definition.label("en", currency), pa.string()),
        "discount_type": constant(definition.discount, pa.string()),
        "discount_value": constant(definition.value.quantize(Decimal("0.01")), money),
        "min_spend": constant(definition.min_spend.quantize(Decimal("0.01")), money),
        "currency": constant(currency, pa.string()),
        "valid_from": constant(window[0], instant), "valid_to": constant(window[1], instant),
        "issued_at": constant(issued_at, instant),
        "attempt": fresh.column("attempt").cast(pa.int32()),
        "definition": constant(document, pa.string()),
    })


# ---- look up -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Coupon:
    """One person's code for one campaign."""

    code: str
    campaign_id: str
    person_id: str
    name_zh: str
    name_en: str
    discount_type: str
    discount_value: Decimal
    min_spend: Decimal
    currency: str
    valid_from: datetime
    valid_to: datetime
    issued_at: datetime

    def name(self, language: str) -> str:
        return self.name_zh if language == "zh" else self.name_en


def coupon_for(engine: Engine, campaign_id: str, person_id: str) -> Coupon | None:
    """The person's code for the campaign, or None if none was issued."""
    if not engine.table_exists(COUPONS.name):
        return None
    fields = ", ".join(Coupon.__dataclass_fields__)
    rows = engine.query(f"SELECT {fields} FROM {COUPONS.name} WHERE campaign_id = {lit(campaign_id)} "
                        f"AND person_id = {lit(person_id)} ORDER BY issued_at LIMIT 1").to_pylist()
    return Coupon(**rows[0]) if rows else None


# ---- redemptions ----------------------------------------------------------------------------------

OUTCOMES = ("redeemed", "reused", "outside_window", "other_person", "cancelled")


@dataclass(frozen=True)
class Redemptions:
    """Orders that carried a personal code, each with its outcome, and a summary per campaign.

    Outcomes: `redeemed` (the holder, within the window, first use), `reused` (a later
    order of the holder with the same code), `outside_window`, `other_person` (a code
    used by someone else — shared or leaked), `cancelled` (the order was cancelled).
    """

    matches: pd.DataFrame
    summary: pd.DataFrame
    sql: dict[str, str]


def redemptions_sql(campaign_id: str | None = None) -> str:
    """One row per (order, personal code) with its outcome (DuckDB dialect, runs on Spark)."""
    only = f"AND c.campaign_id = {lit(campaign_id)}" if campaign_id else ""
    return f"""
WITH used AS (
  SELECT order_id, placed_at, status, net_amount, discount_amount, currency,
         {normalized_code_sql('coupon_code')} AS code
  FROM orders WHERE coupon_code IS NOT NULL),
holders AS (
  SELECT c.code, c.campaign_id, c.person_id, c.valid_from, c.valid_to,
         COALESCE(CASE WHEN p.status = 'merged' THEN p.merged_into END, c.person_id) AS holder
  FROM {COUPONS.name} AS c LEFT JOIN persons AS p ON p.person_id = c.person_id
  WHERE 1 = 1 {only}),
judged AS (
  SELECT h.campaign_id, h.code, h.person_id AS coupon_person_id, rp.person_id AS order_person_id,
         u.order_id, u.placed_at, u.status, u.net_amount, u.discount_amount, u.currency,
         h.valid_from, h.valid_to,
         CASE WHEN rp.person_id IS NULL OR rp.person_id <> h.holder THEN 'other_person'
              WHEN u.placed_at < h.valid_from OR u.placed_at >= h.valid_to THEN 'outside_window'
              WHEN u.status = 'cancelled' THEN 'cancelled'
              ELSE 'valid' END AS verdict
  FROM used AS u JOIN holders AS h ON h.code = u.code
  LEFT JOIN record_persons AS rp ON rp.record_kind = 'order' AND rp.record_id = u.order_id)
SELECT campaign_id, code, coupon_person_id, order_person_id, order_id, placed_at, status,
       net_amount, discount_amount, currency, valid_from, valid_to,
       CASE WHEN verdict <> 'valid' THEN verdict
            WHEN ROW_NUMBER() OVER (PARTITION BY code, verdict ORDER BY placed_at, order_id) = 1
            THEN 'redeemed' ELSE 'reused' END AS outcome
FROM judged"""


def redemption_summary_sql(campaign_id: str | None = None) -> str:
    """Per campaign: codes issued, redeemed, the rate, and the orders' value."""
    only = f"WHERE campaign_id = {lit(campaign_id)}" if campaign_id else ""
    counts = ",\n         ".join(
        f"SUM(CASE WHEN outcome = '{outcome}' THEN 1 ELSE 0 END) AS {outcome}_orders" for outcome in OUTCOMES)
    return f"""
WITH matched AS ({redemptions_sql(campaign_id)}),
issued AS (
  SELECT campaign_id, COUNT(*) AS issued, MIN(valid_from) AS first_valid_from, MAX(valid_to) AS last_valid_to
  FROM {COUPONS.name} {only} GROUP BY campaign_id),
outcomes AS (
  SELECT campaign_id, {counts},
         SUM(CASE WHEN outcome = 'redeemed' THEN net_amount ELSE 0 END) AS redeemed_net_amount,
         SUM(CASE WHEN outcome = 'redeemed' THEN discount_amount ELSE 0 END) AS redeemed_discount
  FROM matched GROUP BY campaign_id)
SELECT i.campaign_id, CAST(i.issued AS BIGINT) AS issued, CAST(COALESCE(o.redeemed_orders, 0) AS BIGINT) AS redeemed,
       CAST(COALESCE(o.redeemed_orders, 0) AS DOUBLE) / i.issued AS redemption_rate,
       COALESCE(o.redeemed_net_amount, 0) AS redeemed_net_amount,
       COALESCE(o.redeemed_discount, 0) AS redeemed_discount,
       {", ".join(f"CAST(COALESCE(o.{outcome}_orders, 0) AS BIGINT) AS {outcome}_orders" for outcome in OUTCOMES[1:])},
       i.first_valid_from, i.last_valid_to
FROM issued AS i LEFT JOIN outcomes AS o ON o.campaign_id = i.campaign_id
ORDER BY i.campaign_id"""


def match_redemptions(engine: Engine, *, campaign_id: str | None = None) -> Redemptions:
    """Match orders' coupon codes to issued personal coupons (all campaigns, or one).

    Returns:
        `Redemptions`: `matches` (one row per order carrying a personal code, with its
        outcome), `summary` (per campaign: issued, redeemed, rate, value) and the SQL.
    """
    _require_table(engine)
    sql = {"matches": redemptions_sql(campaign_id) + "\nORDER BY campaign_id, placed_at, order_id",
           "summary": redemption_summary_sql(campaign_id)}
    return Redemptions(matches=engine.query(sql["matches"]).to_pandas(),
                       summary=engine.query(sql["summary"]).to_pandas(), sql=sql)

