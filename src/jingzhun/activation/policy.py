"""The send policy: who may get a message now, decided in SQL for a whole audience at once.

Every person of an audience gets one row, with the channel chosen for them and either
`queued` or the reason they are left out, in this order:

1. `held_out` — the campaign's random holdout (hash of campaign and person, so a person
   stays in the same arm on every run); their row still carries the reason they would
   have been excluded for, so lift can also be read per protocol.
2. per channel, in the campaign's order of channels (the first channel that passes wins):
   `no_consent` (PIPL: marketing consent is separate from transactional and per channel;
   the latest record wins), `suppressed` (any of the person's identifiers, or the person,
   on the suppression list for the channel), `unreachable` (no usable phone, e-mail,
   openid or device for it), `frequency_cap` (marketing messages on the channel, or on
   every channel, within the cap's window — across all campaigns).
3. `budget` — over the campaign's remaining message or cost budget (persons are taken in
   the order of their delivery id, a hash: a fair random order that is the same on rerun).
4. `quiet_hours` — now is inside the workspace's quiet hours for the channel: the row is
   `deferred` to the next allowed time, or dropped, as the campaign says.

Consent defaults to **opt-in** (`consent_regime: opt_in`): without a record a person has
no marketing consent, which is what PIPL asks of marketing messages. A workspace whose
legal basis differs may set `opt_out` in `definitions/send_policy.yaml`; an explicit
withdrawal always wins. Transactional messages need no grant (they perform a contract)
but respect an explicit withdrawal for the transactional purpose, and neither count
toward nor are limited by the marketing frequency caps.

The query is portable (it runs on DuckDB and Spark alike and is parity-tested), but
sending happens on the serving DuckDB, where `activation.sending` runs the query and
the insert of its rows in one transaction behind a lock row (see docs/campaigns.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlglot import exp

from jingzhun.core.config_errors import ConfigFile, config_error
from jingzhun.core.errors import ConfigError, JingzhunError
from jingzhun.core.workspace import Workspace
from jingzhun.engine import parse_sql
from jingzhun.profiles.tags import read_yaml

Channel = Literal["email", "sms", "wechat", "app_push", "ads"]
Purpose = Literal["marketing", "transactional"]
CHANNELS: tuple[str, ...] = ("email", "sms", "wechat", "app_push", "ads")
POLICY_FILE = "send_policy.yaml"
POLICY_DOC = ConfigFile(f" in {POLICY_FILE}", f"{POLICY_FILE} 中", "docs/campaigns.md")
# Deliveries that took (or hold) a slot under a frequency cap or a budget.
COUNTED_STATUSES = ("queued", "sending", "sent", "unknown")
REASONS = ("no_consent", "suppressed", "unreachable", "frequency_cap", "budget", "quiet_hours")


class PolicyError(JingzhunError):
    """A send policy or a request to the policy is invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FrequencyCap(_Strict):
    """At most `max_messages` marketing messages per person on `channel` within `days` days."""

    channel: Channel | Literal["all"]
    max_messages: int = Field(ge=1)
    days: int = Field(ge=1, le=366)


class QuietHours(_Strict):
    """No message of these purposes on these channels between `start` and `end` (local time)."""

    start: time = time(21, 0)
    end: time = time(9, 0)
    purposes: tuple[Purpose, ...] = ("marketing",)
    channels: tuple[Channel, ...] = ("email", "sms", "wechat", "app_push")

    @field_validator("end")
    @classmethod
    def _not_empty(cls, value: time, info) -> time:  # type: ignore[no-untyped-def]
        if info.data.get("start") == value:
            raise ValueError("start and end are equal; leave quiet_hours out to have none")
        return value

    def covers(self, moment: time) -> bool:
        """Is the local wall-clock time `moment` inside the quiet window (which may wrap midnight)?"""
        if self.start < self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end


DEFAULT_CAPS = (
    FrequencyCap(channel="sms", max_messages=2, days=7),
    FrequencyCap(channel="email", max_messages=3, days=7),
    FrequencyCap(channel="wechat", max_messages=4, days=30),
    FrequencyCap(channel="app_push", max_messages=1, days=1),
    FrequencyCap(channel="app_push", max_messages=5, days=7),
)
DEFAULT_ADDRESS_TYPES: dict[str, tuple[str, ...]] = {
    "email": ("email",), "sms": ("phone",), "wechat": ("wechat_oa_openid", "wechat_openid"),
    "app_push": ("device_id",), "ads": ("phone",),
}


class SendPolicy(_Strict):
    """`definitions/send_policy.yaml`: consent regime, caps, quiet hours, prices, addresses."""

    consent_regime: Literal["opt_in", "opt_out"] = "opt_in"
    frequency_caps: tuple[FrequencyCap, ...] = DEFAULT_CAPS
    quiet_hours: QuietHours | None = Field(default_factory=QuietHours)
    costs: dict[Channel, Decimal] = Field(default_factory=lambda: {"sms": Decimal("0.045")})
    address_types: dict[Channel, tuple[str, ...]] = Field(default_factory=lambda: dict(DEFAULT_ADDRESS_TYPES))

    def cost_of(self, channel: str) -> Decimal:
        return self.costs.get(channel, Decimal(0))  # type: ignore[call-overload]

    def address_types_of(self, channel: str) -> tuple[str, ...]:
        return self.address_types.get(channel) or DEFAULT_ADDRESS_TYPES[channel]  # type: ignore[call-overload]


def load_send_policy(workspace: Workspace) -> SendPolicy:
    """The workspace's send policy; the defaults above when the file is absent."""
    path = workspace.definitions_dir / POLICY_FILE
    if not path.is_file():
        return SendPolicy()
    return parse_send_policy(read_yaml(path, ConfigError), path)


def parse_send_policy(data: object, location: Path | str = POLICY_FILE) -> SendPolicy:
    try:
        return SendPolicy.model_validate(data or {})
    except ValidationError as invalid:
        raise config_error(invalid.errors()[0], location, SendPolicy, POLICY_DOC) from None


# ---- quiet hours ------------------------------------------------------------------------------


def next_allowed(now: datetime, timezone: str, quiet: QuietHours | None) -> datetime | None:
    """None when `now` is outside quiet hours, else the first instant after them (UTC-aware).

    Example:
        >>> from datetime import UTC
        >>> next_allowed(datetime(2026, 5, 1, 14, 0, tzinfo=UTC), "Asia/Shanghai", QuietHours()).isoformat()
        '2026-05-02T01:00:00+00:00'
    """
    if quiet is None:
        return None
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    if not quiet.covers(local.time()):
        return None
    end = datetime.combine(local.date(), quiet.end, tzinfo=zone)
    if end <= local:
        end = datetime.combine(local.date() + timedelta(days=1), quiet.end, tzinfo=zone)
    return end.astimezone(now.tzinfo or ZoneInfo("UTC"))


def quiet_channels(now: datetime, timezone: str, policy: SendPolicy, purpose: str,
                   channels: tuple[str, ...]) -> tuple[tuple[str, ...], datetime | None]:
    """The campaign's channels that are quiet now for `purpose`, and when quiet hours end."""
    quiet = policy.quiet_hours
    until = next_allowed(now, timezone, quiet)
    if quiet is None or until is None or purpose not in quiet.purposes:
        return (), None
    silent = tuple(c for c in channels if c in quiet.channels)
    return silent, (until if silent else None)


# ---- the policy query ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SendRequest:
    """One planning of sends: who (audience SQL), what for, where, when, and what is left."""

    campaign_id: str
    run_id: str
    purpose: str
    channels: tuple[str, ...]
    audience: exp.Expression  # SELECT person_id …
    now: datetime
    step: str = "main"
    holdout: float = 0.0
    sensitive: bool = False  # the audience or content uses sensitive personal data
    max_messages: int | None = None  # remaining budget of the campaign
    max_cost: Decimal | None = None
    quiet: tuple[str, ...] = ()  # channels inside quiet hours now
    quiet_action: Literal["defer", "drop"] = "defer"
    defer_until: datetime | None = None
    exclude: exp.Expression | None = field(default=None)  # SELECT person_id of persons to leave out


POLICY_SQL = """
WITH audience AS (
  SELECT DISTINCT a.person_id FROM (SELECT 1 AS person_id) AS a
  JOIN persons AS p ON p.person_id = a.person_id AND p.status = 'active'
),
arms AS (
  SELECT person_id,
    CASE WHEN {holdout_draw} < :holdout THEN 'control' ELSE 'treatment' END AS arm,
    MD5(:campaign_id || ':' || :run_id || ':' || person_id || ':' || :step) AS delivery_id
  FROM audience
),
candidates AS (
  SELECT a.person_id, a.arm, a.delivery_id, c.channel, c.channel_rank, c.cost
  FROM arms AS a CROSS JOIN campaign_channels AS c
),
consent AS (
  SELECT person_id, channel, status FROM (
    SELECT x.person_id, c.channel, x.status, ROW_NUMBER() OVER (
      PARTITION BY x.person_id, c.channel
      ORDER BY x.recorded_at DESC, CASE WHEN x.status = 'granted' THEN 1 ELSE 0 END) AS latest
    FROM consents AS x JOIN campaign_channels AS c ON x.channel = c.channel OR x.channel IS NULL
    WHERE x.purpose = :purpose AND x.recorded_at <= :now
  ) AS ranked WHERE latest = 1
),
sensitive AS (
  SELECT person_id, status FROM (
    SELECT person_id, status, ROW_NUMBER() OVER (
      PARTITION BY person_id
      ORDER BY recorded_at DESC, CASE WHEN status = 'granted' THEN 1 ELSE 0 END) AS latest
    FROM consents WHERE purpose = 'sensitive' AND recorded_at <= :now
  ) AS ranked WHERE latest = 1
),
suppressed AS (
  SELECT DISTINCT i.person_id, c.channel FROM suppressions AS s
  JOIN identities AS i ON i.id_type = s.id_type AND i.id_value = s.id_value
  JOIN campaign_channels AS c ON s.channel = c.channel OR s.channel IS NULL
  WHERE s.created_at <= :now AND (s.expires_at IS NULL OR s.expires_at > :now)
  UNION
  SELECT s.id_value AS person_id, c.channel FROM suppressions AS s
  JOIN campaign_channels AS c ON s.channel = c.channel OR s.channel IS NULL
  WHERE s.id_type = 'person_id' AND s.created_at <= :now AND (s.expires_at IS NULL OR s.expires_at > :now)
),
reachable AS (
  SELECT DISTINCT i.person_id, t.channel FROM identities AS i
  JOIN channel_address_types AS t ON t.id_type = i.id_type
  WHERE {address_ok}
),
checked AS (
  SELECT c.*, CASE
      WHEN {consent_fails} THEN 'no_consent'
      WHEN sup.person_id IS NOT NULL THEN 'suppressed'
      WHEN r.person_id IS NULL THEN 'unreachable'
      WHEN {capped} THEN 'frequency_cap'
    END AS channel_reason
  FROM candidates AS c
  LEFT JOIN consent AS cs ON cs.person_id = c.person_id AND cs.channel = c.channel
  LEFT JOIN sensitive AS sen ON sen.person_id = c.person_id
  LEFT JOIN suppressed AS sup ON sup.person_id = c.person_id AND sup.channel = c.channel
  LEFT JOIN reachable AS r ON r.person_id = c.person_id AND r.channel = c.channel
  {usage_joins}
),
chosen AS (
  SELECT * FROM (
    SELECT checked.*, ROW_NUMBER() OVER (
      PARTITION BY person_id
      ORDER BY CASE WHEN channel_reason IS NULL THEN 0 ELSE 1 END, channel_rank) AS pick
    FROM checked
  ) AS picked WHERE pick = 1
),
budgeted AS (
  SELECT chosen.*,
    SUM(CASE WHEN arm = 'treatment' AND channel_reason IS NULL THEN 1 ELSE 0 END) OVER (
      ORDER BY delivery_id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS nth,
    SUM(CASE WHEN arm = 'treatment' AND channel_reason IS NULL THEN cost ELSE 0 END) OVER (
      ORDER BY delivery_id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS spent
  FROM chosen
),
decided AS (
  SELECT *, CASE
      WHEN channel_reason IS NOT NULL THEN channel_reason
      WHEN arm = 'control' THEN NULL
      WHEN nth > :max_messages OR spent > :max_cost THEN 'budget'
      WHEN {quiet_now} THEN 'quiet_hours'
    END AS reason
  FROM budgeted
)
SELECT delivery_id, CAST(:campaign_id AS VARCHAR) AS campaign_id, CAST(:run_id AS VARCHAR) AS run_id,
  CAST(:step AS VARCHAR) AS step, person_id, channel, arm AS variant, CAST(:purpose AS VARCHAR) AS purpose,
  CASE WHEN arm = 'control' THEN 'held_out'
       WHEN reason = 'quiet_hours' AND :defer THEN 'deferred'
       WHEN reason IS NOT NULL THEN 'suppressed'
       ELSE 'queued' END AS status,
  reason,
  CASE WHEN arm = 'treatment' AND reason = 'quiet_hours' AND :defer THEN :defer_until ELSE :now END
    AS scheduled_at,
  CAST(CASE WHEN arm = 'treatment' AND (reason IS NULL OR (reason = 'quiet_hours' AND :defer))
       THEN cost ELSE 0 END AS DECIMAL(18, 4)) AS cost
FROM decided
"""


@lru_cache(maxsize=256)
def _parsed(text: str) -> exp.Expression:
    return parse_sql(text)


def parsed_sql(text: str) -> exp.Expression:
    """`parse_sql`, parsed once per text (the send loop runs the same few statements per
    batch, and parsing cost more than running them); a fresh copy each call."""
    return _parsed(text).copy()


def literal(value: object) -> exp.Expression:
    """A value as a typed SQL literal (instants as UTC TIMESTAMPTZ)."""
    if isinstance(value, datetime):
        text = value.astimezone(ZoneInfo("UTC")).isoformat(sep=" ")
        return exp.cast(exp.Literal.string(text), exp.DataType.build("TIMESTAMPTZ"))
    if isinstance(value, Decimal):
        return exp.cast(exp.Literal.number(str(value)), exp.DataType.build("DECIMAL(18, 4)"))
    return exp.convert(value)


def hash_fraction_sql(text: str, digits: int = 6) -> str:
    """A number in [0, 1) from the first `digits` hex digits of MD5(text), in portable SQL
    (no hex-to-integer cast exists on both engines; INSTR over the hex alphabet does).

    Python computes the same number as `int(md5(text)[:digits], 16) / 16**digits`.
    """
    terms = [f"(INSTR('0123456789abcdef', SUBSTR(MD5({text}), {i + 1}, 1)) - 1) * {16 ** (digits - 1 - i)}"
             for i in range(digits)]
    return f"(({' + '.join(terms)}) / {float(16 ** digits)})"


def policy_sql(request: SendRequest, policy: SendPolicy) -> exp.Expression:
    """The delivery rows (one per audience member) the policy decides for `request`."""
    _check_request(request)
    caps = _caps_for(request, policy)
    text = POLICY_SQL.format(
        holdout_draw=hash_fraction_sql(":campaign_id || ':' || person_id"),
        address_ok=usable_address_sql(),
        consent_fails=_consent_fails_sql(request, policy),
        capped=" OR ".join(f"COALESCE(u{i}.used, 0) >= {cap.max_messages}" for i, cap in enumerate(caps)) or "FALSE",
        usage_joins="\n  ".join(_usage_join(i, cap, request) for i, cap in enumerate(caps)),
        quiet_now=(f"channel IN ({', '.join(repr(c) for c in request.quiet)})" if request.quiet else "FALSE"),
    )
    query = _bind_tables(parsed_sql(text), request, policy)
    values = {
        "campaign_id": request.campaign_id, "run_id": request.run_id, "step": request.step,
        "purpose": request.purpose, "holdout": float(request.holdout), "now": request.now,
        "defer": request.quiet_action == "defer", "defer_until": request.defer_until or request.now,
        "max_messages": request.max_messages if request.max_messages is not None else 2**62,
        "max_cost": request.max_cost if request.max_cost is not None else Decimal("1e12"),
    }
    return exp.replace_placeholders(query, **{key: literal(value) for key, value in values.items()})


def _check_request(request: SendRequest) -> None:
    unknown = [c for c in (*request.channels, *request.quiet) if c not in CHANNELS]
    if unknown or not request.channels:
        raise PolicyError(f"unknown or missing channels {unknown or '[]'}.", field="channels",
                          fix=f"use one or more of {', '.join(CHANNELS)}",
                          message_zh=f"渠道无效或缺失：{unknown or '[]'}。", fix_zh=f"请使用 {'、'.join(CHANNELS)}")
    if not 0 <= request.holdout < 1:
        raise PolicyError(f"holdout {request.holdout} is outside [0, 1).", field="holdout",
                          fix="give the held-out share as a fraction, e.g. 0.1",
                          message_zh=f"对照组比例 {request.holdout} 不在 [0, 1) 内。", fix_zh="请填写比例，例如 0.1")


def _consent_fails_sql(request: SendRequest, policy: SendPolicy) -> str:
    """Marketing: a grant is needed (opt-in) or a withdrawal forbids (opt-out); transactional:
    only an explicit withdrawal forbids. Sensitive data needs its own grant, always."""
    if request.purpose == "marketing" and policy.consent_regime == "opt_in":
        fails = "COALESCE(cs.status, 'none') <> 'granted'"
    else:
        fails = "COALESCE(cs.status, 'none') = 'withdrawn'"
    if request.sensitive:
        fails += " OR COALESCE(sen.status, 'none') <> 'granted'"
    return f"({fails})"


def usable_address_sql() -> str:
    """SQL over identities `i`: an identifier that can carry a message: a mainland mobile for SMS and ad audiences (a
    salted hash cannot be texted), an e-mail with @ and a dot, any non-empty id otherwise."""
    return ("(CASE WHEN i.id_type = 'phone' THEN REGEXP_MATCHES(i.id_value, '^[+]861[3-9][0-9]{9}$') "
            "WHEN i.id_type = 'email' THEN REGEXP_MATCHES(i.id_value, '^[^@ ]+@[^@ ]+[.][^@ ]+$') "
            "ELSE LENGTH(TRIM(i.id_value)) > 0 END) AND i.person_id IS NOT NULL")


def _caps_for(request: SendRequest, policy: SendPolicy) -> list[FrequencyCap]:
    """Caps limit marketing only; transactional messages are kept apart."""
    if request.purpose != "marketing":
        return []
    return [cap for cap in policy.frequency_caps if cap.channel == "all" or cap.channel in request.channels]


def _usage_join(index: int, cap: FrequencyCap, request: SendRequest) -> str:
    """Marketing deliveries of every campaign within the cap's window, per person (and channel)."""
    since = literal(request.now - timedelta(days=cap.days)).sql("duckdb")
    counted = ", ".join(f"'{status}'" for status in COUNTED_STATUSES)
    scope = "" if cap.channel == "all" else f" AND channel = '{cap.channel}'"
    usage = (f"SELECT person_id, COUNT(*) AS used FROM deliveries WHERE purpose = 'marketing' "
             f"AND status IN ({counted}){scope} AND COALESCE(sent_at, scheduled_at) > {since} "
             f"GROUP BY person_id")
    on = f"u{index}.person_id = c.person_id" + ("" if cap.channel == "all" else f" AND c.channel = '{cap.channel}'")
    return f"LEFT JOIN ({usage}) AS u{index} ON {on}"


def _values(alias: str, columns: list[str], rows: list[tuple]) -> exp.Expression:
    """A small inline table; an empty one is a SELECT that returns no rows."""
    if not rows:
        nulls = [exp.cast(exp.null(), exp.DataType.build("VARCHAR")).as_(name) for name in columns]
        return exp.select(*nulls).where(exp.false()).subquery(alias)
    return exp.values([tuple(literal(v) for v in row) for row in rows], alias=alias, columns=columns)


def _bind_tables(query: exp.Expression, request: SendRequest, policy: SendPolicy) -> exp.Expression:
    """Put the audience and the small inline tables (channels, address types) in."""
    channels = [(c, rank, policy.cost_of(c)) for rank, c in enumerate(request.channels, start=1)]
    addresses = [(c, kind) for c in request.channels for kind in policy.address_types_of(c)]
    inline = {
        "campaign_channels": _values("campaign_channels", ["channel", "channel_rank", "cost"], channels),
        "channel_address_types": _values("channel_address_types", ["channel", "id_type"], addresses),
    }
    audience = request.audience.copy()
    if request.exclude is not None:
        audience = (exp.select("m.person_id").from_(audience.subquery("m"))
                    .where(exp.not_(exp.column("person_id", "m").isin(query=request.exclude.copy()))))

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table) and not node.args.get("db") and node.name in inline:
            alias = node.alias or node.name
            replacement = inline[node.name].copy()
            replacement.set("alias", exp.TableAlias(this=exp.to_identifier(alias),
                                                    columns=replacement.args["alias"].args.get("columns")))
            return replacement
        if isinstance(node, exp.Subquery) and node.alias == "a" and _is_placeholder_audience(node):
            return audience.subquery("a")
        return node

    return query.transform(swap)


def _is_placeholder_audience(node: exp.Subquery) -> bool:
    inner = node.this
    return isinstance(inner, exp.Select) and inner.sql() == "SELECT 1 AS person_id"
