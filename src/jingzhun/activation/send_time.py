"""Send-time optimization: each person's most responsive local hour, from their own history.

A message sent when its reader is usually on their phone is read; one sent at their
busiest hour of work is buried. The evidence per person and local hour (workspace time
zone) over the last `LOOKBACK`:

- **visits**: each local day-hour in which the person did anything on the web, app or
  mini-program (one unit per day-hour, however many events);
- **online orders**: each order placed (2 units);
- **responses**: each message they clicked on a channel, at the send hour the measure stage
  found best for them (`send_time_preferences`, rebuilt by each pipeline run: imported
  message history and jingzhun's own sends; 3 units per click, counted for that channel
  only), and each message opened (2) or clicked (3) since that run (`message_events`).

Each unit is spread ½ on its hour and ¼ on each neighbour (habits are about an hour wide),
then shrunk toward a prior with `PRIOR_WEIGHT` pseudo-units:
`score(h) = own(h) + PRIOR_WEIGHT × prior(h)`. The prior is the **channel's** best hour as
the measure stage measured it (click rate by send hour over everyone; half the prior, spread
over it and its neighbours, the segment's hours the other half), else the channel's
responses by hour in `message_events` when there are at least `MIN_CHANNEL_RESPONSES`,
else the pooled history of the persons being planned (the **segment's** hour). So a person
with one visit at 02:00 gets the channel's noon, and one with a dozen evening sessions
gets their evening.

The best hour is the highest score among the **allowed** hours of the channel: hours that
lie wholly outside the policy's quiet hours for the message's purpose. `defer_to_best_hours`
moves a plan's messages to each person's next best hour (status `deferred`, reason
`send_time`); when that hour comes the send policy decides them again (activation.sending).
All of it is one engine query over the persons of the plan; the SQL is returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
from sqlglot import exp

from jingzhun.activation.policy import CHANNELS, SendPolicy, literal, parsed_sql
from jingzhun.collect.collector.tracking import TRACKING_SOURCE_ID
from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine, MaterializeHints, json_text, to_local_time

LOOKBACK = timedelta(days=365)
PRIOR_WEIGHT = 4.0  # pseudo-units of the prior: a person needs a few units at one hour to outvote it
MIN_CHANNEL_RESPONSES = 100  # responses on a channel (everyone's) before its hours are the prior
KERNEL = ((-1, 0.25), (0, 0.5), (1, 0.25))  # (hour offset, share) each unit is spread over
WEIGHTS = {"visit": 1.0, "order": 2.0, "opened": 2.0, "clicked": 3.0}
SEND_TIMES = "activation_send_times"  # scratch: best hours of a plan's persons
# What send_time_preferences' evidence JSON (written by the measure stage) is read for.
MEASURED_EVIDENCE = {"hour_clicks": "$.hour_clicks", "source": "$.source", "channel_hour": "$.channel_best_hour"}

BEST_HOURS_SQL = """
WITH persons_in AS (SELECT DISTINCT person_id FROM (SELECT 1 AS person_id) AS a),
measured AS (
  SELECT person_id, channel, best_hour_local AS hour, computed_at,
    CAST({hour_clicks} AS DOUBLE) AS clicks, {source} AS source, CAST({channel_hour} AS INTEGER) AS channel_hour
  FROM send_time_preferences
),
measured_until AS (SELECT MAX(computed_at) AS at FROM measured),
units AS (
  SELECT person_id, CAST(NULL AS VARCHAR) AS channel, hour, CAST(:w_visit AS DOUBLE) AS weight FROM (
    SELECT DISTINCT rp.person_id, CAST({event_local} AS DATE) AS day, HOUR({event_local}) AS hour
    FROM events AS e
    JOIN record_persons AS rp ON rp.record_kind = 'event' AND rp.record_id = e.message_id
    JOIN persons_in AS pi ON pi.person_id = rp.person_id
    WHERE e.timestamp > :since AND e.timestamp <= :now AND COALESCE(e.source_id, '') <> :tracking
  ) AS visits
  UNION ALL
  SELECT rp.person_id, CAST(NULL AS VARCHAR) AS channel, HOUR({order_local}) AS hour,
    CAST(:w_order AS DOUBLE) AS weight
  FROM orders AS o
  JOIN record_persons AS rp ON rp.record_kind = 'order' AND rp.record_id = o.order_id
  JOIN persons_in AS pi ON pi.person_id = rp.person_id
  WHERE o.channel = 'online' AND o.placed_at > :since AND o.placed_at <= :now
  UNION ALL
  SELECT m.person_id, CAST(NULL AS VARCHAR) AS channel, HOUR({response_local}) AS hour,
    CASE WHEN m.event_type = 'clicked' THEN :w_clicked ELSE :w_opened END AS weight
  FROM message_events AS m JOIN persons_in AS pi ON pi.person_id = m.person_id
  CROSS JOIN measured_until AS mu
  WHERE m.event_type IN ('opened', 'clicked') AND m.occurred_at > :since AND m.occurred_at <= :now
    AND (mu.at IS NULL OR m.occurred_at > mu.at)
  UNION ALL
  SELECT ms.person_id, ms.channel, ms.hour, :w_clicked * ms.clicks AS weight
  FROM measured AS ms JOIN persons_in AS pi ON pi.person_id = ms.person_id
  WHERE ms.source = 'person' AND ms.clicks > 0
),
observed AS (SELECT person_id, channel, hour, SUM(weight) AS weight FROM units GROUP BY person_id, channel, hour),
smoothed AS (
  SELECT o.person_id, o.channel, (o.hour + k.shift + 24) % 24 AS hour, SUM(o.weight * k.share) AS score
  FROM observed AS o CROSS JOIN kernel AS k GROUP BY o.person_id, o.channel, (o.hour + k.shift + 24) % 24
),
totals AS (
  SELECT person_id, SUM(weight) AS observations,
    SUM(CASE WHEN channel IS NULL THEN weight ELSE 0 END) AS habits FROM observed GROUP BY person_id
),
pooled AS (
  SELECT h.hour, COALESCE(SUM(s.score), 0) + 0.01 AS score FROM hours AS h
  LEFT JOIN smoothed AS s ON s.hour = h.hour AND s.channel IS NULL GROUP BY h.hour
),
responses AS (
  SELECT d.channel, HOUR({response_local}) AS hour, COUNT(*) AS n
  FROM message_events AS m JOIN deliveries AS d ON d.delivery_id = m.delivery_id
  WHERE m.event_type IN ('opened', 'clicked') AND m.occurred_at > :since AND m.occurred_at <= :now
  GROUP BY d.channel, HOUR({response_local})
),
channel_smoothed AS (
  SELECT r.channel, (r.hour + k.shift + 24) % 24 AS hour, SUM(r.n * k.share) AS score
  FROM responses AS r CROSS JOIN kernel AS k GROUP BY r.channel, (r.hour + k.shift + 24) % 24
),
channel_totals AS (SELECT channel, SUM(n) AS n FROM responses GROUP BY channel),
channel_measured AS (
  SELECT channel, hour FROM (
    SELECT channel, channel_hour AS hour,
      ROW_NUMBER() OVER (PARTITION BY channel ORDER BY COUNT(*) DESC, channel_hour) AS pick
    FROM measured WHERE channel_hour IS NOT NULL GROUP BY channel, channel_hour
  ) AS ranked WHERE pick = 1
),
prior AS (
  SELECT c.channel, h.hour,
    CASE WHEN cm.channel IS NOT NULL
         THEN (COALESCE(k.share, 0) + p.score / (SELECT SUM(score) FROM pooled)) / 2
         WHEN COALESCE(ct.n, 0) >= :min_responses THEN COALESCE(cs.score, 0) / ct.n
         ELSE p.score / (SELECT SUM(score) FROM pooled) END AS share,
    CASE WHEN cm.channel IS NOT NULL OR COALESCE(ct.n, 0) >= :min_responses THEN 'channel' ELSE 'segment' END
      AS basis
  FROM channels AS c CROSS JOIN hours AS h
  JOIN pooled AS p ON p.hour = h.hour
  LEFT JOIN channel_measured AS cm ON cm.channel = c.channel
  LEFT JOIN kernel AS k ON (cm.hour + k.shift + 24) % 24 = h.hour
  LEFT JOIN channel_totals AS ct ON ct.channel = c.channel
  LEFT JOIN channel_smoothed AS cs ON cs.channel = c.channel AND cs.hour = h.hour
),
prior_best AS (
  SELECT channel, hour FROM (
    SELECT p.channel, p.hour, ROW_NUMBER() OVER (PARTITION BY p.channel ORDER BY p.share DESC, p.hour) AS pick
    FROM prior AS p JOIN allowed AS a ON a.channel = p.channel AND a.hour = p.hour
  ) AS ranked WHERE pick = 1
),
own AS (
  SELECT s.person_id, a.channel, s.hour, SUM(s.score) AS score
  FROM smoothed AS s JOIN allowed AS a ON a.hour = s.hour AND (s.channel IS NULL OR s.channel = a.channel)
  GROUP BY s.person_id, a.channel, s.hour
),
candidates AS (
  SELECT person_id, channel, hour FROM own
  UNION
  SELECT pi.person_id, pb.channel, pb.hour FROM persons_in AS pi CROSS JOIN prior_best AS pb
),
scored AS (
  SELECT c.person_id, c.channel, c.hour, COALESCE(o.score, 0) AS own, p.share, p.basis,
    ROW_NUMBER() OVER (PARTITION BY c.person_id, c.channel
                       ORDER BY COALESCE(o.score, 0) + :prior_weight * p.share DESC, c.hour) AS pick
  FROM candidates AS c
  JOIN prior AS p ON p.channel = c.channel AND p.hour = c.hour
  LEFT JOIN own AS o ON o.person_id = c.person_id AND o.channel = c.channel AND o.hour = c.hour
),
own_best AS (
  SELECT person_id, hour FROM (
    SELECT person_id, hour, ROW_NUMBER() OVER (PARTITION BY person_id ORDER BY SUM(score) DESC, hour) AS pick
    FROM smoothed GROUP BY person_id, hour
  ) AS ranked WHERE pick = 1
)
SELECT s.person_id, s.channel, CAST(s.hour AS INTEGER) AS best_hour_local, CAST(ob.hour AS INTEGER) AS own_hour,
  COALESCE(t.observations, 0) AS observations, COALESCE(t.habits, 0) AS habits,
  CASE WHEN s.own >= :prior_weight * s.share AND s.own > 0 THEN 'person' ELSE s.basis END AS basis,
  s.own / (s.own + :prior_weight * s.share) AS own_share
FROM scored AS s
LEFT JOIN totals AS t ON t.person_id = s.person_id
LEFT JOIN own_best AS ob ON ob.person_id = s.person_id
WHERE s.pick = 1
"""


@dataclass(frozen=True)
class SendTimes:
    """Each person's best local hour per channel, with the evidence, and the SQL."""

    # person_id, channel, best_hour_local, own_hour (their habits' hour, any channel), observations (units of
    # evidence), habits (units from visits, orders and recent responses), basis (person | channel | segment),
    # own_share (the person's part of the best hour's score)
    hours: pd.DataFrame
    sql: str


def allowed_hours(policy: SendPolicy, purpose: str, channel: str) -> list[int]:
    """Local hours (0-23) that lie wholly outside quiet hours for this purpose and channel.

    Example:
        >>> allowed_hours(SendPolicy(), "marketing", "sms")[:2], allowed_hours(SendPolicy(), "marketing", "sms")[-1]
        ([9, 10], 20)
    """
    quiet = policy.quiet_hours
    if quiet is None or purpose not in quiet.purposes or channel not in quiet.channels:
        return list(range(24))
    return [h for h in range(24) if not quiet.covers(time(h, 0)) and not quiet.covers(time(h, 59, 59))]


def best_hours_sql(persons: exp.Expression, channels: tuple[str, ...], policy: SendPolicy, purpose: str,
                   now: datetime, timezone: str) -> exp.Expression:
    """SELECT person_id, channel, best_hour_local, own_hour, observations, habits, basis,
    own_share for the persons of `persons` (a SELECT person_id) on each of `channels`."""
    evidence = exp.column("evidence")
    text = BEST_HOURS_SQL.format(
        event_local=to_local_time(exp.column("timestamp", "e"), timezone).sql("duckdb"),
        order_local=to_local_time(exp.column("placed_at", "o"), timezone).sql("duckdb"),
        response_local=to_local_time(exp.column("occurred_at", "m"), timezone).sql("duckdb"),
        **{name: json_text(evidence, path).sql("duckdb") for name, path in MEASURED_EVIDENCE.items()})
    values = {"since": now - LOOKBACK, "now": now, "tracking": TRACKING_SOURCE_ID,
              "min_responses": MIN_CHANNEL_RESPONSES, "prior_weight": PRIOR_WEIGHT,
              **{f"w_{kind}": weight for kind, weight in WEIGHTS.items()}}
    query = exp.replace_placeholders(parsed_sql(text), **{k: literal(v) for k, v in values.items()})
    allowed = [(c, h) for c in channels for h in allowed_hours(policy, purpose, c)]
    inline = {"kernel": _values(["shift", "share"], list(KERNEL)),
              "hours": _values(["hour"], [(h,) for h in range(24)]),
              "channels": _values(["channel"], [(c,) for c in channels]),
              "allowed": _values(["channel", "hour"], allowed or [("-", -1)])}
    return _bind(query, inline, persons)


def best_send_hours(workspace: Workspace, engine: Engine, persons: exp.Expression | None = None,
                    channels: tuple[str, ...] = ("sms",), *, purpose: str = "marketing",
                    policy: SendPolicy | None = None, now: datetime | None = None) -> SendTimes:
    """Each person's best local hour on each channel (default: every active person).

    Example (a workspace's gold members on SMS)::

        best_send_hours(ws, engine, parse_sql("SELECT person_id FROM segment_members WHERE segment_id = 'vip'"))
    """
    from jingzhun.activation.policy import load_send_policy

    unknown = [c for c in channels if c not in CHANNELS]
    if unknown or not channels:
        from jingzhun.activation.policy import PolicyError

        raise PolicyError(f"unknown or missing channels {unknown or '[]'}.", field="channels",
                          fix=f"use one or more of {', '.join(CHANNELS)}",
                          message_zh=f"渠道无效或缺失：{unknown or '[]'}。", fix_zh=f"请使用 {'、'.join(CHANNELS)}")
    everyone = parsed_sql("SELECT person_id FROM persons WHERE status = 'active'")
    query = best_hours_sql(persons if persons is not None else everyone, channels,
                           policy or load_send_policy(workspace), purpose, now or datetime.now(UTC),
                           workspace.config.timezone)
    return SendTimes(engine.query(query).to_pandas(), engine.render(query))


DEFER_SQL = """
UPDATE {plan} SET status = 'deferred', reason = 'send_time', scheduled_at = t.send_at
FROM (
  SELECT b.person_id, b.channel, s.send_at FROM activation_send_times AS b JOIN send_at AS s ON s.hour = b.best_hour_local
) AS t
WHERE {plan}.person_id = t.person_id AND {plan}.channel = t.channel AND {plan}.variant = 'treatment'
  AND {plan}.status IN ('queued', 'deferred') AND t.send_at > :now"""


def defer_to_best_hours(workspace: Workspace, engine: Engine, plan: str, policy: SendPolicy, purpose: str,
                        now: datetime, after: datetime | None = None) -> str:
    """Move the messages of a materialized plan (policy rows) to each person's next best hour
    at or after `after` (default `now`); those whose best hour is this one stay queued.
    Returns the SQL that chose the hours."""
    deferrable = f"SELECT DISTINCT person_id, channel FROM {plan} WHERE variant = 'treatment' " \
                 "AND status IN ('queued', 'deferred')"
    channels = tuple(sorted(set(engine.query(f"SELECT DISTINCT channel FROM ({deferrable}) AS d")
                                .column("channel").to_pylist())))
    if not channels:
        return ""
    query = best_hours_sql(parsed_sql(f"SELECT person_id FROM ({deferrable}) AS d"), channels, policy, purpose,
                           now, workspace.config.timezone)
    engine.materialize(SEND_TIMES, query, MaterializeHints(scratch=True))
    try:
        times = [(h, at) for h, at in send_instants(after or now, workspace.config.timezone).items()]
        update = exp.replace_placeholders(parsed_sql(DEFER_SQL.format(plan=plan)), now=literal(now))
        engine.execute(_bind(update, {"send_at": _values(["hour", "send_at"], times)}, None))
    finally:
        engine.drop_table(SEND_TIMES)
    return engine.render(query)


def send_instants(after: datetime, timezone: str) -> dict[int, datetime]:
    """For each local hour, the first instant at or after `after` inside that hour: `after`
    itself for its own hour, the top of the hour for the others (UTC).

    Example:
        >>> at = send_instants(datetime(2026, 5, 1, 2, 30, tzinfo=UTC), "Asia/Shanghai")  # 10:30 local
        >>> at[10].isoformat(), at[9].isoformat(), at[11].isoformat()
        ('2026-05-01T02:30:00+00:00', '2026-05-02T01:00:00+00:00', '2026-05-01T03:00:00+00:00')
    """
    zone = ZoneInfo(timezone)
    local = after.astimezone(zone)
    instants = {}
    for hour in range(24):
        if hour == local.hour:
            instants[hour] = after.astimezone(UTC)
            continue
        day = local.date() + timedelta(days=1 if hour < local.hour else 0)
        instants[hour] = datetime.combine(day, time(hour), tzinfo=zone).astimezone(UTC)
    return instants


def _values(columns: list[str], rows: list[tuple]) -> exp.Expression:
    return exp.values([tuple(literal(v) for v in row) for row in rows], alias="v", columns=columns)


def _bind(query: exp.Expression, inline: dict[str, exp.Expression], persons: exp.Expression | None) -> exp.Expression:
    """Put the small inline tables and the persons' SELECT where the SQL names them."""
    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table) and not node.args.get("db") and node.name in inline:
            replacement = inline[node.name].copy()
            replacement.set("alias", exp.TableAlias(this=exp.to_identifier(node.alias or node.name),
                                                    columns=replacement.args["alias"].args.get("columns")))
            return replacement
        if (persons is not None and isinstance(node, exp.Subquery) and node.alias == "a"
                and node.this.sql() == "SELECT 1 AS person_id"):
            return persons.copy().subquery("a")
        return node

    return query.transform(swap)
