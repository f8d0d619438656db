"""Campaign definitions: audience × template × channels × schedule, with holdout, budget and purpose.

A campaign is written in YAML or JSON (docs/campaigns.md) and validated here; every
changed definition becomes a new version in `campaigns`, with an `audit_log` row, as do
pauses and resumes. The schedule says when a run is due: `once` at an instant, or
`recurring` daily or on weekdays at a local time. Each due occurrence is one run, named
by `run_id` (`once`, or the occurrence's local date), and a run is planned only once,
so running a campaign again the same day sends nothing twice. A `triggered` schedule
has no occurrences: the collector's after-load hook plans a message for each person whose
event (or entry into a real-time audience) arrives (activation.triggers).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlglot import exp

from jingzhun.activation.policy import Channel, PolicyError, Purpose, literal
from jingzhun.core.config_errors import ConfigFile, config_error
from jingzhun.core.errors import ConfigError
from jingzhun.engine import Engine
from jingzhun.profiles.tags import read_yaml
from jingzhun.schema.tables import AUDIT_LOG, CAMPAIGNS

CAMPAIGN_DOC = ConfigFile(" in the campaign definition", "活动定义中", "docs/campaigns.md")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
STATUSES = ("active", "paused")


class CampaignError(PolicyError):
    """A campaign definition, or a request about a campaign, is invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AudienceSpec(_Strict):
    """Who: an audience, from its latest snapshot or evaluated live at run time."""

    segment_id: str = Field(pattern=r"^[a-z][a-z0-9_]{1,62}$")
    members: Literal["snapshot", "live"] = "snapshot"


class OnceSchedule(_Strict):
    """One run at `at` (an ISO time; without an offset it is the workspace's local time)."""

    kind: Literal["once"]
    at: datetime


class RecurringSchedule(_Strict):
    """A run every day (`every: daily`) or on `on` weekdays (`every: weekly`) at local time `at`."""

    kind: Literal["recurring"]
    every: Literal["daily", "weekly"]
    at: time
    on: tuple[Weekday, ...] = ()
    start: date | None = None
    end: date | None = None

    @model_validator(mode="after")
    def _weekdays(self) -> RecurringSchedule:
        if self.every == "weekly" and not self.on:
            raise ValueError("on: a weekly schedule needs its weekdays, e.g. on: [mon, thu]")
        if self.start and self.end and self.end < self.start:
            raise ValueError("end: the schedule ends before it starts")
        return self


_SPAN = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_SPAN_UNITS = (timedelta(weeks=1), timedelta(days=1), timedelta(hours=1), timedelta(minutes=1), timedelta(seconds=1))


def parse_span(value: object) -> timedelta:
    """'30m' → 30 minutes; units w, d, h, m, s, combinable ('1h30m'); 0 is no time at all.

    Example:
        >>> parse_span("1h30m")
        datetime.timedelta(seconds=5400)
    """
    if isinstance(value, timedelta):
        return value
    text = str(value).strip().replace(" ", "")
    if text == "0":
        return timedelta(0)
    matched = _SPAN.match(text)
    if matched is None or not any(matched.groups()):
        raise ValueError(f"{value!r} is not a duration; write e.g. 30m, 2h, 1d or 1h30m")
    return sum((int(n) * unit for n, unit in zip(matched.groups(), _SPAN_UNITS, strict=True) if n), timedelta(0))


Span = Annotated[timedelta, BeforeValidator(parse_span), PlainSerializer(
    lambda span: f"{int(span.total_seconds())}s", return_type=str)]


class TriggerSpec(_Strict):
    """What fires a triggered campaign: an event of the person, or their entry into a
    real-time audience; `delay` after it; events older than `within` when they reach the
    collector's hook fire nothing (an SDK's offline backlog, a replay after an outage)."""

    event: str | None = Field(None, min_length=1)
    segment_entered: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]{1,62}$")
    delay: Span = timedelta(0)
    within: Span = timedelta(hours=1)
    once_per: Literal["day", "campaign"] = "day"

    @model_validator(mode="after")
    def _one_source(self) -> TriggerSpec:
        if (self.event is None) == (self.segment_entered is None):
            raise ValueError("trigger: give exactly one of event: NAME or segment_entered: AUDIENCE_ID")
        if self.delay < timedelta(0) or self.within <= timedelta(0):
            raise ValueError("trigger: delay may not be negative and within must be positive")
        return self


class TriggerSchedule(_Strict):
    """Sent to each person seconds after their trigger reaches the collector (or `delay` later)."""

    kind: Literal["triggered"] = "triggered"
    trigger: TriggerSpec


def _schedule_kind(value: object) -> str | None:
    if isinstance(value, dict):
        return value.get("kind") or ("triggered" if "trigger" in value else None)
    return getattr(value, "kind", None)


Schedule = Annotated[
    Annotated[OnceSchedule, Tag("once")] | Annotated[RecurringSchedule, Tag("recurring")]
    | Annotated[TriggerSchedule, Tag("triggered")],
    Discriminator(_schedule_kind, custom_error_type="schedule_kind",
                  custom_error_message="a schedule needs kind: once | recurring, or trigger: {event: …}"),
]


class Budget(_Strict):
    """The most the campaign may send over all its runs: messages and/or cost."""

    max_messages: int | None = Field(None, ge=1)
    max_cost: Decimal | None = Field(None, gt=0)


class CampaignDefinition(_Strict):
    """One campaign as written in YAML/JSON."""

    campaign_id: str = Field(pattern=r"^[a-z][a-z0-9_]{1,62}$")
    name_zh: str = Field(min_length=1)
    name_en: str = Field(min_length=1)
    purpose: Purpose = "marketing"
    audience: AudienceSpec | None = None  # required unless triggered (then it narrows who may trigger)
    template_id: str = Field(min_length=1)
    channels: tuple[Channel, ...] = Field(min_length=1)
    language: Literal["zh", "en"] | None = None
    schedule: Schedule
    holdout: float = Field(0.0, ge=0.0, le=0.9)
    budget: Budget | None = None
    quiet_hours: Literal["defer", "drop"] = "defer"
    coupon: dict[str, Any] | None = None
    sensitive_data: bool = False
    track_links: bool = True
    send_time: Literal["now", "optimal"] = "now"  # optimal: each person's most responsive hour (send_time.py)

    @model_validator(mode="after")
    def _audience_given(self) -> CampaignDefinition:
        if self.audience is None and not isinstance(self.schedule, TriggerSchedule):
            raise ValueError("audience: a scheduled campaign needs an audience, e.g. audience: {segment_id: vip}")
        return self

    @field_validator("channels")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("a channel is listed twice; list each channel once, in order of preference")
        return value

    def canonical_json(self) -> str:
        """The definition as stored; any change makes a new version."""
        data = self.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
        return json.dumps(data, sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True)
class StoredCampaign:
    """A campaign's latest version and status."""

    definition: CampaignDefinition
    version: int
    status: str


def parse_campaign(data: object, location: Path | str = "campaign") -> CampaignDefinition:
    """A campaign from YAML/JSON data; the first problem is raised naming its key and the fix."""
    try:
        return CampaignDefinition.model_validate(data)
    except ValidationError as invalid:
        raise config_error(invalid.errors()[0], location, CampaignDefinition, CAMPAIGN_DOC) from None


def read_campaign_file(path: Path) -> CampaignDefinition:
    """A campaign definition file (YAML or JSON)."""
    return parse_campaign(read_yaml(path, ConfigError), path)


# ---- storage --------------------------------------------------------------------------------


def save_campaign(engine: Engine, definition: CampaignDefinition, actor: str = "cli",
                  now: datetime | None = None) -> int:
    """Record `definition` as a new version if it changed (active unless the campaign is
    paused); returns the current version."""
    stored = find_campaign(engine, definition.campaign_id)
    if stored is not None and stored.definition.canonical_json() == definition.canonical_json():
        return stored.version
    version = stored.version + 1 if stored else 1
    moment = now or datetime.now(UTC)
    row = {"campaign_id": definition.campaign_id, "name": definition.name_zh, "kind": definition.schedule.kind,
           "segment_id": definition.audience.segment_id if definition.audience else None, "channel": ",".join(definition.channels),
           "definition": definition.canonical_json(), "holdout_ratio": definition.holdout,
           "status": stored.status if stored else "active", "created_at": moment, "created_by": actor,
           "version": version, "purpose": definition.purpose, "updated_at": moment}
    engine.write_table(CAMPAIGNS.name, pa.Table.from_pylist([row]))
    _audit(engine, definition.campaign_id, "campaign.version", actor, moment,
           {"version": version, "name_en": definition.name_en})
    return version


def find_campaign(engine: Engine, campaign_id: str) -> StoredCampaign | None:
    """The latest version of a campaign, or None."""
    query = (exp.select("definition", "version", "status").from_(CAMPAIGNS.name)
             .where(exp.column("campaign_id").eq(literal(campaign_id)))
             .order_by(exp.Ordered(this=exp.column("version"), desc=True)).limit(1))
    rows = engine.query(query).to_pylist()
    if not rows:
        return None
    definition = parse_campaign(json.loads(rows[0]["definition"]), f"campaigns[{campaign_id}]")
    return StoredCampaign(definition, int(rows[0]["version"]), rows[0]["status"] or "active")


def load_campaign(engine: Engine, campaign_id: str) -> StoredCampaign:
    """The latest version of a campaign, or an error naming the known campaigns."""
    stored = find_campaign(engine, campaign_id)
    if stored is None:
        known = ", ".join(list_campaigns(engine)["campaign_id"]) or "—"
        raise CampaignError(f"unknown campaign {campaign_id!r} (known: {known}).", field="campaign_id",
                            fix="run `jingzhun campaign list`, or create it with `jingzhun campaign create FILE`",
                            message_zh=f"未知活动 {campaign_id!r}（已有：{known}）。",
                            fix_zh="运行 `jingzhun campaign list` 查看，或用 `jingzhun campaign create FILE` 创建")
    return stored


def set_campaign_status(engine: Engine, campaign_id: str, status: str, actor: str = "cli") -> None:
    """Pause or resume a campaign: a paused campaign plans nothing and stops sending between batches."""
    if status not in STATUSES:
        raise CampaignError(f"unknown status {status!r}.", field="status", fix=f"use {' or '.join(STATUSES)}",
                            message_zh=f"未知状态 {status!r}。", fix_zh=f"请使用 {' 或 '.join(STATUSES)}")
    stored = load_campaign(engine, campaign_id)
    moment = datetime.now(UTC)
    engine.execute(exp.update(CAMPAIGNS.name, {"status": literal(status), "updated_at": literal(moment)},
                              where=exp.and_(exp.column("campaign_id").eq(literal(campaign_id)),
                                             exp.column("version").eq(literal(stored.version)))))
    _audit(engine, campaign_id, f"campaign.{'pause' if status == 'paused' else 'resume'}", actor, moment,
           {"version": stored.version, "status": status})


def list_campaigns(engine: Engine) -> pd.DataFrame:
    """Each campaign's latest version: id, name, purpose, schedule kind, audience, channels, status."""
    query = exp.select("campaign_id", "version", "name", "purpose", "kind", "segment_id", "channel",
                       "holdout_ratio", "status", "created_at").from_(CAMPAIGNS.name)
    frame = engine.query(query).to_pandas()
    if frame.empty:
        return frame
    latest = frame.sort_values("version").groupby("campaign_id", as_index=False).tail(1)
    return latest.sort_values("campaign_id", ignore_index=True)


def _audit(engine: Engine, campaign_id: str, action: str, actor: str, moment: datetime,
           details: dict[str, Any], object_type: str = "campaign") -> None:
    row = {"audit_id": f"{action}:{campaign_id}:{moment.isoformat()}:{details.get('version')}",
           "occurred_at": moment, "actor": actor, "action": action, "object_type": object_type,
           "object_id": campaign_id, "details": json.dumps(details, ensure_ascii=False)}
    schema = pa.schema([(c.name, pa.timestamp("us", tz="UTC") if c.type == "TIMESTAMPTZ" else pa.string())
                        for c in AUDIT_LOG.columns])
    engine.write_table(AUDIT_LOG.name, pa.Table.from_pylist([row], schema=schema))


# ---- schedule ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Occurrence:
    """A due run: its id and the instant it was scheduled for."""

    run_id: str
    scheduled_for: datetime


def due_occurrence(schedule: OnceSchedule | RecurringSchedule | TriggerSchedule, now: datetime,
                   timezone: str) -> Occurrence | None:
    """The latest occurrence at or before `now`, or None if none is due yet (a triggered
    schedule has none: its runs are planned by the collector's hook).

    Missed occurrences of a recurring schedule are not caught up: after a pause of three
    days only the latest one runs (a marketing message three days late is no message).

    Example:
        >>> s = RecurringSchedule(kind="recurring", every="daily", at=time(10, 0))
        >>> due_occurrence(s, datetime(2026, 5, 1, 1, 30, tzinfo=UTC), "Asia/Shanghai")
        Occurrence(run_id='2026-04-30', scheduled_for=datetime.datetime(2026, 4, 30, 2, 0, tzinfo=datetime.timezone.utc))
    """
    zone = ZoneInfo(timezone)
    if isinstance(schedule, TriggerSchedule):
        return None
    if isinstance(schedule, OnceSchedule):
        at = schedule.at if schedule.at.tzinfo else schedule.at.replace(tzinfo=zone)
        return Occurrence("once", at.astimezone(UTC)) if at <= now else None
    local = now.astimezone(zone)
    for back in range(8):
        day = local.date() - timedelta(days=back)
        at = datetime.combine(day, schedule.at, tzinfo=zone)
        if at > local or not _runs_on(schedule, day):
            continue
        return Occurrence(day.isoformat(), at.astimezone(UTC))
    return None


def _runs_on(schedule: RecurringSchedule, day: date) -> bool:
    if (schedule.start and day < schedule.start) or (schedule.end and day > schedule.end):
        return False
    return schedule.every == "daily" or WEEKDAYS[day.weekday()] in schedule.on
